"""End to end: real gunicorn (2 workers) on a loopback port, the real model, called over HTTP
with the project's own client and with Google's official client."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from client.send2api import ApiError, send2api
from tests.helpers import SAMPLE_IMAGES, run_python, shared_image
from tests.live_server import LiveServer, live_gunicorn

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token-\u0032f9"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_gunicorn(tmp_path_factory.mktemp("gunicorn"), ["other-token", TOKEN]) as live:
        yield live


def names_of(response: dict[str, Any]) -> list[str]:
    return [a["name"] for a in response["localizedObjectAnnotations"]]


def test_client_on_dog(server: LiveServer) -> None:
    result = send2api(server.url, TOKEN, shared_image("dog.jpg"))
    (response,) = result["responses"]
    assert {"dog", "bicycle", "car"} <= set(names_of(response))
    assert response["imageSize"] == {"width": 768, "height": 576}


def test_client_batch_of_sample_images(server: LiveServer) -> None:
    images = [SAMPLE_IMAGES / n for n in ("astronaut.png", "chelsea.png", "coffee.png")]
    astronaut, chelsea, coffee = send2api(server.url, TOKEN, images)["responses"]
    assert "person" in names_of(astronaut)
    assert "cat" in names_of(chelsea)
    assert "cup" in names_of(coffee)


def test_client_raises_on_a_wrong_token(server: LiveServer) -> None:
    with pytest.raises(ApiError) as caught:
        send2api(server.url, "wrong-token", SAMPLE_IMAGES / "chelsea.png")
    assert caught.value.status_code == 401


def test_client_cli(server: LiveServer) -> None:
    completed = run_python(
        "-m",
        "client.send2api",
        str(SAMPLE_IMAGES / "chelsea.png"),
        "--url",
        server.url,
        env={**os.environ, "API_TOKEN": TOKEN},
    )
    assert completed.returncode == 0, completed.stderr
    assert "cat" in names_of(json.loads(completed.stdout)["responses"][0])
    assert TOKEN not in completed.stdout + completed.stderr


def test_batch_with_garbage_middle(server: LiveServer) -> None:
    content = base64.b64encode(shared_image("dog.jpg").read_bytes()).decode()
    body = {
        "requests": [
            {"image": {"content": content}, "features": [{"score_th": 0.35}]},
            {"image": {"content": "garbage"}},
            {"image": {"content": content}},
        ]
    }
    response = requests.post(server.url, json=body, headers={"X-Api-Token": TOKEN}, timeout=60)
    assert response.status_code == 200
    first, middle, last = response.json()["responses"]
    assert {"dog", "bicycle", "car"} <= set(names_of(first))
    assert middle["error"]["code"] == 3
    assert {"dog", "bicycle", "car"} <= set(names_of(last))


def test_google_client_object_localization(server: LiveServer) -> None:
    vision = pytest.importorskip("google.cloud.vision")
    client = vision.ImageAnnotatorClient(
        transport="rest",
        client_options={"api_endpoint": server.url.rstrip("/"), "api_key": TOKEN},
    )
    image = vision.Image(content=shared_image("bus.jpg").read_bytes())
    objects = client.object_localization(image=image).localized_object_annotations
    names = [o.name for o in objects]
    assert "bus" in names
    assert names.count("person") >= 3
    scores = [o.score for o in objects]
    assert scores == sorted(scores, reverse=True)
    for annotation in objects:
        corners = annotation.bounding_poly.normalized_vertices
        assert len(corners) == 4
        assert all(0.0 <= v.x <= 1.0 and 0.0 <= v.y <= 1.0 for v in corners)
        assert corners[0].x < corners[1].x
        assert corners[0].y < corners[3].y
    bus = objects[names.index("bus")].bounding_poly.normalized_vertices
    # The bus fills the picture's width and its middle band (810x1080 photo).
    assert bus[0].x < 0.1
    assert bus[1].x > 0.9
    assert 0.1 < bus[0].y < 0.3
    assert 0.6 < bus[2].y < 0.8


def test_google_client_wrong_key(server: LiveServer) -> None:
    vision = pytest.importorskip("google.cloud.vision")
    exceptions = pytest.importorskip("google.api_core.exceptions")
    client = vision.ImageAnnotatorClient(
        transport="rest",
        client_options={"api_endpoint": server.url.rstrip("/"), "api_key": "wrong"},
    )
    with pytest.raises(exceptions.Unauthorized):
        client.object_localization(image=vision.Image(content=b"x"))


@pytest.mark.parametrize(
    "chunked", [pytest.param(False, id="content-length"), pytest.param(True, id="chunked")]
)
def test_20_mb_body_is_413(server: LiveServer, chunked: bool) -> None:
    blob = b" " * (20 * 1024 * 1024)
    data: Any = blob
    if chunked:
        # A generator makes requests send Transfer-Encoding: chunked, with no Content-Length.
        data = (blob[i : i + (1 << 20)] for i in range(0, len(blob), 1 << 20))
    response = requests.post(
        server.url,
        data=data,
        headers={"X-Api-Token": TOKEN, "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["reason"] == "payload_too_large"


@pytest.mark.parametrize(
    ("headers", "data", "status"),
    [
        pytest.param(
            {"Content-Type": "application/json"}, b'{"requests": []}', 401, id="no-token-401"
        ),
        pytest.param(
            {"X-Api-Token": TOKEN, "Content-Type": "application/json"},
            b"{oops",
            400,
            id="broken-json-400",
        ),
        pytest.param(
            {"X-Api-Token": TOKEN, "Content-Type": "application/json"},
            b"[" * 200_000,
            400,
            id="json-nested-too-deep-400",
        ),
        pytest.param(
            {"X-Api-Token": "t\u00f6ken".encode().decode("latin-1")},
            b"{}",
            401,
            id="non-ascii-token-401",
        ),
        pytest.param(
            {"X-Api-Token": TOKEN, "Content-Type": "text/plain"}, b"{}", 415, id="text-plain-415"
        ),
    ],
)
def test_bad_input_over_http(
    server: LiveServer, headers: dict[str, str], data: bytes, status: int
) -> None:
    response = requests.post(server.url, data=data, headers=headers, timeout=30)
    assert response.status_code == status
    assert response.json()["error"]["code"] == status
    assert "Traceback" not in response.text


def test_probes_and_models(server: LiveServer) -> None:
    assert requests.get(server.url + "healthz", timeout=5).json() == {"status": "ok"}
    models = requests.get(
        server.url + "v1/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    ).json()
    assert models["default"] == "yolox_nano"
    model = {m["name"]: m for m in models["models"]}["yolox_nano"]
    assert model["default"] is True
    assert model["sha256"] in {
        "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
        "c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d",
    }


def test_zz_log_has_no_token_and_no_traceback(server: LiveServer) -> None:
    # Named to run last in this module, after every request above has been logged.
    requests.get(server.url + f"v1/models?key={TOKEN}", timeout=5)
    time.sleep(0.5)
    log = server.log()
    assert "request_id=" in log
    assert TOKEN not in log
    assert "Traceback" not in log


# ------------------------------------------------------------------------------- input forms


def _detections(response: dict[str, Any]) -> list[tuple[str, float, tuple[int, ...]]]:
    return [
        (
            a["name"],
            a["score"],
            tuple(v for corner in a["boundingPoly"]["vertices"] for v in corner.values()),
        )
        for a in response["localizedObjectAnnotations"]
    ]


def test_every_input_form_gives_the_json_routes_detections(server: LiveServer) -> None:
    """Each form sent with `requests` exactly as users write it, on dog.jpg."""
    path = shared_image("dog.jpg")
    photo = path.read_bytes()
    b64 = base64.b64encode(photo).decode()
    headers = {"X-Api-Token": TOKEN}
    url = server.url
    reference = _detections(send2api(url, TOKEN, path, score_th=0.3)["responses"][0])
    assert {"dog", "bicycle", "car"} <= {name for name, _, _ in reference}
    thresholds = {"score_th": "0.3", "nms_iou": "0.4", "min_height": "0.03", "min_width": "0.03"}

    with path.open("rb") as f:
        one_file = requests.post(
            url, files={"image": f}, data=thresholds, headers=headers, timeout=60
        )
    with path.open("rb") as f1, path.open("rb") as f2:
        same_name = requests.post(
            url, files=[("image", f1), ("image", f2)], data=thresholds, headers=headers, timeout=60
        )
    numbered = requests.post(
        url, files={"0": photo, "1": photo}, data=thresholds, headers=headers, timeout=60
    )
    raw = requests.post(
        url + "v1/detect",
        data=photo,
        params=thresholds,
        headers={**headers, "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    raw_jpeg = requests.post(
        url,
        data=photo,
        params=thresholds,
        headers={**headers, "Content-Type": "image/jpeg"},
        timeout=60,
    )
    form_one = requests.post(url, data={"image": b64, **thresholds}, headers=headers, timeout=60)
    form_many = requests.post(
        url, data={"images": [b64, b64], **thresholds}, headers=headers, timeout=60
    )

    answers = [one_file, same_name, numbered, raw, raw_jpeg, form_one, form_many]
    for answer in answers:
        assert answer.status_code == 200, answer.text[:300]
        for response in answer.json()["responses"]:
            assert _detections(response) == reference


def test_multipart_echoes_fields(server: LiveServer) -> None:
    from client.send2api import send_multipart

    result = send_multipart(
        server.url, TOKEN, [SAMPLE_IMAGES / "chelsea.png"], fields={"id": "42", "type": "cam"}
    )
    (response,) = result["responses"]
    assert response["fields"] == {"id": "42", "type": "cam"}
    assert "cat" in names_of(response)


def test_client_raw_form(server: LiveServer) -> None:
    from client.send2api import send_raw

    (response,) = send_raw(server.url, TOKEN, SAMPLE_IMAGES / "coffee.png")["responses"]
    assert "cup" in names_of(response)


def test_annotated_png_from_the_cli(server: LiveServer, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    np = pytest.importorskip("numpy")
    out = tmp_path / "dog-annotated.png"
    source = shared_image("dog.jpg")
    completed = run_python(
        "-m",
        "client.send2api",
        str(source),
        "--url",
        server.url,
        "--annotate",
        str(out),
        env={**os.environ, "API_TOKEN": TOKEN},
    )
    assert completed.returncode == 0, completed.stderr
    drawn = cv2.imread(str(out), cv2.IMREAD_COLOR)
    original = cv2.imread(str(source), cv2.IMREAD_COLOR)
    assert drawn.shape == original.shape == (576, 768, 3)
    changed = np.abs(drawn.astype(int) - original.astype(int)).max(axis=2) > 40
    # The dog's box runs from (132, 206) to (325, 543): its left edge is drawn ...
    assert changed[300:500, 128:137].any()
    # ... while a patch of the picture away from every box keeps its pixels.
    assert not changed[480:560, 600:760].any()


def test_deepstack_request_as_frigate_sends_it(server: LiveServer) -> None:
    cv2 = pytest.importorskip("cv2")
    # Frigate posts a JPEG of its detection tensor, files={"image": bytes}, data={"api_key"}.
    image = cv2.imread(str(shared_image("dog.jpg")), cv2.IMREAD_COLOR)
    ok, jpeg = cv2.imencode(".jpg", cv2.resize(image, (320, 320)))
    assert ok
    response = requests.post(
        server.url + "v1/vision/detection",
        data={"api_key": TOKEN},
        files={"image": jpeg.tobytes()},
        timeout=30,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    labels = [p["label"] for p in body["predictions"]]
    assert {"dog", "bicycle", "car"} <= set(labels)
    confidences = [p["confidence"] for p in body["predictions"]]
    assert confidences == sorted(confidences, reverse=True)
    for prediction in body["predictions"]:
        assert 0 <= prediction["x_min"] < prediction["x_max"] <= 320
        assert 0 <= prediction["y_min"] < prediction["y_max"] <= 320
    denied = requests.post(
        server.url + "v1/vision/detection",
        data={"api_key": "wrong"},
        files={"image": jpeg.tobytes()},
        timeout=30,
    )
    assert denied.status_code == 401
    assert denied.json()["success"] is False


@pytest.mark.parametrize("form", ["multipart", "raw"])
def test_client_cli_other_forms(server: LiveServer, form: str) -> None:
    completed = run_python(
        "-m",
        "client.send2api",
        str(SAMPLE_IMAGES / "coffee.png"),
        "--url",
        server.url + "v1/detect",
        "--form",
        form,
        "--max-results",
        "5",
        env={**os.environ, "API_TOKEN": TOKEN},
    )
    assert completed.returncode == 0, completed.stderr
    (response,) = json.loads(completed.stdout)["responses"]
    assert "cup" in names_of(response)
    assert response["parameters"]["maxResults"] == 5
