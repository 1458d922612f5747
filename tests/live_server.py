"""Real gunicorn on a free loopback port with the real model, for end-to-end tests.

    with live_gunicorn(tmp_path, ["token"]) as server:
        requests.get(server.url + "readyz")

Gunicorn runs `gunicorn.conf.py` from the repository root, exactly as `make run` does, with
`BIND`, `API_TOKENS`, `WEB_CONCURRENCY`, `INTRA_OP_THREADS` and `DATA_DIR` (a folder of the
test's) set for the test; the context
waits until `/readyz` answers 200, and on exit stops gunicorn with SIGTERM and checks that it
shut down cleanly (exit status 0).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.helpers import REPO_ROOT, model_weights

READY_TIMEOUT_S = 90
STOP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """A running gunicorn: `url` ends with a slash; `log()` is its combined output so far."""

    def __init__(self, url: str, log_path: Path, pid: int = 0, metrics_url: str = "") -> None:
        self.url = url
        self.log_path = log_path
        # The master's Prometheus endpoint (METRICS_PORT), ending with /metrics.
        self.metrics_url = metrics_url
        # The gunicorn master: tests send it signals (SIGHUP reloads the workers).
        self.pid = pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def live_gunicorn(
    log_dir: Path,
    api_tokens: Sequence[str],
    *,
    workers: int = 2,
    extra_env: Mapping[str, str] | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
    ready_path: str = "readyz",
) -> Iterator[LiveServer]:
    """Start gunicorn with the real model; skips when the model has not been fetched.
    `ready_path`: the route that must answer 200 before the tests start."""
    model_weights("yolox_nano")
    port = free_port()
    log_path = log_dir / "gunicorn.log"
    env = {
        **os.environ,
        "API_TOKENS": ",".join(api_tokens),
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "INTRA_OP_THREADS": "1",
        # A port of its own: tests (and other people's tests) run servers side by side.
        "METRICS_PORT": str(free_port()),
        # The image repository's files and SQLite database: the test's own, never the
        # checkout's data/ folder.
        "DATA_DIR": str(log_dir / "data"),
        **(extra_env or {}),
    }
    env.pop("AUTH_DISABLED", None)
    # gunicorn's master makes a temporary metrics folder of its own.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    metrics_url = f"http://127.0.0.1:{env['METRICS_PORT']}/metrics"
    live = LiveServer(f"http://127.0.0.1:{port}/", log_path, process.pid, metrics_url)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{live.log()}")
            try:
                if requests.get(live.url + ready_path, timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                # Not up yet, or a worker still loading on a busy machine: ask again.
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn not ready after {ready_timeout_s} s:\n{live.log()}")
            time.sleep(0.2)
        yield live
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"gunicorn did not stop within {STOP_TIMEOUT_S} s of SIGTERM")
    assert returncode == 0, live.log()
