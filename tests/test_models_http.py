"""Several models behind one service: choosing one per request on every route, the class
filter and class-agnostic NMS switch, and the model routes (fake detectors)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from config import ServiceConfig
from registry import ModelRegistry
from serve_http import create_app
from tests.helpers import AUTH, FakeDetector, encode_image

IMAGE = encode_image(100, 100)
B64 = base64.b64encode(IMAGE).decode()
# Thresholds that let the fake's tiny second box ('person', 0.5) through.
LOOSE = {"min_height": 0, "min_width": 0}


@pytest.fixture
def app(config: ServiceConfig) -> Flask:
    registry = ModelRegistry(
        detectors={"alpha": FakeDetector(name="alpha"), "beta": FakeDetector(name="beta")},
        default="alpha",
    )
    return create_app(config, registry)


def _json(client: FlaskClient, path: str, feature: dict[str, Any]) -> Any:
    body = {"requests": [{"image": {"content": B64}, "features": [feature]}]}
    return client.post(path, data=json.dumps(body), headers=AUTH, content_type="application/json")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # none named: the default
        pytest.param(None, "alpha", id="default"),
        # chosen by name
        pytest.param("beta", "beta", id="by-name"),
        # Google's built-in model names mean the default
        pytest.param("builtin/stable", "alpha", id="google-builtin-is-default"),
    ],
)
def test_json_route_chooses_the_model(
    client: FlaskClient, model: str | None, expected: str
) -> None:
    feature = {} if model is None else {"model": model}
    (result,) = _json(client, "/", feature).get_json()["responses"]
    assert result["model"] == expected


def test_unknown_model_is_a_per_image_error_on_json_routes(client: FlaskClient) -> None:
    body: dict[str, Any] = {
        "requests": [
            {"image": {"content": B64}, "features": [{"model": "gamma"}]},
            {"image": {"content": B64}, "features": [{"model": "beta"}]},
        ]
    }
    for path, feature_type in (("/", None), ("/v1/images:annotate", 19)):
        if feature_type is not None:
            for element in body["requests"]:
                element["features"][0]["type"] = feature_type
        response = client.post(
            path, data=json.dumps(body), headers=AUTH, content_type="application/json"
        )
        assert response.status_code == 200
        unknown, known = response.get_json()["responses"]
        assert unknown["error"]["code"] == 5
        assert "gamma" in unknown["error"]["message"]
        assert "alpha" in unknown["error"]["message"]
        assert "localizedObjectAnnotations" in known


@pytest.mark.parametrize(
    ("how", "status"),
    [pytest.param("beta", 200, id="known-model"), pytest.param("gamma", 404, id="unknown-model")],
)
def test_other_routes_choose_by_form_field_or_query(
    client: FlaskClient, how: str, status: int
) -> None:
    multipart = client.post(
        "/v1/detect",
        data={"image": (io.BytesIO(IMAGE), "a.png"), "model": how},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    raw = client.post(
        f"/v1/detect?model={how}", data=IMAGE, headers={**AUTH, "Content-Type": "image/png"}
    )
    form = client.post("/v1/detect", data={"image": B64, "model": how}, headers=AUTH)
    deepstack = client.post(
        "/v1/vision/detection",
        data={"image": (io.BytesIO(IMAGE), "a.png"), "model": how},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    for response in (multipart, raw, form, deepstack):
        assert response.status_code == status
    if status == 200:
        for response in (multipart, raw, form):
            assert response.get_json()["responses"][0]["model"] == "beta"
        assert deepstack.get_json()["moduleId"] == "beta"
    else:
        assert multipart.get_json()["error"]["reason"] == "unknown_model"
        assert deepstack.get_json()["success"] is False


def test_models_lists_every_model(client: FlaskClient) -> None:
    body = client.get("/v1/models", headers=AUTH).get_json()
    assert body["default"] == "alpha"
    assert [(m["name"], m["default"]) for m in body["models"]] == [
        ("alpha", True),
        ("beta", False),
    ]


def test_one_model_described(client: FlaskClient) -> None:
    response = client.get("/v1/models/beta", headers=AUTH)
    assert response.status_code == 200
    model = response.get_json()
    assert model["name"] == "beta"
    assert model["license"] == "test"
    assert len(model["classNames"]) == 80
    missing = client.get("/v1/models/gamma", headers=AUTH)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["reason"] == "unknown_model"
    assert client.get("/v1/models/beta").status_code == 401


def test_readyz_waits_for_every_model(config: ServiceConfig) -> None:
    registry = ModelRegistry(
        detectors={"a": FakeDetector(name="a"), "b": FakeDetector(name="b", ready=False)},
        default="a",
    )
    assert create_app(config, registry).test_client().get("/readyz").status_code == 503


# ------------------------------------------------------------------------------- class filter


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        pytest.param(["dog"], ["dog"], id="by-name"),
        # names match case-insensitively
        pytest.param(["Person"], ["person"], id="case-insensitive"),
        pytest.param([16, 0], ["dog", "person"], id="by-id"),
        # a comma-separated string
        pytest.param("dog,person", ["dog", "person"], id="comma-separated"),
        # a class the image does not have
        pytest.param(["car"], [], id="absent-class"),
    ],
)
def test_class_filter_on_json(client: FlaskClient, classes: Any, expected: list[str]) -> None:
    (result,) = _json(client, "/", {"classes": classes, **LOOSE}).get_json()["responses"]
    assert [a["name"] for a in result["localizedObjectAnnotations"]] == expected


@pytest.mark.parametrize(
    "classes",
    [
        pytest.param(["unicorn"], id="unknown-name"),
        pytest.param([80], id="id-past-the-names"),
        pytest.param([-1], id="negative-id"),
        pytest.param([], id="empty-list"),
        pytest.param("", id="empty-string"),
        pytest.param([True], id="bool"),
        pytest.param([{"name": "dog"}], id="object"),
        pytest.param(3, id="number"),
    ],
)
def test_bad_class_filter_is_400(client: FlaskClient, classes: Any) -> None:
    response = _json(client, "/", {"classes": classes})
    assert response.status_code == 400
    assert response.get_json()["error"]["reason"] == "invalid_parameter"
    assert "classes" in response.get_json()["error"]["message"]


def test_class_filter_on_forms_and_query(client: FlaskClient) -> None:
    multipart = client.post(
        "/v1/detect",
        data={"image": (io.BytesIO(IMAGE), "a.png"), "classes": "person", **LOOSE},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    raw = client.post(
        "/v1/detect?classes=0&min_height=0&min_width=0",
        data=IMAGE,
        headers={**AUTH, "Content-Type": "image/png"},
    )
    deepstack = client.post(
        "/v1/vision/detection",
        data={"image": (io.BytesIO(IMAGE), "a.png"), "classes": "dog"},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    for response in (multipart, raw):
        names = [
            a["name"] for a in response.get_json()["responses"][0]["localizedObjectAnnotations"]
        ]
        assert names == ["person"]
    assert [p["label"] for p in deepstack.get_json()["predictions"]] == ["dog"]


@pytest.mark.parametrize(
    ("value", "status", "expected"),
    [
        pytest.param(True, 200, True, id="true"),
        pytest.param(False, 200, False, id="false"),
        pytest.param("yes", 400, None, id="string-yes"),
        pytest.param(1, 400, None, id="int-1"),
    ],
)
def test_agnostic_nms_switch_on_json(
    client: FlaskClient, value: Any, status: int, expected: bool | None
) -> None:
    response = _json(client, "/", {"agnostic_nms": value})
    assert response.status_code == status
    if expected is not None:
        assert response.get_json()["responses"][0]["parameters"]["agnostic_nms"] is expected


@pytest.mark.parametrize(
    ("text", "status"),
    [
        pytest.param("true", 200, id="true"),
        pytest.param("0", 200, id="zero"),
        pytest.param("maybe", 400, id="maybe"),
    ],
)
def test_agnostic_nms_switch_on_forms(client: FlaskClient, text: str, status: int) -> None:
    response = client.post(
        f"/v1/detect?agnostic_nms={text}", data=IMAGE, headers={**AUTH, "Content-Type": "image/png"}
    )
    assert response.status_code == status
