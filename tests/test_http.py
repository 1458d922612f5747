"""HTTP behaviour of every route with the Flask test client and an injected fake detector."""

from __future__ import annotations

import io
import json
import logging
import struct
import zlib
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient

from config import ServiceConfig
from serve_http import create_app
from tests.helpers import (
    AUTH,
    SECOND_TOKEN,
    TOKEN,
    FakeDetector,
    annotate_body,
    b64,
    encode_image,
)

GOOGLE_PATHS = [
    "/v1/images:annotate",
    "/v1/projects/my-project/images:annotate",
    "/v1/projects/my-project/locations/eu/images:annotate",
]


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge image (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


def post_json(client: FlaskClient, path: str, body: Any, **kwargs: Any) -> Any:
    headers = kwargs.pop("headers", AUTH)
    return client.post(
        path, data=json.dumps(body), headers=headers, **kwargs, content_type="application/json"
    )


def error_of(response: Any) -> dict[str, Any]:
    assert response.mimetype == "application/json"
    error: dict[str, Any] = response.get_json()["error"]
    return error


# ---------------------------------------------------------------------------- probes, models


def test_healthz_needs_no_token(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_when_model_loaded(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["model"] == "fake"


def test_readyz_is_503_before_the_model_is_ready(config: ServiceConfig) -> None:
    app = create_app(config, FakeDetector(ready=False))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert error_of(response)["status"] == "UNAVAILABLE"


def test_models_lists_the_model(client: FlaskClient) -> None:
    response = client.get("/v1/models", headers=AUTH)
    assert response.status_code == 200
    body = response.get_json()
    assert body["default"] == "fake"
    (model,) = body["models"]
    assert model["family"] == "yolox"
    assert model["inputSize"] == {"width": 416, "height": 416}
    assert len(model["classNames"]) == 80
    assert model["defaults"] == {
        "score_th": 0.3,
        "nms_iou": 0.4,
        "min_height": 0.03,
        "min_width": 0.03,
        "maxResults": 20,
    }
    assert model["executionProviders"] == ["CPUExecutionProvider"]


def test_models_needs_a_token(client: FlaskClient) -> None:
    assert client.get("/v1/models").status_code == 401


# ---------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        # no token anywhere
        pytest.param({}, "", 401, id="no-token"),
        # wrong token
        pytest.param({"X-Api-Token": "nope"}, "", 401, id="wrong-token"),
        # a prefix of the right token is still wrong
        pytest.param({"X-Api-Token": TOKEN[:-1]}, "", 401, id="token-prefix"),
        # non-ASCII header value must be a 401, not a TypeError 500
        pytest.param({"X-Api-Token": "t\u00f6k\u00e9n"}, "", 401, id="non-ascii-header"),
        # right token in our header
        pytest.param({"X-Api-Token": TOKEN}, "", 200, id="our-header"),
        # the second token of API_TOKENS (rotation)
        pytest.param({"X-Api-Token": SECOND_TOKEN}, "", 200, id="second-token-rotation"),
        # as a bearer token
        pytest.param({"Authorization": f"Bearer {TOKEN}"}, "", 200, id="bearer"),
        # other schemes are not tokens
        pytest.param({"Authorization": f"Basic {TOKEN}"}, "", 401, id="basic-is-not-bearer"),
        # Google's header
        pytest.param({"x-goog-api-key": TOKEN}, "", 200, id="google-header"),
        # Google's query parameter
        pytest.param({}, f"?key={TOKEN}", 200, id="google-query-key"),
        # a non-ASCII query key
        pytest.param({}, "?key=%C3%A9", 401, id="non-ascii-query-key"),
    ],
)
def test_auth(client: FlaskClient, headers: dict[str, str], query: str, status: int) -> None:
    body = annotate_body(encode_image(32, 32))
    response = post_json(client, "/" + query, body, headers=headers)
    assert response.status_code == status
    if status == 401:
        error = error_of(response)
        assert error["status"] == "UNAUTHENTICATED"
        assert error["code"] == 401
        assert TOKEN not in response.get_data(as_text=True)


def test_auth_can_be_switched_off_explicitly(detector: FakeDetector) -> None:
    app = create_app(ServiceConfig(auth_disabled=True), detector)
    response = post_json(app.test_client(), "/", annotate_body(encode_image(8, 8)), headers={})
    assert response.status_code == 200


def test_google_route_auth_error_uses_google_envelope(client: FlaskClient) -> None:
    response = post_json(client, "/v1/images:annotate", {"requests": []}, headers={})
    assert response.status_code == 401
    assert set(error_of(response)) >= {"code", "message", "status"}


# ---------------------------------------------------------------------------- our JSON route


def test_annotate_response_shape(client: FlaskClient) -> None:
    response = post_json(client, "/", annotate_body(encode_image(200, 100), score_th=0.35))
    assert response.status_code == 200
    (result,) = response.get_json()["responses"]
    (annotation,) = result["localizedObjectAnnotations"]
    assert annotation["mid"] == ""
    assert annotation["name"] == "dog"
    assert annotation["classId"] == 16
    assert annotation["score"] == pytest.approx(0.9)
    # corners top-left, top-right, bottom-right, bottom-left
    assert annotation["boundingPoly"]["vertices"] == [
        {"x": 50, "y": 25},
        {"x": 150, "y": 25},
        {"x": 150, "y": 75},
        {"x": 50, "y": 75},
    ]
    assert annotation["boundingPoly"]["normalizedVertices"] == [
        {"x": 0.25, "y": 0.25},
        {"x": 0.75, "y": 0.25},
        {"x": 0.75, "y": 0.75},
        {"x": 0.25, "y": 0.75},
    ]
    assert result["imageSize"] == {"width": 200, "height": 100}
    assert result["parameters"]["score_th"] == 0.35
    assert result["model"] == "fake"


@pytest.mark.parametrize(
    ("feature", "expected_names"),
    [
        # defaults (score 0.3, min size 0.03): the tiny box is dropped
        pytest.param({}, ["dog"], id="defaults-drop-tiny-box"),
        # an explicit 0 minimum size is honoured: the tiny box comes back, sorted by score
        pytest.param(
            {"min_height": 0, "min_width": 0}, ["dog", "person"], id="zero-min-size-honoured"
        ),
        # an explicit maxResults 0 is honoured
        pytest.param({"maxResults": 0}, [], id="max-results-zero-honoured"),
        # snake_case spelling works too
        pytest.param({"max_results": 1, "min_height": 0, "min_width": 0}, ["dog"], id="snake-case"),
        # a high threshold drops everything
        pytest.param({"score_th": 0.95}, [], id="high-threshold"),
        # score_th 0 keeps both once size filters are off
        pytest.param(
            {"score_th": 0, "minHeight": 0, "minWidth": 0},
            ["dog", "person"],
            id="zero-threshold-keeps-both",
        ),
    ],
)
def test_parameters_reach_the_detector(
    client: FlaskClient, feature: dict[str, Any], expected_names: list[str]
) -> None:
    response = post_json(client, "/", annotate_body(encode_image(100, 100), **feature))
    assert response.status_code == 200
    (result,) = response.get_json()["responses"]
    assert [a["name"] for a in result["localizedObjectAnnotations"]] == expected_names


@pytest.mark.parametrize(
    ("feature", "field"),
    [
        pytest.param({"score_th": 1.5}, "score_th", id="score-above-one"),
        pytest.param({"score_th": -0.1}, "score_th", id="score-below-zero"),
        pytest.param({"score_th": "0.5"}, "score_th", id="score-string"),
        pytest.param({"nms_iou": True}, "nms_iou", id="iou-bool"),
        pytest.param({"min_height": 2}, "min_height", id="height-above-one"),
        pytest.param({"min_width": [0.1]}, "min_width", id="width-list"),
        pytest.param({"maxResults": 2.5}, "maxResults", id="max-results-fraction"),
        pytest.param({"maxResults": -1}, "maxResults", id="max-results-negative"),
        pytest.param({"maxResults": 10, "max_results": 5}, "maxResults", id="both-spellings"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(
    client: FlaskClient, feature: dict[str, Any], field: str
) -> None:
    response = post_json(client, "/", annotate_body(encode_image(8, 8), **feature))
    assert response.status_code == 400
    error = error_of(response)
    assert error["reason"] == "invalid_parameter"
    assert field in error["message"]
    assert "requests[0]" in error["message"]


def test_batch_with_a_garbage_middle_element(client: FlaskClient) -> None:
    image = encode_image(64, 48)
    body = {
        "requests": [
            {"image": {"content": b64(image)}},
            {"image": {"content": "this is not base64!!"}},
            {"image": {"content": b64(image)}},
        ]
    }
    response = post_json(client, "/", body)
    assert response.status_code == 200
    first, middle, last = response.get_json()["responses"]
    assert first["localizedObjectAnnotations"][0]["name"] == "dog"
    assert last["localizedObjectAnnotations"][0]["name"] == "dog"
    assert middle["error"]["code"] == 3
    assert "base64" in middle["error"]["message"]
    assert "localizedObjectAnnotations" not in middle


@pytest.mark.parametrize(
    ("content", "message_part"),
    [
        # base64 of bytes that are no image
        pytest.param(b64(b"hello world, not an image"), "supported", id="not-an-image"),
        # a truncated JPEG
        pytest.param(b64(encode_image(64, 64, ".jpg")[:300]), "decode", id="truncated-jpeg"),
        # a decompression bomb: refused from the header, without decoding 900 MP
        pytest.param(b64(bomb_png(30000, 30000)), "pixels", id="decompression-bomb"),
        # empty content
        pytest.param("", "empty", id="empty-content"),
    ],
)
def test_bad_images_are_per_image_errors(
    client: FlaskClient, content: str, message_part: str
) -> None:
    body = {"requests": [{"image": {"content": content}}]}
    response = post_json(client, "/", body)
    assert response.status_code == 200
    (result,) = response.get_json()["responses"]
    assert result["error"]["code"] == 3
    assert message_part in result["error"]["message"]


def test_image_pixel_limit_is_configurable(config: ServiceConfig, detector: FakeDetector) -> None:
    app = create_app(replace(config, max_image_pixels=100), detector)
    body = annotate_body(encode_image(11, 10), encode_image(10, 10))
    (too_big, fits) = post_json(app.test_client(), "/", body).get_json()["responses"]
    assert "110 pixels" in too_big["error"]["message"]
    assert "localizedObjectAnnotations" in fits


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param([], "invalid_request", id="array"),
        pytest.param({}, "invalid_request", id="no-requests"),
        pytest.param({"requests": {}}, "invalid_request", id="requests-object"),
        pytest.param({"requests": []}, "invalid_request", id="requests-empty"),
        pytest.param({"requests": [1]}, "invalid_request", id="request-not-object"),
        pytest.param({"requests": [{"image": "abc"}]}, "invalid_request", id="image-string"),
        pytest.param({"requests": [{"image": {}}]}, "invalid_request", id="image-without-content"),
        pytest.param(
            {"requests": [{"image": {"content": "aGk="}, "features": {}}]},
            "invalid_request",
            id="features-object",
        ),
        pytest.param(
            {"requests": [{"image": {"content": "aGk="}}] * 17},
            "too_many_images",
            id="seventeen-images",
        ),
    ],
)
def test_malformed_requests_are_400(client: FlaskClient, body: Any, reason: str) -> None:
    response = post_json(client, "/", body)
    assert response.status_code == 400
    assert error_of(response)["reason"] == reason


def test_images_per_request_limit_is_configurable(
    config: ServiceConfig, detector: FakeDetector
) -> None:
    app = create_app(replace(config, max_images_per_request=2), detector)
    response = post_json(app.test_client(), "/", annotate_body(*[encode_image(8, 8)] * 3))
    assert response.status_code == 400
    assert "at most 2" in error_of(response)["message"]


# ---------------------------------------------------------------------------- wire errors


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"{not json", "invalid_json", id="broken"),
        pytest.param(b"", "invalid_json", id="empty"),
        pytest.param(b"\xff\xfe\x00garbage", "invalid_json", id="not-utf8"),
        # deep nesting raises RecursionError inside json: must be a 400, not a 500
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "invalid_json", id="nested-too-deep"),
        pytest.param(
            b'{"requests": [' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"]}",
            "invalid_json",
            id="objects-nested-too-deep",
        ),
    ],
)
def test_invalid_json_is_400(client: FlaskClient, data: bytes, reason: str) -> None:
    response = client.post("/", data=data, headers=AUTH, content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["reason"] == reason
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain", id="text-plain"),
        pytest.param("application/xml", id="application-xml"),
        pytest.param("", id="none"),
    ],
)
def test_wrong_content_type_is_415(client: FlaskClient, content_type: str) -> None:
    response = client.post("/", data=b"{}", headers={**AUTH, "Content-Type": content_type})
    assert response.status_code == 415
    assert "application/json" in error_of(response)["message"]


