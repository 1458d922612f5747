"""The wire snapshot: fixed requests through the test client with the fake detector, and
their status, headers (all but X-Request-Id) and body bytes compared with a golden file.

It was recorded before the HTTP side was split into modules and stays in the suite for good:
a refactoring that changes one byte on the wire fails here. JSON bodies are kept as text so
that a failure shows the difference; binary bodies (pictures) as their sha256 and length.

A change that is meant to alter the wire re-records the file and says why in its commit:

    WIRE_SNAPSHOT_RECORD=1 .venv/bin/python -m pytest tests/test_wire_snapshot.py
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from config import ServiceConfig
from registry import ModelRegistry
from serve_http import create_app
from tests.helpers import AUTH, SECOND_TOKEN, TOKEN, FakeDetector, b64, encode_image

GOLDEN = Path(__file__).resolve().parent / "golden" / "wire_snapshot.json"
RECORD = os.environ.get("WIRE_SNAPSHOT_RECORD") == "1"
# Headers that differ between runs by design.
VOLATILE_HEADERS = frozenset({"x-request-id"})
# Members of CodeProject.AI's answers that differ between runs and machines by design (the
# request id, the clock, the elapsed time, the host name): recorded as "<volatile>", and so is
# the Content-Length of such a body.
VOLATILE_MEMBERS = frozenset({"requestId", "timestampUTC", "analysisRoundTripMs", "processedBy"})


def _without_volatile_members(text: str) -> str:
    """The JSON text with the volatile members' values replaced, else the text unchanged."""
    try:
        payload = json.loads(text)
    except ValueError:
        return text
    if not isinstance(payload, dict) or not VOLATILE_MEMBERS & set(payload):
        return text
    for name in VOLATILE_MEMBERS & set(payload):
        payload[name] = "<volatile>"
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


PHOTO = encode_image(64, 48, ".png", seed=1)
JPEG = encode_image(80, 60, ".jpg", seed=2)


def _bomb_png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _config() -> ServiceConfig:
    return ServiceConfig(api_tokens=(TOKEN, SECOND_TOKEN), max_body_bytes=1024 * 1024)


APPS: Mapping[str, Callable[[], Flask]] = {
    "default": lambda: create_app(_config(), FakeDetector()),
    "two_models": lambda: create_app(
        _config(),
        ModelRegistry(
            detectors={"fake": FakeDetector(), "other": FakeDetector(name="other")},
            default="fake",
        ),
    ),
    "failing": lambda: create_app(_config(), FakeDetector(fail_with=RuntimeError("boom"))),
    "not_ready": lambda: create_app(_config(), FakeDetector(ready=False)),
}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    app: str = "default"
    headers: Mapping[str, str] = field(default_factory=lambda: dict(AUTH))
    json_body: Any = None
    data: Any = None
    content_type: str | None = None
    chunked: bool = False
    # Only status and Content-Type are compared (the body is rebuilt by other tests).
    status_only: bool = False


def _annotate(*images: bytes, **feature: Any) -> dict[str, Any]:
    return {"requests": [{"image": {"content": b64(i)}, "features": [feature]} for i in images]}


FULL_FEATURE = {"score_th": 0.35, "nms_iou": 0.4, "min_height": 0.03, "min_width": 0.03}
GOOGLE_FEATURE = {"type": "OBJECT_LOCALIZATION", "maxResults": 10}


def _file(data: bytes, name: str = "photo.png") -> tuple[io.BytesIO, str]:
    return io.BytesIO(data), name


def _chunked_multipart() -> bytes:
    boundary = "b0undary"
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"\0" * (2 << 20)
        + f"\r\n--{boundary}--\r\n".encode()
    )


