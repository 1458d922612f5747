"""The HTTP side of the protocols added for existing clients (DeepStack / CodeProject.AI
complete, Roboflow v1 and v0, KServe V2, DOODS), through the Flask test client with the fake
detector: request shapes, answer shapes, error shapes and where each client's key is read."""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import struct
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from auth import client_address, open_route_allowed, presented_token
from config import SERVICE_VERSION, ConfigError, ServiceConfig, load_config
from detection_types import DetectionParams, DetectionResult, Detections, ImageArray
from registry import ModelRegistry
from serve_http import create_app
from tests.helpers import AUTH, REPO_ROOT, TOKEN, FakeDetector, b64, encode_image

IMAGE = encode_image(200, 100)
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def decoded_shape(data: bytes) -> tuple[int, ...]:
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None
    return tuple(picture.shape)


def part(data: bytes = IMAGE) -> tuple[io.BytesIO, str]:
    return io.BytesIO(data), "a.png"


class CrowdDetector(FakeDetector):
    """Thirty confident boxes in a grid, scores falling from 0.95: more than Frigate takes."""

    def detect(self, image: ImageArray, params: DetectionParams) -> DetectionResult:
        height, width = image.shape[:2]
        boxes = [[i * 5.0, 0.0, i * 5.0 + 4.0, 4.0] for i in range(30)]
        return DetectionResult(
            detections=Detections(
                xyxy=np.array(boxes, dtype=np.float32),
                # Ascending on purpose: the answer must come best first whatever the order.
                scores=np.linspace(0.5, 0.95, 30).astype(np.float32),
                class_ids=np.zeros(30, dtype=np.int64),
            ),
            image_width=width,
            image_height=height,
            timings_ms={"inference": 12.6, "decode": 3.3},
        )


@pytest.fixture
def two_models(config: ServiceConfig) -> FlaskClient:
    registry = ModelRegistry(
        detectors={"fake": FakeDetector(), "other": FakeDetector(name="other")}, default="fake"
    )
    return create_app(config, registry).test_client()


# ------------------------------------------------------------------------------ DeepStack


