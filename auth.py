"""API tokens: where a caller may present one, and the constant-time check against the
accepted ones (several, so that a token can be rotated without downtime)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from errors import Unauthenticated


def presented_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token the caller sent, from the first of the accepted places that has one."""
    lowered = {name.lower(): value for name, value in headers.items()}
    token = lowered.get("x-api-token") or lowered.get("x-goog-api-key")
    if token:
        return token
    scheme, _, credentials = (lowered.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return query.get("key") or None


def check_token(presented: str | None, accepted: Sequence[str]) -> None:
    """Constant-time comparison against every accepted token."""
    if not presented:
        raise Unauthenticated(
            "missing API token: send it in the X-Api-Token header, as "
            "'Authorization: Bearer <token>', as x-goog-api-key or as ?key="
        )
    # compare_digest raises TypeError on non-ASCII str; bytes work for any header value.
    presented_bytes = presented.encode("utf-8", "surrogateescape")
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(presented_bytes, token.encode("utf-8"))
    if not matched:
        raise Unauthenticated("invalid API token")
