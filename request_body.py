"""Request bodies: reading one whole within the limit, and parsing a JSON one."""

from __future__ import annotations

import json
from typing import IO, Any

from errors import ApiError, InvalidBody, InvalidJson, PayloadTooLarge


def read_body(stream: IO[bytes], content_length: int | None, max_bytes: int) -> bytes:
    """Read the whole body, refusing more than `max_bytes` (413) and a body shorter than its
    Content-Length (400: it was cut off, never processed as if complete). A chunked body has
    no Content-Length, and Werkzeug would silently truncate it at its limit; reading one byte
    past the limit ourselves turns that into a 413. A body the server cannot read (malformed
    chunked framing, a connection closed mid-body) is a 400."""
    if content_length is not None and content_length > max_bytes:
        raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    received = 0
    try:
        if content_length is not None:
            # One read into one buffer: a raw image body is then decoded without another copy.
            first = stream.read(content_length)
            if len(first) == content_length:
                return first
            chunks.append(first)
            received = len(first)
        while True:
            chunk = stream.read(min(1 << 20, max_bytes + 1 - received))
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
    except ApiError:
        raise
    except Exception as exc:  # the WSGI server's own errors (gunicorn: InvalidChunkSize, ...)
        raise InvalidBody(
            "the request body could not be read: malformed chunked framing or cut off",
            detail=type(exc).__name__,
        ) from None
    if content_length is not None and received != content_length:
        raise InvalidBody(
            f"the body has {received} bytes, fewer than its Content-Length of {content_length}"
        )
    return b"".join(chunks)


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def parse_json_body(body: bytes) -> Any:
    if not body:
        raise InvalidJson("the request body is empty; send a JSON object")
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidJson("the JSON body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise InvalidJson("the request body is not valid JSON", detail=str(exc)) from None
