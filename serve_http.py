"""The HTTP service: an app factory that wires configuration, the detector and the routes.

Run it with gunicorn (`gunicorn -c gunicorn.conf.py`), which calls `create_app()` in each
worker after forking, so every worker builds its own onnxruntime session.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from config import ServiceConfig, load_config
from predict import DetectionParams, load_detector
from utils_serve import (
    ApiError,
    BadRequest,
    DetectorLike,
    Dialect,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    check_token,
    is_json_mimetype,
    model_description,
    parse_annotate_request,
    parse_json_body,
    presented_token,
    read_body,
    run_tasks,
)

logger = logging.getLogger("detection_service")

# Routes anyone may call: probes must work without credentials.
PUBLIC_ENDPOINTS = frozenset({"healthz", "readyz"})
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
    detector: DetectorLike


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


def _annotate(dialect: Dialect) -> Response:
    state = _state()
    if not is_json_mimetype(request.mimetype):
        raise UnsupportedMediaType(
            f"Content-Type {request.mimetype or '(none)'} is not supported here: "
            "send Content-Type: application/json"
        )
    body = read_body(request.stream, request.content_length, state.config.max_body_bytes)
    tasks = parse_annotate_request(
        parse_json_body(body),
        max_images=state.config.max_images_per_request,
        dialect=dialect,
        defaults=DetectionParams(),
    )
    responses = run_tasks(tasks, state.detector, state.config.max_image_pixels, dialect)
    return json_response({"responses": responses})


def _register_routes(app: Flask) -> None:
    @app.post("/")
    def annotate() -> Response:
        """Our Vision-style JSON: thresholds in `features[0]`, extras in each response."""
        return _annotate("native")

    @app.post("/v1/images:annotate", endpoint="google_annotate")
    @app.post("/v1/projects/<project>/images:annotate", endpoint="google_annotate")
    @app.post(
        "/v1/projects/<project>/locations/<location>/images:annotate",
        endpoint="google_annotate",
    )
    def google_annotate(project: str | None = None, location: str | None = None) -> Response:
        """Google Cloud Vision's images:annotate for OBJECT_LOCALIZATION."""
        return _annotate("google")

    @app.get("/healthz")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        detector = _state().detector
        if not detector.ready:
            raise ServiceUnavailable("the model is not loaded yet")
        return json_response({"status": "ready", "model": detector.info.name})

    @app.get("/v1/models")
    def models() -> Response:
        info = _state().detector.info
        return json_response({"default": info.name, "models": [model_description(info)]})


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
        if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
            return
        if not state.config.auth_disabled:
            check_token(
                presented_token(dict(request.headers), request.args), state.config.api_tokens
            )

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
        envelope = ApiError("internal error; the request id is in X-Request-Id").to_envelope()
        return json_response(envelope, 500)


def create_app(config: ServiceConfig | None = None, detector: DetectorLike | None = None) -> Flask:
    """Build the app. Reads the environment once when no config is given; loads the detector
    unless one is injected (tests). Gunicorn calls this in each worker, after the fork."""
    if config is None:
        config = load_config(os.environ)
    configure_logging(config.log_level)
    if detector is None:
        detector = load_detector(config.models_dir, config.model_name, config.intra_op_threads)
    app = Flask(__name__)
    # Werkzeug enforces this for bodies with a Content-Length; read_body covers chunked ones.
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["detection_service"] = ServiceState(config=config, detector=detector)
    _register_hooks(app)
    _register_routes(app)
    _register_error_handlers(app)
    return app
