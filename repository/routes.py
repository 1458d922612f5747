"""The repository's HTTP views: a few lines each, reading the request and handing plain
values to `service.Repository`. The only module of the package that knows Flask.

`ROUTES` lists (rule, endpoint, methods, view); the composition root (serve_http.py) turns
them into rows of its route table, so that they get its auth hook and its one error handler
(the default error envelope). The original document's routes (`/image/...`) are exact
aliases of the canonical ones under `/v1/images`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import urlencode

from flask import Flask, Response, current_app, g, request, send_file
from werkzeug.routing import BaseConverter

from detection_types import DetectionParams
from errors import (
    InvalidParameter,
    InvalidRequest,
    RepositoryDisabled,
    TooManyImages,
    UnsupportedMediaType,
)
from repository import renditions, shapes
from repository.queries import parse_list_query
from repository.records import DetectOptions, Rendition, Uploaded, UploadSource
from repository.service import Repository
from utils_serve import params_from_fields, read_body

EXTENSION: Final = "image_repository"
SINGLE_FIELDS: Final = ("image", "file")
MULTI_FIELDS: Final = ("images", "files")
RAW_MIMETYPES: Final = frozenset({"application/octet-stream"})
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class RepositoryMetrics(Protocol):
    """What the views report (metrics.ServiceMetrics; docs/operations.md, "Metrics")."""

    def repository_upload(self, duplicate: bool) -> None: ...

    def repository_changed(self, read_size: Callable[[], tuple[int, int, int]]) -> None: ...


class _NoMetrics:
    def repository_upload(self, duplicate: bool) -> None:
        pass

    def repository_changed(self, read_size: Callable[[], tuple[int, int, int]]) -> None:
        pass


@dataclass(frozen=True)
class RepositoryState:
    """What the views need: the worker's repository (None: not configured), the limits and
    where to report uploads and the repository's size."""

    repository: Repository | None
    max_images: int
    max_body_bytes: int
    metrics: RepositoryMetrics = field(default_factory=_NoMetrics)


class ImageIdConverter(BaseConverter):
    """`<image_id:...>`: one path segment, except the words of the original routes, so that
    `/image/upload` and `/image/list` are those routes alone (a GET of `/image/upload` is a
    405 that allows POST, not a lookup of an image named "upload")."""

    regex = r"(?!(?:upload|list)$)[^/]+"


def install(app: Flask, state: RepositoryState) -> None:
    """Before the routes are added: the state the views read and the id converter."""
    app.extensions[EXTENSION] = state
    app.url_map.converters["image_id"] = ImageIdConverter


def _state() -> RepositoryState:
    state: RepositoryState = current_app.extensions[EXTENSION]
    return state


def _repository() -> Repository:
    repository = _state().repository
    if repository is None:
        raise RepositoryDisabled("this service runs without an image repository (no DATA_DIR)")
    return repository


def _json(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status=status, mimetype="application/json")


def _flag(name: str, default: bool) -> bool:
    raw = request.form.get(name, request.args.get(name))
    if raw is None:
        return default
    word = raw.strip().lower()
    if word not in _TRUE | _FALSE:
        raise InvalidParameter(f"{name} must be true or false, got {raw[:20]!r}")
    return word in _TRUE


def _detect_options(repository: Repository) -> DetectOptions:
    form = {name: request.form[name] for name in request.form}
    model, params = params_from_fields(request.args, form, DetectionParams(), repository.models())
    return DetectOptions(_flag("detect", True), model, params)


def _sources() -> tuple[list[UploadSource], bool]:
    """The uploaded files and whether the caller sent exactly one (the single-image answer)."""
    state = _state()
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        unknown = sorted(set(request.files) - {*SINGLE_FIELDS, *MULTI_FIELDS})
        if unknown:
            raise InvalidRequest(
                f"file field {', '.join(unknown)[:80]}: name it image or file (one image), "
                "images or files (several)"
            )
        parts = [p for name in (*SINGLE_FIELDS, *MULTI_FIELDS) for p in request.files.getlist(name)]
        if not parts:
            raise InvalidRequest("no file: send the image in a multipart field named 'image'")
        if len(parts) > state.max_images:
            raise TooManyImages(f"at most {state.max_images} images per request, got {len(parts)}")
        several = any(name in request.files for name in MULTI_FIELDS) or len(parts) > 1
        return [UploadSource(part.read(), part.filename) for part in parts], not several
    if mimetype.startswith("image/") or mimetype in RAW_MIMETYPES:
        body = read_body(request.stream, request.content_length, state.max_body_bytes)
        if not body:
            raise InvalidRequest("the body is empty: send the image bytes")
        return [UploadSource(body, request.args.get("filename"))], True
    raise UnsupportedMediaType(
        f"Content-Type {mimetype or '(none)'} is not supported here: send multipart/form-data "
        "(field 'image') or the image itself as image/* or application/octet-stream"
    )


def upload_view() -> Response:
    repository = _repository()
    sources, single = _sources()
    options = _detect_options(repository)
    outcomes = repository.upload(g.owner, sources, options)
    metrics = _state().metrics
    for stored in outcomes:
        if isinstance(stored, Uploaded):
            metrics.repository_upload(stored.duplicate)
    metrics.repository_changed(repository.size)
    if single:
        (outcome,) = outcomes
        if isinstance(outcome, Exception):
            raise outcome
        status = 200 if outcome.duplicate else 201
        response = _json(shapes.upload_result(outcome, repository.gps_policy), status)
        response.headers["Location"] = shapes.links(outcome.record.image.id)["self"]
        return response
    return _json(shapes.upload_results(outcomes, repository.gps_policy))


