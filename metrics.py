"""Prometheus metrics for a pre-fork server: what each worker records, and the master's
scrape endpoint that sums the workers (prometheus_client's multiprocess mode).

Each worker writes its values to memory-mapped files of its own in PROMETHEUS_MULTIPROC_DIR;
the gunicorn master reads them all on every scrape, on METRICS_PORT, in a thread of its own,
so a scrape never waits for a worker busy with an inference. prometheus_client decides at its
first import whether it writes to files, so the variable is set (gunicorn.conf.py's
`on_starting`) before this module is imported. Counters and histograms of a worker that died
are kept (its files stay), so totals survive a worker restart; the gauges of a dead worker
are dropped (`mark_process_dead`, in gunicorn.conf.py's `child_exit`).

Labels come from bounded sets only: the route's template (never the raw path), a loaded
model's registry name (`none`, `multiple`), the HTTP status code, the service's error codes,
the stage names of `stages.STAGES`, a live worker's pid. Never a token, a client address or
anything else the caller chose. The metrics, their buckets and why: docs/operations.md,
"Metrics".

Outside gunicorn (the tests' app) each app records in a registry of its own.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from stages import RequestRecord

# pyproject.toml's version (tests/test_metrics.py checks they agree): the image has no
# pyproject.toml to read it from.
SERVICE_VERSION = "0.1.0"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Whole requests: one 416x416 image is 20-100 ms on a free core, a 16-image batch of large
# photos a few seconds, gunicorn's worker timeout 120 s. Dense around the single-image latency
# (the p99 that matters), then coarse up to the timeout.
REQUEST_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
# One stage of one image or one request: from well under a millisecond (postprocess, render
# of a small answer) to seconds (decoding a 50-megapixel PNG).
STAGE_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
# Loading and warming up one model: about a second on a free core, a minute on a loaded one.
LOAD_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BUILD_PACKAGES = ("flask", "gunicorn", "onnxruntime", "opencv-python-headless", "numpy")
# The repository's size is read again at most this often per worker.
REPOSITORY_SIZE_INTERVAL_S = 10.0

logger = logging.getLogger("detection_service")


class Metrics(Protocol):
    """What the app records. `ServiceMetrics` records; `NullMetrics` (METRICS_PORT=0) does not."""

    def request_started(self) -> None: ...

    def request_ended(self) -> None: ...

    def request_finished(
        self, route: str, status: int, seconds: float, record: RequestRecord | None
    ) -> None: ...

    def model_loaded(self, model: str, seconds: float) -> None: ...

    def models_ready(self, models: Iterable[tuple[str, Mapping[str, str], bool]]) -> None: ...

    def repository_upload(self, duplicate: bool) -> None: ...

    def repository_size(self, images: int, blobs: int, stored_bytes: int) -> None: ...

    def repository_changed(self, read_size: Callable[[], tuple[int, int, int]]) -> None: ...


class NullMetrics:
    """Metrics off: every call does nothing."""

    def request_started(self) -> None:
        pass

    def request_ended(self) -> None:
        pass

    def request_finished(
        self, route: str, status: int, seconds: float, record: RequestRecord | None
    ) -> None:
        pass

    def model_loaded(self, model: str, seconds: float) -> None:
        pass

    def models_ready(self, models: Iterable[tuple[str, Mapping[str, str], bool]]) -> None:
        pass

    def repository_upload(self, duplicate: bool) -> None:
        pass

    def repository_size(self, images: int, blobs: int, stored_bytes: int) -> None:
        pass

    def repository_changed(self, read_size: Callable[[], tuple[int, int, int]]) -> None:
        pass


class ServiceMetrics:
    """The collectors of one worker (or of one test app), made on `registry`."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        repository_size_interval_s: float = REPOSITORY_SIZE_INTERVAL_S,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.repository_size_interval_s = repository_size_interval_s
        on: dict[str, Any] = {"registry": self.registry}
        self.requests = Counter(
            "detection_requests",
            "HTTP requests answered, by route template, model and status code.",
            ("route", "model", "code"),
            **on,
        )
        self.request_seconds = Histogram(
            "detection_request_duration_seconds",
            "Time from the request's first hook to its response, in seconds.",
            ("route", "model", "code"),
            buckets=REQUEST_BUCKETS,
            **on,
        )
        self.stage_seconds = Histogram(
            "detection_stage_duration_seconds",
            "Time of one stage of a request (per image for decode, preprocess, infer and "
            "postprocess), in seconds.",
            ("stage", "model"),
            buckets=STAGE_BUCKETS,
            **on,
        )
        self.images = Counter(
            "detection_images",
            "Images run through a detector.",
            ("route", "model"),
            **on,
        )
        self.errors = Counter(
            "detection_errors",
            "Errors answered, by the service's error code: whole requests, and single images "
            "of a batch (answered in a 200).",
            ("route", "code"),
            **on,
        )
        self.inflight = Gauge(
            "detection_inflight_requests",
            "Requests being handled by the workers now.",
            multiprocess_mode="livesum",
            **on,
        )
        self.model_ready = Gauge(
            "detection_model_ready",
            "Live workers that have the model loaded and warmed up.",
            ("model",),
            multiprocess_mode="livesum",
            **on,
        )
        self.model_load_seconds = Histogram(
            "detection_model_load_duration_seconds",
            "Time to load and warm up one model in one worker, in seconds.",
            ("model",),
            buckets=LOAD_BUCKETS,
            **on,
        )
        self.model_info = Gauge(
            "detection_model_info",
            "A loaded model: 1 per (model, family, input size, weights sha256).",
            ("model", "family", "input_size", "sha256"),
            multiprocess_mode="livemax",
            **on,
        )
        self.build_info = Gauge(
            "detection_build_info",
            "The service's version and those of Python and the libraries it runs on.",
            ("version", "python", *(name.split("-")[0] for name in BUILD_PACKAGES)),
            multiprocess_mode="livemax",
            **on,
        )
        self.build_info.labels(SERVICE_VERSION, platform.python_version(), *_versions()).set(1)
        # The image repository (package `repository`): it calls repository_upload and
        # repository_size; they stay at zero while there is none.
        self.uploads = Counter(
            "detection_repository_uploads",
            "Images uploaded to the repository, duplicates included.",
            **on,
        )
        self.duplicates = Counter(
            "detection_repository_duplicates",
            "Uploads whose bytes the owner had already stored (answered with the stored image).",
            **on,
        )
        # The latest value any worker read from the repository's database ("mostrecent"): all
        # workers and pods share one repository, so a sum would count it several times.
        self._size_read_at: float | None = None  # this worker's last read (monotonic)
        self.repository = Gauge(
            "detection_repository_size",
            "Size of the image repository: images (per owner, summed), distinct stored "
            "files (blobs) and their bytes.",
            ("unit",),
            multiprocess_mode="mostrecent",
            **on,
        )

    def request_started(self) -> None:
        self.inflight.inc()

    def request_ended(self) -> None:
        """Every request that started ends here, answered or not (a worker timeout)."""
        self.inflight.dec()

    def request_finished(
        self, route: str, status: int, seconds: float, record: RequestRecord | None
    ) -> None:
        model = record.model if record is not None else "none"
        code = str(status)
        self.requests.labels(route, model, code).inc()
        self.request_seconds.labels(route, model, code).observe(seconds)
        if record is None:
            return
        for stage, stage_seconds in record.events:
            self.stage_seconds.labels(stage, model).observe(stage_seconds)
        if record.images:
            self.images.labels(route, model).inc(record.images)
        for error_code in record.errors:
            self.errors.labels(route, error_code).inc()

    def model_loaded(self, model: str, seconds: float) -> None:
        self.model_load_seconds.labels(model).observe(seconds)

    def models_ready(self, models: Iterable[tuple[str, Mapping[str, str], bool]]) -> None:
        """(name, info labels, ready) of every model the worker serves."""
        for name, info, ready in models:
            self.model_ready.labels(name).set(1 if ready else 0)
            self.model_info.labels(name, info["family"], info["input_size"], info["sha256"]).set(1)

    def repository_upload(self, duplicate: bool) -> None:
        self.uploads.inc()
        if duplicate:
            self.duplicates.inc()

    def repository_size(self, images: int, blobs: int, stored_bytes: int) -> None:
        self.repository.labels("images").set(images)
        self.repository.labels("blobs").set(blobs)
        self.repository.labels("bytes").set(stored_bytes)

    def repository_changed(self, read_size: Callable[[], tuple[int, int, int]]) -> None:
        """After an upload or a delete: read the repository's size again, at most once per
        `repository_size_interval_s` in this worker (counting rows is not free on a large
        PostgreSQL table). The metric is best effort: a failed read is logged, never raised."""
        now = time.monotonic()
        last = self._size_read_at
        if last is not None and now - last < self.repository_size_interval_s:
            return
        self._size_read_at = now
        try:
            self.repository_size(*read_size())
        except Exception:  # a database error must not fail the upload it follows
            logger.warning("repository size not read for the metrics", exc_info=True)


