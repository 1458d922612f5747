"""Client errors that used to be 500s, the per-request pixel budget, a malformed image corpus
over every input route, and the reduced JPEG decode (a real photo through the real model:
the same objects as the full decode, in the full image's pixels, EXIF orientation respected)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any

import cv2
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from config import ServiceConfig
from errors import InvalidBody
from image_io import Fit, decode_image, jpeg_reduction
from registry import ModelRegistry
from request_body import read_body
from serve_http import create_app
from tests.helpers import AUTH, TOKEN, FakeDetector, annotate_body, b64, encode_image, shared_image
from utils_serve import ImageTask, run_tasks

HUGE = int("9" * 400)  # float() of it raised OverflowError


@pytest.mark.parametrize(
    ("query", "json_feature"),
    [
        pytest.param("score_th=" + "9" * 400, None, id="query-400-digits"),
        pytest.param("score_th=" + "1" * 5000, None, id="query-5000-digits"),
        pytest.param("maxResults=-" + "9" * 400, None, id="query-negative-huge"),
        pytest.param("score_th=1e999", None, id="query-float-overflow"),
        pytest.param("max_side=" + "9" * 5000, None, id="max-side-5000-digits"),
        pytest.param("classes=" + "1" * 5000, None, id="class-id-5000-digits"),
        pytest.param("", {"score_th": HUGE}, id="json-400-digits"),
        pytest.param("", {"maxResults": -HUGE}, id="json-negative-huge"),
        pytest.param("", {"nms_iou": int("9" * 4000)}, id="json-4000-digits"),
        pytest.param("", {"classes": [HUGE]}, id="json-class-id-huge"),
    ],
)
def test_huge_integers_are_400s(
    client: FlaskClient, query: str, json_feature: dict[str, Any] | None
) -> None:
    image = encode_image(32, 32)
    if json_feature is None:
        response = client.post(
            "/v1/detect?" + query, data=image, headers={**AUTH, "Content-Type": "image/png"}
        )
    else:
        response = client.post(
            "/v1/detect", json=annotate_body(image, **json_feature), headers=AUTH
        )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert len(response.get_data()) < 1000


class _Broken(io.RawIOBase):
    """A WSGI input whose server-side reader fails, as gunicorn's does on bad chunk framing."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self, size: int = -1) -> bytes:
        raise self.error


@pytest.mark.parametrize(
    ("stream", "length"),
    [
        pytest.param(_Broken(ValueError("Invalid chunk size")), None, id="reader-error-chunked"),
        pytest.param(_Broken(OSError("no more data")), 10, id="reader-error-length"),
        pytest.param(io.BytesIO(b"12345"), 10, id="shorter-than-content-length"),
    ],
)
def test_unreadable_or_short_bodies_are_invalid_body(stream: Any, length: int | None) -> None:
    with pytest.raises(InvalidBody):
        read_body(stream, length, 1000)


def test_a_body_of_exactly_the_limit_is_read_and_one_more_refused() -> None:
    assert read_body(io.BytesIO(b"x" * 1000), None, 1000) == b"x" * 1000
    assert read_body(io.BytesIO(b"x" * 1000), 1000, 1000) == b"x" * 1000
    with pytest.raises(Exception, match="larger than the limit"):
        read_body(io.BytesIO(b"x" * 1001), None, 1000)


def test_http11_without_host_is_400(client: FlaskClient) -> None:
    response = client.get("/healthz", environ_overrides={"HTTP_HOST": ""})
    assert response.status_code == 400


def test_401_names_its_scheme_and_every_answer_says_nosniff(client: FlaskClient) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# --- The pixel budget


def test_the_pixel_budget_is_answered_per_image() -> None:
    registry = ModelRegistry.of(FakeDetector())
    image = encode_image(100, 100)  # 10,000 pixels each
    tasks = [ImageTask(image, FakeDetector().info.default_params, "fake") for _ in range(3)]
    outcomes = run_tasks(tasks, registry, max_pixels=10_000, max_request_pixels=25_000)
    first, second, third = outcomes
    assert not isinstance(first, Exception)
    assert not isinstance(second, Exception)
    assert getattr(third, "code", None) == "image_too_large"
    assert "25000" in str(third)


