"""What a run prints: its measurements as tables (plain and Markdown), the notes and the targets
with this run's ratios."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.measure import LargeResult, Results, SoakResult
from benchmarks.report import (
    MEASUREMENT_HEADERS,
    Measurement,
    Target,
    fmt,
    fmt_list,
    format_table,
    format_targets,
    markdown_table,
    measurement_row,
    median,
    ratio,
)
from benchmarks.servers import service_workers
from benchmarks.settings import FORMS, SANITY_PHOTOS, Settings

# The targets.
CPU_RATIO_MAX = 1.10
THROUGHPUT_RATIO_MIN = 0.85
NAIVE_RATIO_MIN = 2.0
P50_OVERHEAD_MAX_MS = 2.0
LARGE_SPEEDUP_MIN = 2.0
RSS_MAX_MB = 150.0
RSS_GROWTH_MAX_PCT = 10.0


def _field(m: Measurement | None, name: str) -> float:
    return math.nan if m is None else float(getattr(m, name))


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
