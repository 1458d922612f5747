"""Start and stop the HTTP sides: the service exactly as `make run` starts it, and the peers.

Every server listens on a free loopback port and is stopped with SIGTERM. The service gets a
random token for this run; the peers have no authentication (as the demos they stand for).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procfs import worker_pids
from cpu_quota import default_workers, usable_cpus

REPO_ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(__file__).resolve().parent / "peers"
READY_TIMEOUT_S = 180
STOP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_workers(environ: Mapping[str, str]) -> int:
    """The worker count gunicorn.conf.py picks: WEB_CONCURRENCY, else the usable CPUs (the
    cgroup quota, else the CPU set)."""
    return default_workers(environ, usable_cpus())


@dataclass
class Server:
    """A running server: `base_url` has no trailing slash; `pid` is the master process."""

    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    expected_workers: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        return worker_pids(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _start(
    name: str,
    command: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    port: int,
    log_dir: Path,
    expected_workers: int,
) -> Server:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command), cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log_path, expected_workers)
    try:
        _wait_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_ready(server: Server) -> None:
    """Until /readyz answers 200 and the master has all its workers."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            ready = http_call(server.base_url, "GET", "/readyz", timeout_s=2)[0] == 200
        except OSError:
            ready = False
        if ready and len(server.workers()) >= server.expected_workers:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.name} not ready after {READY_TIMEOUT_S} s")
        time.sleep(0.2)


def http_call(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 60,
) -> tuple[int, bytes]:
    """One plain HTTP request; returns the status and the body."""
    parts = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s
    )
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def start_service(
    log_dir: Path, token: str, metrics_port: int | None = None, name: str = "service"
) -> Server:
    """`make run`'s settings: gunicorn -c gunicorn.conf.py with the environment's defaults
    (WEB_CONCURRENCY: the cores, INTRA_OP_THREADS: 1, LOG_LEVEL: info), bound to loopback.
    Metrics are on, on a free port of their own unless `metrics_port` says (0: off)."""
    port = free_port()
    env = {**os.environ, "API_TOKENS": token, "BIND": f"127.0.0.1:{port}"}
    env["METRICS_PORT"] = str(free_port() if metrics_port is None else metrics_port)
    env.pop("AUTH_DISABLED", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    return _start(name, command, REPO_ROOT, env, port, log_dir, service_workers(env))


NAIVE_WORKERS = 5


def start_naive(log_dir: Path) -> Server:
    """The naive pattern: benchmarks/peers/naive_flask.py under gunicorn's defaults (sync
    workers, no config file: it runs in the peers folder, away from gunicorn.conf.py), 5
    workers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(NAIVE_WORKERS),
        "--bind",
        f"127.0.0.1:{port}",
        "naive_flask:create_app()",
    ]
    return _start("naive", command, PEERS_DIR, env, port, log_dir, NAIVE_WORKERS)


def start_fastapi(log_dir: Path, python: Path, workers: int) -> Server:
    """FastAPI under uvicorn, `workers` processes, the project's Detector with one intra-op
    thread: the best case of a peer framework serving the same pipeline."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [
        str(python),
        "-m",
        "uvicorn",
        "--workers",
        str(workers),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "fastapi_peer:app",
    ]
    return _start("fastapi", command, PEERS_DIR, env, port, log_dir, workers)


def stop(server: Server) -> int | None:
    """SIGTERM, then wait; SIGKILL if it does not stop in time. Returns the exit status."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        return None
