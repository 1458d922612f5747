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
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import loadgen, metrics_overhead
from benchmarks.environment import ensure_wrk, machine_lines, peers_python, progress
from benchmarks.inprocess import InProcessPool, PhaseResult, summarise
from benchmarks.measure import (
    Results,
    SoakResult,
    form_request,
    large_images,
    measure_http,
    measure_large,
    sanity_check,
    soak,
    worker_rss_mib,
)
from benchmarks.report import median
from benchmarks.servers import (
    REPO_ROOT,
    Server,
    service_workers,
    start_fastapi,
    start_naive,
    start_service,
    stop,
)
from benchmarks.settings import FORMS, Settings
from benchmarks.summary import Run, render_markdown, render_report

SHARED_IMAGES = REPO_ROOT.parent / "shared" / "images"
MODEL_NAME = "yolox_nano"


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
                progress,
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
            progress(f"starting {workers} in-process workers, the service and the peers")
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
            progress("warm-up")
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
                        progress(f"round {round_index + 1}/{settings.rounds}: {name}")
                        phase_run()

            large = []
            for image in large_images(settings.dog):
                progress(f"large image: {image.name}")
                large.append(measure_large(image, live_pool, service, token, work_dir, settings))

            served_since_warmup += sum(m.requests for item in large for m in item.service.values())
            memory = None
            if settings.soak_requests > 0:
                wanted = max(0, settings.soak_requests - served_since_warmup)
                progress(
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


if __name__ == "__main__":
    raise SystemExit(main())
