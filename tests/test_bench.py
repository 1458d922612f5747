"""The bench harness's pure functions on fixed inputs: /proc parsing, wrk's output, percentile
math, detection matching, request bodies and the printed tables. No timing is asserted here:
speed is what `make bench` reports, never what a test checks."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import pytest

from benchmarks import bench, metrics_overhead
from benchmarks.detections import Box, as_answered, boxes_from_answer, iou, match_boxes
from benchmarks.environment import cpu_model
from benchmarks.inprocess import PhaseResult, summarise
from benchmarks.loadgen import (
    MULTIPART_BOUNDARY,
    WrkOutputError,
    json_request,
    multipart_request,
    parse_wrk_output,
    raw_request,
    write_request_list,
)
from benchmarks.procfs import (
    ProcStat,
    descendants,
    parse_stat,
    parse_status_rss_kib,
    tree_cpu_ticks,
)
from benchmarks.report import (
    Measurement,
    Target,
    fmt,
    format_table,
    format_targets,
    markdown_table,
    median,
    median_measurement,
    percentile,
    ratio,
)

# ------------------------------------------------------------------------------- /proc

# A real line's shape (gunicorn's master, fields 1-24), and one whose name holds ") (".
STAT_GUNICORN = (
    "4242 (gunicorn) S 1 4240 4240 0 -1 4194560 12345 678 0 0 150 37 12 5 20 0 1 0 "
    "98765 30000000 8000 18446744073709551615"
)
STAT_ODD_NAME = "77 (a) (b c) R 5 77 77 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0 0"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            STAT_GUNICORN,
            ProcStat(pid=4242, comm="gunicorn", ppid=1, utime=150, stime=37, cutime=12, cstime=5),
            id="gunicorn-master",
        ),
        # The name is taken up to the last ')': spaces and parentheses in it shift nothing.
        pytest.param(
            STAT_ODD_NAME,
            ProcStat(pid=77, comm="a) (b c", ppid=5, utime=3, stime=4, cutime=0, cstime=0),
            id="name-with-parens-and-spaces",
        ),
    ],
)
def test_parse_stat(line: str, expected: ProcStat) -> None:
    assert parse_stat(line) == expected


@pytest.mark.parametrize(
    ("text", "kib"),
    [
        pytest.param("Name:\tgunicorn\nVmPeak:\t 300 kB\nVmRSS:\t  117432 kB\n", 117432, id="rss"),
        # Kernel threads and zombies have no VmRSS line.
        pytest.param("Name:\tkthreadd\nState:\tS (sleeping)\n", 0, id="no-rss-line"),
    ],
)
def test_parse_status_rss(text: str, kib: int) -> None:
    assert parse_status_rss_kib(text) == kib


def _stat(
    pid: int, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0
) -> ProcStat:
    return ProcStat(pid, "p", ppid, utime, stime, cutime, cstime)


TREE = [
    _stat(1, 0, 999, 999),  # init: not part of the tree below 10
    _stat(10, 1, 5, 1, cutime=30, cstime=10),  # master; a worker that exited left 40 ticks
    _stat(11, 10, 100, 20),  # worker
    _stat(12, 10, 200, 30),  # worker
    _stat(13, 12, 7, 3),  # a worker's child
    _stat(20, 1, 500, 500),  # unrelated
]


def test_descendants_breadth_first() -> None:
    assert descendants(10, TREE) == [11, 12, 13]
    assert descendants(13, TREE) == []


def test_tree_cpu_sums_master_workers_and_reaped_children() -> None:
    # master 5+1, reaped 30+10, workers 120 and 230, grandchild 10
    assert tree_cpu_ticks(10, TREE) == 6 + 40 + 120 + 230 + 10


def test_tree_cpu_of_a_gone_master_counts_what_is_left() -> None:
    assert tree_cpu_ticks(99, TREE) == 0


# ------------------------------------------------------------------------------- wrk

WRK_OUTPUT = """Running 6s test @ http://127.0.0.1:40123
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    90.12ms   10.01ms 140.00ms   70.00%
  528 requests in 6.01s, 1.01MB read
