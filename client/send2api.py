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

The repository calls live in ``client/repository.py`` and the shared request code in
``client/_http.py``; every public name stays importable from here. Only ``requests`` and the
standard library are used, so the ``client/`` folder can be copied to a machine that has none
of the server's dependencies.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from client import repository
from client._http import (
    AUTH_ENV_VAR,
    AUTH_HEADER,
    DEFAULT_TIMEOUT,
    ApiError,
    ImageInput,
    check_fraction,
    check_timeout,
    check_token,
    json_result,
    load_images,
    load_single,
)
from client.repository import (
    REPOSITORY_COMMANDS,
    delete_image,
    download_image,
    get_image,
    list_images,
    upload,
)

__all__ = [
    "AUTH_ENV_VAR",
    "AUTH_HEADER",
    "DEFAULT_MAX_RESULTS",
    "DEFAULT_MIN_HEIGHT",
    "DEFAULT_MIN_WIDTH",
    "DEFAULT_NMS_IOU",
    "DEFAULT_SCORE_TH",
    "DEFAULT_TIMEOUT",
    "REPOSITORY_COMMANDS",
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

DEFAULT_SCORE_TH = 0.35
DEFAULT_NMS_IOU = 0.40
DEFAULT_MIN_HEIGHT = 0.03
DEFAULT_MIN_WIDTH = 0.03
DEFAULT_MAX_RESULTS = 20


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
    check_token(token)
    check_timeout(timeout)
    fields = _threshold_fields(score_th, nms_iou, min_height, min_width, max_results)
    images = [load_single(image)] if single else load_images(image)
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
        check_fraction(name, value)
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise ValueError(f"max_results must be an integer >= 1, got {max_results!r}")


def _post(
    url: str,
    token: str,
    payload: dict[str, Any],
    timeout: float,
    session: requests.Session | None,
) -> dict[str, Any]:
    return json_result(_call(url, token, timeout, session, "application/json", json=payload))


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
    return json_result(
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
    return json_result(response)


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
        return repository.main(arguments)
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
        check_token(token)
        check_timeout(args.timeout)
        images = load_images(args.images)
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
