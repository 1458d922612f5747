"""What the gunicorn worker (gunicorn_worker.py) needs to know of HTTP/1.1 framing without
gunicorn's parser: where a chunked body that arrives piece by piece ends, whether a head holds
a bare LF, and its own answers in the service's JSON envelope (protocol errors, 408). Pure
functions of bytes; gunicorn's parser still parses and validates every request it is handed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gunicorn.http import errors as gerrors

# Chunk-size lines and trailers longer than this are left for gunicorn's chunk reader to refuse.
MAX_CHUNK_LINE = 8190
MAX_TRAILER_BYTES = 8190 * 32
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
# Google's status names (dialects/google.py STATUS_BY_HTTP) for what the front answers itself.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    408: "DEADLINE_EXCEEDED",
    413: "INVALID_ARGUMENT",
    414: "INVALID_ARGUMENT",
    417: "FAILED_PRECONDITION",
    431: "INVALID_ARGUMENT",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
}
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}


def error_answer(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response in the service's JSON error envelope, closing the connection
    (the shape of `dialects.google.error_envelope`; tests/test_slow_clients.py compares them)."""
    envelope = {
        "error": {
            "code": status,
            "message": message,
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
            "reason": code,
        }
    }
    body = json.dumps(envelope, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def protocol_error(exc: BaseException) -> tuple[int, str, str]:
    """Status, stable code and public message for an error gunicorn's parser raised; the
    message never echoes the request's bytes (they may hold a token). The codes are those of
    errors.py: `bad_request` for the head, `invalid_body` for the body, whatever the status."""
    table: tuple[tuple[Any, int, str, str], ...] = (
        (gerrors.LimitRequestLine, 414, "bad_request", "the request line is too long"),
        (
            gerrors.LimitRequestHeaders,
            431,
            "bad_request",
            "the request's header fields are too large or too many",
        ),
        (
            gerrors.UnsupportedTransferCoding,
            501,
            "bad_request",
            "unsupported Transfer-Encoding; send the body with Content-Length or chunked",
        ),
        (gerrors.ExpectationFailed, 417, "bad_request", "only Expect: 100-continue"),
        (gerrors.ForbiddenProxyRequest, 403, "bad_request", "request forbidden"),
        (
            (
                gerrors.InvalidChunkSize,
                gerrors.ChunkMissingTerminator,
                gerrors.InvalidChunkExtension,
            ),
            400,
            "invalid_body",
            "the chunked body is malformed",
        ),
        (gerrors.NoMoreData, 400, "bad_request", "the request ended before it was whole"),
        (gerrors.InvalidRequestLine, 400, "bad_request", "the request line is malformed"),
        (gerrors.InvalidRequestMethod, 400, "bad_request", "the request method is malformed"),
        (gerrors.InvalidHTTPVersion, 400, "bad_request", "unsupported HTTP version"),
        (
            (gerrors.InvalidHeader, gerrors.InvalidHeaderName, gerrors.ObsoleteFolding),
            400,
            "bad_request",
            "a header field is malformed or not allowed",
        ),
        (gerrors.InvalidSchemeHeaders, 400, "bad_request", "contradictory scheme headers"),
        (gerrors.InvalidProxyLine, 400, "bad_request", "the PROXY line is malformed"),
    )
    for kinds, status, code, message in table:
        if isinstance(exc, kinds):
            return status, code, message
    return 500, "internal", "internal error"


@dataclass
class ChunkScan:
    """How far a chunked body's framing has been followed (to know when it is complete)."""

    pos: int = 0
    decoded: int = 0


# What the scan of a body says: not complete yet, or hand it to the reader now (malformed or
# over the limit: gunicorn's reader and the application then say which), or its end offset.
MORE = -1
NOW = -2


def chunked_body_end(data: bytearray, scan: ChunkScan, max_body: int) -> int:
    """Where a chunked body that starts at data[0] ends, `MORE` or `NOW`. Resumable: `scan`
    keeps the position, so a body sent a byte at a time is scanned once."""
    while True:
        eol = data.find(b"\r\n", scan.pos)
        if eol < 0:
            return NOW if len(data) - scan.pos > MAX_CHUNK_LINE else MORE
        size_text = bytes(data[scan.pos : eol]).split(b";", 1)[0].rstrip(b" \t")
        if not size_text or len(size_text) > 16 or not set(size_text) <= _HEX_DIGITS:
            return NOW
        size = int(size_text, 16)
        start = eol + 2
        if size == 0:
            if len(data) - start < 2:
                return MORE
            if data[start : start + 2] == b"\r\n":
                return start + 2
            end = data.find(b"\r\n\r\n", start)
            if end < 0:
                return NOW if len(data) - start > MAX_TRAILER_BYTES else MORE
            return end + 4
        allowed = max_body - scan.decoded
        if size > allowed:
            # Over the limit: once more than the limit is here, the application's 413 follows.
            return NOW if len(data) - start > allowed else MORE
        if len(data) < start + size + 2:
            return MORE
        scan.decoded += size
        scan.pos = start + size + 2


def has_bare_lf(data: bytearray, start: int, stop: int) -> bool:
    """Whether data[start:stop] holds an LF that no CR precedes."""
    index = data.find(b"\n", start, stop)
    while index >= 0:
        if index == 0 or data[index - 1] != 0x0D:
            return True
        index = data.find(b"\n", index + 1, stop)
    return False