Requests/sec:     87.85
Transfer/sec:    172.20KB
BENCH_WRK requests=528 duration_us=6010000 bytes=1058000 connect=0 read=1 write=0 status=2 \
timeout=0 p50_us=90000 p95_us=101500 p99_us=102250 mean_us=90120.5 max_us=140000
"""


def test_parse_wrk_output() -> None:
    result = parse_wrk_output(WRK_OUTPUT)
    assert result.requests == 528
    assert result.duration_s == pytest.approx(6.01)
    assert result.rate == pytest.approx(528 / 6.01)
    assert result.errors == 3
    assert result.status_errors == 2
    assert (result.p50_ms, result.p95_ms, result.p99_ms) == pytest.approx((90.0, 101.5, 102.25))
    assert result.mean_ms == pytest.approx(90.1205)
    assert result.max_ms == pytest.approx(140.0)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Running 6s test @ http://127.0.0.1:1\n", id="no-result-line"),
        pytest.param("BENCH_WRK requests=5 duration_us=100\n", id="fields-missing"),
        pytest.param("BENCH_WRK requests=five\n", id="not-a-number"),
        pytest.param("BENCH_WRK requests\n", id="no-equals"),
    ],
)
def test_parse_wrk_output_rejects(text: str) -> None:
    with pytest.raises(WrkOutputError):
        parse_wrk_output(text)


# ------------------------------------------------------------------------------- bodies

IMAGE = b"\xff\xd8\xff\xe0 not really a jpeg \x00\x01\xff\xd9"


def test_json_request_carries_the_image_as_base64() -> None:
    spec = json_request(IMAGE)
    assert spec.content_type == "application/json"
    payload = json.loads(spec.body)
    assert base64.b64decode(payload["requests"][0]["image"]["content"]) == IMAGE


def test_raw_request_is_the_image() -> None:
    spec = raw_request(IMAGE, "image/png")
    assert (spec.content_type, spec.body) == ("image/png", IMAGE)


def test_multipart_request_has_one_image_part() -> None:
    spec = multipart_request(IMAGE, "a.jpg")
    assert spec.content_type == f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"
    head, rest = spec.body.split(b"\r\n\r\n", 1)
    assert head.startswith(f"--{MULTIPART_BOUNDARY}\r\n".encode())
    assert b'name="image"; filename="a.jpg"' in head
    assert rest == IMAGE + f"\r\n--{MULTIPART_BOUNDARY}--\r\n".encode()


def test_request_list_for_the_lua_script(tmp_path: Path) -> None:
    list_file = write_request_list(tmp_path, "raw", [raw_request(b"a"), raw_request(b"bc")], "t0k")
    lines = list_file.read_text().splitlines()
    assert lines[0] == "token\tt0k"
    paths = [line.split("\t") for line in lines[1:]]
    assert [p[:2] for p in paths] == [["/v1/detect", "image/jpeg"]] * 2
    assert [Path(p[2]).read_bytes() for p in paths] == [b"a", b"bc"]
    # Without a token the script sends none.
    assert (
        write_request_list(tmp_path, "x", [raw_request(b"a")], "")
        .read_text()
        .startswith("token\t-\n")
    )


# ------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        pytest.param([], 50, math.nan, id="empty"),
        pytest.param([7.0], 99, 7.0, id="one-value"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 50, 2.5, id="median-even"),
        pytest.param([3.0, 1.0, 2.0], 50, 2.0, id="unsorted-odd"),
        # numpy.percentile([1..10], 95) == 9.55, (.., 99) == 9.91
        pytest.param([float(v) for v in range(1, 11)], 95, 9.55, id="p95-interpolated"),
        pytest.param([float(v) for v in range(1, 11)], 99, 9.91, id="p99-interpolated"),
        pytest.param([5.0, 1.0], 0, 1.0, id="p0-is-min"),
        pytest.param([5.0, 1.0], 100, 5.0, id="p100-is-max"),
    ],
)
def test_percentile(values: list[float], p: float, expected: float) -> None:
    got = percentile(values, p)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


def test_percentile_out_of_range() -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_median_skips_nan() -> None:
    assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert math.isnan(median([math.nan]))


def _measurement(rate: float, cpu: float, requests: int = 10, errors: int = 0) -> Measurement:
    return Measurement(rate, cpu, 1.0, 2.0, 3.0, requests, errors, 100.0)


def test_median_measurement_takes_medians_and_sums_counts() -> None:
    rounds = [_measurement(80, 20, 5), _measurement(100, 10, 6, 1), _measurement(90, 30, 7)]
    summary = median_measurement(rounds)
    assert (summary.rate, summary.cpu_ms) == (90, 20)
    assert (summary.requests, summary.errors) == (18, 1)
    assert math.isnan(summary.loadgen_cpu_ms)


def test_summarise_in_process_processes() -> None:
    results = [
        PhaseResult(images=50, cpu_s=0.5, wall_s=5.0, latencies_ms=[10.0] * 50, decode_ms=[],
                    rss_kib=100 * 1024),
        PhaseResult(images=40, cpu_s=0.4, wall_s=4.0, latencies_ms=[20.0] * 40, decode_ms=[],
                    rss_kib=120 * 1024),
    ]  # fmt: skip
    summary = summarise(results)
    assert summary.rate == pytest.approx(10 + 10)  # images per second, summed over processes
    assert summary.cpu_ms == pytest.approx(10.0)  # 0.9 s of CPU for 90 images
    assert (summary.p50_ms, summary.p99_ms) == (10.0, 20.0)
    assert summary.rss_mib == 120.0
    assert summary.requests == 90


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        pytest.param(3.0, 2.0, 1.5, id="plain"),
        pytest.param(3.0, 0.0, math.nan, id="zero-denominator"),
        pytest.param(math.nan, 2.0, math.nan, id="missing-side"),
    ],
)
def test_ratio(numerator: float, denominator: float, expected: float) -> None:
    got = ratio(numerator, denominator)
    assert math.isnan(got) if math.isnan(expected) else got == expected


# ------------------------------------------------------------------------------- detections


def test_iou() -> None:
    a = Box(0, 0, 10, 10, 0.9, 1)
    assert iou(a, a) == 1.0
    assert iou(a, Box(5, 0, 15, 10, 0.9, 1)) == pytest.approx(50 / 150)
    assert iou(a, Box(20, 20, 30, 30, 0.9, 1)) == 0.0
    # Zero-area boxes: no union, no overlap.
    assert iou(Box(1, 1, 1, 1, 0.5, 0), Box(1, 1, 1, 1, 0.5, 0)) == 0.0


DOG = Box(130, 220, 310, 540, 0.92, 16)
BIKE = Box(120, 130, 570, 420, 0.88, 1)


@pytest.mark.parametrize(
    ("got", "matched", "all_matched"),
    [
        pytest.param([], 0, False, id="nothing-returned"),
        pytest.param([BIKE, DOG], 2, True, id="same-boxes-other-order"),
        # A pixel off on a large box is still the same detection.
        pytest.param([Box(131, 221, 311, 539, 0.90, 16), BIKE], 2, True, id="within-tolerance"),
        pytest.param([Box(130, 220, 310, 540, 0.92, 15), BIKE], 1, False, id="other-class"),
        pytest.param([Box(130, 220, 310, 540, 0.70, 16), BIKE], 1, False, id="score-differs"),
        pytest.param([Box(130, 300, 310, 620, 0.92, 16), BIKE], 1, False, id="box-moved"),
        pytest.param([DOG, BIKE, BIKE], 2, False, id="an-extra-box"),
    ],
)
def test_match_boxes(got: list[Box], matched: int, all_matched: bool) -> None:
    result = match_boxes([DOG, BIKE], got)
    assert result.matched == matched
    assert result.all_matched is all_matched


def test_as_answered_rounds_as_the_service_does() -> None:
    box = Box(5.9, 165.5, 155.2, 264.6, 0.89964, 62)
    # Python's round: halves go to the even neighbour, as in the service's JSON.
    assert as_answered(box) == Box(6.0, 166.0, 155.0, 265.0, 0.8996, 62)
    assert match_boxes([as_answered(box)], [as_answered(box)], 1.0, 1e-9).all_matched


def test_boxes_from_answer_reads_pixel_corners() -> None:
    corners = [
        {"x": 130, "y": 220},
        {"x": 310, "y": 220},
        {"x": 310, "y": 540},
        {"x": 130, "y": 540},
    ]
    answer = {
        "responses": [
            {
                "localizedObjectAnnotations": [
                    {
                        "name": "dog",
                        "score": 0.92,
                        "classId": 16,
                        "boundingPoly": {"vertices": corners},
                    }
                ]
            }
        ]
    }
    assert boxes_from_answer(answer) == [DOG]
    with pytest.raises(ValueError, match="error"):
        boxes_from_answer({"responses": [{"error": {"code": 3, "message": "bad"}}]})


# ------------------------------------------------------------------------------- tables


def test_format_table_aligns_columns() -> None:
    table = format_table(("side", "req/s"), [["in-process", "140.0"], ["naive", "64.0"]])
    assert table.splitlines() == [
        "side        req/s",
        "----------  -----",
        "in-process  140.0",
        "naive        64.0",
    ]


def test_format_table_rejects_a_short_row() -> None:
    with pytest.raises(ValueError, match="cells"):
        format_table(("a", "b"), [["only one"]])


def test_markdown_table() -> None:
    assert markdown_table(("side", "req/s"), [["naive", "64.0"]]).splitlines() == [
        "| side | req/s |",
        "| :--- | ---: |",
        "| naive | 64.0 |",
    ]


@pytest.mark.parametrize(
    ("target", "verdict"),
    [
        pytest.param(Target("cpu", 1.05, "<=", 1.10), "PASS", id="at-most-pass"),
        pytest.param(Target("cpu", 1.20, "<=", 1.10), "MISS", id="at-most-miss"),
        pytest.param(Target("tput", 0.85, ">=", 0.85), "PASS", id="at-least-boundary"),
        pytest.param(Target("peer", 1.0, ">", 1.0), "MISS", id="ahead-needs-more"),
        pytest.param(Target("peer", math.nan, ">", 1.0), "n/a", id="not-measured"),
    ],
)
def test_target_verdict(target: Target, verdict: str) -> None:
    assert target.verdict == verdict


def test_format_targets() -> None:
    text = format_targets([Target("p50 overhead", 1.5, "<=", 2.0, " ms")])
    assert text.splitlines()[-1].split("  ")[0] == "p50 overhead"
    assert "1.50 ms" in text
    assert "<= 2.00 ms" in text
    assert text.rstrip().endswith("PASS")


def test_fmt() -> None:
    assert (fmt(math.nan), fmt(1.234), fmt(1.236, 2)) == ("-", "1.2", "1.24")


def test_cpu_model() -> None:
    cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9554\n"
    assert cpu_model(cpuinfo) == "AMD EPYC 9554"


# ------------------------------------------------------------------------------- layout


def test_the_service_never_imports_the_bench_or_its_peers() -> None:
    import ast

    from tests.helpers import REPO_ROOT

    for path in sorted(REPO_ROOT.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "benchmarks" not in imported, path.name


def _measured(cpu_ms: float) -> Measurement:
    return Measurement(
        rate=10.0, cpu_ms=cpu_ms, p50_ms=1, p95_ms=2, p99_ms=3, requests=100, errors=0, rss_mib=1
    )


def test_metrics_overhead_ratio_of_medians_and_report() -> None:
    result = metrics_overhead.OverheadResult(
        on=[_measured(10.1), _measured(10.3), _measured(10.2)],
        off=[_measured(10.0), _measured(10.0), _measured(10.4)],
        scrapes=12,
    )
    assert result.ratio == pytest.approx(10.2 / 10.0)
    assert result.ratios == pytest.approx([1.01, 1.03, 10.2 / 10.4])
    text = metrics_overhead.report(result)
    assert "ratio on/off: 1.0200" in text
    assert "NOT met" in text  # 1.02 is not below the target


def test_metrics_overhead_option() -> None:
    settings = bench.parse_args(["--metrics-overhead"])
    assert settings.metrics_overhead
    assert settings.rounds == 8
    assert bench.parse_args(["--metrics-overhead", "--quick"]).rounds == 2
    assert bench.parse_args([]).rounds == 3