def test_custom_model_route_runs_that_model(two_models: FlaskClient) -> None:
    response = two_models.post(
        "/v1/vision/custom/other",
        data={"image": part(), "api_key": TOKEN},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["moduleId"] == "other"
    assert body["command"] == "custom"
    assert [p["label"] for p in body["predictions"]] == ["dog", "person"]


def test_custom_model_route_unknown_model_is_deepstacks_404(client: FlaskClient) -> None:
    response = client.post(
        "/v1/vision/custom/nope",
        data={"image": part(), "api_key": TOKEN},
        content_type="multipart/form-data",
    )
    assert response.status_code == 404
    assert response.get_json() == {
        "success": False,
        "error": "unknown model 'nope'; this service has fake",
        "code": 404,
    }


def test_codeproject_fields_are_integers_and_strings(client: FlaskClient) -> None:
    # AITool's ClsDeepStackResponse binds these as int, string and bool (Newtonsoft.Json
    # refuses 12.5 for an int).
    response = client.post(
        "/v1/vision/detection",
        data={"image": part()},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    body = response.get_json()
    for name in ("code", "count", "inferenceMs", "processMs", "analysisRoundTripMs"):
        assert type(body[name]) is int, name
    for name in (
        "moduleId",
        "moduleName",
        "command",
        "executionProvider",
        "message",
        "processedBy",
        "requestId",
        "timestampUTC",
        "inferenceDevice",
    ):
        assert isinstance(body[name], str), name
    assert body["canUseGPU"] is False
    assert body["requestId"] == response.headers["X-Request-Id"]
    assert response.headers["Content-Length"] == str(len(response.get_data()))


def test_predictions_are_capped_best_first(config: ServiceConfig) -> None:
    client = create_app(config, CrowdDetector()).test_client()
    response = client.post(
        "/v1/vision/detection",
        data={"image": part()},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    body = response.get_json()
    confidences = [p["confidence"] for p in body["predictions"]]
    assert len(confidences) == body["count"] == 20  # Frigate's array has 20 rows
    assert confidences == sorted(confidences, reverse=True)
    assert confidences[0] == pytest.approx(0.95)
    assert body["inferenceMs"] == 13
    assert body["processMs"] == 16
    wider = create_app(replace(config, deepstack_max_predictions=25), CrowdDetector())
    response = wider.test_client().post(
        "/v1/vision/detection",
        data={"image": part()},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    assert response.get_json()["count"] == 25


@pytest.mark.parametrize("method", ["GET", "POST"], ids=["get", "post"])
def test_model_lists(two_models: FlaskClient, method: str) -> None:
    custom = two_models.open("/v1/vision/custom/list", method=method, headers=AUTH).get_json()
    assert custom["success"] is True
    assert custom["models"] == ["fake", "other"]
    listed = two_models.open("/v1/vision/listmodels", method=method, headers=AUTH).get_json()
    assert listed == {"success": True, "models": [{"name": "fake"}, {"name": "other"}]}


@pytest.mark.parametrize(
    "path",
    ["/v1/server/status/ping", "/v1/status/ping"],
    ids=["v1-server-status-ping", "v1-status-ping"],
)
def test_ping_needs_no_token(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "code": 200}


def test_list_needs_a_token_by_default(client: FlaskClient) -> None:
    response = client.post("/v1/vision/custom/list")
    assert response.status_code == 401
    assert response.get_json()["success"] is False


# ------------------------------------------------------------------------------ OPEN_ROUTES


def open_app(config: ServiceConfig, **changes: Any) -> Flask:
    return create_app(
        replace(config, open_routes=frozenset({"deepstack"}), **changes), FakeDetector()
    )


def detection(client: FlaskClient, peer: str, headers: dict[str, str] | None = None) -> int:
    response = client.post(
        "/v1/vision/detection",
        data={"image": part()},
        headers=headers or {},
        content_type="multipart/form-data",
        environ_base={"REMOTE_ADDR": peer},
    )
    return response.status_code


def networks(*texts: str) -> tuple[Any, ...]:
    return tuple(ipaddress.ip_network(t) for t in texts)


def test_open_routes_let_deepstack_callers_in_without_a_token(config: ServiceConfig) -> None:
    client = open_app(config).test_client()
    assert detection(client, "203.0.113.9") == 200
    # A token that is sent is still checked: a wrong one is refused.
    assert detection(client, "203.0.113.9", {"X-Api-Token": "wrong"}) == 401
    # Only the DeepStack family opens: every other route still needs a token.
    assert client.get("/v1/models", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 401
    assert client.post("/detect", json={}).status_code == 401


def test_open_routes_are_off_by_default(client: FlaskClient) -> None:
    assert detection(client, "127.0.0.1") == 401


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "status"),
    [
        ("192.168.1.20", None, (), 200),  # inside the camera network
        ("10.9.9.9", None, (), 401),  # outside it
        ("::ffff:192.168.1.20", None, (), 200),  # IPv4 peer on a dual-stack socket
        # A client's own X-Forwarded-For counts for nothing without a trusted proxy.
        ("10.9.9.9", "192.168.1.20", (), 401),
        # Through a trusted proxy, the first untrusted hop from the right is the client ...
        ("10.0.0.2", "192.168.1.20", ("10.0.0.0/24",), 200),
        ("10.0.0.2", "192.168.1.20, 10.0.0.7", ("10.0.0.0/24",), 200),
        # ... and what a client put left of its own address is ignored.
        ("10.0.0.2", "192.168.1.20, 172.16.0.5", ("10.0.0.0/24",), 401),
        ("10.0.0.2", "not-an-address", ("10.0.0.0/24",), 401),
    ],
    ids=[
        "inside-the-camera-network",
        "outside-it",
        "ipv4-peer-on-a-dual-stack-socket",
        "10-9-9-9-192-168-1-20-401",
        "10-0-0-2-192-168-1-20-10-0-0-0-24-200",
        "10-0-0-2-192-168-1-20-10-0-0-7-10-0-0-0-",
        "10-0-0-2-192-168-1-20-172-16-0-5-10-0-0-",
        "10-0-0-2-not-an-address-10-0-0-0-24-401",
    ],
)
def test_open_routes_networks_and_trusted_proxies(
    config: ServiceConfig, peer: str, forwarded: str | None, proxies: tuple[str, ...], status: int
) -> None:
    app = open_app(
        config,
        open_routes_networks=networks("192.168.0.0/16"),
        trusted_proxies=networks(*proxies),
    )
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    assert detection(app.test_client(), peer, headers) == status


def test_open_routes_are_logged_with_their_risk(
    config: ServiceConfig, caplog: pytest.LogCaptureFixture
) -> None:
    open_app(config, open_routes_networks=networks("192.168.0.0/16"))
    assert "OPEN_ROUTES=deepstack" in caplog.text
    assert "WITHOUT a token from 192.168.0.0/16" in caplog.text


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OPEN_ROUTES": "roboflow"}, "OPEN_ROUTES='roboflow': unknown route family"),
        (
            {"OPEN_ROUTES": "deepstack", "OPEN_ROUTES_NETWORKS": "192.168.0/33"},
            "OPEN_ROUTES_NETWORKS",
        ),
        ({"OPEN_ROUTES_NETWORKS": "192.168.0.0/16"}, "OPEN_ROUTES is empty"),
        ({"TRUSTED_PROXIES": "proxy.local"}, "TRUSTED_PROXIES: 'proxy.local'"),
        ({"DEEPSTACK_MAX_PREDICTIONS": "0"}, "DEEPSTACK_MAX_PREDICTIONS=0"),
    ],
    ids=[
        "open-routes-roboflow-open-routes-roboflo",
        "open-routes-deepstack-open-routes-networ",
        "open-routes-networks-192-168-0-0-16-open",
        "trusted-proxies-proxy-local-trusted-prox",
        "deepstack-max-predictions-0-deepstack-ma",
    ],
)
def test_open_routes_config_errors_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config({"API_TOKENS": "t", **environ})


def test_open_routes_config_reads_networks() -> None:
    loaded = load_config(
        {
            "API_TOKENS": "t",
            "OPEN_ROUTES": "DeepStack",
            "OPEN_ROUTES_NETWORKS": "192.168.0.0/16, 10.1.2.3",
            "TRUSTED_PROXIES": "::1",
        }
    )
    assert loaded.open_routes == {"deepstack"}
    assert loaded.open_routes_networks == networks("192.168.0.0/16", "10.1.2.3/32")
    assert loaded.trusted_proxies == networks("::1/128")
    assert loaded.deepstack_max_predictions == 20


# ------------------------------------------------------------------------------ auth sources


@pytest.mark.parametrize(
    ("headers", "query", "fields", "field", "expected"),
    [
        ({"X-Api-Token": "a"}, {}, None, None, "a"),
        ({"x-goog-api-key": "b"}, {}, None, None, "b"),
        ({"doods-auth-key": "c"}, {}, None, None, "c"),  # DOODS
        ({"Authorization": "Bearer d"}, {}, None, None, "d"),  # Triton, KServe, Roboflow
        ({}, {"key": "e"}, None, None, "e"),  # Google
        ({}, {"api_key": "f"}, None, None, "f"),  # Roboflow's query
        ({}, {}, {"api_key": "g"}, "api_key", "g"),  # DeepStack's form, Roboflow's JSON
        ({}, {}, {"api_key": "g"}, None, None),  # a route that names no body field
        ({}, {}, {"api_key": 7}, "api_key", None),  # a JSON number is no token
        ({"Authorization": "Basic xyz"}, {}, None, None, None),
        ({}, {}, None, None, None),
    ],
    ids=[
        "x-api-token-a-none-none-a",
        "x-goog-api-key-b-none-none-b",
        "doods",
        "triton-kserve-roboflow",
        "google",
        "roboflow-s-query",
        "deepstack-s-form-roboflow-s-json",
        "a-route-that-names-no-body-field",
        "a-json-number-is-no-token",
        "authorization-basic-xyz-none-none-none",
        "none-none-none",
    ],
)
def test_presented_token_sources(
    headers: dict[str, str],
    query: dict[str, str],
    fields: dict[str, Any] | None,
    field: str | None,
    expected: str | None,
) -> None:
    assert presented_token(headers, query, fields, field) == expected


def test_client_address_without_any_address() -> None:
    assert client_address(None, None, ()) is None
    assert not open_route_allowed(None, networks("0.0.0.0/0"))
    assert open_route_allowed(None, ())


# ------------------------------------------------------------------------------ Roboflow


def test_roboflow_info_is_public(client: FlaskClient) -> None:
    info = client.get("/info").get_json()
    assert info["version"] == SERVICE_VERSION
    assert set(info) == {"name", "version", "uuid"}


def test_service_version_is_the_projects() -> None:
    text = (REPO_ROOT / "pyproject.toml").read_text()
    assert f'version = "{SERVICE_VERSION}"' in text


def test_roboflow_registry_and_add(client: FlaskClient) -> None:
    listed = client.get(f"/model/registry?api_key={TOKEN}").get_json()
    assert listed == {
        "models": [
            {
                "model_id": "fake",
                "task_type": "object-detection",
                "batch_size": 16,
                "input_height": 416,
                "input_width": 416,
            }
        ]
    }
    added = client.post("/model/add", json={"model_id": "fake/3", "api_key": TOKEN}).get_json()
    assert [m["model_id"] for m in added["models"]] == ["fake", "fake/3"]
    unknown = client.post("/model/add", json={"model_id": "nope/1", "api_key": TOKEN})
    assert unknown.status_code == 404
    assert unknown.get_json()["message"].startswith("unknown model 'nope'")


def roboflow_body(*images: bytes, **members: Any) -> dict[str, Any]:
    objects = [{"type": "base64", "value": b64(image)} for image in images]
    return {"model_id": "fake", "image": objects if len(objects) > 1 else objects[0], **members}


def test_roboflow_infer_one_image(client: FlaskClient) -> None:
    body = roboflow_body(IMAGE, api_key=TOKEN, confidence=0.3, visualize_predictions=False)
    answer = client.post("/infer/object_detection", json=body).get_json()
    assert answer["image"] == {"width": 200, "height": 100}
    assert answer["visualization"] is None
    dog = answer["predictions"][0]
    assert {k: dog[k] for k in ("x", "y", "width", "height", "class", "class_id")} == {
        "x": 100.0,
        "y": 50.0,
        "width": 100.0,
        "height": 50.0,
        "class": "dog",
        "class_id": 16,
    }
    assert dog["confidence"] == pytest.approx(0.9)
    assert len(dog["detection_id"]) == 36
    # No size filter in Roboflow's defaults: the tiny person is there too.
    assert [p["class"] for p in answer["predictions"]] == ["dog", "person"]


@pytest.mark.parametrize(
    ("members", "classes"),
    [
        ({"confidence": 0.6}, ["dog"]),
        ({"confidence": "default"}, ["dog", "person"]),
        ({"class_filter": ["person"]}, ["person"]),
        ({"max_detections": 1}, ["dog"]),
    ],
    ids=[
        "confidence-0-6-dog",
        "confidence-default-dog-person",
        "class-filter-person-person",
        "max-detections-1-dog",
    ],
)
def test_roboflow_parameters(
    client: FlaskClient, members: dict[str, Any], classes: list[str]
) -> None:
    answer = client.post(
        "/infer/object_detection", json=roboflow_body(IMAGE, **members), headers=BEARER
    ).get_json()
    assert [p["class"] for p in answer["predictions"]] == classes


def test_roboflow_batch_answers_a_list_and_draws(client: FlaskClient) -> None:
    body = roboflow_body(IMAGE, encode_image(64, 64), api_key=TOKEN, visualize_predictions=True)
    first, second = client.post("/infer/object_detection", json=body).get_json()
    assert first["image"] == {"width": 200, "height": 100}
    assert second["image"] == {"width": 64, "height": 64}
    assert decoded_shape(base64.b64decode(first["visualization"])) == (100, 200, 3)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"model_id": "nope", "image": {"type": "base64", "value": b64(IMAGE)}},
            404,
            "unknown_model",
        ),
        (
            {"model_id": "fake", "image": {"type": "url", "value": "http://x/y.jpg"}},
            400,
            "invalid_image",
        ),
        ({"model_id": "fake"}, 400, "invalid_request"),
        ({"model_id": "fake", "image": {"type": "base64", "value": "@@"}}, 400, "invalid_base64"),
        ({"model_id": "fake", "image": {"value": b64(b"nope")}}, 400, "invalid_image"),
        ({**roboflow_body(IMAGE), "confidence": 2}, 400, "invalid_parameter"),
    ],
    ids=[
        "model-id-nope-image-type-base64-value-b6",
        "model-id-fake-image-type-url-value-http-",
        "model-id-fake-400-invalid-request",
        "model-id-fake-image-type-base64-value-40",
        "model-id-fake-image-value-b64-b-nope-400",
        "roboflow-body-image-confidence-2-400-inv",
    ],
)
def test_roboflow_errors(client: FlaskClient, body: dict[str, Any], status: int, code: str) -> None:
    response = client.post("/infer/object_detection", json=body, headers=BEARER)
    assert response.status_code == status
    assert response.get_json()["error_type"] == code
    assert response.get_json()["message"]


