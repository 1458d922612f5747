"""The phases of a run: one wrk phase against a server, the service's detections checked
against the in-process pipeline's, the large images at concurrency 1 and the memory soak."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import loadgen, procfs
from benchmarks.detections import MatchResult, as_answered, boxes_from_answer, match_boxes
from benchmarks.environment import progress
from benchmarks.inprocess import InProcessPool, summarise
from benchmarks.loadgen import RequestSpec
from benchmarks.report import Measurement, fmt_list, median, median_measurement, percentile
from benchmarks.servers import Server, http_call
from benchmarks.settings import FORMS, SANITY_PHOTOS, Settings

LARGE_FORMS = ("json", "raw")


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
        progress(
            f"soak: {sent}/{requests} requests, worker RSS {fmt_list(worker_rss_mib(service))} MiB"
        )
    return sent, time.perf_counter() - started, errors
