"""What the metrics cost: the service with metrics on (METRICS_PORT set, scraped every
second) against the same service with metrics off (METRICS_PORT=0: nothing recorded), side
by side, in interleaved rounds.

    .venv/bin/python -m benchmarks.bench --metrics-overhead
    make bench BENCH_ARGS=--metrics-overhead

Both run as `make run` runs them (gunicorn.conf.py, one worker per CPU), both idle while the
other is loaded. Each round drives one, then the other (the order alternates), with wrk at
saturation on the JSON form of the photos, and reads the CPU of the master and its workers
from /proc: CPU per request is what is compared, as a ratio of medians across rounds, with
the ratio of each round beside it (the spread says how much to trust it). A scrape every
second is 15 to 30 times Prometheus's usual interval: the master's scrape cost is counted in
full. The target is below 1.02 (2% more CPU per request).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import loadgen
from benchmarks.report import Measurement, fmt, median
from benchmarks.servers import REPO_ROOT, Server, free_port, http_call, start_service, stop

TARGET_RATIO = 1.02
SCRAPE_INTERVAL_S = 1.0


# One request's recording as a worker does it, in multiprocess mode (memory-mapped files):
# in-flight up and down, the request counter and histogram, seven stage observations, the
# images counter. Run in a fresh interpreter, as prometheus_client picks its storage when
# first imported.
_RECORDING = """
import time
from metrics import ServiceMetrics
from stages import RequestRecord
m = ServiceMetrics()
record = RequestRecord(
    events=[(s, 0.001) for s in ("read_body", "decode", "preprocess", "infer",
                                 "postprocess", "render", "serialize")],
    models={"yolox_nano"}, images=1)
def one():
    m.request_started()
    m.request_finished("/v1/detect", 200, 0.05, record)
    m.request_ended()
for _ in range(500):
    one()
n = 5000
started = time.process_time()
for _ in range(n):
    one()
print((time.process_time() - started) / n * 1e6)
"""


def recording_cost_us() -> float:
    """CPU microseconds one request's metrics cost a worker, measured in a loop."""
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as folder:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder}
        completed = subprocess.run(
            [sys.executable, "-c", _RECORDING],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
    return float(completed.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class OverheadResult:
    on: list[Measurement]
    off: list[Measurement]
    scrapes: int
    recording_us: float = float("nan")

    @property
    def ratios(self) -> list[float]:
        return [a.cpu_ms / b.cpu_ms for a, b in zip(self.on, self.off, strict=True)]

    @property
    def ratio(self) -> float:
        return median(m.cpu_ms for m in self.on) / median(m.cpu_ms for m in self.off)


class Scraper:
    """GET /metrics every SCRAPE_INTERVAL_S while running."""

    def __init__(self, metrics_port: int) -> None:
        self.url = f"http://127.0.0.1:{metrics_port}"
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SCRAPE_INTERVAL_S):
            status, body = http_call(self.url, "GET", "/metrics", timeout_s=10)
            if status != 200 or b"detection_requests_total" not in body:
                raise RuntimeError(f"scrape answered {status}")
            self.count += 1

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def run(
    work_dir: Path,
    photos: Sequence[bytes],
    measure: Callable[[Server, Path, int, float], Measurement],
    rounds: int,
    connections: int,
    duration_s: float,
    progress: Callable[[str], None] = print,
) -> OverheadResult:
    """`measure` is bench's measure_http: one wrk phase and the CPU it cost the server."""
    token = "bench-" + secrets.token_urlsafe(18)
    metrics_port = free_port()
    servers: list[Server] = []
    on: list[Measurement] = []
    off: list[Measurement] = []
    scrapes = 0
    try:
        with_metrics = start_service(work_dir, token, metrics_port, name="metrics-on")
        servers.append(with_metrics)
        without = start_service(work_dir, token, 0, name="metrics-off")
        servers.append(without)
        requests = [loadgen.json_request(p) for p in photos]
        list_file = loadgen.write_request_list(work_dir, "overhead-json", requests, token)
        for server in servers:  # warm-up: every worker has served
            loadgen.run_wrk(server.base_url, list_file, connections, min(3.0, duration_s))
        for index in range(rounds):
            order = [(True, with_metrics), (False, without)]
            for metrics_on, server in order if index % 2 == 0 else order[::-1]:
                side = "on" if metrics_on else "off"
                progress(f"metrics overhead round {index + 1}/{rounds}: metrics {side}")
                if metrics_on:
                    with Scraper(metrics_port) as scraper:
                        on.append(measure(server, list_file, connections, duration_s))
                    scrapes += scraper.count
                else:
                    off.append(measure(server, list_file, connections, duration_s))
    finally:
        for server in servers:
            stop(server)
    return OverheadResult(on, off, scrapes, recording_cost_us())


def report(result: OverheadResult) -> str:
    on_cpu = median(m.cpu_ms for m in result.on)
    off_cpu = median(m.cpu_ms for m in result.off)
    verdict = "met" if result.ratio < TARGET_RATIO else "NOT met"
    lines = [
        "Metrics overhead (metrics on and scraped every second vs METRICS_PORT=0), "
        f"{len(result.on)} interleaved rounds, {result.scrapes} scrapes:",
        f"  CPU ms per request, median: on {fmt(on_cpu, 2)}, off {fmt(off_cpu, 2)}",
        f"  ratio on/off: {fmt(result.ratio, 4)} (per round: "
        + ", ".join(fmt(r, 3) for r in result.ratios)
        + ")",
        "  requests/s, median: on "
        + fmt(median(m.rate for m in result.on))
        + ", off "
        + fmt(median(m.rate for m in result.off)),
        f"  target: < {TARGET_RATIO} ({verdict})",
        f"  one request's recording alone, in a loop: {fmt(result.recording_us, 1)} us of CPU, "
        f"{fmt(100 * result.recording_us / 1000 / off_cpu, 2)}% of a request's CPU (off side)",
    ]
    return "\n".join(lines)
