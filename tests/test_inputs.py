"""Every way to send images (multipart, raw body, base64 form fields), picture output and the
DeepStack route, through the Flask test client with the fake detector."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from config import ServiceConfig
from serve_http import create_app
from tests.helpers import AUTH, TOKEN, FakeDetector, decode_with_cv2, encode_image

ROUTES = ["/", "/v1/detect"]


def names(result: dict[str, Any]) -> list[str]:
    return [a["name"] for a in result["localizedObjectAnnotations"]]


def file_part(data: bytes, filename: str = "a.png") -> tuple[io.BytesIO, str]:
    return io.BytesIO(data), filename


@pytest.fixture
def big_app(detector: FakeDetector) -> Flask:
    """The default 10 MiB body limit, for tests with photos of several megabytes."""
    return create_app(ServiceConfig(api_tokens=(TOKEN,)), detector)


# ------------------------------------------------------------------------------- multipart


@pytest.mark.parametrize("route", ROUTES)
def test_multipart_one_file_with_thresholds_and_echo(client: FlaskClient, route: str) -> None:
    data = {
        "image": file_part(encode_image(100, 100)),
        "score_th": "0",
        "min_height": "0",
        "min_width": "0",
        "maxResults": "5",
        "id": "cam-7",
        "type": "snapshot",
    }
    response = client.post(route, data=data, headers=AUTH, content_type="multipart/form-data")
    assert response.status_code == 200
    (result,) = response.get_json()["responses"]
    assert names(result) == ["dog", "person"]
    assert result["fields"] == {"id": "cam-7", "type": "snapshot"}
    assert result["parameters"]["maxResults"] == 5


def test_multipart_several_parts_under_one_name_in_order(client: FlaskClient) -> None:
    data = {
        "image": [
            file_part(encode_image(40, 20), "wide.png"),
            file_part(b"not an image", "bad.png"),
            file_part(encode_image(20, 40), "tall.png"),
        ]
    }
    response = client.post("/", data=data, headers=AUTH, content_type="multipart/form-data")
    assert response.status_code == 200
    wide, bad, tall = response.get_json()["responses"]
    assert wide["imageSize"] == {"width": 40, "height": 20}
    assert bad["error"]["code"] == 3
    assert tall["imageSize"] == {"width": 20, "height": 40}


def test_multipart_numbered_fields_sorted_as_integers(client: FlaskClient) -> None:
    # "10" sorts before "2" as text; the caller means 0, 1, 2, ..., 10.
    data = {str(i): file_part(encode_image(10 + i, 10)) for i in (10, 2, 0, 1)}
    response = client.post("/", data=data, headers=AUTH, content_type="multipart/form-data")
    widths = [r["imageSize"]["width"] for r in response.get_json()["responses"]]
    assert widths == [10, 11, 12, 20]


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        # no image at all
        pytest.param({"id": "x"}, 400, "invalid_request", id="no-image"),
        # two differently named file fields: ambiguous order
        pytest.param(
            {"a": file_part(encode_image(8, 8)), "b": file_part(encode_image(8, 8))},
            400,
            "invalid_request",
            id="two-file-fields",
        ),
        # a threshold that is not a number
        pytest.param(
            {"image": file_part(encode_image(8, 8)), "score_th": "high"},
            400,
            "invalid_parameter",
            id="threshold-not-a-number",
        ),
        # out of range
        pytest.param(
            {"image": file_part(encode_image(8, 8)), "nms_iou": "1.5"},
            400,
            "invalid_parameter",
            id="iou-out-of-range",
        ),
        # NaN is not a threshold
        pytest.param(
            {"image": file_part(encode_image(8, 8)), "score_th": "nan"},
            400,
            "invalid_parameter",
            id="threshold-nan",
        ),
        # too many images
        pytest.param(
            {"image": [file_part(encode_image(8, 8)) for _ in range(17)]},
            400,
            "too_many_images",
            id="too-many-images",
        ),
    ],
)
def test_multipart_errors(
    client: FlaskClient, data: dict[str, Any], status: int, reason: str
) -> None:
    response = client.post("/", data=data, headers=AUTH, content_type="multipart/form-data")
    assert response.status_code == status
    assert response.get_json()["error"]["reason"] == reason


def test_multipart_single_file_under_another_name(client: FlaskClient) -> None:
    data = {"file": file_part(encode_image(30, 30))}
    response = client.post("/", data=data, headers=AUTH, content_type="multipart/form-data")
    assert names(response.get_json()["responses"][0]) == ["dog"]


# ------------------------------------------------------------------------------- raw body


@pytest.mark.parametrize(
    ("content_type", "ext"),
    [
        pytest.param("application/octet-stream", ".png", id="octet-stream"),
        pytest.param("image/jpeg", ".jpg", id="jpeg"),
        pytest.param("image/png", ".png", id="png"),
    ],
)
@pytest.mark.parametrize("route", ROUTES)
def test_raw_body(client: FlaskClient, route: str, content_type: str, ext: str) -> None:
    response = client.post(
        route + "?score_th=0&min_height=0&min_width=0",
        data=encode_image(64, 32, ext),
        headers={**AUTH, "Content-Type": content_type},
    )
    assert response.status_code == 200
    (result,) = response.get_json()["responses"]
    assert names(result) == ["dog", "person"]
    assert result["imageSize"] == {"width": 64, "height": 32}


@pytest.mark.parametrize(
    ("data", "query", "status", "check"),
    [
        pytest.param(b"", "", 400, "invalid_request", id="empty-body"),
        # not an image: a per-image error
        pytest.param(b"garbage", "", 200, 3, id="not-an-image"),
        pytest.param(
            encode_image(8, 8), "?maxResults=x", 400, "invalid_parameter", id="bad-query-parameter"
        ),
    ],
)
def test_raw_body_errors(
    client: FlaskClient, data: bytes, query: str, status: int, check: str | int
) -> None:
    response = client.post(
        "/" + query, data=data, headers={**AUTH, "Content-Type": "application/octet-stream"}
    )
    assert response.status_code == status
    body = response.get_json()
    if status == 200:
        assert body["responses"][0]["error"]["code"] == check
    else:
        assert body["error"]["reason"] == check


# ------------------------------------------------------------------------------- base64 fields

IMAGE = encode_image(50, 40)


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"image": base64.b64encode(IMAGE).decode()}, id="standard-padded"),
        pytest.param(
            {"image": base64.urlsafe_b64encode(IMAGE).decode().rstrip("=")}, id="url-safe-unpadded"
        ),
        pytest.param(
            {"image": "data:image/png;base64," + base64.b64encode(IMAGE).decode()}, id="data-uri"
        ),
    ],
)
@pytest.mark.parametrize("route", ROUTES)
def test_base64_form_field(client: FlaskClient, route: str, form: dict[str, str]) -> None:
    response = client.post(route, data=form, headers=AUTH)  # form-urlencoded
    assert response.status_code == 200
    (result,) = response.get_json()["responses"]
    assert result["imageSize"] == {"width": 50, "height": 40}


def test_base64_form_field_list_with_a_bad_one(client: FlaskClient) -> None:
    good = base64.b64encode(IMAGE).decode()
    response = client.post(
        "/", data={"images": [good, "%%%", good], "min_width": "0.5"}, headers=AUTH
    )
    first, bad, last = response.get_json()["responses"]
    assert names(first) == ["dog"]
    assert "base64" in bad["error"]["message"]
    assert names(last) == ["dog"]
    assert first["parameters"]["min_width"] == 0.5


# ------------------------------------------------------------------------------- limits


def _photo(min_bytes: int) -> bytes:
    """A noisy PNG of at least `min_bytes` (noise does not compress)."""
    side = int((min_bytes / 3) ** 0.5) + 8
    return encode_image(side, side, seed=7)


def _send(client: FlaskClient, form: str, photo: bytes) -> Any:
    if form == "multipart":
        # Encoded in memory: the test client would spool a large body to a temporary file
        # that nobody closes (a ResourceWarning, an error under filterwarnings=error).
        boundary, body = encode_multipart(
            MultiDict({"image": FileStorage(io.BytesIO(photo), "a.png")})
        )
        return client.post(
            "/",
            data=body,
            headers=AUTH,
            content_type=f"multipart/form-data; boundary={boundary}",
        )
    if form == "urlencoded":
        return client.post("/", data={"image": base64.b64encode(photo).decode()}, headers=AUTH)
    if form == "raw":
        return client.post(
            "/", data=photo, headers={**AUTH, "Content-Type": "application/octet-stream"}
        )
    payload = {"requests": [{"image": {"content": base64.b64encode(photo).decode()}}]}
    return client.post("/", data=json.dumps(payload), headers=AUTH, content_type="application/json")


FORMS = ["multipart", "urlencoded", "raw", "json"]


@pytest.mark.parametrize("form", FORMS)
def test_several_megabyte_photo_in_every_form(big_app: Flask, form: str) -> None:
    # 5 MB of PNG; base64 makes it 6.7 MB, far above Flask's 500 kB default per form field.
    photo = _photo(5_000_000)
    assert len(photo) > 5_000_000
    response = _send(big_app.test_client(), form, photo)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert "localizedObjectAnnotations" in response.get_json()["responses"][0]


@pytest.mark.parametrize("form", FORMS)
def test_body_just_over_the_limit_is_413_in_every_form(big_app: Flask, form: str) -> None:
    limit = 10 * 1024 * 1024
    # base64 grows 4/3: pick the photo so that the encoded body lands just over the limit.
    raw_size = limit + 1024 if form in ("multipart", "raw") else limit * 3 // 4 + 1024
    response = _send(big_app.test_client(), form, b"\x89PNG" + b"\0" * raw_size)
    assert response.status_code == 413
    assert response.get_json()["error"]["reason"] == "payload_too_large"


def test_chunked_multipart_over_the_limit_is_413(client: FlaskClient) -> None:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"\0" * (2 << 20)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = client.post(
        "/",
        input_stream=io.BytesIO(body),
        headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413


def test_too_many_form_parts_is_413(client: FlaskClient) -> None:
    data = {f"field{i}": "x" for i in range(300)}
    data_with_image: dict[str, Any] = {**data, "image": file_part(encode_image(8, 8))}
    response = client.post(
        "/", data=data_with_image, headers=AUTH, content_type="multipart/form-data"
    )
    assert response.status_code == 413


# ------------------------------------------------------------------------------- picture out


@pytest.mark.parametrize(
    ("query", "accept", "mimetype", "magic"),
    [
        pytest.param("", "image/png", "image/png", b"\x89PNG", id="accept-png"),
        pytest.param("", "image/jpeg", "image/jpeg", b"\xff\xd8", id="accept-jpeg"),
        pytest.param("?format=png", "", "image/png", b"\x89PNG", id="format-png"),
        pytest.param(
            "?format=jpeg",
            "application/json",
            "image/jpeg",
            b"\xff\xd8",
            id="format-jpeg-over-accept-json",
        ),
        pytest.param("?format=jpg", "", "image/jpeg", b"\xff\xd8", id="format-jpg"),
    ],
)
def test_picture_output(
    client: FlaskClient, query: str, accept: str, mimetype: str, magic: bytes
) -> None:
    original = np.full((120, 200, 3), 128, np.uint8)
    ok, encoded = cv2.imencode(".png", original)
    assert ok
    response = client.post(
        "/" + query,
        data=encoded.tobytes(),
        headers={**AUTH, "Content-Type": "image/png", "Accept": accept},
    )
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert response.data.startswith(magic)
    assert response.headers["X-Detection-Count"] == "1"
    drawn = decode_with_cv2(response.data)
    assert drawn.shape == original.shape
    # the box edge at x = 0.25 * width is drawn; a far corner is untouched
    assert np.abs(drawn[60, 50].astype(int) - 128).max() > 30
    assert np.abs(drawn[119, 199].astype(int) - 128).max() < 10


def test_picture_max_side(client: FlaskClient) -> None:
    response = client.post(
        "/?format=png&max_side=100",
        data={"image": file_part(encode_image(400, 200))},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert decode_with_cv2(response.data).shape == (50, 100, 3)


@pytest.mark.parametrize(
    ("query", "data", "status", "reason"),
    [
        # several images cannot become one picture
        pytest.param(
            "?format=png",
            {"image": [file_part(IMAGE), file_part(IMAGE)]},
            406,
            "not_acceptable",
            id="several-images",
        ),
        # unknown format
        pytest.param(
            "?format=gif",
            {"image": file_part(IMAGE)},
            400,
            "invalid_parameter",
            id="unknown-format",
        ),
        # max_side out of range / not a number
        pytest.param(
            "?format=png&max_side=5",
            {"image": file_part(IMAGE)},
            400,
            "invalid_parameter",
            id="max-side-out-of-range",
        ),
        pytest.param(
            "?format=png&max_side=big",
            {"image": file_part(IMAGE)},
            400,
            "invalid_parameter",
            id="max-side-not-a-number",
        ),
        # the one image is bad: nothing to draw on
        pytest.param(
            "?format=png", {"image": file_part(b"nope")}, 400, "invalid_image", id="bad-image"
        ),
    ],
)
def test_picture_errors(
    client: FlaskClient, query: str, data: dict[str, Any], status: int, reason: str
) -> None:
    response = client.post("/" + query, data=data, headers=AUTH, content_type="multipart/form-data")
    assert response.status_code == status
    assert response.get_json()["error"]["reason"] == reason


def test_json_stays_default_for_browsers_and_wildcards(client: FlaskClient) -> None:
    for accept in ("*/*", "text/html,application/xhtml+xml,*/*;q=0.8", ""):
        response = client.post(
            "/", data=IMAGE, headers={**AUTH, "Content-Type": "image/png", "Accept": accept}
        )
        assert response.mimetype == "application/json"


# ------------------------------------------------------------------------------- DeepStack


def test_deepstack_detection(client: FlaskClient) -> None:
    response = client.post(
        "/v1/vision/detection",
        data={"image": file_part(encode_image(200, 100)), "api_key": TOKEN},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert body["count"] == 2  # DeepStack applies no size filter; both boxes >= 0.4
    dog = body["predictions"][0]
    assert dog == {
        "label": "dog",
        "confidence": 0.9,
        "x_min": 50,
        "y_min": 25,
        "x_max": 150,
        "y_max": 75,
    }
    assert all(isinstance(dog[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))


@pytest.mark.parametrize(
    ("confidence", "count"),
    [
        pytest.param("0.6", 1, id="0.6-keeps-one"),
        pytest.param("0.95", 0, id="0.95-keeps-none"),
        pytest.param("0", 2, id="0-keeps-both"),
    ],
)
def test_deepstack_min_confidence(client: FlaskClient, confidence: str, count: int) -> None:
    response = client.post(
        "/v1/vision/detection",
        data={"image": file_part(encode_image(100, 100)), "min_confidence": confidence},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    assert response.get_json()["count"] == count


@pytest.mark.parametrize(
    ("data", "headers", "content_type", "status"),
    [
        pytest.param({"image": file_part(IMAGE)}, {}, "multipart/form-data", 401, id="no-token"),
        pytest.param(
            {"image": file_part(IMAGE), "api_key": "bad"},
            {},
            "multipart/form-data",
            401,
            id="bad-api-key",
        ),
        pytest.param({}, AUTH, "multipart/form-data", 400, id="no-image"),
        pytest.param(
            {"image": file_part(b"nope")}, AUTH, "multipart/form-data", 400, id="not-an-image"
        ),
        pytest.param(
            {"image": file_part(IMAGE), "min_confidence": "2"},
            AUTH,
            "multipart/form-data",
            400,
            id="confidence-above-one",
        ),
        # wrong content type
        pytest.param(None, AUTH, "application/json", 415, id="json-415"),
    ],
)
def test_deepstack_errors(
    client: FlaskClient,
    data: dict[str, Any] | None,
    headers: dict[str, str],
    content_type: str,
    status: int,
) -> None:
    response = client.post(
        "/v1/vision/detection", data=data or b"{}", headers=headers, content_type=content_type
    )
    assert response.status_code == status
    body = response.get_json()
    assert body["success"] is False
    assert body["error"]
    assert body["code"] == status


def test_deepstack_body_over_limit(config: ServiceConfig, detector: FakeDetector) -> None:
    app = create_app(replace(config, max_body_bytes=2048), detector)
    response = app.test_client().post(
        "/v1/vision/detection",
        data={"image": file_part(b"\0" * 4096)},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    assert response.get_json()["success"] is False


def test_openapi_is_served_without_auth(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"].startswith("3.1")


def test_non_ascii_digit_field_names_are_not_numbered_fields(client: FlaskClient) -> None:
    data = {"\u00b2": file_part(encode_image(8, 8)), "1": file_part(encode_image(8, 8))}
    response = client.post("/", data=data, headers=AUTH, content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.get_json()["error"]["reason"] == "invalid_request"
