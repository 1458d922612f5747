"""API tokens: where a caller may present one, and the constant-time check."""

from __future__ import annotations

import pytest

from auth import check_token, presented_token
from errors import Unauthenticated


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        pytest.param({}, {}, None, id="nothing"),
        pytest.param({"X-Api-Token": "a"}, {}, "a", id="our-header"),
        # bearer, spaces trimmed
        pytest.param({"Authorization": "Bearer  b "}, {}, "b", id="bearer-trimmed"),
        # the scheme is case-insensitive
        pytest.param({"Authorization": "bearer c"}, {}, "c", id="bearer-any-case"),
        # not a bearer token
        pytest.param({"Authorization": "Basic d"}, {}, None, id="basic-is-not-bearer"),
        pytest.param({"Authorization": "Bearer "}, {}, None, id="empty-bearer"),
        # Google's header
        pytest.param({"x-goog-api-key": "e"}, {}, "e", id="google-header"),
        # Google's query parameter
        pytest.param({}, {"key": "f"}, "f", id="google-query-key"),
        # a header wins over the query
        pytest.param({"X-Api-Token": "g"}, {"key": "h"}, "g", id="header-wins-over-query"),
    ],
)
def test_presented_token(
    headers: dict[str, str], query: dict[str, str], expected: str | None
) -> None:
    assert presented_token(headers, query) == expected


@pytest.mark.parametrize(
    ("presented", "ok"),
    [
        pytest.param(None, False, id="missing"),
        pytest.param("", False, id="empty"),
        pytest.param("wrong", False, id="wrong"),
        pytest.param("one", True, id="first-token"),
        pytest.param("two", True, id="second-token-rotation"),
        # no trimming at comparison time
        pytest.param("one ", False, id="not-trimmed"),
        # non-ASCII: must not raise TypeError
        pytest.param("\u00f6ne", False, id="non-ascii"),
        # a lone surrogate from a badly decoded header
        pytest.param("\udcff", False, id="lone-surrogate"),
    ],
)
def test_check_token(presented: str | None, ok: bool) -> None:
    if ok:
        check_token(presented, ["one", "two"])
    else:
        with pytest.raises(Unauthenticated):
            check_token(presented, ["one", "two"])