def test_roboflow_key_in_the_json_body_or_nowhere(client: FlaskClient) -> None:
    assert client.post("/infer/object_detection", json=roboflow_body(IMAGE)).status_code == 401
    wrong = client.post("/infer/object_detection", json=roboflow_body(IMAGE, api_key="wrong"))
    assert wrong.status_code == 401
    assert wrong.get_json() == {"message": "invalid API token", "error_type": "unauthenticated"}


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "application/json", "text/plain", None],
    ids=["application-x-www-form-urlencoded", "application-json", "text-plain", "none"],
)
def test_roboflow_legacy_base64_body_whatever_its_content_type(
    client: FlaskClient, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(
        f"/fake/1?api_key={TOKEN}&confidence=60", data=b64(IMAGE), headers=headers
    )
    assert response.status_code == 200, response.get_data()
    # confidence=60 reads as a percentage, as on Roboflow's servers: the person (0.5) goes.
    assert [p["class"] for p in response.get_json()["predictions"]] == ["dog"]


def test_roboflow_legacy_file_part_and_picture(client: FlaskClient) -> None:
    response = client.post(
        f"/fake/2?api_key={TOKEN}&format=image",
        data={"file": part()},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert response.mimetype == "image/jpeg"
    assert decoded_shape(response.get_data()) == (100, 200, 3)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/nope/1?api_key={TOKEN}", 404),
        (f"/fake/1?api_key={TOKEN}&image=http://x/y.jpg", 400),
        (f"/fake/1?api_key={TOKEN}&format=svg", 400),
        ("/fake/1", 401),
    ],
    ids=[
        "f-nope-1-api-key-token-404",
        "f-fake-1-api-key-token-image-http-x-y-jp",
        "f-fake-1-api-key-token-format-svg-400",
        "fake-1-401",
    ],
)
def test_roboflow_legacy_errors(client: FlaskClient, path: str, status: int) -> None:
    response = client.post(path, data=b64(IMAGE))
    assert response.status_code == status
    assert response.get_json()["message"]


