"""The HTTP service: an app factory that wires configuration, the models and the routes.

Run it with gunicorn (`gunicorn -c gunicorn.conf.py`), which calls `create_app()` in each
worker after forking, so every worker builds its own onnxruntime session.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from config import ServiceConfig, load_config
from predict import (
    DetectionParams,
    ModelFileMissingError,
    ModelLoadError,
    discover_models,
    load_discovered,
)
from render import MIME_TYPES, OutputFormat, render_annotated
from utils_serve import (
    ACCEPTABLE,
    ApiError,
    BadRequest,
    DetectorLike,
    Dialect,
    ImageTask,
    MethodNotAllowed,
    ModelRegistry,
    NotAcceptable,
    NotFound,
    OutputRequest,
    PayloadTooLarge,
    ServiceUnavailable,
    UnknownModel,
    UnsupportedMediaType,
    check_token,
    deepstack_error,
    deepstack_response,
    deepstack_task,
    detect_one,
    input_kind,
    is_json_mimetype,
    model_description,
    parse_annotate_request,
    parse_json_body,
    presented_token,
    read_body,
    requested_output,
    run_tasks,
    task_from_raw,
    tasks_from_form,
)

logger = logging.getLogger("detection_service")

# Routes anyone may call: probes must work without credentials, and the contract is public.
PUBLIC_ENDPOINTS = frozenset({"healthz", "readyz", "openapi"})
# Answered in DeepStack's own error shape, which its clients parse.
DEEPSTACK_ENDPOINTS = frozenset({"deepstack_detection"})
OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.json"
# Multipart bodies: at most this many parts (16 images and their fields fit many times over).
MAX_FORM_PARTS = 256
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HTTP_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


@dataclass(frozen=True)
class ServiceState:
    config: ServiceConfig
    registry: ModelRegistry


def load_registry(config: ServiceConfig) -> ModelRegistry:
    """Load the configured models (all with weights present, by default), each once.

    A model named in MODELS must load; without MODELS, a manifest whose weights have not been
    fetched is skipped with a warning, so that `make run` serves the default model alone.
    """
    available = discover_models(config.models_dir)
    names = list(config.models) or list(available)
    missing = [name for name in names if name not in available]
    if missing:
        raise ModelLoadError(
            f"MODELS names {', '.join(missing)}, not found in {config.models_dir} "
            f"(found: {', '.join(available) or 'none'})"
        )
    detectors: dict[str, DetectorLike] = {}
    for name in names:
        try:
            # Loaded from this one look at the folder, not a new one per model.
            detectors[name] = load_discovered(available[name], config.intra_op_threads)
        except ModelFileMissingError as exc:
            if config.models or name == config.model_name:
                raise
            logger.warning("model %s not loaded: %s", name, exc)
    if config.model_name not in detectors:
        raise ModelLoadError(
            f"default model MODEL_NAME={config.model_name!r} is not among the loaded models "
            f"({', '.join(detectors) or 'none'})"
        )
    return ModelRegistry(detectors=detectors, default=config.model_name)


def json_response(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status=status, mimetype="application/json")


def configure_logging(level: str) -> None:
    """One handler on the service's logger; gunicorn's own loggers are left alone."""
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)


def _state() -> ServiceState:
    state: ServiceState = current_app.extensions["detection_service"]
    return state


def _body() -> bytes:
    return read_body(request.stream, request.content_length, _state().config.max_body_bytes)


def _json_tasks(dialect: Dialect) -> list[ImageTask | ApiError]:
    return parse_annotate_request(
        parse_json_body(_body()),
        max_images=_state().config.max_images_per_request,
        dialect=dialect,
        registry=_state().registry,
        defaults=DetectionParams(),
    )


def _picture_response(tasks: list[ImageTask | ApiError], output: OutputRequest) -> Response:
    """The single image of the request with its detections drawn on it."""
    state = _state()
    if len(tasks) != 1:
        raise NotAcceptable(
            f"a picture can be returned for one image only, this request has {len(tasks)}: "
            "send one image or ask for JSON"
        )
    (task,) = tasks
    if isinstance(task, ApiError):
        raise task
    image, result = detect_one(task, state.registry, state.config.max_image_pixels)
    picture_format: OutputFormat = "png" if output.kind == "png" else "jpeg"
    picture = render_annotated(
        image,
        result.detections,
        state.registry.detector(task.model).info.class_names,
        picture_format,
        output.max_side,
    )
    response = Response(picture, mimetype=MIME_TYPES[picture_format])
    response.headers["X-Detection-Count"] = str(len(result.detections))
    return response


def _detect() -> Response:
    """Our route: JSON, multipart, form or raw image by Content-Type; JSON or a picture out."""
    state = _state()
    output = requested_output(request.args, request.accept_mimetypes.best_match(ACCEPTABLE))
    defaults = DetectionParams()
    kind = input_kind(request.mimetype)
    if kind == "json":
        tasks = _json_tasks("native")
    elif kind == "raw":
        tasks = task_from_raw(_body(), request.args, state.registry, defaults)
    else:
        tasks = tasks_from_form(
            request.files,
            request.form,
            request.args,
            state.config.max_images_per_request,
            state.registry,
            defaults,
        )
    if output.kind != "json":
        return _picture_response(tasks, output)
    responses = run_tasks(tasks, state.registry, state.config.max_image_pixels, "native")
    return json_response({"responses": responses})


def _register_routes(app: Flask) -> None:
    @app.post("/")
    def annotate() -> Response:
        """The existing clients' route; the same as /v1/detect."""
        return _detect()

    @app.post("/v1/detect")
    def detect() -> Response:
        """The canonical detection route: every input form, JSON or a picture out."""
        return _detect()

    @app.post("/v1/images:annotate", endpoint="google_annotate")
    @app.post("/v1/projects/<project>/images:annotate", endpoint="google_annotate")
    @app.post(
        "/v1/projects/<project>/locations/<location>/images:annotate",
        endpoint="google_annotate",
    )
    def google_annotate(project: str | None = None, location: str | None = None) -> Response:
        """Google Cloud Vision's images:annotate for OBJECT_LOCALIZATION."""
        state = _state()
        if not is_json_mimetype(request.mimetype):
            raise UnsupportedMediaType(
                f"Content-Type {request.mimetype or '(none)'} is not supported here: "
                "send Content-Type: application/json"
            )
        tasks = _json_tasks("google")
        responses = run_tasks(tasks, state.registry, state.config.max_image_pixels, "google")
        return json_response({"responses": responses})

    @app.post("/v1/vision/detection")
    def deepstack_detection() -> Response:
        """DeepStack / CodeProject.AI object detection, as NVR and home-automation software
        (Frigate, Blue Iris, Home Assistant) call it."""
        state = _state()
        if input_kind(request.mimetype) not in ("multipart", "form"):
            raise UnsupportedMediaType(
                "send multipart/form-data with the image in the file field 'image'"
            )
        task = deepstack_task(request.files, request.form, request.args, state.registry)
        _, result = detect_one(task, state.registry, state.config.max_image_pixels)
        info = state.registry.detector(task.model).info
        return json_response(deepstack_response(result, info))

    @app.get("/openapi.json")
    def openapi() -> Response:
        return Response(OPENAPI_PATH.read_bytes(), mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        registry = _state().registry
        if not registry.ready:
            raise ServiceUnavailable("the models are not loaded yet")
        return json_response(
            {"status": "ready", "model": registry.default, "models": sorted(registry.detectors)}
        )

    @app.get("/v1/models")
    def models() -> Response:
        registry = _state().registry
        described = [
            model_description(registry.detector(name).info, name == registry.default)
            for name in sorted(registry.detectors)
        ]
        return json_response({"default": registry.default, "models": described})

    @app.get("/v1/models/<name>")
    def model(name: str) -> Response:
        registry = _state().registry
        if name not in registry.detectors:
            raise UnknownModel(
                f"no model {name[:80]!r}; this service has {', '.join(sorted(registry.detectors))}"
            )
        info = registry.detector(name).info
        return json_response(model_description(info, name == registry.default))


def _buffer_chunked_body(max_bytes: int) -> None:
    """Read a chunked body (no Content-Length) up to the limit and hand it on with a length.

    Werkzeug's form parser and `get_data` would otherwise truncate such a body at the limit
    without a word; this way every route sees either a complete body or a 413.
    """
    environ = request.environ
    if request.content_length is not None or not environ.get("wsgi.input_terminated"):
        return
    body = read_body(environ["wsgi.input"], None, max_bytes)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def _register_hooks(app: Flask) -> None:
    @app.before_request
    def start_request() -> None:
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state = _state()
        if (request.content_length or 0) > state.config.max_body_bytes:
            raise PayloadTooLarge(
                f"request body is larger than the limit of {state.config.max_body_bytes} bytes"
            )
        _buffer_chunked_body(state.config.max_body_bytes)
        if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
            return
        if not state.config.auth_disabled:
            token = presented_token(dict(request.headers), request.args)
            if token is None and request.endpoint in DEEPSTACK_ENDPOINTS:
                token = request.form.get("api_key")
            check_token(token, state.config.api_tokens)

    @app.after_request
    def finish_request(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-Id"] = request_id
        started = g.get("started")
        latency_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        # The path only: a query string can hold the API key.
        logger.info(
            "request_id=%s method=%s path=%s status=%d latency_ms=%.1f",
            request_id,
            request.method,
            request.path,
            response.status_code,
            latency_ms,
        )
        return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError) -> Response:
        if error.detail:
            logger.info("request_id=%s %s: %s", g.get("request_id"), error.code, error.detail[:500])
        if request.endpoint in DEEPSTACK_ENDPOINTS:
            response = json_response(deepstack_error(error), error.status)
        else:
            response = json_response(error.to_envelope(), error.status)
        if isinstance(error, PayloadTooLarge):
            # The rest of an oversized body is never read: the connection cannot be reused.
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        error_class = _HTTP_ERRORS.get(status)
        if error_class is None:
            message = error.description or "request failed"
            envelope = {"error": {"code": status, "message": message, "status": "UNKNOWN"}}
            return json_response(envelope, status)
        messages = {
            404: f"no route {request.path}; see the README for the API",
            405: f"method {request.method} is not allowed on {request.path}",
        }
        api_error = error_class(messages.get(status, error.description or error_class.code))
        response = handle_api_error(api_error)
        if status == 405:
            allowed = error.get_headers()
            for name, value in allowed:
                if name.lower() == "allow":
                    response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        logger.exception("request_id=%s unhandled error", g.get("request_id"))
        return handle_api_error(ApiError("internal error; the request id is in X-Request-Id"))


def create_app(
    config: ServiceConfig | None = None,
    detector: DetectorLike | ModelRegistry | None = None,
) -> Flask:
    """Build the app. Reads the environment once when no config is given; loads the models
    unless a detector or a registry is injected (tests). Gunicorn calls this in each worker,
    after the fork, so that every worker builds its own onnxruntime sessions."""
    if config is None:
        config = load_config(os.environ)
    configure_logging(config.log_level)
    if detector is None:
        registry = load_registry(config)
    elif isinstance(detector, ModelRegistry):
        registry = detector
    else:
        registry = ModelRegistry(
            detectors={detector.info.name: detector}, default=detector.info.name
        )
    app = Flask(__name__)
    # Werkzeug enforces this for bodies with a Content-Length; read_body covers chunked ones.
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    # Flask's defaults (500 kB per text field) would refuse a base64 photo in a form field;
    # the body limit is the one that matters, for every input form alike.
    app.config["MAX_FORM_MEMORY_SIZE"] = config.max_body_bytes
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.extensions["detection_service"] = ServiceState(config=config, registry=registry)
    _register_hooks(app)
    _register_routes(app)
    _register_error_handlers(app)
    return app
