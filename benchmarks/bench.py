"""`make bench`: the service against the in-process pipeline, side by side, on real photos.

    .venv/bin/python -m benchmarks.bench            # full run (a few minutes on 2 cores)
    .venv/bin/python -m benchmarks.bench --quick    # about a minute, for development
    .venv/bin/python -m benchmarks.bench --peers    # also FastAPI/uvicorn (own venv)

Sides, measured in interleaved rounds so that noise from other work on the machine hits each
of them alike (medians across rounds are printed):

- in-process: the project's pipeline (`decode_image`, `Detector.detect`) from photo bytes, one
  process per service worker, one intra-op thread each; no HTTP.
- service: gunicorn exactly as `make run` starts it, driven by wrk on the same machine with
  rotating bodies of the 100 photos, in the JSON (base64), raw and multipart forms.
- naive: Flask, 5 sync workers, onnxruntime's default session options, the same pipeline
  (benchmarks/peers/naive_flask.py).
- fastapi (with --peers): FastAPI/uvicorn serving the same pipeline as the service does.

Each side runs at concurrency 1 and at saturation. Then a 12 MP JPEG and a 1080p PNG (made
from a real photo at run time) go through the in-process pipeline and the service at
concurrency 1, and a memory soak sends --soak JSON requests. The bench reports: it exits 0
whatever the figures, and non-zero only when the harness itself fails.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import loadgen, metrics_overhead, procfs
from benchmarks.detections import MatchResult, as_answered, boxes_from_answer, match_boxes
from benchmarks.inprocess import InProcessPool, PhaseResult, summarise
from benchmarks.loadgen import RequestSpec
from benchmarks.report import (
    MEASUREMENT_HEADERS,
    Measurement,
    Target,
    fmt,
    format_table,
    format_targets,
    markdown_table,
    measurement_row,
    median,
    median_measurement,
    percentile,
    ratio,
)
from benchmarks.servers import (
    REPO_ROOT,
    Server,
    http_call,
    service_workers,
    start_fastapi,
    start_naive,
    start_service,
    stop,
)

SHARED_IMAGES = REPO_ROOT.parent / "shared" / "images"
PEERS_VENV = REPO_ROOT / "benchmarks" / ".venv-peers"
PEERS_REQUIREMENTS = REPO_ROOT / "benchmarks" / "peers" / "requirements.txt"
MODEL_NAME = "yolox_nano"
# The targets.
CPU_RATIO_MAX = 1.10
THROUGHPUT_RATIO_MIN = 0.85
NAIVE_RATIO_MIN = 2.0
P50_OVERHEAD_MAX_MS = 2.0
LARGE_SPEEDUP_MIN = 2.0
RSS_MAX_MB = 150.0
RSS_GROWTH_MAX_PCT = 10.0
FORMS = ("json", "raw", "multipart")
LARGE_FORMS = ("json", "raw")
SANITY_PHOTOS = 5


@dataclass(frozen=True)
class Settings:
    rounds: int
    saturation_s: float
    single_s: float
    warmup_s: float
    large_s: float
    soak_requests: int
    connections: int
    peers: bool
    photos: Path
    dog: Path
    markdown: Path | None
    metrics_overhead: bool = False


def parse_args(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 short round, short soak")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (full: 3, quick: 1)")
    parser.add_argument("--duration", type=float, help="seconds per saturation phase")
    parser.add_argument("--c1-duration", type=float, help="seconds per concurrency-1 phase")
    parser.add_argument(
        "--soak",
        type=int,
        help="requests to the service after warm-up before the last RSS reading: the rounds "
        "count, a soak of JSON requests makes up the rest (full: 10000, quick: 1000; 0: none)",
    )
    parser.add_argument("--connections", type=int, default=8, help="saturation connections")
    parser.add_argument("--peers", action="store_true", help="also FastAPI/uvicorn")
    parser.add_argument("--photos", type=Path, default=SHARED_IMAGES / "coco")
    parser.add_argument("--dog", type=Path, default=SHARED_IMAGES / "dog.jpg")
    parser.add_argument("--markdown", type=Path, help="also write the tables here as Markdown")
    parser.add_argument(
        "--metrics-overhead",
        action="store_true",
        help="only compare the service with metrics on and off (benchmarks/metrics_overhead.py; "
        "rounds: full 8, quick 2)",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    overhead = bool(args.metrics_overhead)
    return Settings(
        rounds=args.rounds or ((2 if quick else 8) if overhead else (1 if quick else 3)),
        saturation_s=args.duration or (3.0 if quick else 6.0),
        single_s=args.c1_duration or (2.0 if quick else 3.0),
        warmup_s=2.0 if quick else 3.0,
        large_s=2.0 if quick else 3.0,
        soak_requests=args.soak if args.soak is not None else (1000 if quick else 10_000),
        connections=args.connections,
        peers=bool(args.peers),
        photos=args.photos,
        dog=args.dog,
        markdown=args.markdown,
        metrics_overhead=overhead,
    )


# ------------------------------------------------------------------------------ environment


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return [
        f"machine: {cpu_model(cpuinfo)}, {len(os.sched_getaffinity(0))} usable cores "
        f"({os.cpu_count()} online), {memory_kib / 1024 / 1024:.1f} GiB, "
        f"Linux {platform.release()}, load average {load}",
        f"versions: Python {platform.python_version()}, onnxruntime {_version('onnxruntime')}, "
        f"numpy {_version('numpy')}, opencv-python-headless "
        f"{_version('opencv-python-headless')}, gunicorn {_version('gunicorn')}, "
        f"flask {_version('flask')}, {loadgen.wrk_version()}",
    ]


def ensure_wrk() -> None:
    if loadgen.wrk_binary() is None:
        subprocess.run([str(REPO_ROOT / "scripts" / "install_tools.sh")], check=True)


# ------------------------------------------------------------------------------ images


@dataclass(frozen=True)
class LargeImage:
    name: str
    data: bytes
    content_type: str
    filename: str


def large_images(dog: Path) -> list[LargeImage]:
    """A 12 MP JPEG (4000x3000, quality 90) and a 1080p PNG, both made from a real photo."""
    import cv2
    import numpy as np

    photo = cv2.imread(str(dog), cv2.IMREAD_COLOR)
    if photo is None:
        raise FileNotFoundError(f"cannot read {dog}")
    big = cv2.resize(photo, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    ok_jpeg, jpeg = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    # 1920 wide keeps the photo's 4:3, then the middle 1080 rows: no stretching.
    wide = cv2.resize(photo, (1920, 1440), interpolation=cv2.INTER_CUBIC)
    top = (1440 - 1080) // 2
    ok_png, png = cv2.imencode(".png", np.ascontiguousarray(wide[top : top + 1080]))
    if not (ok_jpeg and ok_png):
        raise RuntimeError("OpenCV could not encode the large test images")
    return [
        LargeImage("12MP JPEG 4000x3000", jpeg.tobytes(), "image/jpeg", "big.jpg"),
        LargeImage("1080p PNG 1920x1080", png.tobytes(), "image/png", "hd.png"),
    ]


def form_request(form: str, data: bytes, content_type: str, filename: str) -> RequestSpec:
    if form == "json":
        return loadgen.json_request(data)
    if form == "raw":
        return loadgen.raw_request(data, content_type)
    return loadgen.multipart_request(data, filename, content_type)


# ------------------------------------------------------------------------------ measuring


def measure_http(
    server: Server, list_file: Path, connections: int, duration_s: float
) -> Measurement:
    """One wrk phase against `server`: CPU of the master and all workers from /proc."""
    before = procfs.tree_cpu_seconds(server.pid)
    result, wrk_cpu = loadgen.run_wrk(server.base_url, list_file, connections, duration_s)
    after = procfs.tree_cpu_seconds(server.pid)
    workers = server.workers()
    rss = max((procfs.rss_kib(pid) for pid in workers), default=0) / 1024
    done = result.requests
    return Measurement(
        rate=result.rate,
        cpu_ms=1000 * (after - before) / done if done else math.nan,
        p50_ms=result.p50_ms,
        p95_ms=result.p95_ms,
        p99_ms=result.p99_ms,
        requests=done,
        errors=result.errors,
        rss_mib=rss,
        loadgen_cpu_ms=1000 * wrk_cpu / done if done else math.nan,
    )


def worker_rss_mib(server: Server) -> list[float]:
    return [procfs.rss_kib(pid) / 1024 for pid in server.workers()]


@dataclass
class Results:
    """Every phase's measurements, by (side, concurrency), one per round."""

    phases: dict[tuple[str, int], list[Measurement]] = field(default_factory=dict)
    decode_ms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, side: str, concurrency: int, measurement: Measurement) -> None:
        self.phases.setdefault((side, concurrency), []).append(measurement)

    def median(self, side: str, concurrency: int) -> Measurement | None:
        rounds = self.phases.get((side, concurrency))
        return median_measurement(rounds) if rounds else None