# ------------------------------------------------------------------------------ KServe V2


def v2_json(*images: bytes, **parameters: Any) -> dict[str, Any]:
    return {
        "id": "req-1",
        "inputs": [
            {
                "name": "IMAGE",
                "shape": [len(images)],
                "datatype": "BYTES",
                "data": [b64(i) for i in images],
            }
        ],
        "parameters": parameters,
    }


def v2_binary(*images: bytes, **payload: Any) -> tuple[bytes, str]:
    raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
    header = {
        "inputs": [
            {
                "name": "IMAGE",
                "shape": [len(images)],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        **payload,
    }
    text = json.dumps(header).encode()
    return text + raw, str(len(text))


def outputs_of(response: Any) -> dict[str, Any]:
    """The outputs by name, decoding binary data as tritonclient does."""
    length = response.headers.get("Inference-Header-Content-Length")
    data = response.get_data()
    header = json.loads(data[: int(length)] if length else data)
    tail = data[int(length) :] if length else b""
    found: dict[str, Any] = {}
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            found[output["name"]] = (output["shape"], output["data"])
            continue
        blob, tail = tail[:size], tail[size:]
        if output["datatype"] == "BYTES":
            values, offset = [], 0
            while offset < len(blob):
                (n,) = struct.unpack_from("<I", blob, offset)
                values.append(blob[offset + 4 : offset + 4 + n].decode())
                offset += 4 + n
        else:
            dtype = "<f4" if output["datatype"] == "FP32" else "<i4"
            values = np.frombuffer(blob, dtype=dtype).tolist()
        found[output["name"]] = (output["shape"], values)
    return found


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v2/health/live", {"live": True}), ("/v2/health/ready", {"ready": True})],
    ids=["v2-health-live-live-true", "v2-health-ready-ready-true"],
)
def test_v2_health_is_public_json(client: FlaskClient, path: str, body: dict[str, Any]) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_json() == body


def test_v2_not_ready(config: ServiceConfig) -> None:
    client = create_app(config, FakeDetector(ready=False)).test_client()
    assert client.get("/v2/health/ready").status_code == 503
    response = client.get("/v2/models/fake/ready", headers=BEARER)
    assert response.status_code == 503
    assert response.get_json() == {"name": "fake", "ready": False}


def test_v2_metadata(client: FlaskClient) -> None:
    server = client.get("/v2", headers=BEARER).get_json()
    assert server["extensions"] == ["binary_tensor_data"]
    for path in ("/v2/models/fake", "/v2/models/fake/versions/1"):
        model = client.get(path, headers=BEARER).get_json()
        assert model["inputs"] == [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1]}]
        assert [o["name"] for o in model["outputs"]] == [
            "num_detections",
            "detection_boxes",
            "detection_scores",
            "detection_classes",
            "detection_labels",
        ]
    assert client.get("/v2/models/fake/ready", headers=BEARER).get_json() == {
        "name": "fake",
        "ready": True,
    }
    missing = client.get("/v2/models/nope", headers=BEARER)
    assert missing.status_code == 404
    assert set(missing.get_json()) == {"error"}
    assert client.get("/v2/models/fake/versions/2", headers=BEARER).status_code == 404
    assert client.get("/v2", headers={}).get_json() == {
        "error": client.get("/v2").get_json()["error"]
    }


