"""API tokens: where a caller may present one, and the constant-time check."""

from __future__ import annotations

import pytest

from auth import check_token, presented_token
from errors import Unauthenticated


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({}, {}, None),  # nothing
        ({"X-Api-Token": "a"}, {}, "a"),  # our header
        ({"Authorization": "Bearer  b "}, {}, "b"),  # bearer, spaces trimmed
        ({"Authorization": "bearer c"}, {}, "c"),  # the scheme is case-insensitive
        ({"Authorization": "Basic d"}, {}, None),  # not a bearer token
        ({"Authorization": "Bearer "}, {}, None),  # empty bearer
        ({"x-goog-api-key": "e"}, {}, "e"),  # Google's header
        ({}, {"key": "f"}, "f"),  # Google's query parameter
        ({"X-Api-Token": "g"}, {"key": "h"}, "g"),  # a header wins over the query
    ],
)
def test_presented_token(
    headers: dict[str, str], query: dict[str, str], expected: str | None
) -> None:
    assert presented_token(headers, query) == expected


@pytest.mark.parametrize(
    ("presented", "ok"),
    [
        (None, False),  # missing
        ("", False),  # empty
        ("wrong", False),  # wrong
        ("one", True),  # first token
        ("two", True),  # second token (rotation)
        ("one ", False),  # no trimming at comparison time
        ("\u00f6ne", False),  # non-ASCII: must not raise TypeError
        ("\udcff", False),  # a lone surrogate from a badly decoded header
    ],
)
def test_check_token(presented: str | None, ok: bool) -> None:
    if ok:
        check_token(presented, ["one", "two"])
    else:
        with pytest.raises(Unauthenticated):
            check_token(presented, ["one", "two"])
