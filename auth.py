"""API tokens: where a caller may present one, and the constant-time check against the
accepted ones, which says whose token it is.

Each accepted token belongs to an owner (`config.ApiToken`): `API_TOKENS=alice:s3cret,bob:t0k`
names them, a bare token belongs to the owner `default`. Several tokens may share an owner,
so that a token can be rotated without downtime and without orphaning what the owner stored.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from config import ApiToken
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


def check_token(presented: str | None, accepted: Sequence[ApiToken]) -> str:
    """The owner of the presented token. Compared in constant time with every accepted token,
    so neither the time taken nor the order of the tokens tells which one matched."""
    if not presented:
        raise Unauthenticated(
            "missing API token: send it in the X-Api-Token header, as "
            "'Authorization: Bearer <token>', as x-goog-api-key or as ?key="
        )
    # compare_digest raises TypeError on non-ASCII str; bytes work for any header value.
    presented_bytes = presented.encode("utf-8", "surrogateescape")
    owner: str | None = None
    for token in accepted:
        if hmac.compare_digest(presented_bytes, token.secret.encode("utf-8")) and owner is None:
            owner = token.owner
    if owner is None:
        raise Unauthenticated("invalid API token")
    return owner