CASES: dict[str, Case] = {
    # probes and the contract
    "healthz": Case("GET", "/healthz", headers={}),
    "readyz": Case("GET", "/readyz", headers={}),
    "readyz_not_ready": Case("GET", "/readyz", app="not_ready", headers={}),
    "openapi": Case("GET", "/openapi.json", headers={}, status_only=True),
    # models
    "models": Case("GET", "/v1/models"),
    "models_two": Case("GET", "/v1/models", app="two_models"),
    "models_no_token": Case("GET", "/v1/models", headers={}),
    "model_one": Case("GET", "/v1/models/fake"),
    "model_unknown": Case("GET", "/v1/models/nope%0Aline"),
    # our JSON
    "json_full_feature": Case(
        "POST", "/", json_body=_annotate(PHOTO, **FULL_FEATURE, maxResults=20)
    ),
    "json_v1_detect_jpeg": Case("POST", "/v1/detect", json_body=_annotate(JPEG)),
    "json_batch_with_garbage": Case(
        "POST",
        "/",
        json_body={
            "requests": [
                {"image": {"content": b64(PHOTO)}},
                {"image": {"content": "not base64!"}},
                {"image": {"content": b64(JPEG)}},
            ]
        },
    ),
    "json_per_image_errors": Case(
        "POST",
        "/",
        json_body={
            "requests": [
                {"image": {"content": b64(b"not an image at all")}},
                {"image": {"source": {"imageUri": "https://example.com/a.jpg"}}},
                {"image": {"content": b64(_bomb_png())}},
                {"image": {"content": b64(PHOTO)}, "features": [{"model": "nope"}]},
                {"image": {"content": "data:image/png;base64," + b64(PHOTO)}},
            ]
        },
    ),
    "json_two_models": Case(
        "POST",
        "/",
        app="two_models",
        json_body={
            "requests": [
                {"image": {"content": b64(PHOTO)}, "features": [{"model": "other"}]},
                {"image": {"content": b64(PHOTO)}},
            ]
        },
    ),
    "json_classes_and_agnostic": Case(
        "POST",
        "/",
        json_body=_annotate(PHOTO, classes=["dog"], agnostic_nms=True, min_height=0),
    ),
    "json_explicit_zeros": Case(
        "POST", "/", json_body=_annotate(PHOTO, score_th=0, min_height=0, min_width=0)
    ),
    "json_max_results_zero": Case("POST", "/", json_body=_annotate(PHOTO, maxResults=0)),
    "json_out_of_range": Case("POST", "/", json_body=_annotate(PHOTO, score_th=1.5)),
    "json_wrong_type": Case("POST", "/", json_body=_annotate(PHOTO, nms_iou="high")),
    "json_both_spellings": Case("POST", "/", json_body=_annotate(PHOTO, score_th=0.1, scoreTh=0.2)),
    "json_unknown_class": Case("POST", "/", json_body=_annotate(PHOTO, classes=["unicorn"])),
    "json_invalid": Case("POST", "/", data=b"{nope", content_type="application/json"),
    "json_empty_body": Case("POST", "/", data=b"", content_type="application/json"),
    "json_not_object": Case("POST", "/", json_body=[1, 2]),
    "json_no_requests": Case("POST", "/", json_body={"requests": []}),
    "json_too_many": Case("POST", "/", json_body=_annotate(*([PHOTO] * 17))),
    "json_element_not_object": Case("POST", "/", json_body={"requests": [1]}),
    # authentication
    "auth_missing": Case("POST", "/", headers={}, json_body=_annotate(PHOTO)),
    "auth_wrong": Case("POST", "/", headers={"X-Api-Token": "nope"}, json_body=_annotate(PHOTO)),
    "auth_bearer_second_token": Case(
        "POST",
        "/",
        headers={"Authorization": f"Bearer {SECOND_TOKEN}"},
        json_body=_annotate(PHOTO),
    ),
    "auth_query_key": Case("POST", f"/?key={TOKEN}", headers={}, json_body=_annotate(PHOTO)),
    "auth_non_ascii": Case("POST", "/", headers={"X-Api-Token": "tökén"}, json_body={}),
    # other input forms
    "multipart_one_with_echo": Case(
        "POST",
        "/v1/detect",
        data={"image": _file(PHOTO), "score_th": "0.35", "id": "cam-7"},
        content_type="multipart/form-data",
    ),
    "multipart_numbered": Case(
        "POST",
        "/",
        data={"1": _file(JPEG, "b.jpg"), "0": _file(PHOTO)},
        content_type="multipart/form-data",
    ),
    "multipart_bad_names": Case(
        "POST",
        "/",
        data={"a": _file(PHOTO), "b": _file(JPEG, "b.jpg")},
        content_type="multipart/form-data",
    ),
    "multipart_bad_threshold": Case(
        "POST",
        "/",
        data={"image": _file(PHOTO), "score_th": "lots"},
        content_type="multipart/form-data",
    ),
    "raw_png_with_query": Case(
        "POST", "/?score_th=0.6&model=fake", data=PHOTO, content_type="image/png"
    ),
    "raw_empty": Case("POST", "/", data=b"", content_type="application/octet-stream"),
    "raw_unknown_model": Case("POST", "/?model=nope", data=PHOTO, content_type="image/png"),
    "form_base64_images": Case(
        "POST",
        "/",
        data={"images": [b64(PHOTO), "%%%"], "max_results": "1"},
        content_type="application/x-www-form-urlencoded",
    ),
    "unsupported_media_type": Case("POST", "/", data=b"hello", content_type="text/plain"),
    # picture output
    "picture_png": Case("POST", "/?format=png", data=PHOTO, content_type="image/png"),
    "picture_jpeg_max_side": Case(
        "POST", "/?format=jpeg&max_side=32", data=JPEG, content_type="image/jpeg"
    ),
    "picture_accept_png": Case(
        "POST",
        "/",
        headers={**AUTH, "Accept": "image/png"},
        json_body=_annotate(PHOTO),
    ),
    "picture_bad_format": Case("POST", "/?format=gif", data=PHOTO, content_type="image/png"),
    "picture_bad_max_side": Case(
        "POST", "/?format=png&max_side=3", data=PHOTO, content_type="image/png"
    ),
    "picture_two_images": Case("POST", "/?format=png", json_body=_annotate(PHOTO, PHOTO)),
    "picture_bad_image": Case("POST", "/?format=png", data=b"nope", content_type="image/png"),
    # Google's images:annotate
    "google_annotate": Case(
        "POST", "/v1/images:annotate", json_body=_annotate(PHOTO, **GOOGLE_FEATURE)
    ),
    "google_project_int_type_zero_max": Case(
        "POST",
        "/v1/projects/p/locations/eu/images:annotate",
        json_body=_annotate(PHOTO, type=19, maxResults=0),
    ),
    "google_feature_errors": Case(
        "POST",
        "/v1/images:annotate",
        json_body={
            "requests": [
                {"image": {"content": b64(PHOTO)}},
                {"image": {"content": b64(PHOTO)}, "features": [{"type": "LABEL_DETECTION"}]},
                {"image": {"content": b64(PHOTO)}, "features": [{"type": 4}, {"type": 19}]},
            ]
        },
    ),
    "google_features_not_a_list": Case(
        "POST",
        "/v1/images:annotate",
        json_body={"requests": [{"image": {"content": b64(PHOTO)}, "features": "nope"}]},
    ),
    "google_builtin_model": Case(
        "POST",
        "/v1/images:annotate",
        json_body=_annotate(PHOTO, type="OBJECT_LOCALIZATION", model="builtin/latest"),
    ),
    "google_not_json": Case(
        "POST", "/v1/images:annotate", data=b"x", content_type="application/octet-stream"
    ),
    # DeepStack / CodeProject.AI
    "deepstack_detection": Case(
        "POST",
        "/v1/vision/detection",
        headers={},
        data={"image": _file(JPEG, "a.jpg"), "api_key": TOKEN},
        content_type="multipart/form-data",
    ),
    "deepstack_min_confidence": Case(
        "POST",
        "/v1/vision/detection",
        data={"image": _file(PHOTO), "min_confidence": "0.6"},
        content_type="multipart/form-data",
    ),
    "deepstack_no_image": Case(
        "POST",
        "/v1/vision/detection",
        data={"min_confidence": "0.6"},
        content_type="multipart/form-data",
    ),
    "deepstack_wrong_key": Case(
        "POST",
        "/v1/vision/detection",
        headers={},
        data={"image": _file(PHOTO), "api_key": "nope"},
        content_type="multipart/form-data",
    ),
    "deepstack_json": Case("POST", "/v1/vision/detection", json_body={}),
    "deepstack_bad_image": Case(
        "POST",
        "/v1/vision/detection",
        data={"image": _file(b"garbage")},
        content_type="multipart/form-data",
    ),
    # routing and limits
    "not_found": Case("GET", "/nope"),
    "method_not_allowed": Case("GET", "/"),
    "method_not_allowed_v1_models": Case("POST", "/v1/models", json_body={}),
    "too_large_content_length": Case(
        "POST", "/", data=b"x" * (1024 * 1024 + 1), content_type="application/json"
    ),
    "too_large_chunked_multipart": Case(
        "POST",
        "/",
        data=_chunked_multipart(),
        content_type="multipart/form-data; boundary=b0undary",
        chunked=True,
    ),
    "too_many_form_parts": Case(
        "POST",
        "/",
        data={**{f"field{i}": "x" for i in range(300)}, "image": _file(PHOTO)},
        content_type="multipart/form-data",
    ),
    "unhandled_error": Case("POST", "/", app="failing", json_body=_annotate(PHOTO)),
    "unhandled_error_deepstack": Case(
        "POST",
        "/v1/vision/detection",
        app="failing",
        data={"image": _file(PHOTO)},
        content_type="multipart/form-data",
    ),
}


