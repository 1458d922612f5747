"""The protocol modules' own rules, as plain functions (their HTTP behaviour is in
tests/test_http.py and tests/test_inputs.py)."""

from __future__ import annotations

from typing import Any

import pytest

from detection_types import DetectionParams
from dialects import google
from dialects.native import requested_output
from errors import InvalidParameter
from utils_serve import parse_detection_params

DEFAULTS = DetectionParams()

# ------------------------------------------------------------------------------- google


@pytest.mark.parametrize(
    ("feature", "max_results"),
    [
        pytest.param({"maxResults": 0}, DEFAULTS.max_results, id="zero-is-unset"),
        pytest.param({"max_results": 0.0}, DEFAULTS.max_results, id="zero-float-is-unset"),
        pytest.param({"maxResults": 3}, 3, id="other-values-kept"),
    ],
)
def test_google_zero_max_results_is_the_default(feature: dict[str, Any], max_results: int) -> None:
    element = {"features": [{"type": "OBJECT_LOCALIZATION", **feature}]}
    chosen = google.object_localization_feature(element)
    assert parse_detection_params(chosen, DEFAULTS).max_results == max_results


def test_native_zero_max_results_is_honoured() -> None:
    chosen = google.first_feature({"features": [{"maxResults": 0}]})
    assert parse_detection_params(chosen, DEFAULTS).max_results == 0


# ------------------------------------------------------------------------------- native


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("\u00b2", id="superscript-two"),
        pytest.param("\u0661", id="arabic-indic-one"),
        pytest.param("1\u00b2", id="digit-and-superscript"),
    ],
)
def test_non_ascii_digits_are_not_a_max_side(text: str) -> None:
    # str.isdigit() accepts these, int() does not: they must be a 400, never a 500.
    with pytest.raises(InvalidParameter):
        requested_output({"format": "png", "max_side": text}, None)