def _field(m: Measurement | None, name: str) -> float:
    return math.nan if m is None else float(getattr(m, name))


def _progress(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def sanity_check(
    service: Server, token: str, pool: InProcessPool, photos: Sequence[bytes]
) -> list[str]:
    """The service answers every form with exactly the in-process pipeline's detections (as
    the service rounds them); returns what differs."""
    problems = []
    for index, data in enumerate(photos[:SANITY_PHOTOS]):
        expected = [as_answered(box) for box in pool.detections(data)]
        for form in FORMS:
            spec = form_request(form, data, "image/jpeg", "photo.jpg")
            status, body = http_call(
                service.base_url,
                "POST",
                spec.path,
                spec.body,
                {"Content-Type": spec.content_type, "X-Api-Token": token},
            )
            if status != 200:
                problems.append(f"photo {index} {form}: HTTP {status}")
                continue
            answered = boxes_from_answer(json.loads(body))
            got = match_boxes(expected, answered, min_iou=1.0, score_tolerance=1e-9)
            if not got.all_matched:
                problems.append(f"photo {index} {form}: {got.describe()}")
    return problems


@dataclass(frozen=True)
class LargeResult:
    name: str
    inprocess: Measurement
    decode_p50_ms: float
    service: dict[str, Measurement]
    match: MatchResult


def measure_large(
    image: LargeImage,
    pool: InProcessPool,
    service: Server,
    token: str,
    work_dir: Path,
    settings: Settings,
) -> LargeResult:
    """Concurrency 1 on one large image: the in-process pipeline with its full decode, and the
    service in the JSON and raw forms, interleaved for `settings.rounds` rounds."""
    pool.load(image.name, [image.data])
    lists = {
        form: loadgen.write_request_list(
            work_dir,
            f"large-{image.filename}-{form}",
            [form_request(form, image.data, image.content_type, image.filename)],
            token,
        )
        for form in LARGE_FORMS
    }
    inprocess_rounds: list[Measurement] = []
    decode_rounds: list[float] = []
    service_rounds: dict[str, list[Measurement]] = {form: [] for form in LARGE_FORMS}
    for _ in range(settings.rounds):
        phase = pool.run(image.name, settings.large_s, processes=1)
        inprocess_rounds.append(summarise(phase))
        decode_rounds.append(percentile(phase[0].decode_ms, 50))
        for form in LARGE_FORMS:
            service_rounds[form].append(measure_http(service, lists[form], 1, settings.large_s))
    spec = form_request("raw", image.data, image.content_type, image.filename)
    status, body = http_call(
        service.base_url,
        "POST",
        spec.path,
        spec.body,
        {"Content-Type": spec.content_type, "X-Api-Token": token},
    )
    if status != 200:
        raise RuntimeError(f"the service answered {status} for the {image.name}: {body[:300]!r}")
    match = match_boxes(pool.detections(image.data), boxes_from_answer(json.loads(body)))
    return LargeResult(
        image.name,
        median_measurement(inprocess_rounds),
        median(decode_rounds),
        {form: median_measurement(rounds) for form, rounds in service_rounds.items()},
        match,
    )


@dataclass(frozen=True)
class SoakResult:
    rss_after_warmup: list[float]
    rss_after: list[float]
    requests_since_warmup: int
    soak_requests: int
    soak_s: float
    errors: int

    @property
    def growth_pct(self) -> float:
        pairs = [
            (after - before) / before * 100
            for before, after in zip(self.rss_after_warmup, self.rss_after, strict=False)
            if before > 0
        ]
        return max(pairs, default=math.nan)


def soak(
    service: Server, list_file: Path, connections: int, requests: int
) -> tuple[int, float, int]:
    """Send about `requests` JSON requests in phases of at most 30 s; returns the number sent,
    the seconds taken and the errors."""
    sent = errors = 0
    started = time.perf_counter()
    rate = 50.0  # a first guess, corrected after each phase
    while sent < requests:
        chunk_s = min(30.0, max(2.0, (requests - sent) / rate))
        result, _ = loadgen.run_wrk(service.base_url, list_file, connections, chunk_s)
        sent += result.requests
        errors += result.errors
        rate = max(1.0, result.rate)
        _progress(
            f"soak: {sent}/{requests} requests, worker RSS {fmt_list(worker_rss_mib(service))} MiB"
        )
    return sent, time.perf_counter() - started, errors


def fmt_list(values: Sequence[float]) -> str:
    return "/".join(fmt(v) for v in values) or "-"


# ------------------------------------------------------------------------------ peers


def peers_python() -> Path:
    """The FastAPI/uvicorn peer's own venv (git-ignored), made on first use."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    if not stamp.is_file() or stamp.stat().st_mtime < PEERS_REQUIREMENTS.stat().st_mtime:
        _progress(f"installing the peers' dependencies into {PEERS_VENV.relative_to(REPO_ROOT)}")
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
                str(PEERS_REQUIREMENTS),
            ],
            check=True,
        )
        stamp.touch()
    return python


# ------------------------------------------------------------------------------ the run


def build_targets(
    results: Results, large: Sequence[LargeResult], memory: SoakResult | None, peers: bool
) -> list[Target]:
    inproc_sat = results.median("in-process", -1)
    inproc_c1 = results.median("in-process", 1)
    json_sat = results.median("service json", -1)
    targets = [
        Target(
            "CPU/req service JSON / in-process CPU/img",
            ratio(_field(json_sat, "cpu_ms"), _field(inproc_sat, "cpu_ms")),
            "<=",
            CPU_RATIO_MAX,
        ),
    ]
    for form in FORMS:
        sat = results.median(f"service {form}", -1)
        targets.append(
            Target(
                f"throughput service {form} / in-process",
                ratio(_field(sat, "rate"), _field(inproc_sat, "rate")),
                ">=",
                THROUGHPUT_RATIO_MIN,
            )
        )
    targets.append(
        Target(
            "throughput service JSON / naive",
            ratio(_field(json_sat, "rate"), _field(results.median("naive json", -1), "rate")),
            ">=",
            NAIVE_RATIO_MIN,
        )
    )
    if peers:
        targets.append(
            Target(
                "throughput service JSON / fastapi",
                ratio(_field(json_sat, "rate"), _field(results.median("fastapi json", -1), "rate")),
                ">",
                1.0,
            )
        )
    for form in FORMS:
        c1 = results.median(f"service {form}", 1)
        targets.append(
            Target(
                f"p50 c=1 service {form} - in-process",
                _field(c1, "p50_ms") - _field(inproc_c1, "p50_ms"),
                "<=",
                P50_OVERHEAD_MAX_MS,
                " ms",
            )
        )
    for item in large:
        if item.name.startswith("12MP"):
            targets.append(
                Target(
                    "12MP JPEG: full-decode in-process p50 / service raw p50",
                    ratio(item.inprocess.p50_ms, item.service["raw"].p50_ms),
                    ">=",
                    LARGE_SPEEDUP_MIN,
                )
            )
            targets.append(
                Target(
                    "12MP JPEG: detections matched / full decode's",
                    item.match.matched / max(1, item.match.expected, item.match.got),
                    ">=",
                    1.0,
                )
            )
    if memory is not None:
        worst = max(memory.rss_after + memory.rss_after_warmup, default=math.nan)
        targets.append(
            Target("RSS per worker (largest)", worst * 1.048576, "<=", RSS_MAX_MB, " MB")
        )
        targets.append(
            Target(
                f"RSS growth after {memory.requests_since_warmup} requests",
                memory.growth_pct,
                "<=",
                RSS_GROWTH_MAX_PCT,
                " %",
            )
        )
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    ensure_wrk()
    header = machine_lines()
    for line in header:
        print(line, flush=True)
    photo_paths = sorted(settings.photos.glob("*.jpg"))
    if not photo_paths:
        raise FileNotFoundError(f"no photos in {settings.photos}")
    photos = [p.read_bytes() for p in photo_paths]
    if settings.metrics_overhead:
        with tempfile.TemporaryDirectory(prefix="bench-") as temp:
            overhead = metrics_overhead.run(
                Path(temp),
                photos,
                measure_http,
                settings.rounds,
                settings.connections,
                settings.saturation_s,
                _progress,
            )
        print(metrics_overhead.report(overhead))
        return 0
    workers = service_workers(os.environ)
    token = "bench-" + secrets.token_urlsafe(18)
    results = Results()
    servers: list[Server] = []
    pool: InProcessPool | None = None
    with tempfile.TemporaryDirectory(prefix="bench-") as temp:
        work_dir = Path(temp)
        try:
            _progress(f"starting {workers} in-process workers, the service and the peers")
            live_pool = pool = InProcessPool(workers, REPO_ROOT / "models", MODEL_NAME)
            live_pool.load("photos", photos)
            service = start_service(work_dir, token)
            servers.append(service)
            naive = start_naive(work_dir)
            servers.append(naive)
            fastapi = None
            if settings.peers:
                fastapi = start_fastapi(work_dir, peers_python(), workers)
                servers.append(fastapi)
            problems = sanity_check(service, token, pool, photos)
            if problems:
                print("sanity check: the service's detections differ from the in-process ones:")
                for problem in problems:
                    print(f"  {problem}")
            lists = {
                form: loadgen.write_request_list(
                    work_dir,
                    form,
                    [
                        form_request(form, p, "image/jpeg", path.name)
                        for p, path in zip(photos, photo_paths, strict=True)
                    ],
                    token,
                )
                for form in FORMS
            }
            peer_list = loadgen.write_request_list(
                work_dir, "peer-json", [loadgen.json_request(p) for p in photos], ""
            )

            # Warm-up: every form through every worker, then the "after warm-up" memory.
            _progress("warm-up")
            for form in FORMS:
                loadgen.run_wrk(
                    service.base_url, lists[form], settings.connections, settings.warmup_s
                )
            for peer in servers[1:]:
                loadgen.run_wrk(peer.base_url, peer_list, settings.connections, settings.warmup_s)
            pool.run("photos", settings.warmup_s)
            rss_after_warmup = worker_rss_mib(service)
            served_since_warmup = 0

            def inprocess_phase(concurrency: int) -> Callable[[], None]:
                def run() -> None:
                    duration = settings.saturation_s if concurrency < 0 else settings.single_s
                    phase: list[PhaseResult] = live_pool.run(
                        "photos", duration, None if concurrency < 0 else 1
                    )
                    results.add("in-process", concurrency, summarise(phase))
                    results.decode_ms.setdefault(f"in-process {concurrency}", []).append(
                        median(v for r in phase for v in r.decode_ms)
                    )

                return run

            def http_phase(
                side: str, server: Server, list_file: Path, concurrency: int
            ) -> Callable[[], None]:
                def run() -> None:
                    nonlocal served_since_warmup
                    connections = settings.connections if concurrency < 0 else 1
                    duration = settings.saturation_s if concurrency < 0 else settings.single_s
                    measured = measure_http(server, list_file, connections, duration)
                    if server is service:
                        served_since_warmup += measured.requests
                    results.add(side, concurrency, measured)

                return run

            # -1 stands for saturation in the keys.
            blocks: list[list[tuple[str, Callable[[], None]]]] = [
                [("in-process c=1", inprocess_phase(1)), ("in-process sat", inprocess_phase(-1))],
                *(
                    [
                        (
                            f"service {form} c=1",
                            http_phase(f"service {form}", service, lists[form], 1),
                        ),
                        (
                            f"service {form} sat",
                            http_phase(f"service {form}", service, lists[form], -1),
                        ),
                    ]
                    for form in FORMS
                ),
                [
                    ("naive json c=1", http_phase("naive json", naive, peer_list, 1)),
                    ("naive json sat", http_phase("naive json", naive, peer_list, -1)),
                ],
            ]
            if fastapi is not None:
                blocks.append(
                    [
                        ("fastapi json c=1", http_phase("fastapi json", fastapi, peer_list, 1)),
                        ("fastapi json sat", http_phase("fastapi json", fastapi, peer_list, -1)),
                    ]
                )
            for round_index in range(settings.rounds):
                # Each round starts at a different side, so no side always runs first or last.
                shift = round_index % len(blocks)
                for block in blocks[shift:] + blocks[:shift]:
                    for name, phase_run in block:
                        _progress(f"round {round_index + 1}/{settings.rounds}: {name}")
                        phase_run()

            large = []
            for image in large_images(settings.dog):
                _progress(f"large image: {image.name}")
                large.append(measure_large(image, live_pool, service, token, work_dir, settings))

            served_since_warmup += sum(m.requests for item in large for m in item.service.values())
            memory = None
            if settings.soak_requests > 0:
                wanted = max(0, settings.soak_requests - served_since_warmup)
                _progress(
                    f"memory soak: {served_since_warmup} requests served since warm-up, "
                    f"{wanted} JSON requests more"
                )
                sent, soak_s, soak_errors = soak(
                    service, lists["json"], settings.connections, wanted
                )
                memory = SoakResult(
                    rss_after_warmup=rss_after_warmup,
                    rss_after=worker_rss_mib(service),
                    requests_since_warmup=served_since_warmup + sent,
                    soak_requests=sent,
                    soak_s=soak_s,
                    errors=soak_errors,
                )
        finally:
            for server in reversed(servers):
                status = stop(server)
                if status not in (0, None) and server.name == "service":
                    print(f"the service exited with status {status} on SIGTERM", file=sys.stderr)
            if pool is not None:
                pool.close()

    elapsed = time.perf_counter() - started
    outcome = Run(settings, header, results, large, memory, problems, elapsed)
    report = render_report(outcome)
    print(report)
    if settings.markdown is not None:
        settings.markdown.write_text(render_markdown(outcome))
        print(f"Markdown tables written to {settings.markdown}")
    return 0


SIDES = (
    "in-process",
    "service json",
    "service raw",
    "service multipart",
    "naive json",
    "fastapi json",
)


def measurement_rows(results: Results) -> list[list[str]]:
    rows = []
    for side in SIDES:
        for concurrency in (1, -1):
            m = results.median(side, concurrency)
            if m is not None:
                rows.append(measurement_row(side, "sat" if concurrency < 0 else "1", m))
    return rows


LARGE_HEADERS = (
    "image",
    "in-process p50 ms",
    "of it decode ms",
    "service JSON p50 ms",
    "service raw p50 ms",
    "speed-up raw",
    "detections",
)


def large_rows(large: Sequence[LargeResult]) -> list[list[str]]:
    return [
        [
            item.name,
            fmt(item.inprocess.p50_ms),
            fmt(item.decode_p50_ms),
            fmt(item.service["json"].p50_ms),
            fmt(item.service["raw"].p50_ms),
            fmt(ratio(item.inprocess.p50_ms, item.service["raw"].p50_ms), 2) + "x",
            item.match.describe(),
        ]
        for item in large
    ]


def memory_lines(memory: SoakResult | None) -> list[str]:
    if memory is None:
        return ["memory soak: skipped (--soak 0)"]
    return [
        f"worker RSS after warm-up: {fmt_list(memory.rss_after_warmup)} MiB",
        f"worker RSS after {memory.requests_since_warmup} requests (the rounds, then a soak "
        f"of {memory.soak_requests} JSON requests in {memory.soak_s:.0f} s, "
        f"{memory.errors} errors): {fmt_list(memory.rss_after)} MiB, "
        f"growth {fmt(memory.growth_pct)} %",
    ]


def settings_line(settings: Settings, elapsed: float) -> str:
    return (
        f"settings: {settings.rounds} interleaved rounds, saturation {settings.connections} "
        f"connections for {settings.saturation_s:g} s, concurrency 1 for {settings.single_s:g} s, "
        f"{service_workers(os.environ)} service workers; medians across rounds; "
        f"whole run {elapsed / 60:.1f} min"
    )


@dataclass(frozen=True)
class Run:
    """Everything the report prints."""

    settings: Settings
    header: Sequence[str]
    results: Results
    large: Sequence[LargeResult]
    memory: SoakResult | None
    sanity_problems: Sequence[str]
    elapsed_s: float

    def targets(self) -> list[Target]:
        return build_targets(self.results, self.large, self.memory, self.settings.peers)

    def notes(self) -> list[str]:
        decode = median(self.results.decode_ms.get("in-process 1", []))
        checked = f"{SANITY_PHOTOS} photos x {len(FORMS)} forms"
        sanity = (
            [f"detections: the service's equal the in-process pipeline's on {checked}"]
            if not self.sanity_problems
            else [
                f"detections: the service's DIFFER from the in-process pipeline's ({checked}): "
                + "; ".join(self.sanity_problems)
            ]
        )
        return [
            f"in-process c=1: decoding the photo is {fmt(decode)} ms of each image's time; "
            "CPU ms/req: user+system time of the serving processes (master and workers) per "
            "request; wrk CPU ms/req: the load generator's",
            *sanity,
        ]


def render_report(run: Run) -> str:
    parts = [
        "",
        *run.header,
        settings_line(run.settings, run.elapsed_s),
        "",
        format_table(MEASUREMENT_HEADERS, measurement_rows(run.results)),
        *run.notes(),
        "",
        format_table(LARGE_HEADERS, large_rows(run.large)),
        "",
        *memory_lines(run.memory),
        "",
        "targets (this run's ratios):",
        format_targets(run.targets()),
        "",
    ]
    return "\n".join(parts)


def render_markdown(run: Run) -> str:
    target_rows = [
        [t.name, f"{fmt(t.value, 2)}{t.unit}", f"{t.op} {fmt(t.limit, 2)}{t.unit}", t.verdict]
        for t in run.targets()
    ]
    parts = [
        *(f"- {line}" for line in [*run.header, settings_line(run.settings, run.elapsed_s)]),
        "",
        markdown_table(MEASUREMENT_HEADERS, measurement_rows(run.results)),
        "",
        *(f"- {line}" for line in run.notes()),
        "",
        markdown_table(LARGE_HEADERS, large_rows(run.large)),
        "",
        *(f"- {line}" for line in memory_lines(run.memory)),
        "",
        markdown_table(("target", "measured", "wanted", "verdict"), target_rows),
        "",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