def test_the_pixel_budget_over_http() -> None:
    config = ServiceConfig(api_tokens=(TOKEN,), max_image_pixels=10_000, max_request_pixels=15_000)
    client = create_app(config, FakeDetector()).test_client()
    image = encode_image(100, 100)
    answer = client.post("/v1/detect", json=annotate_body(image, image), headers=AUTH).get_json()
    first, second = answer["responses"]
    assert "localizedObjectAnnotations" in first
    assert second["error"]["code"] == 3


# --- A malformed image corpus over every input route


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)


def _corpus() -> dict[str, bytes]:
    png = encode_image(64, 48, ".png")
    jpeg = encode_image(64, 48, ".jpg")
    webp = encode_image(64, 48, ".webp")
    bmp = encode_image(64, 48, ".bmp")
    tiff = encode_image(64, 48, ".tiff")
    zeros = zlib.compress(b"\0" * (3 * 4000 + 4000))
    return {
        "empty": b"",
        "one-byte": b"\x89",
        "text": b"hello, this is not an image",
        "gif": b"GIF89a" + b"\0" * 40,
        "png-truncated": png[: len(png) // 2],
        "png-header-only": _png_header(64, 48),
        "png-bad-crc": png[:29] + b"\0\0\0\0" + png[33:],
        "png-bomb-header": _png_header(30000, 30000) + _png_chunk(b"IDAT", zeros),
        "png-zero-width": _png_header(0, 48),
        "png-garbage-idat": _png_header(64, 48) + _png_chunk(b"IDAT", b"\xff" * 100),
        "jpeg-truncated": jpeg[: len(jpeg) // 2],
        "jpeg-soi-only": b"\xff\xd8",
        "jpeg-no-frame": b"\xff\xd8\xff\xd9",
        "jpeg-huge-frame": b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03" + b"\0" * 9,
        "webp-truncated": webp[:20],
        "bmp-truncated": bmp[:30],
        "tiff-truncated": tiff[:16],
        "zeros": b"\0" * 1000,
    }


CORPUS = _corpus()


def _json(client: FlaskClient, path: str, data: bytes) -> TestResponse:
    body = {"requests": [{"image": {"content": b64(data)}, "features": [{"type": 19}]}]}
    return client.post(path, json=body, headers=AUTH)


ROUTES: dict[str, Callable[[FlaskClient, bytes], TestResponse]] = {
    "native-json": lambda c, d: _json(c, "/v1/detect", d),
    "root-json": lambda c, d: _json(c, "/", d),
    "google": lambda c, d: _json(c, "/v1/images:annotate", d),
    "native-raw": lambda c, d: c.post(
        "/v1/detect", data=d, headers={**AUTH, "Content-Type": "application/octet-stream"}
    ),
    "native-multipart": lambda c, d: c.post(
        "/v1/detect", data={"image": (io.BytesIO(d), "x.png")}, headers=AUTH
    ),
    "native-form-base64": lambda c, d: c.post(
        "/v1/detect",
        data={"image": b64(d)},
        headers=AUTH,
        content_type="application/x-www-form-urlencoded",
    ),
    "native-picture": lambda c, d: c.post(
        "/v1/detect?format=png",
        data=d,
        headers={**AUTH, "Content-Type": "application/octet-stream"},
    ),
    "deepstack": lambda c, d: c.post(
        "/v1/vision/detection", data={"image": (io.BytesIO(d), "x.png")}, headers=AUTH
    ),
}


@pytest.mark.parametrize("route", list(ROUTES), ids=list(ROUTES))
@pytest.mark.parametrize("kind", list(CORPUS), ids=list(CORPUS))
def test_malformed_images_are_client_errors_on_every_route(
    client: FlaskClient, route: str, kind: str
) -> None:
    response = ROUTES[route](client, CORPUS[kind])
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code == 200:
        # Answered in the image's place in a batch, never as a detection.
        (entry,) = response.get_json()["responses"]
        assert "error" in entry


# --- The reduced JPEG decode


@pytest.mark.parametrize(
    ("size", "fits", "factor"),
    [
        pytest.param((4000, 3000), [Fit(416, 416)], 8, id="12mp-into-416"),
        pytest.param((3000, 4000), [Fit(416, 416)], 8, id="portrait-12mp"),
        pytest.param((800, 600), [Fit(416, 416)], 1, id="small-photo-not-reduced"),
        pytest.param((1664, 1248), [Fit(416, 416)], 4, id="exactly-4x-covers"),
        pytest.param((1660, 1248), [Fit(416, 416)], 2, id="short-of-4x"),
        pytest.param((4000, 1000), [Fit(416, 416, letterbox=False)], 2, id="stretched-input"),
        pytest.param((4000, 3000), [Fit(416, 416), Fit(1024, 1024)], 2, id="picture-max-side"),
        pytest.param((640, 4000), [Fit(640, 384)], 4, id="both-orientations-covered"),
    ],
)
def test_jpeg_reduction(size: tuple[int, int], fits: list[Fit], factor: int) -> None:
    assert jpeg_reduction(*size, fits) == factor


def _exif_oriented(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 Exif segment holding only the Orientation tag."""
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"MM\x00*\x00\x00\x00\x08" + struct.pack(">H", 1) + entry + b"\0\0\0\0"
    app1 = b"Exif\0\0" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def _big_bus() -> bytes:
    photo = decode_image(shared_image("bus.jpg").read_bytes())
    big = cv2.resize(photo, (3000, 4000), interpolation=cv2.INTER_CUBIC)
    ok, encoded = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def _iou(a: list[float], b: list[float]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _boxes(answer: dict[str, Any]) -> list[tuple[str, list[float]]]:
    found = []
    for item in answer["responses"][0]["localizedObjectAnnotations"]:
        vertices = item["boundingPoly"]["vertices"]
        box = [vertices[0]["x"], vertices[0]["y"], vertices[2]["x"], vertices[2]["y"]]
        found.append((item["name"], [float(v) for v in box]))
    return found


@pytest.mark.real_model
def test_a_reduced_decode_finds_what_the_full_decode_finds() -> None:
    from predict import load_model
    from tests.helpers import REPO_ROOT

    detector = load_model(REPO_ROOT / "models", "yolox_nano")
    client = create_app(ServiceConfig(api_tokens=(TOKEN,)), detector).test_client()
    photo = _big_bus()
    reduced = client.post("/v1/detect", json=annotate_body(photo), headers=AUTH).get_json()
    assert reduced["responses"][0]["imageSize"] == {"width": 3000, "height": 4000}
    # The full decode's detections, as the service computed them before (no reduction).
    full = decode_image(photo)
    expected = detector.detect(full, detector.info.default_params).detections
    got = _boxes(reduced)
    assert len(got) == len(expected) > 0
    # Each box of the full decode has one of the same class with IoU >= 0.9 (scores that
    # are close may come in another order).
    for xyxy, class_id in zip(expected.xyxy.tolist(), expected.class_ids.tolist(), strict=True):
        name = detector.info.class_names[class_id]
        best = max((_iou(box, xyxy) for found, box in got if found == name), default=0.0)
        assert best >= 0.9, (name, xyxy, got)
    # Stored sideways with EXIF orientation 6 (show it turned 90 degrees clockwise): the
    # service sees the upright photo, in the upright size, and finds the same objects.
    sideways = cv2.rotate(decode_image(photo), cv2.ROTATE_90_COUNTERCLOCKWISE)
    ok, stored = cv2.imencode(".jpg", sideways, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    oriented = _exif_oriented(stored.tobytes(), 6)
    rotated = client.post("/v1/detect", json=annotate_body(oriented), headers=AUTH).get_json()
    assert rotated["responses"][0]["imageSize"] == {"width": 3000, "height": 4000}
    for name, box in got:
        best = max((_iou(box, b) for n, b in _boxes(rotated) if n == name), default=0.0)
        assert best >= 0.9, (name, box, _boxes(rotated))