def test_v2_infer_json_batch(client: FlaskClient) -> None:
    response = client.post(
        "/v2/models/fake/infer",
        data=json.dumps(v2_json(IMAGE, encode_image(80, 40), score_th=0.6)),
        headers=BEARER,
    )
    assert response.status_code == 200, response.get_data()
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["id"] == "req-1"
    assert body["model_name"] == "fake"
    outputs = outputs_of(response)
    assert outputs["num_detections"] == ([2], [1, 1])
    assert outputs["detection_boxes"] == (
        [2, 1, 4],
        [50.0, 25.0, 150.0, 75.0, 20.0, 10.0, 60.0, 30.0],
    )
    assert outputs["detection_labels"] == ([2, 1], ["dog", "dog"])
    assert outputs["detection_classes"] == ([2, 1], [16, 16])


def test_v2_infer_binary_both_ways_pads_the_batch(client: FlaskClient) -> None:
    body, length = v2_binary(
        IMAGE,
        IMAGE,
        parameters={
            "score_th": 0.4,
            "min_height": 0.0,
            "min_width": 0.0,
            "binary_data_output": True,
        },
    )
    response = client.post(
        "/v2/models/fake/versions/1/infer",
        data=body,
        headers={**BEARER, "Inference-Header-Content-Length": length},
    )
    assert response.status_code == 200, response.get_data()
    assert response.mimetype == "application/octet-stream"
    outputs = outputs_of(response)
    assert outputs["num_detections"] == ([2], [2, 2])
    assert outputs["detection_labels"] == ([2, 2], ["dog", "person", "dog", "person"])
    assert outputs["detection_scores"][1] == pytest.approx([0.9, 0.5, 0.9, 0.5])


