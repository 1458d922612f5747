"""Send images to the object-detection service and return its JSON answer.

Library use::

    from client.send2api import send2api
    result = send2api("http://127.0.0.1:5000/", token, ["dog.jpg", "cat.png"])

Command line::

    API_TOKEN=... python -m client.send2api dog.jpg cat.png --url http://127.0.0.1:5000/

Only ``requests`` and the standard library are used, so this file can be copied
to a machine that has none of the server's dependencies.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import requests

__all__ = [
    "AUTH_ENV_VAR",
    "AUTH_HEADER",
    "DEFAULT_MAX_RESULTS",
    "DEFAULT_MIN_HEIGHT",
    "DEFAULT_MIN_WIDTH",
    "DEFAULT_NMS_IOU",
    "DEFAULT_SCORE_TH",
    "DEFAULT_TIMEOUT",
    "ApiError",
    "ImageInput",
    "build_payload",
    "main",
    "send2api",
]

ImageInput: TypeAlias = str | os.PathLike[str] | bytes
"""A path to an image file, or the encoded bytes of an image (JPEG, PNG, ...)."""

DEFAULT_SCORE_TH = 0.35
DEFAULT_NMS_IOU = 0.40
DEFAULT_MIN_HEIGHT = 0.03
DEFAULT_MIN_WIDTH = 0.03
DEFAULT_MAX_RESULTS = 20
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


def build_payload(
    images_bytes: Sequence[bytes],
    *,
    score_th: float = DEFAULT_SCORE_TH,
    nms_iou: float = DEFAULT_NMS_IOU,
    min_height: float = DEFAULT_MIN_HEIGHT,
    min_width: float = DEFAULT_MIN_WIDTH,
    max_results: int = DEFAULT_MAX_RESULTS,
) -> dict[str, Any]:
    """Return a new request body: one element per image, in the given order.

    Raises ValueError for no images, an empty image, or a parameter that cannot be
    right whatever the server's limits (fractions outside [0, 1], max_results < 1).
    """
    if len(images_bytes) == 0:
        raise ValueError("no images to send")
    for name, value in (
        ("score_th", score_th),
        ("nms_iou", nms_iou),
        ("min_height", min_height),
        ("min_width", min_width),
    ):
        _check_fraction(name, value)
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise ValueError(f"max_results must be an integer >= 1, got {max_results!r}")

    requests_list: list[dict[str, Any]] = []
    for index, data in enumerate(images_bytes):
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"image {index}: expected bytes, got {type(data).__name__}")
        if not data:
            raise ValueError(f"image {index} is empty")
        requests_list.append(
            {
                "image": {"content": base64.b64encode(data).decode("ascii")},
                # A new features dict per image: callers may edit one element safely.
                "features": [
                    {
                        "score_th": float(score_th),
                        "nms_iou": float(nms_iou),
                        "min_height": float(min_height),
                        "min_width": float(min_width),
                        "maxResults": max_results,
                    }
                ],
            }
        )
    return {"requests": requests_list}


def send2api(
    url: str,
    token: str,
    image: ImageInput | Sequence[ImageInput],
    score_th: float = DEFAULT_SCORE_TH,
    nms_iou: float = DEFAULT_NMS_IOU,
    min_height: float = DEFAULT_MIN_HEIGHT,
    min_width: float = DEFAULT_MIN_WIDTH,
    max_results: int = DEFAULT_MAX_RESULTS,
    timeout: float = DEFAULT_TIMEOUT,
    session: requests.Session | None = None,
) -> dict[str, Any]:
    """POST one or several images to the service at ``url``; return the parsed JSON.

    ``image`` is a path, encoded image bytes, or a sequence of those; each becomes
    one element of ``responses`` in the answer, in the same order. A per-image
    failure comes back as ``{"error": ...}`` inside ``responses``, not as an exception.

    Raises:
        ValueError: bad arguments (no images, empty image, bad token or parameter).
        OSError: an image file cannot be read. Both are raised before anything is sent.
        ApiError: the answer is not 2xx, or its body is not a JSON object.
        requests.RequestException: the service cannot be reached, or ``timeout``
            seconds passed (requests.ConnectionError, requests.Timeout, ...).
    """
    _check_token(token)
    _check_timeout(timeout)
    payload = build_payload(
        _load_images(image),
        score_th=score_th,
        nms_iou=nms_iou,
        min_height=min_height,
        min_width=min_width,
        max_results=max_results,
    )
    return _post(url, token, payload, timeout, session)


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


def _check_timeout(timeout: float) -> None:
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")


def _check_token(token: str) -> None:
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


def _load_images(image: ImageInput | Sequence[ImageInput]) -> list[bytes]:
    """Read every input into bytes, so that a bad file fails before any traffic."""
    if isinstance(image, str | bytes | bytearray | os.PathLike):
        items: list[object] = [image]
    else:
        items = list(image)
    if not items:
        raise ValueError("no images to send")
    return [_load_one(item, index) for index, item in enumerate(items)]


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


def _post(
    url: str,
    token: str,
    payload: dict[str, Any],
    timeout: float,
    session: requests.Session | None,
) -> dict[str, Any]:
    headers = {AUTH_HEADER: token, "Accept": "application/json"}
    if session is None:
        with requests.Session() as own_session:
            response = _send(own_session, url, headers, payload, timeout)
    else:
        response = _send(session, url, headers, payload, timeout)

    body = response.content.decode("utf-8", errors="replace")
    if not 200 <= response.status_code < 300:
        raise ApiError.from_body(response.status_code, body)
    try:
        result = json.loads(body)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise ApiError(response.status_code, "answer is not a JSON object", body=body) from None
    return result


def _send(
    session: requests.Session,
    url: str,
    headers: dict[str, str],
    payload: dict[str, Any],
    timeout: float,
) -> requests.Response:
    # No redirects: requests would turn the POST into a GET, and it forwards custom
    # headers such as the token to whatever host the Location names.
    return session.post(url, json=payload, headers=headers, timeout=timeout, allow_redirects=False)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m client.send2api",
        description="Send images to the object-detection service and print its JSON answer.",
        epilog=(
            f"Exit status: 0 success, 1 the service answered with an error, "
            f"2 bad arguments or the service could not be reached. "
            f"Prefer the {AUTH_ENV_VAR} variable to --token: command lines are visible to "
            f"other users of the machine."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image file(s) to send")
    parser.add_argument("--url", required=True, help="service root, e.g. http://127.0.0.1:5000/")
    parser.add_argument("--token", help=f"API token (default: ${AUTH_ENV_VAR})")
    parser.add_argument("--score-th", type=float, default=DEFAULT_SCORE_TH)
    parser.add_argument("--nms-iou", type=float, default=DEFAULT_NMS_IOU)
    parser.add_argument("--min-height", type=float, default=DEFAULT_MIN_HEIGHT)
    parser.add_argument("--min-width", type=float, default=DEFAULT_MIN_WIDTH)
    parser.add_argument("--max-results", type=int, default=DEFAULT_MAX_RESULTS)
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default: %(default)s)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    token: str | None = args.token or os.environ.get(AUTH_ENV_VAR)
    if not token:
        parser.error(f"no token: pass --token or set {AUTH_ENV_VAR}")  # exits with status 2

    try:
        _check_token(token)
        _check_timeout(args.timeout)
        payload = build_payload(
            _load_images(args.images),
            score_th=args.score_th,
            nms_iou=args.nms_iou,
            min_height=args.min_height,
            min_width=args.min_width,
            max_results=args.max_results,
        )
    except (ValueError, OSError) as exc:
        # Checked here, apart from the request, because requests' errors are OSErrors too.
        parser.error(str(exc))

    try:
        result = _post(args.url, token, payload, args.timeout, None)
    except ApiError as exc:
        print(f"send2api: error: {exc}", file=sys.stderr)
        return 1
    except requests.Timeout:
        print(
            f"send2api: error: no answer from {args.url} within {args.timeout:g} s",
            file=sys.stderr,
        )
        return 2
    except requests.ConnectionError as exc:
        print(f"send2api: error: cannot connect to {args.url}: {exc}", file=sys.stderr)
        return 2
    except requests.RequestException as exc:
        # Malformed URL and the like; the token is in a header, never in these messages.
        print(f"send2api: error: request to {args.url} failed: {exc}", file=sys.stderr)
        return 2

    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
