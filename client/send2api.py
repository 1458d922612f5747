"""Send images to the object-detection service and return its JSON answer.

Library use::

    from client.send2api import send2api
    result = send2api("http://127.0.0.1:5000/", token, ["dog.jpg", "cat.png"])

Command line::

    API_TOKEN=... python -m client.send2api dog.jpg cat.png --url http://127.0.0.1:5000/

The image repository (``url`` is the service root)::

    image = upload("http://127.0.0.1:5000/", token, "dog.jpg")["image"]
    page = list_images("http://127.0.0.1:5000/", token, label=["dog"], min_score=0.5)
    details = get_image("http://127.0.0.1:5000/", token, image["id"])
    delete_image("http://127.0.0.1:5000/", token, image["id"])

    python -m client.send2api upload dog.jpg --url http://127.0.0.1:5000/
    python -m client.send2api list --label dog --url http://127.0.0.1:5000/
    python -m client.send2api get ID [--original OUT] --url http://127.0.0.1:5000/
    python -m client.send2api delete ID --url http://127.0.0.1:5000/

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
    "annotate",
    "build_payload",
    "delete_image",
    "download_image",
    "get_image",
    "list_images",
    "main",
    "send2api",
    "send_multipart",
    "send_raw",
    "upload",
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
    _check_thresholds(score_th, nms_iou, min_height, min_width, max_results)

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
    _, images = _prologue(
        token, timeout, image, False, score_th, nms_iou, min_height, min_width, max_results
    )
    payload = build_payload(
        images,
        score_th=score_th,
        nms_iou=nms_iou,
        min_height=min_height,
        min_width=min_width,
        max_results=max_results,
    )
    return _post(url, token, payload, timeout, session)


def _prologue(
    token: str,
    timeout: float,
    image: ImageInput | Sequence[ImageInput],
    single: bool,
    score_th: float,
    nms_iou: float,
    min_height: float,
    min_width: float,
    max_results: int,
) -> tuple[dict[str, str], list[bytes]]:
    """What every call checks first, in one order, before anything is sent: the token, the
    timeout, the thresholds (returned as form fields / query parameters), then the images,
    read into bytes (`single`: exactly one), so that a bad file fails before any traffic."""
    _check_token(token)
    _check_timeout(timeout)
    fields = _threshold_fields(score_th, nms_iou, min_height, min_width, max_results)
    images = [_load_single(image)] if single else _load_images(image)
    return fields, images


def _check_thresholds(
    score_th: float, nms_iou: float, min_height: float, min_width: float, max_results: int
) -> None:
    """Refuse values that cannot be right whatever the server's limits, before any traffic."""
    for name, value in (
        ("score_th", score_th),
        ("nms_iou", nms_iou),
        ("min_height", min_height),
        ("min_width", min_width),
    ):
        _check_fraction(name, value)
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise ValueError(f"max_results must be an integer >= 1, got {max_results!r}")


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


def _load_single(image: object) -> bytes:
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


def _post(
    url: str,
    token: str,
    payload: dict[str, Any],
    timeout: float,
    session: requests.Session | None,
) -> dict[str, Any]:
    return _json_result(_call(url, token, timeout, session, "application/json", json=payload))


def _call(
    url: str,
    token: str,
    timeout: float,
    session: requests.Session | None,
    accept: str,
    **request_kwargs: Any,
) -> requests.Response:
    """POST with the token and Accept headers; raises ApiError for a non-2xx answer."""
    headers = {AUTH_HEADER: token, "Accept": accept, **request_kwargs.pop("headers", {})}
    # No redirects: requests would turn the POST into a GET, and it forwards custom
    # headers such as the token to whatever host the Location names.
    if session is None:
        with requests.Session() as own_session:
            response = own_session.post(
                url, headers=headers, timeout=timeout, allow_redirects=False, **request_kwargs
            )
    else:
        response = session.post(
            url, headers=headers, timeout=timeout, allow_redirects=False, **request_kwargs
        )
    if not 200 <= response.status_code < 300:
        raise ApiError.from_body(
            response.status_code, response.content.decode("utf-8", errors="replace")
        )
    return response