def test_v2_requested_outputs_mix_json_and_binary(client: FlaskClient) -> None:
    body, length = v2_binary(
        IMAGE,
        outputs=[
            {"name": "detection_labels", "parameters": {"binary_data": True}},
            {"name": "num_detections"},
        ],
    )
    response = client.post(
        "/v2/models/fake/infer",
        data=body,
        headers={**BEARER, "Inference-Header-Content-Length": length},
    )
    outputs = outputs_of(response)
    assert list(outputs) == ["detection_labels", "num_detections"]
    assert outputs["detection_labels"] == ([1, 1], ["dog"])
    assert outputs["num_detections"] == ([1], [1])


def test_v2_empty_answer_has_zero_width(client: FlaskClient) -> None:
    response = client.post(
        "/v2/models/fake/infer", data=json.dumps(v2_json(IMAGE, score_th=0.99)), headers=BEARER
    )
    outputs = outputs_of(response)
    assert outputs["detection_boxes"] == ([1, 0, 4], [])
    assert outputs["num_detections"] == ([1], [0])


@pytest.mark.parametrize(
    ("payload", "headers", "status"),
    [
        (
            {
                **v2_json(IMAGE),
                "inputs": [{"name": "INPUT0", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
            },
            {},
            400,
        ),
        (
            {
                **v2_json(IMAGE),
                "inputs": [{"name": "IMAGE", "shape": [1], "datatype": "FP32", "data": [1.0]}],
            },
            {},
            400,
        ),
        (
            {
                **v2_json(IMAGE),
                "inputs": [
                    {"name": "IMAGE", "shape": [2], "datatype": "BYTES", "data": [b64(IMAGE)]}
                ],
            },
            {},
            400,
        ),
        (v2_json(IMAGE, confidence=0.5), {}, 400),  # not a parameter of ours
        (v2_json(IMAGE, score_th=3), {}, 400),
        ({**v2_json(IMAGE), "outputs": [{"name": "boxes"}]}, {}, 400),
        (v2_json(b"not an image"), {}, 400),
        (v2_json(IMAGE), {"Inference-Header-Content-Length": "999999"}, 400),
        (v2_json(IMAGE), {"Content-Encoding": "gzip"}, 415),
    ],
    ids=[
        "v2-json-image-inputs-name-input0-shape-1",
        "v2-json-image-inputs-name-image-shape-1-",
        "v2-json-image-inputs-name-image-shape-2-",
        "not-a-parameter-of-ours",
        "v2-json-image-score-th-3-400",
        "v2-json-image-outputs-name-boxes-400",
        "v2-json-b-not-an-image-400",
        "v2-json-image-inference-header-content-l",
        "v2-json-image-content-encoding-gzip-415",
    ],
)
def test_v2_infer_errors_are_error_strings(
    client: FlaskClient, payload: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    response = client.post(
        "/v2/models/fake/infer", data=json.dumps(payload), headers={**BEARER, **headers}
    )
    assert response.status_code == status
    body = response.get_json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)


def test_v2_truncated_binary_data(client: FlaskClient) -> None:
    body, length = v2_binary(IMAGE)
    response = client.post(
        "/v2/models/fake/infer",
        data=body[:-10],
        headers={**BEARER, "Inference-Header-Content-Length": length},
    )
    assert response.status_code == 400
    assert "binary" in response.get_json()["error"]


def test_v2_unknown_model_and_no_token(client: FlaskClient) -> None:
    missing = client.post("/v2/models/nope/infer", data=json.dumps(v2_json(IMAGE)), headers=BEARER)
    assert missing.status_code == 404
    assert client.post("/v2/models/fake/infer", data=json.dumps(v2_json(IMAGE))).get_json() == {
        "error": "missing API token: send it in the X-Api-Token header, as "
        "'Authorization: Bearer <token>', as x-goog-api-key or as ?key="
    }


# ------------------------------------------------------------------------------ DOODS


DOODS_KEY = {"doods-auth-key": TOKEN}


def test_doods_detectors(two_models: FlaskClient) -> None:
    listed = two_models.get("/detectors", headers=DOODS_KEY).get_json()["detectors"]
    assert [(d["name"], d["model"]) for d in listed] == [
        ("default", "fake"),
        ("fake", "fake"),
        ("other", "other"),
    ]
    assert listed[0]["labels"][16] == "dog"
    assert (listed[0]["width"], listed[0]["height"]) == (416, 416)


@pytest.mark.parametrize(
    ("detect", "found"),
    [
        ({"*": 40}, [("dog", 90.0), ("person", 50.0)]),
        ({"*": 60}, [("dog", 90.0)]),
        ({"person": 40}, [("person", 50.0)]),  # listed labels only, without "*"
        ({"*": 95, "person": 40}, [("person", 50.0)]),  # a label's own threshold wins
        ({}, [("dog", 90.0), ("person", 50.0)]),  # empty: every label at the default 0.3
    ],
    ids=[
        "40-dog-90-0-person-50-0",
        "60-dog-90-0",
        "listed-labels-only-without",
        "a-label-s-own-threshold-wins",
        "empty-every-label-at-the-default-0-3",
    ],
)
def test_doods_detect_percent_thresholds(
    client: FlaskClient, detect: dict[str, float], found: list[tuple[str, float]]
) -> None:
    body = {"id": "cam1", "detector_name": "default", "data": b64(IMAGE), "detect": detect}
    response = client.post("/detect", json=body, headers=DOODS_KEY)
    assert response.status_code == 200
    answer = response.get_json()
    assert "error" not in answer  # Home Assistant reads its presence as a failure
    assert answer["id"] == "cam1"
    assert [(d["label"], d["confidence"]) for d in answer["detections"]] == found
    if found[0][0] == "dog":
        dog = answer["detections"][0]
        assert (dog["top"], dog["left"], dog["bottom"], dog["right"]) == (0.25, 0.25, 0.75, 0.75)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"detector_name": "nope", "data": b64(IMAGE)}, 404),
        ({"data": b64(IMAGE), "detect": {"unicorn": 50}}, 400),
        ({"data": b64(IMAGE), "detect": {"*": 150}}, 400),
        ({"data": b64(IMAGE), "regions": [{"top": 0}]}, 400),
        ({"data": ""}, 400),
        ({"data": b64(b"nope")}, 400),
    ],
    ids=[
        "detector-name-nope-data-b64-image-404",
        "data-b64-image-detect-unicorn-50-400",
        "data-b64-image-detect-150-400",
        "data-b64-image-regions-top-0-400",
        "data-400",
        "data-b64-b-nope-400",
    ],
)
def test_doods_errors(client: FlaskClient, body: dict[str, Any], status: int) -> None:
    response = client.post("/detect", json=body, headers=DOODS_KEY)
    assert response.status_code == status
    answer = response.get_json()
    assert answer["detections"] == []
    assert answer["error"]


def test_doods_key_header(client: FlaskClient) -> None:
    assert client.get("/detectors").status_code == 401
    assert client.get("/detectors", headers={"doods-auth-key": "wrong"}).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "status", "shape"),
    [
        ("POST", f"/fake/x1?api_key={TOKEN}", 400, "message"),  # a bad version: Roboflow's shape
        ("POST", "/v1/models", 405, "error"),  # another route's first segment is no model name
        ("POST", "/model/registry", 405, "error"),
        ("POST", "/infer/other", 404, "error"),
    ],
    ids=[
        "a-bad-version-roboflow-s-shape",
        "another-route-s-first-segment-is-no-mode",
        "post-model-registry-405-error",
        "post-infer-other-404-error",
    ],
)
def test_roboflow_legacy_route_leaves_the_other_routes_alone(
    client: FlaskClient, method: str, path: str, status: int, shape: str
) -> None:
    response = client.open(path, method=method, data=b64(IMAGE), headers=AUTH)
    assert response.status_code == status
    assert shape in response.get_json()
