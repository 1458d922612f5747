"""Models replaced or added under load, then SIGHUP to the gunicorn master: no request fails
during the switch, the new model is served, and a broken model file leaves the old workers
serving with the reason in the log."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import MODELS_DIR, SAMPLE_IMAGES, model_weights
from tests.live_server import LiveServer, live_gunicorn

pytestmark = pytest.mark.e2e

TOKEN = "reload-token"
# Bounds of the background load: it stops by itself whatever happens.
LOAD_MAX_REQUESTS = 2000
LOAD_MAX_SECONDS = 120


class Load:
    """Requests in a loop from a thread, recording every failure."""

    def __init__(self, url: str) -> None:
        content = base64.b64encode((SAMPLE_IMAGES / "chelsea.png").read_bytes()).decode()
        self.body = {"requests": [{"image": {"content": content}}]}
        self.url = url
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        deadline = time.monotonic() + LOAD_MAX_SECONDS
        while not self._stop.is_set() and self.sent < LOAD_MAX_REQUESTS:
            if time.monotonic() > deadline:
                break
            self.sent += 1
            try:
                response = requests.post(
                    self.url, json=self.body, headers={"X-Api-Token": TOKEN}, timeout=30
                )
                names = [
                    a["name"] for a in response.json()["responses"][0]["localizedObjectAnnotations"]
                ]
                if response.status_code != 200 or "cat" not in names:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
            except (requests.RequestException, ValueError, KeyError) as exc:
                self.failures.append(repr(exc))


def _copy_atomically(source: Path, target: Path) -> None:
    """As the README tells operators to: write beside the target, then rename over it."""
    partial = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, partial)
    partial.replace(target)


def _models(server: LiveServer) -> list[str]:
    response = requests.get(server.url + "v1/models", headers={"X-Api-Token": TOKEN}, timeout=10)
    return [m["name"] for m in response.json()["models"]]


def _wait_for(condition: object, timeout_s: float, what: str, server: LiveServer) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}:\n{server.log()[-4000:]}")


def test_reload_under_load(tmp_path: Path) -> None:
    model_weights("yolox_nano")
    nanodet = model_weights("nanodet_m_416")
    models = tmp_path / "models"
    models.mkdir()
    for name in ("yolox_nano.json", "coco80.txt", "yolox_nano.onnx"):
        shutil.copyfile(MODELS_DIR / name, models / name)

    with live_gunicorn(
        tmp_path, [TOKEN], workers=2, extra_env={"MODELS_DIR": str(models)}
    ) as server:
        assert _models(server) == ["yolox_nano"]
        with Load(server.url) as load:
            time.sleep(1)
            # 1. Add a model of another family, then reload.
            shutil.copyfile(MODELS_DIR / "nanodet_m_416.json", models / "nanodet_m_416.json")
            _copy_atomically(nanodet, models / "nanodet_m_416.onnx")
            os.kill(server.pid, signal.SIGHUP)
            _wait_for(lambda: "nanodet_m_416" in _models(server), 60, "the new model", server)
            time.sleep(1)

            # 2. Replace the new model's file with a broken one: the reload is refused.
            broken = tmp_path / "broken.onnx"
            broken.write_bytes(b"this is not an onnx model")
            _copy_atomically(broken, models / "nanodet_m_416.onnx")
            os.kill(server.pid, signal.SIGHUP)
            _wait_for(lambda: "reload refused" in server.log(), 60, "the refusal", server)
            time.sleep(1)

            # 3. Put a good file back: the next reload goes through.
            _copy_atomically(nanodet, models / "nanodet_m_416.onnx")
            os.kill(server.pid, signal.SIGHUP)
            _wait_for(
                lambda: server.log().count("models checked, reloading") >= 2,
                60,
                "the second reload",
                server,
            )
            time.sleep(2)
        assert load.failures == [], load.failures[:5]
        assert load.sent >= 20
        assert sorted(_models(server)) == ["nanodet_m_416", "yolox_nano"]
        body = {
            "requests": [
                {
                    "image": {
                        "content": base64.b64encode(
                            (SAMPLE_IMAGES / "chelsea.png").read_bytes()
                        ).decode()
                    },
                    "features": [{"model": "nanodet_m_416"}],
                }
            ]
        }
        answer = requests.post(server.url, json=body, headers={"X-Api-Token": TOKEN}, timeout=30)
        (result,) = answer.json()["responses"]
        assert result["model"] == "nanodet_m_416"
        assert "cat" in [a["name"] for a in result["localizedObjectAnnotations"]]
        log = server.log()
        assert "reload refused, old workers keep serving" in log
        assert "nanodet_m_416" in log.split("reload refused")[1].splitlines()[0]
