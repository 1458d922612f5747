"""The container the checks run against, started as production would start it."""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from .common import READY_TIMEOUT_S, Fail, tail
from .podman import Podman


@dataclass
class Container:
    podman: Podman
    image: str
    cid: str
    url: str
    token: str

    def logs(self) -> str:
        completed = self.podman.run("logs", self.cid, check=False)
        return completed.stdout + completed.stderr

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.podman.inspect("container", "inspect", self.cid)["State"]
        return state

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return self.podman.run("exec", self.cid, *command, check=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(podman: Podman, image: str, cid_file: Path) -> Container:
    port = free_port()
    token = "image-test-" + secrets.token_urlsafe(12)
    completed = podman.run(
        "run",
        "--detach",
        "--cidfile",
        str(cid_file),
        # Host networking: the build machine has no container network set up, and publishing
        # a port is not what this test is about (EXPOSE is metadata).
        "--network=host",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs",
        "/tmp",  # noqa: S108 - the container's own /tmp, a tmpfs of its own
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--env",
        f"API_TOKENS={token}",
        "--env",
        f"PORT={port}",
        "--env",
        "WEB_CONCURRENCY=2",
        image,
    )
    return Container(podman, image, completed.stdout.strip(), f"http://127.0.0.1:{port}/", token)


def wait_ready(container: Container) -> float:
    started = time.monotonic()
    while True:
        state = container.state()
        if not state.get("Running"):
            raise Fail(
                f"the container stopped before it was ready (exit status "
                f"{state.get('ExitCode')}); its log:\n{tail(container.logs(), 40)}"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(container.url + "readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        if time.monotonic() - started > READY_TIMEOUT_S:
            raise Fail(f"not ready after {READY_TIMEOUT_S} s; log:\n{tail(container.logs(), 40)}")
        time.sleep(0.2)


def remove(podman: Podman, cid: str) -> None:
    podman.run("rm", "--force", "--time", "0", cid, check=False)
