"""The service's image repository from Python or the command line: upload, list, get,
download and delete stored images (``url`` is the service root)::

    image = upload("http://127.0.0.1:5000/", token, "dog.jpg")["image"]
    page = list_images("http://127.0.0.1:5000/", token, label=["dog"], min_score=0.5)
    details = get_image("http://127.0.0.1:5000/", token, image["id"])
    delete_image("http://127.0.0.1:5000/", token, image["id"])

    python -m client.send2api upload dog.jpg --url http://127.0.0.1:5000/
    python -m client.send2api list --label dog --url http://127.0.0.1:5000/
    python -m client.send2api get ID [--original OUT] --url http://127.0.0.1:5000/
    python -m client.send2api delete ID --url http://127.0.0.1:5000/

(``python -m client.repository ...`` takes the same commands.) Only ``requests`` and the
standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from client._http import (
    AUTH_ENV_VAR,
    DEFAULT_TIMEOUT,
    ApiError,
    ImageInput,
    check_fraction,
    check_timeout,
    check_token,
    json_result,
    load_single,
    send,
)

__all__ = [
    "REPOSITORY_COMMANDS",
    "delete_image",
    "download_image",
    "get_image",
    "list_images",
    "main",
    "upload",
]


def _repository_url(url: str, *parts: str) -> str:
    return url.rstrip("/") + "/v1/" + "/".join(parts)


def _check_image_id(image_id: str) -> None:
    if not (
        isinstance(image_id, str)
        and image_id
        and image_id.replace("-", "").replace("_", "").isalnum()
    ):
        raise ValueError(f"not an image id: {str(image_id)[:40]!r}")


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
    data = load_single(image)
    name = filename or (Path(image).name if isinstance(image, str | os.PathLike) else "image")
    fields = {"detect": "true" if detect else "false"}
    if model is not None:
        fields["model"] = model
    response = send(
        "POST",
        _repository_url(url, "images"),
        token,
        timeout,
        session,
        data=fields,
        files={"image": (name, data)},
        headers={"Accept": "application/json"},
    )
    return json_result(response)


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
        check_fraction("min_score", min_score)
        params.append(("min_score", repr(float(min_score))))
    if page_size is not None:
        params.append(("page_size", str(page_size)))
    if page_token is not None:
        params.append(("page_token", page_token))
    params += [(name, str(value)) for name, value in filters.items()]
    response = send("GET", _repository_url(url, "images"), token, timeout, session, params=params)
    return json_result(response)


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
    response = send(
        "GET", _repository_url(url, "images", image_id, "details"), token, timeout, session
    )
    return json_result(response)


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
    return send("GET", _repository_url(url, "images", image_id), token, timeout, session).content


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
    send("DELETE", _repository_url(url, "images", image_id), token, timeout, session)


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


def main(argv: Sequence[str] | None = None) -> int:
    """The repository's command line (upload, list, get, delete); returns the exit status."""
    parser = _repository_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    token: str | None = args.token or os.environ.get(AUTH_ENV_VAR)
    if not token:
        parser.error(f"no token: pass --token or set {AUTH_ENV_VAR}")
    try:
        check_token(token)
        check_timeout(args.timeout)
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


if __name__ == "__main__":
    raise SystemExit(main())
