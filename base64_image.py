"""Base64 image content as clients send it: standard or URL-safe, padding optional, line
breaks ignored, an optional `data:...;base64,` prefix."""

from __future__ import annotations

import base64
import binascii
import re

from errors import InvalidBase64

_DATA_URI = re.compile(r"^data:[\w.+/-]*(;[\w=.+-]+)*;base64,", re.IGNORECASE)
_URL_SAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_WHITESPACE = b" \t\r\n"


def decode_base64(content: str | bytes) -> bytes:
    """Standard or URL-safe base64, padding optional, an optional `data:...;base64,` prefix."""
    if isinstance(content, str):
        match = _DATA_URI.match(content)
        if match:
            content = content[match.end() :]
        elif content.startswith("data:"):
            raise InvalidBase64("a data URI must be base64 encoded (data:<type>;base64,...)")
        try:
            raw = content.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidBase64("image content is not valid base64") from None
    else:
        raw = content
    # MIME-style line breaks are common in hand-made payloads; they carry no data.
    raw = raw.translate(_URL_SAFE_TO_STANDARD, _WHITESPACE)
    if not raw:
        raise InvalidBase64("image content is empty")
    if len(raw) % 4 == 1:
        raise InvalidBase64("image content is not valid base64 (bad length)")
    raw = raw.rstrip(b"=")
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise InvalidBase64("image content is not valid base64") from None