def _json_result(response: requests.Response) -> dict[str, Any]:
    body = response.content.decode("utf-8", errors="replace")
    try:
        result = json.loads(body)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise ApiError(response.status_code, "answer is not a JSON object", body=body) from None
    return result


def _threshold_fields(
    score_th: float, nms_iou: float, min_height: float, min_width: float, max_results: int
) -> dict[str, str]:
    """Thresholds as form fields or query parameters, checked as build_payload checks them."""
    _check_thresholds(score_th, nms_iou, min_height, min_width, max_results)
    return {
        "score_th": repr(float(score_th)),
        "nms_iou": repr(float(nms_iou)),
        "min_height": repr(float(min_height)),
        "min_width": repr(float(min_width)),
        "maxResults": str(max_results),
    }


def send_multipart(
    url: str,
    token: str,
    image: ImageInput | Sequence[ImageInput],
    score_th: float = DEFAULT_SCORE_TH,
    nms_iou: float = DEFAULT_NMS_IOU,
    min_height: float = DEFAULT_MIN_HEIGHT,
    min_width: float = DEFAULT_MIN_WIDTH,
    max_results: int = DEFAULT_MAX_RESULTS,
    fields: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    session: requests.Session | None = None,
) -> dict[str, Any]:
    """Like send2api, but as a multipart/form-data upload: one `image` file part per image,
    thresholds as form fields. `fields` (e.g. {"id": "cam-7"}) are echoed back per result."""
    form, images = _prologue(
        token, timeout, image, False, score_th, nms_iou, min_height, min_width, max_results
    )
    form.update(fields or {})
    files = [("image", (f"image{index}", data)) for index, data in enumerate(images)]
    return _json_result(
        _call(url, token, timeout, session, "application/json", data=form, files=files)
    )