def list_view() -> Response:
    repository = _repository()
    query = parse_list_query(request.args, request.args.getlist("label"))
    page = repository.list_images(g.owner, query)
    payload: dict[str, Any] = {
        "images": [shapes.image_object(r, repository.gps_policy) for r in page.records]
    }
    response = _json(payload)
    if page.next_token is not None:
        payload["nextPageToken"] = page.next_token
        response = _json(payload)
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "page_token"]
        url = f"{request.base_url}?{urlencode([*args, ('page_token', page.next_token)])}"
        response.headers["Link"] = f'<{url}>; rel="next"'
    return response


def details_view(image_id: str) -> Response:
    repository = _repository()
    record = repository.get(g.owner, image_id)
    return _json({"image": shapes.image_object(record, repository.gps_policy)})


def _rendition_response(rendition: Rendition) -> Response:
    data = rendition.data if rendition.data is not None else rendition.path.read_bytes()  # type: ignore[union-attr]
    response = Response(data, mimetype=rendition.mime_type)
    response.set_etag(rendition.etag.removeprefix("W/").strip('"'), weak=True)
    response.cache_control.private = True
    response.cache_control.max_age = 3600
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.make_conditional(request)
    return response


def original_view(image_id: str) -> Response:
    """The stored bytes (ETag = sha256, 304, 206 on Range), or with max_side/format a
    rendition made on the fly."""
    repository = _repository()
    spec = renditions.original_rendition_spec(request.args)
    if spec is not None:
        return _rendition_response(repository.rendition(g.owner, image_id, spec))
    original = repository.original(g.owner, image_id)
    response = send_file(
        original.path,
        mimetype=original.mime_type,
        conditional=True,
        etag=original.sha256,
        last_modified=None,
        max_age=None,
        download_name=original.name or f"{image_id}",
    )
    # An id always names the same bytes: a private cache may keep them, and revalidates
    # with the ETag (304) after that.
    response.headers["Cache-Control"] = "private, max-age=86400"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def thumbnail_view(image_id: str) -> Response:
    spec = renditions.thumbnail_spec(request.args)
    return _rendition_response(_repository().rendition(g.owner, image_id, spec))


def render_view(image_id: str) -> Response:
    spec = renditions.render_spec(request.args)
    return _rendition_response(_repository().rendition(g.owner, image_id, spec))


def detections_view(image_id: str) -> Response:
    return _json(shapes.runs_object(_repository().runs(g.owner, image_id)))


def detect_view(image_id: str) -> Response:
    repository = _repository()
    options = _detect_options(repository)
    return _json(shapes.runs_object(repository.redetect(g.owner, image_id, options)))


def delete_view(image_id: str) -> Response:
    repository = _repository()
    repository.delete(g.owner, image_id)
    _state().metrics.repository_changed(repository.size)
    return Response(status=204)


def labels_view() -> Response:
    raw = request.args.get("min_score")
    min_score = 0.0
    if raw is not None:
        try:
            min_score = float(raw)
        except ValueError:
            raise InvalidParameter(f"min_score must be a number, got {raw[:20]!r}") from None
        if not 0.0 <= min_score <= 1.0:
            raise InvalidParameter(f"min_score must be between 0 and 1, got {raw[:20]!r}")
    return _json(shapes.labels_object(_repository().labels(g.owner, min_score)))


View = Callable[..., Response]
# (rule, endpoint, methods, view): canonical routes first, then the original aliases.
ROUTES: Final[tuple[tuple[str, str, tuple[str, ...], View], ...]] = (
    ("/v1/images", "images_upload", ("POST",), upload_view),
    ("/v1/images", "images_list", ("GET",), list_view),
    ("/v1/images/<image_id:image_id>", "image_original", ("GET",), original_view),
    ("/v1/images/<image_id:image_id>", "image_delete", ("DELETE",), delete_view),
    ("/v1/images/<image_id:image_id>/details", "image_details", ("GET",), details_view),
    ("/v1/images/<image_id:image_id>/thumbnail", "image_thumbnail", ("GET",), thumbnail_view),
    ("/v1/images/<image_id:image_id>/render", "image_render", ("GET",), render_view),
    ("/v1/images/<image_id:image_id>/detections", "image_detections", ("GET",), detections_view),
    ("/v1/images/<image_id:image_id>/detect", "image_detect", ("POST",), detect_view),
    ("/v1/labels", "labels", ("GET",), labels_view),
    ("/image/upload", "images_upload", ("POST",), upload_view),
    ("/image/list", "images_list", ("GET",), list_view),
    ("/image/<image_id:image_id>", "image_original", ("GET",), original_view),
    ("/image/<image_id:image_id>", "image_delete", ("DELETE",), delete_view),
    ("/image/<image_id:image_id>/details", "image_details", ("GET",), details_view),
    ("/image/<image_id:image_id>/thumbnail", "image_thumbnail", ("GET",), thumbnail_view),
)
