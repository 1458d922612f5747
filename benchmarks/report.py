"""Statistics and the printed report: percentiles, medians across rounds, the results table and
the targets with PASS/MISS. Pure functions only, so that tests can run them on fixed inputs."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between the closest ranks (as
    numpy's default); NaN for no values."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not between 0 and 100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float]) -> float:
    """Median of the values that are not NaN; NaN when there are none."""
    present = [v for v in values if not math.isnan(v)]
    return percentile(present, 50) if present else math.nan


@dataclass(frozen=True)
class Measurement:
    """One load phase of one side: what the table prints for it.

    `rate`: requests (or images) per second; `cpu_ms`: CPU of the serving processes per
    request; latencies in ms; `rss_mib`: largest worker RSS after the phase;
    `loadgen_cpu_ms`: CPU of the load generator per request (NaN for the in-process side).
    """

    rate: float
    cpu_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    errors: int
    rss_mib: float
    loadgen_cpu_ms: float = math.nan


FIELDS = ("rate", "cpu_ms", "p50_ms", "p95_ms", "p99_ms", "rss_mib", "loadgen_cpu_ms")


def median_measurement(rounds: Sequence[Measurement]) -> Measurement:
    """Per field, the median across rounds; requests and errors are summed."""
    if not rounds:
        raise ValueError("no rounds to summarise")
    medians = {name: median(getattr(m, name) for m in rounds) for name in FIELDS}
    return Measurement(
        **medians,
        requests=sum(m.requests for m in rounds),
        errors=sum(m.errors for m in rounds),
    )


def fmt(value: float, digits: int = 1) -> str:
    """A number for the table; '-' for NaN (not measured)."""
    if math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def fmt_list(values: Sequence[float]) -> str:
    """Several values, one per worker, as `12.3/12.5`."""
    return "/".join(fmt(v) for v in values) or "-"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table for the terminal: the first column left-aligned, the others
    right-aligned, a rule under the header (`markdown_table` makes the docs version)."""
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {list(row)} has {len(row)} cells, expected {len(headers)}")
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same table in Markdown, for docs/performance.md."""
    aligns = [":---", *["---:"] * (len(headers) - 1)]
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(aligns) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    return "\n".join(lines)


MEASUREMENT_HEADERS = (
    "side",
    "conc",
    "req/s",
    "CPU ms/req",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "RSS MiB",
    "requests",
    "errors",
    "wrk CPU ms/req",
)


def measurement_row(side: str, concurrency: str, m: Measurement) -> list[str]:
    return [
        side,
        concurrency,
        fmt(m.rate),
        fmt(m.cpu_ms, 2),
        fmt(m.p50_ms),
        fmt(m.p95_ms),
        fmt(m.p99_ms),
        fmt(m.rss_mib),
        str(m.requests),
        str(m.errors),
        fmt(m.loadgen_cpu_ms, 2),
    ]


@dataclass(frozen=True)
class Target:
    """One target: `value` compared with `limit` by `op` ('<=' or '>=')."""

    name: str
    value: float
    op: str
    limit: float
    unit: str = "x"

    @property
    def verdict(self) -> str:
        if math.isnan(self.value):
            return "n/a"
        checks: Mapping[str, Callable[[float, float], bool]] = {
            "<=": lambda a, b: a <= b,
            ">=": lambda a, b: a >= b,
            ">": lambda a, b: a > b,
        }
        return "PASS" if checks[self.op](self.value, self.limit) else "MISS"


def format_targets(targets: Sequence[Target]) -> str:
    rows = [
        [t.name, f"{fmt(t.value, 2)}{t.unit}", f"{t.op} {fmt(t.limit, 2)}{t.unit}", t.verdict]
        for t in targets
    ]
    return format_table(("target", "measured", "wanted", "verdict"), rows)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when either is missing or the denominator is 0."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator
