"""Keyset page tokens for image lists: opaque, signed with HMAC-SHA256, bound to the query.

A token holds the position of the last image of a page (uploaded-at and id, the list's sort
key) and a digest of the filters it was made for; the signature makes a forged position or a
token reused with other filters a 400. The key comes from REPO_PAGE_TOKEN_KEY, or else from
`DATA_DIR/page-token.key`, made with 32 random bytes on first use and shared by every worker
and instance on that DATA_DIR (so a token works whichever one answers the next page).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from errors import InvalidPageToken

KEY_FILE: Final = "page-token.key"
KEY_BYTES: Final = 32
MAX_TOKEN_CHARS: Final = 512


def page_token_key(secret: str | None, data_dir: Path) -> bytes:
    """The signing key: derived from the configured secret, else the one kept in data_dir."""
    if secret is not None:
        return hashlib.sha256(b"repository page token|" + secret.encode()).digest()
    path = data_dir / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    if len(key) == KEY_BYTES:
        return key
    # Written aside and linked into place: two workers starting at once agree on one key.
    data_dir.mkdir(parents=True, exist_ok=True)
    temp = data_dir / f".{KEY_FILE}.{secrets.token_hex(6)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise RuntimeError(f"{path} does not hold a {KEY_BYTES}-byte key: remove it")
    return key


@dataclass(frozen=True)
class Position:
    """Where a page ended, in the list's order (newest first, then id descending)."""

    uploaded_at: datetime
    image_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(key: bytes, position: Position, query_digest: str) -> str:
    payload = json.dumps(
        {"u": position.uploaded_at.isoformat(), "i": position.image_id, "q": query_digest},
        separators=(",", ":"),
    ).encode()
    signature = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


def decode(key: bytes, token: str, query_digest: str) -> Position:
    """The position a token holds; InvalidPageToken when it was not made by this service for
    this query."""
    invalid = InvalidPageToken("page_token is not valid for this query: start from the first page")
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise invalid
    payload_text, signature_text = token.split(".")
    try:
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except (binascii.Error, ValueError):
        raise invalid from None
    if not hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest(), signature):
        raise invalid
    try:
        fields = json.loads(payload)
        position = Position(datetime.fromisoformat(fields["u"]), str(fields["i"]))
        digest = fields["q"]
    except (ValueError, KeyError, TypeError):
        raise invalid from None
    if digest != query_digest or position.uploaded_at.tzinfo is None:
        raise invalid
    return position
