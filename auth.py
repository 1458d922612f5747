"""API tokens: where a caller may present one, the constant-time check against the accepted
ones, which says whose token it is, and the routes a deployment opens to callers without one.

Each accepted token belongs to an owner (`config.ApiToken`): `API_TOKENS=alice:s3cret,bob:t0k`
names them, a bare token belongs to the owner `default`. Several tokens may share an owner,
so that a token can be rotated without downtime and without orphaning what the owner stored.

Every place a client of any protocol sends its key is read here, from plain mappings (this
module knows no Flask): the `X-Api-Token`, `x-goog-api-key` and `doods-auth-key` headers,
`Authorization: Bearer`, the query's `key` and `api_key`, and a body field (`api_key` in
DeepStack's form and Roboflow's JSON) that the route names.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from config import ApiToken, IpNetwork
from errors import Unauthenticated

# Headers that carry the token itself, in the order they are looked at.
TOKEN_HEADERS = ("x-api-token", "x-goog-api-key", "doods-auth-key")
# Query parameters that carry the token (Google's `key`, Roboflow's `api_key`).
TOKEN_QUERY_PARAMETERS = ("key", "api_key")


def presented_token(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body_fields: Mapping[str, Any] | None = None,
    body_field: str | None = None,
) -> str | None:
    """The token the caller sent, from the first of the accepted places that has one:
    the token headers, `Authorization: Bearer`, the query, then `body_fields[body_field]`
    when the route names such a field (a form field or a JSON member)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in TOKEN_HEADERS:
        if lowered.get(name):
            return lowered[name]
    scheme, _, credentials = (lowered.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    for name in TOKEN_QUERY_PARAMETERS:
        if query.get(name):
            return query[name]
    if body_fields is not None and body_field is not None:
        value = body_fields.get(body_field)
        if isinstance(value, str) and value:
            return value
    return None


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


# --- Open routes: who the client is, and whether it may call without a token


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    # An IPv4 peer on a dual-stack socket reads ::ffff:a.b.c.d; networks are written in IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Sequence[IpNetwork]
) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[IpNetwork]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of the client: the peer's, unless the peer is a trusted proxy, in which
    case X-Forwarded-For is read from the right, past every trusted proxy, and the first
    address that is not one is the client (the entries left of it are whatever the client
    chose to send). None when no address can be read."""
    address = _address(peer or "")
    if address is None or not _within(address, trusted_proxies):
        return address
    hops = [hop for hop in (forwarded_for or "").split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_address = _address(hop)
        if hop_address is None:
            return None
        if not _within(hop_address, trusted_proxies):
            return hop_address
    # Every hop is a trusted proxy (or there are none): the request comes from the proxies.
    return address


def open_route_allowed(
    client: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    networks: Sequence[IpNetwork],
) -> bool:
    """May this client call an open route without a token? Any client when no networks are
    configured, else only one inside them."""
    if not networks:
        return True
    return client is not None and _within(client, networks)
