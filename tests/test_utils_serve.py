"""Table-driven tests of the protocol-neutral core: detection parameters, base64, bodies and
the class filter."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest

from detection_types import DetectionParams
from errors import (
    InvalidBase64,
    InvalidParameter,
    PayloadTooLarge,
)
from utils_serve import (
    decode_base64,
    is_json_mimetype,
    parse_class_filter,
    parse_detection_params,
    read_body,
)

DEFAULTS = DetectionParams()

# ------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        # nothing given: the server defaults
        ({}, DEFAULTS),
        # None is "not given"
        ({"score_th": None, "maxResults": None}, DEFAULTS),
        # explicit zeros are honoured, never replaced by the defaults
        (
            {"score_th": 0, "nms_iou": 0, "min_height": 0, "min_width": 0, "maxResults": 0},
            DetectionParams(0.0, 0.0, 0.0, 0.0, 0),
        ),
        # the upper bounds are inclusive
        (
            {"score_th": 1, "nms_iou": 1.0, "min_height": 1, "min_width": 1, "maxResults": 1000},
            DetectionParams(1.0, 1.0, 1.0, 1.0, 1000),
        ),
        # the existing clients' spelling
        (
            {
                "score_th": 0.35,
                "nms_iou": 0.4,
                "min_height": 0.05,
                "min_width": 0.06,
                "maxResults": 7,
            },
            DetectionParams(0.35, 0.4, 0.05, 0.06, 7),
        ),
        # camelCase / snake_case alternatives
        (
            {"scoreTh": 0.5, "nmsIou": 0.6, "minHeight": 0.1, "minWidth": 0.2, "max_results": 3},
            DetectionParams(0.5, 0.6, 0.1, 0.2, 3),
        ),
        # an integral float is a valid maxResults
        ({"maxResults": 5.0}, DetectionParams(max_results=5)),
        # unknown keys (Google's "type", "model") are not parameters
        ({"type": "OBJECT_LOCALIZATION", "model": "builtin/stable"}, DEFAULTS),
    ],
)
def test_parse_detection_params(feature: dict[str, Any], expected: DetectionParams) -> None:
    assert parse_detection_params(feature, DEFAULTS) == expected


@pytest.mark.parametrize(
    ("feature", "field"),
    [
        ({"score_th": 1.01}, "score_th"),  # above the range
        ({"score_th": -0.01}, "score_th"),  # below the range
        ({"score_th": float("nan")}, "score_th"),  # NaN passes naive range checks
        ({"nms_iou": float("inf")}, "nms_iou"),  # infinite
        ({"score_th": "0.3"}, "score_th"),  # a string is not a number here
        ({"min_height": True}, "min_height"),  # bool is an int in Python, not a threshold
        ({"min_width": {}}, "min_width"),  # wrong type
        ({"maxResults": 1.5}, "maxResults"),  # not an integer
        ({"maxResults": 1001}, "maxResults"),  # above the cap
        ({"maxResults": -1}, "maxResults"),  # negative
        ({"score_th": 0.3, "scoreTh": 0.3}, "score_th"),  # both spellings at once
    ],
)
def test_parse_detection_params_errors(feature: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParameter, match=field):
        parse_detection_params(feature, DEFAULTS)


# ------------------------------------------------------------------------------- base64

PAYLOAD = bytes(range(256)) * 3 + b"\xfb\xff"  # has bytes that differ between alphabets
STANDARD = base64.b64encode(PAYLOAD).decode()
URL_SAFE = base64.urlsafe_b64encode(PAYLOAD).decode()


@pytest.mark.parametrize(
    "content",
    [
        STANDARD,  # standard alphabet, padded
        URL_SAFE,  # URL-safe alphabet
        STANDARD.rstrip("="),  # padding missing
        URL_SAFE.rstrip("="),  # URL-safe and unpadded
        "data:image/png;base64," + STANDARD,  # data URI prefix
        "data:image/jpeg;charset=utf-8;base64," + STANDARD,  # data URI with a parameter
        "\n".join(STANDARD[i : i + 76] for i in range(0, len(STANDARD), 76)),  # MIME lines
        STANDARD.encode(),  # bytes in, as form fields may give
    ],
)
def test_decode_base64_accepts(content: str | bytes) -> None:
    assert decode_base64(content) == PAYLOAD


@pytest.mark.parametrize(
    "content",
    [
        "",  # empty
        "   \n",  # only whitespace
        "abcde",  # impossible length
        "ab$d",  # a character of neither alphabet
        "ab=d",  # padding in the middle
        "d\u00e9f0",  # non-ASCII
        "data:image/png,plain-text",  # a data URI that is not base64
        "data:image/png;base64,",  # a data URI with nothing in it
    ],
)
def test_decode_base64_rejects(content: str) -> None:
    with pytest.raises(InvalidBase64):
        decode_base64(content)


# ------------------------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    ("data", "content_length", "limit", "ok"),
    [
        (b"", 0, 10, True),  # empty
        (b"x" * 10, 10, 10, True),  # exactly the limit
        (b"x" * 11, 11, 10, False),  # one over, announced
        (b"x" * 11, None, 10, False),  # one over, chunked (no Content-Length)
        (b"x" * 5, 500, 10, False),  # an announced length over the limit is refused unread
        (b"x" * (3 << 20), None, 4 << 20, True),  # several reads
    ],
)
def test_read_body(data: bytes, content_length: int | None, limit: int, ok: bool) -> None:
    if ok:
        assert read_body(io.BytesIO(data), content_length, limit) == data
    else:
        with pytest.raises(PayloadTooLarge):
            read_body(io.BytesIO(data), content_length, limit)


@pytest.mark.parametrize(
    ("mimetype", "ok"),
    [
        ("application/json", True),
        ("application/vnd.api+json", True),
        ("text/json", False),
        ("text/plain", False),
        ("", False),
    ],
)
def test_is_json_mimetype(mimetype: str, ok: bool) -> None:
    assert is_json_mimetype(mimetype) is ok


# ------------------------------------------------------------------------------- class filter


@pytest.mark.parametrize("text", ["\u00b2", "\u0661", "1\u00b2"])
def test_non_ascii_digits_are_not_class_ids(text: str) -> None:
    # str.isdigit() accepts these, int() does not: they must be a 400, never a 500.
    with pytest.raises(InvalidParameter):
        parse_class_filter([text], ["a", "b"])