def _versions() -> list[str]:
    versions = []
    for package in BUILD_PACKAGES:
        try:
            versions.append(importlib.metadata.version(package))
        except importlib.metadata.PackageNotFoundError:
            versions.append("unknown")
    return versions


# --- The gunicorn master's side (gunicorn.conf.py's hooks call these)


def prepare_multiproc_dir(directory: str) -> None:
    """Empty the folder (made if missing) before any worker starts: files left by an earlier
    run (a container restart keeps an emptyDir) would otherwise be summed in."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


class WorkersCollector:
    """What the master knows about its workers at scrape time: how many there are, and the
    resident memory of each, read from /proc (a busy worker need not answer)."""

    def __init__(self, worker_pids: Any) -> None:
        self._worker_pids = worker_pids  # called at each scrape: the live workers' pids

    def collect(self) -> Iterator[Metric]:
        pids = sorted(self._worker_pids())
        workers = GaugeMetricFamily("detection_workers", "gunicorn workers running now.")
        workers.add_metric([], len(pids))
        yield workers
        rss = GaugeMetricFamily(
            "detection_worker_resident_memory_bytes",
            "Resident memory of each live worker, in bytes.",
            labels=("pid",),
        )
        for pid in pids:
            resident = resident_bytes(pid)
            if resident is not None:
                rss.add_metric([str(pid)], resident)
        yield rss


def resident_bytes(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:  # it just exited
        return None
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def master_registry(directory: str, worker_pids: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    registry.register(WorkersCollector(worker_pids))
    return registry


def start_master_server(host: str, port: int, directory: str, worker_pids: Any) -> Any:
    """Serve /metrics on host:port from a daemon thread of the gunicorn master. Returns the
    server, whose listening socket each worker closes after the fork (`close_in_worker`)."""
    server, _ = start_http_server(port, addr=host, registry=master_registry(directory, worker_pids))
    return server


def close_in_worker(server: Any) -> None:
    """In a freshly forked worker: let go of the master's metrics socket (a worker never
    serves it; holding it would keep the port open after the master died)."""
    server.socket.close()


def worker_exited(pid: int, directory: str) -> None:
    """Drop a dead worker's gauges (in-flight requests, models ready); its counts stay."""
    mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
