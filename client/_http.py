"""What every call of the client does first and last, in one place (private to the package):
the token and timeout checks, reading images into bytes before any traffic, one request with
the token header and no redirects, and the error an answer that is not 2xx becomes.

Only ``requests`` and the standard library, as everywhere in client/.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import requests

ImageInput: TypeAlias = str | os.PathLike[str] | bytes
"""A path to an image file, or the encoded bytes of an image (JPEG, PNG, ...)."""

DEFAULT_TIMEOUT = 30.0

AUTH_HEADER = "X-Api-Token"
AUTH_ENV_VAR = "API_TOKEN"

# How much of a non-JSON error body goes into ApiError.message: enough to recognise
# a proxy's error page, short enough for one line on a terminal.
_BODY_SNIPPET_CHARS = 200


class ApiError(Exception):
    """The service (or something in front of it) answered with an error.

    Attributes:
        status_code: the HTTP status of the answer.
        message: the error envelope's message, else the start of the body.
        reason: the envelope's stable snake_case reason code, when it has one.
        body: the whole body as text.
    """

    def __init__(
        self, status_code: int, message: str, reason: str | None = None, body: str = ""
    ) -> None:
        # All four go to Exception so that the error survives pickling (multiprocessing).
        super().__init__(status_code, message, reason, body)
        self.status_code = status_code
        self.message = message
        self.reason = reason
        self.body = body

    def __str__(self) -> str:
        suffix = f" [{self.reason}]" if self.reason else ""
        return f"HTTP {self.status_code}: {self.message}{suffix}"

    @classmethod
    def from_body(cls, status_code: int, body: str) -> ApiError:
        """Build the error from a status and a body, JSON envelope or not."""
        message: str | None = None
        reason: str | None = None
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            error = parsed.get("error")
            if isinstance(error, dict):
                if isinstance(error.get("message"), str):
                    message = error["message"]
                if isinstance(error.get("reason"), str):
                    reason = error["reason"]
        if message is None:
            # Proxies answer with HTML or plain text; keep one short line of it.
            snippet = " ".join(body.split())[:_BODY_SNIPPET_CHARS]
            message = snippet or "(empty body)"
        return cls(status_code, message, reason, body)


def check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


def check_timeout(timeout: float) -> None:
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")


def check_token(token: str) -> None:
    # requests would refuse a bad header value too, but its message quotes the value,
    # and the token must never reach an error message or a log.
    if not (
        isinstance(token, str)
        and token
        and token.isascii()
        and token.isprintable()
        and token == token.strip()
    ):
        raise ValueError(
            "token must be a non-empty string of printable ASCII without surrounding spaces"
        )


def load_images(image: ImageInput | Sequence[ImageInput]) -> list[bytes]:
    """Read every input into bytes, so that a bad file fails before any traffic."""
    if isinstance(image, str | bytes | bytearray | os.PathLike):
        items: list[object] = [image]
    else:
        items = list(image)
    if not items:
        raise ValueError("no images to send")
    return [_load_one(item, index) for index, item in enumerate(items)]


def load_single(image: object) -> bytes:
    if not isinstance(image, str | bytes | bytearray | os.PathLike):
        raise ValueError("this call takes exactly one image (a path or bytes)")
    return _load_one(image, 0)


def _load_one(item: object, index: int) -> bytes:
    if isinstance(item, bytes | bytearray):
        data = bytes(item)
        where = f"image {index} (bytes)"
    elif isinstance(item, str | os.PathLike):
        path = Path(item)
        data = path.read_bytes()  # OSError (missing file, directory, ...) propagates.
        where = f"image {index} ({path})"
    else:
        raise TypeError(f"image {index}: expected a path or bytes, got {type(item).__name__}")
    if not data:
        raise ValueError(f"{where} is empty")
    return data


def json_result(response: requests.Response) -> dict[str, Any]:
    body = response.content.decode("utf-8", errors="replace")
    try:
        result = json.loads(body)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise ApiError(response.status_code, "answer is not a JSON object", body=body) from None
    return result


def send(
    method: str,
    url: str,
    token: str,
    timeout: float,
    session: requests.Session | None,
    **request_kwargs: Any,
) -> requests.Response:
    """One request with the token; raises ApiError for a non-2xx answer (304 excepted)."""
    check_token(token)
    check_timeout(timeout)
    headers = {AUTH_HEADER: token, **request_kwargs.pop("headers", {})}
    owned = session is None
    active = requests.Session() if session is None else session
    try:
        response = active.request(
            method, url, headers=headers, timeout=timeout, allow_redirects=False, **request_kwargs
        )
    finally:
        if owned:
            active.close()
    if not (200 <= response.status_code < 300 or response.status_code == 304):
        raise ApiError.from_body(
            response.status_code, response.content.decode("utf-8", errors="replace")
        )
    return response
