"""Slow clients against the service: probe latency while N slow connections are held.

    .venv/bin/python -m benchmarks.slow_clients                      # the service's worker
    .venv/bin/python -m benchmarks.slow_clients --worker-args "--worker-class sync"

Starts gunicorn as `make run` does (2 workers unless WEB_CONCURRENCY says otherwise; extra
gunicorn arguments through GUNICORN_CMD_ARGS), then for each N opens N connections, half
sending half a request line and stopping, half sending a whole head and then the body a byte
a second, holds them for --hold seconds and meanwhile sends `GET /healthz` probes one after
another. Prints, per N: probes answered, p50/p99/max probe latency, how the slow connections
ended (an answer's status line, or still open when let go) and whether a worker restarted.
A report, not a test: it never fails on the figures (docs/operations.md, "Slow clients").
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory

from benchmarks.servers import Server, start_service, stop

PARTIAL_HEAD = b"POST / HT"
TOKEN = "slow-clients-token"  # noqa: S105 (a local run's token)
# With a valid token: the sync worker would otherwise answer 401 before reading the body.
SLOW_BODY_HEAD = (
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Api-Token: "
    + TOKEN.encode()
    + b"\r\nContent-Length: 1000\r\n\r\n{"
)


def _probe(url: str, timeout_s: float) -> float | None:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 (loopback)
            answer.read()
    except OSError:
        return None
    return time.monotonic() - started


def _ending(sock: socket.socket) -> str:
    sock.setblocking(False)
    try:
        data = sock.recv(64)
    except BlockingIOError:
        return "still open"
    except OSError as exc:
        return type(exc).__name__
    return data.split(b"\r\n", 1)[0].decode("latin-1") or "closed"


def run_one(server: Server, count: int, hold_s: float) -> str:
    port = int(server.base_url.rsplit(":", 1)[1])
    booted = server.log_path.read_text(errors="replace").count("Booting worker")
    held: list[socket.socket] = []
    for index in range(count):
        with contextlib.suppress(OSError):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(PARTIAL_HEAD if index % 2 == 0 else SLOW_BODY_HEAD)
            held.append(sock)
    stopping = threading.Event()

    def drip() -> None:
        while not stopping.wait(1.0):
            for sock in held[1::2]:
                with contextlib.suppress(OSError):
                    sock.send(b" ")

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    latencies: list[float] = []
    failed = 0
    endings: Counter[str] = Counter()

    def let_go() -> None:
        # How each slow connection stands at the end of the hold (cut with an answer, or still
        # open), then close them all: a probe blocked behind them is then answered.
        endings.update(_ending(sock) for sock in held)
        for sock in held:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    release = threading.Timer(hold_s, let_go)
    release.start()
    started = time.monotonic()
    while time.monotonic() - started < hold_s - 1:
        latency = _probe(server.base_url + "/healthz", hold_s + 30)
        if latency is None:
            failed += 1
        else:
            latencies.append(latency)
        time.sleep(0.2)
    release.join()
    stopping.set()
    dripper.join(timeout=5)
    for sock in held:
        sock.close()
    latencies.sort()

    def quantile(fraction: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000

    restarts = server.log_path.read_text(errors="replace").count("Booting worker") - booted
    ends = ", ".join(f"{n} {what}" for what, n in endings.most_common())
    return (
        f"N={count:4d}  probes {len(latencies):3d} answered, {failed} failed, "
        f"p50 {quantile(0.5):7.0f} ms, p99 {quantile(0.99):7.0f} ms, "
        f"max {quantile(1.0):7.0f} ms; slow connections: {ends}; workers restarted: {restarts}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="2,32,256", help="slow connections held, per run")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds each run holds them")
    parser.add_argument("--worker-args", default="", help="GUNICORN_CMD_ARGS, e.g. a worker class")
    args = parser.parse_args()
    os.environ["GUNICORN_CMD_ARGS"] = args.worker_args
    os.environ.setdefault("WEB_CONCURRENCY", "2")
    print(f"worker: {args.worker_args or 'gunicorn.conf.py (the service default)'}")
    for count in (int(c) for c in args.counts.split(",")):
        with TemporaryDirectory() as log_dir:
            server = start_service(Path(log_dir), TOKEN)
            try:
                print(run_one(server, count, args.hold), flush=True)
            finally:
                stop(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