def test_unknown_path_is_404(client: FlaskClient) -> None:
    response = client.get("/nope", headers=AUTH)
    assert response.status_code == 404
    assert error_of(response)["reason"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/", id="get-annotate"),
        pytest.param("PUT", "/", id="put-annotate"),
        pytest.param("POST", "/healthz", id="post-healthz"),
        pytest.param("GET", GOOGLE_PATHS[0], id="get-google"),
    ],
)
def test_wrong_method_is_405(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(path, method=method, headers=AUTH)
    assert response.status_code == 405
    assert error_of(response)["reason"] == "method_not_allowed"
    assert response.headers["Allow"]


def test_body_over_the_limit_is_413(client: FlaskClient) -> None:
    data = b"x" * (1024 * 1024 + 1)
    response = client.post("/", data=data, headers=AUTH, content_type="application/json")
    assert response.status_code == 413
    assert error_of(response)["reason"] == "payload_too_large"


def test_chunked_body_over_the_limit_is_413_not_truncated(client: FlaskClient) -> None:
    # No Content-Length, as with Transfer-Encoding: chunked behind gunicorn.
    stream = io.BytesIO(b"[" + b" " * (2 * 1024 * 1024) + b"]")
    response = client.post(
        "/",
        input_stream=stream,
        headers={**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert error_of(response)["reason"] == "payload_too_large"


def test_chunked_body_within_the_limit_is_read_whole(client: FlaskClient) -> None:
    data = json.dumps(annotate_body(encode_image(300, 300))).encode()
    response = client.post(
        "/",
        input_stream=io.BytesIO(data),
        headers={**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 200
    assert response.get_json()["responses"][0]["localizedObjectAnnotations"]


def test_unexpected_error_is_a_generic_500_without_traceback(
    config: ServiceConfig, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(config, FakeDetector(fail_with=RuntimeError("secret internals")))
    with caplog.at_level(logging.INFO, logger="detection_service"):
        response = post_json(app.test_client(), "/", annotate_body(encode_image(8, 8)))
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "secret internals" not in text
    assert "Traceback" not in text
    assert error_of(response)["status"] == "INTERNAL"
    assert "secret internals" in caplog.text  # the detail goes to the log


# ---------------------------------------------------------------------------- request ids, logs


def test_request_id_is_echoed_or_made(client: FlaskClient) -> None:
    echoed = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["X-Request-Id"] == "abc-123"
    made = client.get("/healthz")
    assert len(made.headers["X-Request-Id"]) == 32
    # an unsafe id (log injection) is replaced
    unsafe = client.get("/healthz", headers={"X-Request-Id": "a b\tc"})
    assert unsafe.headers["X-Request-Id"] != "a b\tc"
    assert client.get("/nope").headers["X-Request-Id"]


def test_one_log_line_per_request_without_the_token(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client.post(
        f"/?key={TOKEN}",
        data=json.dumps(annotate_body(encode_image(8, 8))),
        headers={"X-Request-Id": "rid-1", "Content-Type": "application/json"},
    )
    written = capsys.readouterr().err
    lines = [line for line in written.splitlines() if "rid-1" in line]
    assert len(lines) == 1
    assert "status=200" in lines[0]
    assert "path=/ " in lines[0]
    assert "latency_ms=" in lines[0]
    assert TOKEN not in written


# ---------------------------------------------------------------------------- Google contract


@pytest.mark.parametrize("path", GOOGLE_PATHS, ids=["images", "project", "project-location"])
@pytest.mark.parametrize(
    "feature_type",
    [
        pytest.param("OBJECT_LOCALIZATION", id="name"),
        pytest.param(19, id="number"),
        pytest.param("object_localization", id="lower-case-name"),
    ],
)
def test_google_annotate(client: FlaskClient, path: str, feature_type: Any) -> None:
    body = {
        "requests": [
            {
                "image": {"content": b64(encode_image(100, 50))},
                "features": [{"type": feature_type, "maxResults": 5}],
            }
        ]
    }
    response = post_json(client, path + "?$alt=json;enum-encoding=int", body)
    assert response.status_code == 200
    (result,) = response.get_json()["responses"]
    (annotation,) = result["localizedObjectAnnotations"]
    assert annotation["name"] == "dog"
    assert annotation["boundingPoly"]["normalizedVertices"][0] == {"x": 0.25, "y": 0.25}
    # the Google routes carry only Google's fields
    assert set(result) == {"localizedObjectAnnotations"}


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        # maxResults 0 is proto3's "unset" on Google's contract: the default applies
        pytest.param(
            [{"type": 19, "maxResults": 0, "min_height": 0, "min_width": 0}], 2, id="zero-is-unset"
        ),
        # snake_case
        pytest.param(
            [{"type": 19, "max_results": 1, "min_height": 0, "min_width": 0}], 1, id="snake-case"
        ),
    ],
)
def test_google_max_results(
    client: FlaskClient, features: list[dict[str, Any]], expected: int
) -> None:
    body = {"requests": [{"image": {"content": b64(encode_image(100, 100))}, "features": features}]}
    (result,) = post_json(client, "/v1/images:annotate", body).get_json()["responses"]
    assert len(result["localizedObjectAnnotations"]) == expected


@pytest.mark.parametrize(
    "features",
    [
        pytest.param([{"type": "LABEL_DETECTION"}], id="labels"),
        pytest.param([{"type": 4}], id="number-4"),
        pytest.param([{"type": 19}, {"type": "TEXT_DETECTION"}], id="object-and-text"),
        pytest.param([], id="none"),
        pytest.param([{}], id="no-type"),
    ],
)
def test_google_unsupported_features_are_per_image_errors(
    client: FlaskClient, features: list[dict[str, Any]]
) -> None:
    image = {"content": b64(encode_image(16, 16))}
    body = {
        "requests": [
            {"image": image, "features": features},
            {"image": image, "features": [{"type": "OBJECT_LOCALIZATION"}]},
        ]
    }
    response = post_json(client, "/v1/images:annotate", body)
    assert response.status_code == 200
    unsupported, supported = response.get_json()["responses"]
    assert unsupported["error"]["code"] == 3
    assert "OBJECT_LOCALIZATION" in unsupported["error"]["message"]
    assert "localizedObjectAnnotations" in supported


def test_google_image_uri_is_a_per_image_error(client: FlaskClient) -> None:
    body = {
        "requests": [
            {
                "image": {"source": {"imageUri": "https://example.com/a.jpg"}},
                "features": [{"type": 19}],
            }
        ]
    }
    (result,) = post_json(client, "/v1/images:annotate", body).get_json()["responses"]
    assert "image.content" in result["error"]["message"]


def test_google_whole_request_error_envelope(client: FlaskClient) -> None:
    response = client.post(
        "/v1/images:annotate", data=b"nope", headers=AUTH, content_type="application/json"
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"]
