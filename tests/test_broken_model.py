"""A bad model file under real gunicorn: corrupted in place under a running server, then a
worker killed, the server keeps answering (the replacement loads the master's verified copy);
started with a bad file, it serves 503 with the reason on /readyz and recovers once the file
is good again; the master never loads onnxruntime."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.helpers import REPO_ROOT, SAMPLE_IMAGES
from tests.live_server import LiveServer, live_gunicorn

pytestmark = pytest.mark.e2e

TOKEN = "broken-model-token"
# Bounds against hangs only.
WAIT_S = 90


def _models_copy(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("yolox_nano.json", "coco80.txt", "yolox_nano.onnx"):
        shutil.copyfile(REPO_ROOT / "models" / name, models / name)
    return models


def _corrupt_in_place(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\0" * 4096)


def _detect(server: LiveServer) -> int:
    content = base64.b64encode((SAMPLE_IMAGES / "chelsea.png").read_bytes()).decode()
    response = requests.post(
        server.url,
        json={"requests": [{"image": {"content": content}}]},
        headers={"X-Api-Token": TOKEN},
        timeout=30,
    )
    return response.status_code


def _workers(server: LiveServer) -> set[int]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return {int(pid) for pid in children}


def _wait(condition: Callable[[], bool], what: str, server: LiveServer) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:\n{server.log()[-3000:]}")


def test_a_file_corrupted_under_a_running_server_cannot_stop_it(tmp_path: Path) -> None:
    models = _models_copy(tmp_path)
    env = {"MODELS_DIR": str(models)}
    with live_gunicorn(tmp_path, [TOKEN], workers=2, extra_env=env) as server:
        maps = Path(f"/proc/{server.pid}/maps").read_text()
        assert "onnxruntime" not in maps
        assert "cv2" not in maps
        _corrupt_in_place(models / "yolox_nano.onnx")
        before = _workers(server)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        answers = []
        _wait(lambda: len(_workers(server) - before) == 1, "a new worker", server)
        (replacement,) = _workers(server) - before
        # The replacement loaded the verified copy: every request is answered, by both workers.
        for _ in range(20):
            answers.append(_detect(server))
        assert answers == [200] * 20
        assert requests.get(server.url + "readyz", timeout=10).status_code == 200
        assert os.path.exists(f"/proc/{replacement}")
        assert "Worker failed to boot" not in server.log()


def test_a_worker_that_cannot_load_answers_503_and_recovers(tmp_path: Path) -> None:
    models = _models_copy(tmp_path)
    good = (models / "yolox_nano.onnx").read_bytes()
    _corrupt_in_place(models / "yolox_nano.onnx")
    env = {"MODELS_DIR": str(models), "MODEL_RETRY_SECONDS": "1"}
    with live_gunicorn(tmp_path, [TOKEN], workers=2, extra_env=env, ready_path="healthz") as server:
        ready = requests.get(server.url + "readyz", timeout=10)
        assert ready.status_code == 503
        message = ready.json()["error"]["message"]
        assert "sha256" in message
        assert str(models) not in message
        assert _detect(server) == 503
        # Put a good file back (atomically, as operators are told to): the workers recover.
        partial = models / "yolox_nano.onnx.tmp"
        partial.write_bytes(good)
        partial.replace(models / "yolox_nano.onnx")
        _wait(lambda: _detect(server) == 200, "recovery", server)
        statuses = {requests.get(server.url + "readyz", timeout=10).status_code for _ in range(6)}
        _wait(
            lambda: {requests.get(server.url + "readyz", timeout=10).status_code} == {200},
            "both workers ready",
            server,
        )
        assert statuses <= {200, 503}
        assert "Worker failed to boot" not in server.log()
