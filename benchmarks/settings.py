"""What one bench run measures and for how long (from the command line, `bench.parse_args`),
and the input forms every side is sent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FORMS = ("json", "raw", "multipart")
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
    # Only the metrics on/off comparison (benchmarks/metrics_overhead.py).
    metrics_overhead: bool = False
