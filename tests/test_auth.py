"""API tokens: where a caller may present one, and the constant-time check."""

from __future__ import annotations

import pytest

from auth import check_token, presented_token
from config import ApiToken
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


ACCEPTED = (ApiToken("one"), ApiToken("two"), ApiToken("three", "alice"), ApiToken("four", "alice"))


@pytest.mark.parametrize(
    ("presented", "owner"),
    [
        pytest.param(None, None, id="missing"),
        pytest.param("", None, id="empty"),
        pytest.param("wrong", None, id="wrong"),
        pytest.param("one", "default", id="first-token"),
        pytest.param("two", "default", id="second-token-rotation"),
        pytest.param("four", "alice", id="named-owner-second-token"),
        # no trimming at comparison time
        pytest.param("one ", None, id="not-trimmed"),
        # non-ASCII: must not raise TypeError
        pytest.param("\u00f6ne", None, id="non-ascii"),
        # a lone surrogate from a badly decoded header
        pytest.param("\udcff", None, id="lone-surrogate"),
    ],
)
def test_check_token(presented: str | None, owner: str | None) -> None:
    if owner is not None:
        assert check_token(presented, ACCEPTED) == owner
    else:
        with pytest.raises(Unauthenticated):
            check_token(presented, ACCEPTED)


@pytest.mark.parametrize(
    ("entry", "token"),
    [
        pytest.param("s3cret", ApiToken("s3cret", "default"), id="bare-token"),
        pytest.param("alice:s3cret", ApiToken("s3cret", "alice"), id="owner-and-token"),
        pytest.param("alice:a:b", ApiToken("a:b", "alice"), id="colon-in-token"),
        pytest.param("not an owner:x", ApiToken("not an owner:x"), id="bad-owner-is-bare"),
    ],
)
def test_api_token_entries(entry: str, token: ApiToken) -> None:
    assert ApiToken.parse(entry) == token


def test_api_token_repr_hides_the_secret() -> None:
    assert "s3cret" not in repr(ApiToken("s3cret", "alice"))
