"""End to end with the clients people already run, unchanged, against real gunicorn.

Each released client that installs from a registry runs from its own environment (`make
clients-venv`: `.venv-clients` from tests/clients/requirements.lock, and
node-red-contrib-deepstack from tests/clients/node/package-lock.json), driven by a small script
in tests/clients that prints one JSON object: the detections on dog.jpg (dog, bicycle, car) and
bus.jpg (bus, persons), and its error path (a wrong key, an unknown model) as the client itself
reports it.

Clients that cannot be installed from PyPI or npm are replayed from their documented requests
and parsed with their documented rules, in this environment:

- Frigate's DeepStack detector (`frigate/detectors/plugins/deepstack.py` in Frigate's source;
  Frigate is not a Python package): a JPEG of its input tensor in the file field `image`,
  `api_key` as a form field; it writes each prediction into a 20 x 6 array (an IndexError on a
  21st), stops at the first confidence under 0.4 or unknown label, maps truck to car, and
  divides the corners by the picture's size;
- Blue Iris and Agent DVR (closed source), as CodeProject.AI Server's API reference documents
  their calls: multipart `image` and `min_confidence`, no key, `POST /v1/vision/custom/list` for
  the custom models, `POST /v1/vision/custom/<model>`;
- AITool (VorlonCD's bi-aidetection, C#; not on NuGet): the same request, and its response
  classes ClsDeepStackResponse / ClsDeepstackDetection bind `code`, `count`, `inferenceMs`,
  `processMs` and `analysisRoundTripMs` as `int`, which Newtonsoft.Json refuses for 12.5.

Two servers per module, one worker each: one that wants a token, one with
OPEN_ROUTES=deepstack for the clients that have no credential field.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import cv2
import numpy as np
import pytest
import requests

from tests.helpers import REPO_ROOT, SHARED_IMAGES, shared_image
from tests.live_server import LiveServer, live_gunicorn

pytestmark = pytest.mark.e2e

TOKEN = "clients-token-58a"
MODEL = "yolox_nano"
CLIENTS_DIR = REPO_ROOT / "tests" / "clients"
CLIENTS_PYTHON = REPO_ROOT / ".venv-clients" / "bin" / "python"
NODE_CLIENT = CLIENTS_DIR / "node" / "deepstack_node_red_client.js"
NODE_PACKAGE = CLIENTS_DIR / "node" / "node_modules" / "node-red-contrib-deepstack"
CLIENT_TIMEOUT_S = 300
DOG = {"dog", "bicycle", "car"}


def missing(what: str) -> NoReturn:
    """Skip, saying how to install it; under CI a missing client is a failure."""
    message = f"{what} is not installed: run `make clients-venv`"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_gunicorn(tmp_path_factory.mktemp("closed"), [TOKEN], workers=1) as live:
        yield live


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_gunicorn(
        tmp_path_factory.mktemp("open"),
        [TOKEN],
        workers=1,
        extra_env={"OPEN_ROUTES": "deepstack", "OPEN_ROUTES_NETWORKS": "127.0.0.0/8"},
    ) as live:
        yield live


def photos() -> list[str]:
    return ["--dog", str(shared_image("dog.jpg")), "--bus", str(shared_image("bus.jpg"))]


def run_client(command: list[str]) -> dict[str, Any]:
    """Run one client script; its last line of output is its JSON answer."""
    completed = subprocess.run(
        command,
        cwd=CLIENTS_DIR,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"},
    )
    assert completed.returncode == 0, f"{command[1]} failed:\n{completed.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    # What each client printed, for the record (pytest -s, or -rA, shows it).
    print(f"{Path(command[1]).name}: {json.dumps(result)[:2000]}")
    return result


def python_client(script: str, url: str, *extra: str) -> dict[str, Any]:
    if not CLIENTS_PYTHON.is_file():
        missing(".venv-clients")
    return run_client(
        [str(CLIENTS_PYTHON), str(CLIENTS_DIR / script), "--url", url, "--token", TOKEN,
         "--model", MODEL, *photos(), *extra]
    )  # fmt: skip


def persons_and_bus(labels: list[str]) -> None:
    assert "bus" in labels
    assert labels.count("person") >= 3


# ------------------------------------------------------------------------------ DeepStack family


def test_deepstack_python(server: LiveServer) -> None:
    result = python_client("deepstack_python_client.py", server.url)
    assert set(result["dog"]) >= DOG
    assert result["bus"]["bus"] == 1
    assert result["bus"]["person"] >= 3
    assert (
        result["wrong_key"] == "DeepstackException: Error from Deepstack request, status code: 401"
    )
    assert result["unknown_model"].startswith("DeepstackException: Bad url supplied")
    assert result["unknown_model"].endswith("/v1/vision/custom/nope raised error 404")


def test_deepstack_sdk(server: LiveServer) -> None:
    result = python_client("deepstack_sdk_client.py", server.url)
    assert set(result["dog"]) >= DOG
    persons_and_bus(result["bus"])
    assert result["boxes_are_ints"] is True
    assert result["wrong_key"] == "Exception: Unknown error : 401 occured"
    assert result["unknown_model"] == "Exception: Unknown error : 404 occured"


def test_codeproject_ai_api_needs_open_routes(server: LiveServer, open_server: LiveServer) -> None:
    result = python_client("codeproject_client.py", open_server.url, "--closed-url", server.url)
    assert set(result["dog"]) >= DOG
    assert result["bus"]["bus"] == 1
    assert result["bus"]["person"] >= 3
    assert result["unknown_model"].startswith("CodeProjectAIException: Bad url supplied")
    # It has no key to send: a server without OPEN_ROUTES refuses it.
    assert result["no_key_on_a_closed_server"] == (
        "CodeProjectAIException: CodeProject.AI Server error: 401"
    )


def test_node_red_contrib_deepstack(server: LiveServer) -> None:
    node = shutil.which("node", path=str(Path(sys.executable).parent)) or shutil.which("node")
    if node is None or not NODE_PACKAGE.is_dir():
        missing("node-red-contrib-deepstack (tests/clients/node)")
    result = run_client(
        [node, str(NODE_CLIENT), server.url, TOKEN, MODEL,
         str(shared_image("dog.jpg")), str(shared_image("bus.jpg"))]
    )  # fmt: skip
    assert set(result["dog"]) >= DOG
    persons_and_bus(result["bus"])
    assert result["wrong_key"] == "HTTPError: Response code 401 (UNAUTHORIZED)"
    assert result["unknown_model"] == "HTTPError: Response code 404 (NOT FOUND)"


# ------------------------------------------------------------------------------ Roboflow


def test_roboflow_inference_sdk(server: LiveServer) -> None:
    result = python_client("inference_sdk_client.py", server.url)
    assert set(result["dog"]) >= DOG
    assert result["dog_image"] == {"width": 768, "height": 576}
    first = result["dog_first"]
    # The dog's box runs from about (133, 207) to (326, 543): Roboflow gives its centre.
    assert first["class"] == "dog"
    assert abs(first["x"] - 229.5) < 6
    assert abs(first["y"] - 375) < 6
    assert abs(first["width"] - 193) < 8
    assert abs(first["height"] - 336) < 8
    dog, bus = result["batch"]
    assert set(dog) >= DOG
    assert {"bus", "person"} <= set(bus)
    assert result["visualization_chars"] > 10_000
    persons_and_bus(result["legacy_bus"])
    assert "status_code=401" in result["wrong_key"]
    assert "api_message='invalid API token'" in result["wrong_key"]
    assert "status_code=404" in result["unknown_model"]
    assert "unknown model 'nope'" in result["unknown_model"]


# ------------------------------------------------------------------------------ KServe V2


def test_tritonclient_http(server: LiveServer) -> None:
    result = python_client("tritonclient_client.py", server.url)
    assert result["live"] is result["ready"] is result["model_ready"] is True
    assert result["inputs"] == [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1]}]
    for mode in ("binary", "json"):
        dog, bus = result[mode]
        assert set(dog) >= DOG, mode
        assert {"bus", "person"} <= set(bus), mode
    assert result["binary_boxes_shape"][0] == 2
    assert result["binary_boxes_shape"][2] == 4
    x1, y1, x2, y2 = result["dog_first_box"]
    assert abs(x1 - 133) < 8
    assert abs(y1 - 207) < 8
    assert abs(x2 - 326) < 8
    assert abs(y2 - 543) < 8
    assert result["wrong_key"] == "InferenceServerException: [401] invalid API token"
    assert result["unknown_model"].startswith(
        "InferenceServerException: [404] unknown model 'nope'"
    )


def test_kserve_rest_client(server: LiveServer) -> None:
    result = python_client("kserve_client.py", server.url)
    assert result["live"] is result["ready"] is result["model_ready"] is True
    for mode in ("binary", "json"):
        dog, bus = result[mode]
        assert set(dog) >= DOG, mode
        assert {"bus", "person"} <= set(bus), mode
    assert result["wrong_key"].startswith("HTTPStatusError: invalid API token, '401 UNAUTHORIZED'")
    assert result["unknown_model"].startswith("HTTPStatusError: unknown model 'nope'")
    assert "'404 NOT FOUND'" in result["unknown_model"]


# ------------------------------------------------------------------------------ DOODS


def test_pydoods(server: LiveServer) -> None:
    result = python_client("pydoods_client.py", server.url)
    assert result["detectors"][0] == "default"
    assert MODEL in result["detectors"]
    assert set(result["dog"]) >= DOG
    assert result["dog_has_error_member"] is False
    first = result["dog_first"]
    assert first["label"] == "dog"
    assert 40 <= first["confidence"] <= 100  # percent
    assert 0 <= first["left"] < first["right"] <= 1
    assert 0 <= first["top"] < first["bottom"] <= 1
    persons_and_bus(result["bus"])
    assert result["wrong_key"].startswith("HTTPError: 401 Client Error")
    assert result["unknown_model"].startswith("HTTPError: 404 Client Error")


# ------------------------------------------------------------------------------ replayed clients


FRIGATE_LABELS = {0: "person", 1: "bicycle", 2: "car", 5: "bus", 16: "dog"}


def frigate_parse(response_json: dict[str, Any], width: int, height: int) -> np.ndarray:
    """Frigate's DeepStack detector's parsing, rule for rule (see the module docstring)."""
    detections = np.zeros((20, 6), np.float32)
    if response_json.get("predictions") is None:
        return detections
    for i, detection in enumerate(response_json["predictions"]):
        if detection["confidence"] < 0.4:
            break
        label_value = "car" if detection["label"].lower() == "truck" else detection["label"]
        label = next((k for k, v in FRIGATE_LABELS.items() if v == label_value.lower()), -1)
        if label < 0:
            break
        detections[i] = [
            label,
            float(detection["confidence"]),
            detection["y_min"] / height,
            detection["x_min"] / width,
            detection["y_max"] / height,
            detection["x_max"] / width,
        ]
    return detections


def frigate_request(url: str, key: str, photo: str) -> tuple[dict[str, Any], requests.Response]:
    original = cv2.imread(str(shared_image(photo)), cv2.IMREAD_COLOR)
    assert original is not None
    image = cv2.resize(original, (320, 320))
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    # Frigate's default api_timeout is 0.1 s; a shared test machine needs more.
    response = requests.post(
        url + "v1/vision/detection",
        data={"api_key": key},
        files={"image": jpeg.tobytes()},
        timeout=60,
    )
    return response.json(), response


def test_frigate_deepstack_detector(server: LiveServer) -> None:
    answer, response = frigate_request(server.url, TOKEN, "dog.jpg")
    # Never chunked: a Content-Length, as every DeepStack answer has.
    assert response.headers["Content-Length"] == str(len(response.content))
    assert "Transfer-Encoding" not in response.headers
    rows = frigate_parse(answer, 320, 320)
    found = {FRIGATE_LABELS[int(row[0])] for row in rows if row[1] > 0}
    assert found >= DOG
    assert all(0 <= v <= 1 for row in rows for v in row[2:])
    bus_rows = frigate_parse(frigate_request(server.url, TOKEN, "bus.jpg")[0], 320, 320)
    labels = [FRIGATE_LABELS[int(row[0])] for row in bus_rows if row[1] > 0]
    persons_and_bus(labels)
    # Its error path: no predictions in a refused answer, so an empty detection array.
    refused, response = frigate_request(server.url, "wrong-key", "dog.jpg")
    assert response.status_code == 401
    assert not frigate_parse(refused, 320, 320).any()


def test_frigate_never_gets_more_than_20_rows(server: LiveServer) -> None:
    # A crowded street at the lowest confidence Frigate reads: still at most 20 predictions.
    crowded = sorted((SHARED_IMAGES / "coco").glob("*.jpg"))[:6]
    for path in [shared_image("bus.jpg"), *crowded]:
        with path.open("rb") as photo:
            answer = requests.post(
                server.url + "v1/vision/detection",
                data={"api_key": TOKEN, "min_confidence": "0.05"},
                files={"image": photo},
                timeout=60,
            ).json()
        assert answer["count"] <= 20
        frigate_parse(answer, 320, 320)  # would raise IndexError past 20 rows


AITOOL_INTS = ("code", "count", "inferenceMs", "processMs", "analysisRoundTripMs")
AITOOL_STRINGS = ("message", "moduleId", "moduleName", "command", "executionProvider")


def aitool_bind(answer: dict[str, Any]) -> list[tuple[str, int, int, int, int]]:
    """AITool's ClsDeepStackResponse binding: ints must be JSON integers, strings strings."""
    assert answer["success"] is True
    for name in AITOOL_INTS:
        assert type(answer[name]) is int, name
    for name in AITOOL_STRINGS:
        assert isinstance(answer[name], str), name
    assert isinstance(answer["canUseGPU"], bool)
    return [
        (p["label"], int(p["x_min"]), int(p["y_min"]), int(p["x_max"]), int(p["y_max"]))
        for p in answer["predictions"]
    ]