def send_raw(
    url: str,
    token: str,
    image: ImageInput,
    score_th: float = DEFAULT_SCORE_TH,
    nms_iou: float = DEFAULT_NMS_IOU,
    min_height: float = DEFAULT_MIN_HEIGHT,
    min_width: float = DEFAULT_MIN_WIDTH,
    max_results: int = DEFAULT_MAX_RESULTS,
    timeout: float = DEFAULT_TIMEOUT,
    session: requests.Session | None = None,
) -> dict[str, Any]:
    """The cheapest way to send one image: the bytes as the body, thresholds in the query."""
    params, (data,) = _prologue(
        token, timeout, image, True, score_th, nms_iou, min_height, min_width, max_results
    )
    response = _call(
        url,
        token,
        timeout,
        session,
        "application/json",
        params=params,
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    return _json_result(response)


def annotate(
    url: str,
    token: str,
    image: ImageInput,
    image_format: str = "png",
    max_side: int | None = None,
    score_th: float = DEFAULT_SCORE_TH,
    nms_iou: float = DEFAULT_NMS_IOU,
    min_height: float = DEFAULT_MIN_HEIGHT,
    min_width: float = DEFAULT_MIN_WIDTH,
    max_results: int = DEFAULT_MAX_RESULTS,
    timeout: float = DEFAULT_TIMEOUT,
    session: requests.Session | None = None,
) -> bytes:
    """The image with its detections drawn, as PNG or JPEG bytes (`image_format`)."""
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be png or jpeg, got {image_format!r}")
    params, (data,) = _prologue(
        token, timeout, image, True, score_th, nms_iou, min_height, min_width, max_results
    )
    if max_side is not None:
        params["max_side"] = str(max_side)
    response = _call(
        url,
        token,
        timeout,
        session,
        f"image/{image_format}",
        params=params,
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    return response.content


# --- The image repository


def _repository_url(url: str, *parts: str) -> str:
    return url.rstrip("/") + "/v1/" + "/".join(parts)


def _check_image_id(image_id: str) -> None:
    if not (
        isinstance(image_id, str)
        and image_id
        and image_id.replace("-", "").replace("_", "").isalnum()
    ):
        raise ValueError(f"not an image id: {str(image_id)[:40]!r}")


def _send(
    method: str,
    url: str,
    token: str,
    timeout: float,
    session: requests.Session | None,
    **request_kwargs: Any,
) -> requests.Response:
    """One request with the token; raises ApiError for a non-2xx answer (304 excepted)."""
    _check_token(token)
    _check_timeout(timeout)
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


def upload(
    url: str,
    token: str,
    image: ImageInput,
    *,
    filename: str | None = None,
    detect: bool = True,
    model: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    session: requests.Session | None = None,
) -> dict[str, Any]:
    """Store one image in the repository: ``{"image": {...}, "duplicate": bool}`` (the same
    bytes uploaded again answer the stored image with ``duplicate`` true). ``url`` is the
    service root; ``filename`` defaults to the file's name."""
    data = _load_single(image)
    name = filename or (Path(image).name if isinstance(image, str | os.PathLike) else "image")
    fields = {"detect": "true" if detect else "false"}
    if model is not None:
        fields["model"] = model
    response = _send(
        "POST",
        _repository_url(url, "images"),
        token,
        timeout,
        session,
        data=fields,
        files={"image": (name, data)},
        headers={"Accept": "application/json"},
    )
    return _json_result(response)


def list_images(
    url: str,
    token: str,
    *,
    label: Sequence[str] = (),
    min_score: float | None = None,
    page_size: int | None = None,
    page_token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    session: requests.Session | None = None,
    **filters: str,
) -> dict[str, Any]:
    """One page of the owner's images, newest first: ``{"images": [...], "nextPageToken"}``.
    ``label`` (all of them must be found), ``min_score`` and the other filters of
    ``GET /v1/images`` (``min_count``, ``uploaded_after``, ``camera_model``, ``sha256``...)."""
    if isinstance(label, str):
        label = [label]
    params: list[tuple[str, str]] = [("label", name) for name in label]
    if min_score is not None:
        _check_fraction("min_score", min_score)
        params.append(("min_score", repr(float(min_score))))
    if page_size is not None:
        params.append(("page_size", str(page_size)))
    if page_token is not None:
        params.append(("page_token", page_token))
    params += [(name, str(value)) for name, value in filters.items()]
    response = _send("GET", _repository_url(url, "images"), token, timeout, session, params=params)
    return _json_result(response)


def get_image(
    url: str,
    token: str,
    image_id: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    session: requests.Session | None = None,
) -> dict[str, Any]:
    """The stored image's details: ``{"image": {...}}`` (EXIF, labels, links)."""
    _check_image_id(image_id)
    response = _send(
        "GET", _repository_url(url, "images", image_id, "details"), token, timeout, session
    )
    return _json_result(response)


def download_image(
    url: str,
    token: str,
    image_id: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    session: requests.Session | None = None,
) -> bytes:
    """The stored original's bytes, exactly as uploaded."""
    _check_image_id(image_id)
    return _send("GET", _repository_url(url, "images", image_id), token, timeout, session).content


def delete_image(
    url: str,
    token: str,
    image_id: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    session: requests.Session | None = None,
) -> None:
    """Delete a stored image (ApiError 404 when there is none of that id)."""
    _check_image_id(image_id)
    _send("DELETE", _repository_url(url, "images", image_id), token, timeout, session)


REPOSITORY_COMMANDS = ("upload", "list", "get", "delete")


def _repository_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m client.send2api",
        description="The service's image repository: upload, list, get and delete images.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("upload", "store images (one request each)"),
        ("list", "list stored images, newest first"),
        ("get", "an image's details, or with --original its bytes"),
        ("delete", "delete stored images"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--url", required=True, help="service root, e.g. http://127.0.0.1:5000/"
        )
        command.add_argument("--token", help=f"API token (default: ${AUTH_ENV_VAR})")
        command.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
        if name == "upload":
            command.add_argument("images", nargs="+", metavar="IMAGE")
            command.add_argument("--no-detect", action="store_true", help="store without detecting")
            command.add_argument("--model", help="model to detect with (default: the service's)")
        elif name == "list":
            command.add_argument(
                "--label", action="append", default=[], help="repeatable: all must be found"
            )
            command.add_argument("--min-score", type=float)
            command.add_argument("--page-size", type=int)
            command.add_argument("--page-token")
        elif name == "get":
            command.add_argument("image_id", metavar="ID")
            command.add_argument(
                "--original", type=Path, metavar="OUT", help="save the original to OUT"
            )
        else:
            command.add_argument("image_ids", nargs="+", metavar="ID")
    return parser


def _repository_main(argv: Sequence[str]) -> int:
    parser = _repository_parser()
    args = parser.parse_args(argv)
    token: str | None = args.token or os.environ.get(AUTH_ENV_VAR)
    if not token:
        parser.error(f"no token: pass --token or set {AUTH_ENV_VAR}")
    try:
        _check_token(token)
        _check_timeout(args.timeout)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        output: Any
        if args.command == "upload":
            output = [
                upload(
                    args.url,
                    token,
                    path,
                    detect=not args.no_detect,
                    model=args.model,
                    timeout=args.timeout,
                )
                for path in args.images
            ]
            output = output[0] if len(output) == 1 else output
        elif args.command == "list":
            output = list_images(
                args.url,
                token,
                label=args.label,
                min_score=args.min_score,
                page_size=args.page_size,
                page_token=args.page_token,
                timeout=args.timeout,
            )
        elif args.command == "get" and args.original is not None:
            data = download_image(args.url, token, args.image_id, timeout=args.timeout)
            args.original.write_bytes(data)
            print(f"saved {args.original} ({len(data)} bytes)")
            return 0
        elif args.command == "get":
            output = get_image(args.url, token, args.image_id, timeout=args.timeout)
        else:
            for image_id in args.image_ids:
                delete_image(args.url, token, image_id, timeout=args.timeout)
                print(f"deleted {image_id}")
            return 0
    except (ValueError, OSError) as exc:
        if isinstance(exc, requests.RequestException):
            print(f"send2api: error: request to {args.url} failed: {exc}", file=sys.stderr)
            return 2
        parser.error(str(exc))
    except ApiError as exc:
        print(f"send2api: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(output, indent=2))
    return 0


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
    parser.add_argument(
        "--form",
        choices=("json", "multipart", "raw"),
        default="json",
        help="how to send the images: base64 JSON (default), multipart upload, or raw bytes "
        "(raw: one image)",
    )
    parser.add_argument(
        "--annotate",
        metavar="OUT",
        type=Path,
        help="save the image with its detections drawn to OUT (.png or .jpg; one image)",
    )
    parser.add_argument("--max-side", type=int, help="with --annotate: downscale to this side")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status. A first argument naming a
    repository command (upload, list, get, delete) runs it; anything else is the detection
    command line as before (images to send)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in REPOSITORY_COMMANDS:
        return _repository_main(arguments)
    parser = _build_parser()
    args = parser.parse_args(arguments)
    token: str | None = args.token or os.environ.get(AUTH_ENV_VAR)
    if not token:
        parser.error(f"no token: pass --token or set {AUTH_ENV_VAR}")  # exits with status 2

    thresholds = {
        "score_th": args.score_th,
        "nms_iou": args.nms_iou,
        "min_height": args.min_height,
        "min_width": args.min_width,
        "max_results": args.max_results,
    }
    if (args.annotate or args.form == "raw") and len(args.images) != 1:
        parser.error("--annotate and --form raw take exactly one image")
    try:
        _check_token(token)
        _check_timeout(args.timeout)
        images = _load_images(args.images)
        build_payload(images, **thresholds)  # checks every argument before any traffic
    except (ValueError, OSError) as exc:
        # Checked here, apart from the request, because requests' errors are OSErrors too.
        parser.error(str(exc))

    try:
        if args.annotate:
            suffix = args.annotate.suffix.lower()
            picture = annotate(
                args.url,
                token,
                images[0],
                image_format="jpeg" if suffix in (".jpg", ".jpeg") else "png",
                max_side=args.max_side,
                timeout=args.timeout,
                **thresholds,
            )
            args.annotate.write_bytes(picture)
            print(f"saved {args.annotate} ({len(picture)} bytes)")
            return 0
        if args.form == "multipart":
            result = send_multipart(args.url, token, images, timeout=args.timeout, **thresholds)
        elif args.form == "raw":
            result = send_raw(args.url, token, images[0], timeout=args.timeout, **thresholds)
        else:
            result = send2api(args.url, token, images, timeout=args.timeout, **thresholds)
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
