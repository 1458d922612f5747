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
        pytest.param({}, DEFAULTS, id="defaults"),
        # None is "not given"
        pytest.param({"score_th": None, "maxResults": None}, DEFAULTS, id="none-is-not-given"),
        # explicit zeros are honoured, never replaced by the defaults
        pytest.param(
            {"score_th": 0, "nms_iou": 0, "min_height": 0, "min_width": 0, "maxResults": 0},
            DetectionParams(0.0, 0.0, 0.0, 0.0, 0),
            id="zeros-honoured",
        ),
        # the upper bounds are inclusive
        pytest.param(
            {"score_th": 1, "nms_iou": 1.0, "min_height": 1, "min_width": 1, "maxResults": 1000},
            DetectionParams(1.0, 1.0, 1.0, 1.0, 1000),
            id="upper-bounds-inclusive",
        ),
        # the existing clients' spelling
        pytest.param(
            {
                "score_th": 0.35,
                "nms_iou": 0.4,
                "min_height": 0.05,
                "min_width": 0.06,
                "maxResults": 7,
            },
            DetectionParams(0.35, 0.4, 0.05, 0.06, 7),
            id="clients-spelling",
        ),
        # camelCase / snake_case alternatives
        pytest.param(
            {"scoreTh": 0.5, "nmsIou": 0.6, "minHeight": 0.1, "minWidth": 0.2, "max_results": 3},
            DetectionParams(0.5, 0.6, 0.1, 0.2, 3),
            id="camel-and-snake-case",
        ),
        # an integral float is a valid maxResults
        pytest.param(
            {"maxResults": 5.0}, DetectionParams(max_results=5), id="integral-float-max-results"
        ),
        # unknown keys (Google's "type", "model") are not parameters
        pytest.param(
            {"type": "OBJECT_LOCALIZATION", "model": "builtin/stable"},
            DEFAULTS,
            id="unknown-keys-ignored",
        ),
    ],
)
def test_parse_detection_params(feature: dict[str, Any], expected: DetectionParams) -> None:
    assert parse_detection_params(feature, DEFAULTS) == expected


@pytest.mark.parametrize(
    ("feature", "field"),
    [
        # above the range
        pytest.param({"score_th": 1.01}, "score_th", id="score-above-range"),
        # below the range
        pytest.param({"score_th": -0.01}, "score_th", id="score-below-range"),
        # NaN passes naive range checks
        pytest.param({"score_th": float("nan")}, "score_th", id="score-nan"),
        # infinite
        pytest.param({"nms_iou": float("inf")}, "nms_iou", id="iou-infinite"),
        # a string is not a number here
        pytest.param({"score_th": "0.3"}, "score_th", id="score-string"),
        # bool is an int in Python, not a threshold
        pytest.param({"min_height": True}, "min_height", id="height-bool"),
        # wrong type
        pytest.param({"min_width": {}}, "min_width", id="width-object"),
        # not an integer
        pytest.param({"maxResults": 1.5}, "maxResults", id="max-results-fraction"),
        # above the cap
        pytest.param({"maxResults": 1001}, "maxResults", id="max-results-above-cap"),
        # negative
        pytest.param({"maxResults": -1}, "maxResults", id="max-results-negative"),
        # both spellings at once
        pytest.param({"score_th": 0.3, "scoreTh": 0.3}, "score_th", id="both-spellings"),
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
        # standard alphabet, padded
        pytest.param(STANDARD, id="standard"),
        # URL-safe alphabet
        pytest.param(URL_SAFE, id="url-safe"),
        # padding missing
        pytest.param(STANDARD.rstrip("="), id="unpadded"),
        # URL-safe and unpadded
        pytest.param(URL_SAFE.rstrip("="), id="url-safe-unpadded"),
        # data URI prefix
        pytest.param("data:image/png;base64," + STANDARD, id="data-uri"),
        # data URI with a parameter
        pytest.param(
            "data:image/jpeg;charset=utf-8;base64," + STANDARD, id="data-uri-with-parameter"
        ),
        pytest.param(
            "\n".join(STANDARD[i : i + 76] for i in range(0, len(STANDARD), 76)), id="mime-lines"
        ),
        # bytes in, as form fields may give
        pytest.param(STANDARD.encode(), id="bytes"),
    ],
)
def test_decode_base64_accepts(content: str | bytes) -> None:
    assert decode_base64(content) == PAYLOAD


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("", id="empty"),
        pytest.param("   \n", id="only-whitespace"),
        pytest.param("abcde", id="impossible-length"),
        # a character of neither alphabet
        pytest.param("ab$d", id="foreign-character"),
        pytest.param("ab=d", id="padding-in-the-middle"),
        pytest.param("d\u00e9f0", id="non-ascii"),
        # a data URI that is not base64
        pytest.param("data:image/png,plain-text", id="data-uri-not-base64"),
        # a data URI with nothing in it
        pytest.param("data:image/png;base64,", id="data-uri-empty"),
    ],
)
def test_decode_base64_rejects(content: str) -> None:
    with pytest.raises(InvalidBase64):
        decode_base64(content)


# ------------------------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    ("data", "content_length", "limit", "ok"),
    [
        pytest.param(b"", 0, 10, True, id="empty"),
        pytest.param(b"x" * 10, 10, 10, True, id="exactly-the-limit"),
        pytest.param(b"x" * 11, 11, 10, False, id="one-over-announced"),
        # one over, chunked (no Content-Length)
        pytest.param(b"x" * 11, None, 10, False, id="one-over-chunked"),
        # an announced length over the limit is refused unread
        pytest.param(b"x" * 5, 500, 10, False, id="announced-over-refused-unread"),
        pytest.param(b"x" * (3 << 20), None, 4 << 20, True, id="several-reads"),
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
        pytest.param("application/json", True, id="json"),
        pytest.param("application/vnd.api+json", True, id="vendor-json"),
        pytest.param("text/json", False, id="text-json"),
        pytest.param("text/plain", False, id="text-plain"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_json_mimetype(mimetype: str, ok: bool) -> None:
    assert is_json_mimetype(mimetype) is ok


# ------------------------------------------------------------------------------- class filter


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("\u00b2", id="superscript-two"),
        pytest.param("\u0661", id="arabic-indic-one"),
        pytest.param("1\u00b2", id="digit-and-superscript"),
    ],
)
def test_non_ascii_digits_are_not_class_ids(text: str) -> None:
    # str.isdigit() accepts these, int() does not: they must be a 400, never a 500.
    with pytest.raises(InvalidParameter):
        parse_class_filter([text], ["a", "b"])
