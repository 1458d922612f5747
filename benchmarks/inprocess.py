"""The in-process side: the project's own pipeline with no HTTP, one process per worker.

Each process loads the model with `predict.load_model` (one intra-op thread, as a service
worker does) and runs `image_io.decode_image` then `Detector.detect` (letterbox, inference,
head decoding, NMS, mapping back) on encoded photo bytes. Processes are started once with the
`spawn` method and kept for the whole bench; each phase starts them together at an agreed time.
CPU is the process's own (`time.process_time`, every thread).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.detections import Box
from benchmarks.procfs import rss_kib
from benchmarks.report import Measurement, percentile

START_DELAY_S = 0.3


@dataclass(frozen=True)
class PhaseResult:
    """What one process did in one phase; latencies in ms."""

    images: int
    cpu_s: float
    wall_s: float
    latencies_ms: list[float]
    decode_ms: list[float]
    rss_kib: int


def _run_phase(
    detector: Any, images: Sequence[bytes], start_at: float, duration_s: float, offset: int
) -> PhaseResult:
    from detection_types import DetectionParams
    from image_io import decode_image

    params = DetectionParams()
    latencies: list[float] = []
    decodes: list[float] = []
    time.sleep(max(0.0, start_at - time.time()))
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    deadline = wall_start + duration_s
    index = offset
    now = wall_start
    while now < deadline or not latencies:
        data = images[index % len(images)]
        index += 1
        began = time.perf_counter()
        image = decode_image(data)
        decoded = time.perf_counter()
        detector.detect(image, params)
        now = time.perf_counter()
        latencies.append((now - began) * 1000)
        decodes.append((decoded - began) * 1000)
    return PhaseResult(
        images=len(latencies),
        cpu_s=time.process_time() - cpu_start,
        wall_s=now - wall_start,
        latencies_ms=latencies,
        decode_ms=decodes,
        rss_kib=rss_kib(os.getpid()),
    )


def _detections(detector: Any, data: bytes) -> list[Box]:
    from detection_types import DetectionParams
    from image_io import decode_image

    result = detector.detect(decode_image(data), DetectionParams())
    found = result.detections
    return [
        Box(x1, y1, x2, y2, score, class_id)
        for (x1, y1, x2, y2), score, class_id in zip(
            found.xyxy.tolist(), found.scores.tolist(), found.class_ids.tolist(), strict=True
        )
    ]


def _worker(conn: Connection, models_dir: str, model_name: str, offset: int) -> None:
    """Command loop of one in-process worker (runs in a spawned process)."""
    from predict import load_model

    detector = load_model(Path(models_dir), model_name, intra_op_threads=1)
    image_sets: dict[str, list[bytes]] = {}
    conn.send(("ready", os.getpid()))
    while True:
        command, *args = conn.recv()
        if command == "load":
            name, images = args
            image_sets[name] = images
            for data in images[:20]:  # warm the code paths and the allocator
                _detections(detector, data)
            conn.send(("loaded", len(images)))
        elif command == "run":
            name, start_at, duration_s = args
            result = _run_phase(detector, image_sets[name], start_at, duration_s, offset)
            conn.send(("result", result))
        elif command == "detect":
            (data,) = args
            conn.send(("detections", _detections(detector, data)))
        elif command == "stop":
            conn.send(("stopped", None))
            return


class InProcessPool:
    """`processes` in-process workers, driven over pipes."""

    def __init__(self, processes: int, models_dir: Path, model_name: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._connections: list[Connection] = []
        self._processes = []
        for index in range(processes):
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker,
                args=(child, str(models_dir), model_name, index * 37),
                daemon=True,
            )
            process.start()
            child.close()
            self._connections.append(parent)
            self._processes.append(process)
        self.pids = [self._expect(conn, "ready") for conn in self._connections]

    @staticmethod
    def _expect(conn: Connection, tag: str) -> Any:
        if not conn.poll(300):
            raise TimeoutError(f"in-process worker sent no {tag!r} within 300 s")
        got, value = conn.recv()
        if got != tag:
            raise RuntimeError(f"in-process worker answered {got!r}, expected {tag!r}")
        return value

    def load(self, name: str, images: Sequence[bytes]) -> None:
        for conn in self._connections:
            conn.send(("load", name, list(images)))
        for conn in self._connections:
            self._expect(conn, "loaded")

    def run(self, name: str, duration_s: float, processes: int | None = None) -> list[PhaseResult]:
        """Run the first `processes` workers (all by default) together for `duration_s`."""
        chosen = self._connections[: processes or len(self._connections)]
        start_at = time.time() + START_DELAY_S
        for conn in chosen:
            conn.send(("run", name, start_at, duration_s))
        results: list[PhaseResult] = [self._expect(conn, "result") for conn in chosen]
        return results

    def detections(self, data: bytes) -> list[Box]:
        conn = self._connections[0]
        conn.send(("detect", data))
        boxes: list[Box] = self._expect(conn, "detections")
        return boxes

    def close(self) -> None:
        for conn in self._connections:
            try:
                conn.send(("stop",))
                self._expect(conn, "stopped")
            except (OSError, EOFError, TimeoutError):
                pass
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()


def summarise(results: Sequence[PhaseResult]) -> Measurement:
    """One in-process phase as a table row: images/s summed over the processes, CPU per
    image, latency percentiles over every image, the largest process RSS."""
    images = sum(r.images for r in results)
    latencies = [v for r in results for v in r.latencies_ms]
    return Measurement(
        rate=sum(r.images / r.wall_s for r in results if r.wall_s > 0),
        cpu_ms=1000 * sum(r.cpu_s for r in results) / images if images else float("nan"),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        requests=images,
        errors=0,
        rss_mib=max((r.rss_kib for r in results), default=0) / 1024,
    )