def _send(case: Case) -> TestResponse:
    client = APPS[case.app]().test_client()
    kwargs: dict[str, Any] = {"headers": dict(case.headers)}
    if case.json_body is not None:
        kwargs["data"] = json.dumps(case.json_body)
        kwargs["content_type"] = "application/json"
    elif case.chunked:
        kwargs["input_stream"] = io.BytesIO(case.data)
        kwargs["headers"]["Content-Type"] = case.content_type
        kwargs["environ_overrides"] = {"wsgi.input_terminated": True}
    elif case.data is not None:
        # Fresh file objects each time: a BytesIO is consumed by the first send.
        data = case.data
        if isinstance(data, dict):
            data = {
                k: (io.BytesIO(v[0].getvalue()), v[1]) if isinstance(v, tuple) else v
                for k, v in data.items()
            }
        kwargs["data"] = data
        kwargs["content_type"] = case.content_type
    return client.open(case.path, method=case.method, **kwargs)


def _snapshot(case: Case, response: TestResponse) -> dict[str, Any]:
    headers = [
        # Werkzeug builds Allow from a set: its order changes with the hash seed.
        [name, ", ".join(sorted(value.split(", "))) if name == "Allow" else value]
        for name, value in response.headers
        if name.lower() not in VOLATILE_HEADERS
    ]
    if case.status_only:
        return {"status": response.status_code, "mimetype": response.mimetype}
    body = response.get_data()
    shown: Any
    if response.mimetype == "application/json":
        shown = _without_volatile_members(body.decode("utf-8"))
        if shown != body.decode("utf-8"):
            headers = [
                [name, "<volatile>" if name == "Content-Length" else value]
                for name, value in headers
            ]
    else:
        shown = {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}
    return {"status": response.status_code, "headers": headers, "body": shown}


def _golden() -> dict[str, Any]:
    if not GOLDEN.is_file():
        return {}
    loaded: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    snapshots = {case_id: _snapshot(case, _send(case)) for case_id, case in CASES.items()}
    if RECORD:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(snapshots, indent=1, sort_keys=True) + "\n", "utf-8")
    return snapshots


def test_every_case_is_in_the_golden_file_and_no_other(recorded: dict[str, Any]) -> None:
    assert sorted(_golden()) == sorted(recorded)


@pytest.mark.parametrize("case_id", list(CASES))
def test_wire_matches_the_golden_file(case_id: str, recorded: dict[str, Any]) -> None:
    expected = _golden().get(case_id)
    assert expected is not None, f"{case_id} is not recorded: see the module docstring"
    assert recorded[case_id] == expected