@pytest.mark.parametrize(
    "nvr", ["Blue Iris", "Agent DVR", "AITool"], ids=["blue-iris", "agent-dvr", "aitool"]
)
def test_nvrs_without_a_key(open_server: LiveServer, nvr: str) -> None:
    url = open_server.url
    models = requests.post(url + "v1/vision/custom/list", timeout=30).json()
    assert models["success"] is True
    assert MODEL in models["models"]
    for path, photo in (
        ("v1/vision/detection", "dog.jpg"),
        (f"v1/vision/custom/{MODEL}", "bus.jpg"),
    ):
        with shared_image(photo).open("rb") as image:
            response = requests.post(
                url + path, files={"image": image}, data={"min_confidence": "0.4"}, timeout=60
            )
        assert response.status_code == 200, (nvr, response.text)
        assert response.headers["Content-Length"] == str(len(response.content))
        labels = [row[0] for row in aitool_bind(response.json())]
        if photo == "dog.jpg":
            assert set(labels) >= DOG
        else:
            persons_and_bus(labels)
    ping = requests.get(url + "v1/server/status/ping", timeout=30)
    assert ping.json()["success"] is True
    # The open server still refuses what is not DeepStack's.
    assert requests.get(url + "v1/models", timeout=30).status_code == 401


def test_logs_hold_no_token(server: LiveServer, open_server: LiveServer) -> None:
    for live in (server, open_server):
        log = live.log()
        assert TOKEN not in log
        assert "wrong-key" not in log
        assert "Traceback" not in log
    assert "OPEN_ROUTES=deepstack" in open_server.log()
