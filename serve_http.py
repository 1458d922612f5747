"""The composition root: the app factory, the request hooks, the one error handler and the
route table that wires each route to its view and its protocol's error shape.

Run it with gunicorn (`gunicorn -c gunicorn.conf.py`), which calls `create_app()` in each
worker after forking, so every worker builds its own onnxruntime sessions. Views are a few
lines: they read the request and hand plain values to a protocol module in `dialects/`.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

import master_models
import stages
from auth import check_token, client_address, open_route_allowed, presented_token
from compat.routes import (
    ServiceState,
    body_fields,
    buffer_body,
    deepstack_custom_list_view,
    deepstack_detection_view,
    deepstack_listmodels_view,
    deepstack_ping_view,
    doods_detect_view,
    doods_detectors_view,
    form_parsed,
    json_response,
    kserve_infer_view,
    kserve_live_view,
    kserve_model_metadata_view,
    kserve_model_ready_view,
    kserve_ready_view,
    kserve_server_metadata_view,
    model_labels,
    request_body,
    require_host,
    roboflow_add_view,
    roboflow_infer_view,
    roboflow_info_view,
    roboflow_legacy_view,
    roboflow_registry_view,
    service_state,
    tasks_ran,
)
from config import DEFAULT_OWNER, OPEN_ROUTES_OWNER, ServiceConfig, load_config
from detection_types import DetectionParams
from dialects import deepstack, doods, google, kserve, native, roboflow
from errors import (
    ApiError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
    ServiceUnavailable,
    UnknownModel,
    UnsupportedMediaType,
)
from logs import configure_service_logger, log_event, parse_traceparent, wsgi_path
from metrics import Metrics, NullMetrics, ServiceMetrics
from registry import DetectorLike, ModelRegistry, ModelSlot, load_registry
from repository import routes as repository_routes
from repository.service import Repository
from stages import timed
from ui import routes as ui_routes
from utils_serve import (
    ImageTask,
    input_kind,
    params_from_fields,
    parse_json_body,
    run_tasks,
    task_from_raw,
    tasks_from_form,
)

logger = logging.getLogger("detection_service")

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
    416: RangeNotSatisfiable,
}


# --- Views


def _native_tasks(state: ServiceState) -> list[ImageTask | ApiError]:
    """Our route's images, from whichever input form the Content-Type says."""
    kind = input_kind(request.mimetype)
    limit, registry, defaults = (
        state.config.max_images_per_request,
        state.registry,
        DetectionParams(),
    )
    if kind == "json":
        # The query's parameters are every element's defaults (checked, never ignored).
        _, defaults = params_from_fields(request.args, {}, defaults, registry)
        payload = parse_json_body(request_body())
        return google.parse_batch(payload, limit, registry, defaults, google.first_feature)
    if kind == "raw":
        return task_from_raw(request_body(), request.args, registry, defaults)
    form_parsed()
    return tasks_from_form(request.files, request.form, request.args, limit, registry, defaults)


def detect_view() -> Response:
    """Our route: JSON, multipart, form or raw image by Content-Type; JSON or a picture out."""
    state = service_state()
    accepted = request.accept_mimetypes.best_match(native.ACCEPTABLE)
    output = native.requested_output(request.args, accepted)
    tasks = _native_tasks(state)
    tasks_ran(tasks)
    max_pixels, max_request_pixels = state.config.max_image_pixels, state.config.max_request_pixels
    if output.kind != "json":
        with timed("render"):
            picture = native.annotated_picture(
                tasks, output, state.registry, max_pixels, max_request_pixels
            )
        response = Response(picture.data, mimetype=picture.mimetype)
        response.headers["X-Detection-Count"] = str(picture.detection_count)
        return response
    outcomes = run_tasks(tasks, state.registry, max_pixels, max_request_pixels)
    tasks_ran([], outcomes)
    with timed("render"):
        payload = google.responses(outcomes, state.registry, native.extras)
    return json_response(payload)


def google_annotate_view(project: str | None = None, location: str | None = None) -> Response:
    """Google Cloud Vision's images:annotate for OBJECT_LOCALIZATION."""
    state = service_state()
    google.check_resource_ids(project=project, location=location)
    google.require_json(request.mimetype)
    limit = state.config.max_images_per_request
    tasks = google.parse_batch(
        parse_json_body(request_body()), limit, state.registry, DetectionParams()
    )
    config = state.config
    outcomes = run_tasks(tasks, state.registry, config.max_image_pixels, config.max_request_pixels)
    tasks_ran(tasks, outcomes)
    with timed("render"):
        payload = google.responses(outcomes, state.registry)
    return json_response(payload)


def openapi_view() -> Response:
    return Response(OPENAPI_PATH.read_bytes(), mimetype="application/json")


def healthz_view() -> Response:
    return json_response({"status": "ok"})


def readyz_view() -> Response:
    registry = service_state().registry
    if not registry.ready:
        raise ServiceUnavailable("the models are not loaded yet")
    return json_response({"status": "ready", "model": registry.default, "models": registry.names})


def models_view() -> Response:
    return json_response(native.models_listing(service_state().registry))


def model_view(name: str) -> Response:
    registry = service_state().registry
    if name not in registry.detectors:
        raise UnknownModel(f"no model {name[:80]!r}; this service has {', '.join(registry.names)}")
    return json_response(
        native.model_description(registry.detector(name).info, name == registry.default)
    )


# --- The route table


@dataclass(frozen=True)
class Route:
    rule: str
    endpoint: str
    methods: tuple[str, ...]
    view: Callable[..., Response]
    # Anyone may call it: probes must work without credentials, and the contract is public.
    public: bool = False
    # How this route's clients expect an error to look.
    error_body: Callable[[ApiError], dict[str, Any]] = google.error_envelope
    # A body field (a form field, or a member of a JSON body) this route's clients send the
    # token in, besides the places every route accepts (auth.presented_token).
    key_body_field: str | None = None
    # The family OPEN_ROUTES may open to callers without a token (only "deepstack").
    family: str | None = None


ROUTES: tuple[Route, ...] = (
    Route("/", "annotate", ("POST",), detect_view),
    Route("/v1/detect", "detect", ("POST",), detect_view),
    Route("/v1/images:annotate", "google_annotate", ("POST",), google_annotate_view),
    Route(
        "/v1/projects/<project>/images:annotate", "google_annotate", ("POST",), google_annotate_view
    ),
    Route(
        "/v1/projects/<project>/locations/<location>/images:annotate",
        "google_annotate",
        ("POST",),
        google_annotate_view,
    ),
    *(
        Route(
            rule,
            endpoint,
            methods,
            view,
            public=public,
            error_body=deepstack.error_body,
            key_body_field=deepstack.KEY_FIELD,
            family=deepstack.FAMILY,
        )
        for rule, endpoint, methods, view, public in (
            (
                "/v1/vision/detection",
                "deepstack_detection",
                ("POST",),
                deepstack_detection_view,
                False,
            ),
            (
                "/v1/vision/custom/list",
                "deepstack_custom_list",
                ("GET", "POST"),
                deepstack_custom_list_view,
                False,
            ),
            (
                "/v1/vision/custom/<model>",
                "deepstack_custom",
                ("POST",),
                deepstack_detection_view,
                False,
            ),
            (
                "/v1/vision/listmodels",
                "deepstack_listmodels",
                ("GET", "POST"),
                deepstack_listmodels_view,
                False,
            ),
            (
                "/v1/server/status/ping",
                "deepstack_ping",
                ("GET", "POST"),
                deepstack_ping_view,
                True,
            ),
            ("/v1/status/ping", "deepstack_ping", ("GET", "POST"), deepstack_ping_view, True),
        )
    ),
    *(
        Route(
            rule,
            endpoint,
            methods,
            view,
            public=public,
            error_body=roboflow.error_body,
            key_body_field=roboflow.KEY_FIELD,
        )
        for rule, endpoint, methods, view, public in (
            ("/info", "roboflow_info", ("GET",), roboflow_info_view, True),
            ("/model/registry", "roboflow_registry", ("GET",), roboflow_registry_view, False),
            ("/model/add", "roboflow_add", ("POST",), roboflow_add_view, False),
            ("/infer/object_detection", "roboflow_infer", ("POST",), roboflow_infer_view, False),
        )
    ),
    # v0 sends the key in the query only; its body (base64, often as a urlencoded "form") is
    # the image and must reach the view unparsed.
    Route(
        "/<legacy_model:model>/<model_version>",
        "roboflow_legacy",
        ("POST",),
        roboflow_legacy_view,
        error_body=roboflow.error_body,
    ),
    *(
        Route(rule, endpoint, ("GET",) if get else ("POST",), view, public, kserve.error_body)
        for rule, endpoint, get, view, public in (
            ("/v2/health/live", "kserve_live", True, kserve_live_view, True),
            ("/v2/health/ready", "kserve_ready", True, kserve_ready_view, True),
            ("/v2", "kserve_server_metadata", True, kserve_server_metadata_view, False),
            ("/v2/models/<model>", "kserve_model", True, kserve_model_metadata_view, False),
            (
                "/v2/models/<model>/versions/<version>",
                "kserve_model",
                True,
                kserve_model_metadata_view,
                False,
            ),
            (
                "/v2/models/<model>/ready",
                "kserve_model_ready",
                True,
                kserve_model_ready_view,
                False,
            ),
            (
                "/v2/models/<model>/versions/<version>/ready",
                "kserve_model_ready",
                True,
                kserve_model_ready_view,
                False,
            ),
            ("/v2/models/<model>/infer", "kserve_infer", False, kserve_infer_view, False),
            (
                "/v2/models/<model>/versions/<version>/infer",
                "kserve_infer",
                False,
                kserve_infer_view,
                False,
            ),
        )
    ),
    Route(
        "/detectors", "doods_detectors", ("GET",), doods_detectors_view, error_body=doods.error_body
    ),
    Route("/detect", "doods_detect", ("POST",), doods_detect_view, error_body=doods.error_body),
    Route("/openapi.json", "openapi", ("GET",), openapi_view, public=True),
    Route("/healthz", "healthz", ("GET",), healthz_view, public=True),
    # The web UI (ui/routes.py): the page needs no token; everything it shows does.
    *(
        Route(rule, endpoint, methods, view, public=True)
        for rule, endpoint, methods, view in ui_routes.ROUTES
    ),
    Route("/readyz", "readyz", ("GET",), readyz_view, public=True),
    Route("/v1/models", "models", ("GET",), models_view),
    Route("/v1/models/<name>", "model", ("GET",), model_view),
    # The image repository (repository/routes.py), with the original /image/... aliases.
    *(
        Route(rule, endpoint, methods, view)
        for rule, endpoint, methods, view in repository_routes.ROUTES
    ),
)
ROUTE_BY_ENDPOINT: Mapping[str, Route] = {route.endpoint: route for route in reversed(ROUTES)}


def legacy_model_converter(routes: tuple[Route, ...]) -> type[BaseConverter]:
    """The `<model>` of Roboflow's `/<model>/<version>`: any segment but the first segment of
    another route, so that `POST /v1/models` stays a 405 and `/model/x` a 404, rather than
    a legacy call for a model named `v1` or `model`."""
    reserved = sorted(
        {
            route.rule.strip("/").split("/")[0]
            for route in routes
            if route.rule.strip("/") and not route.rule.strip("/").startswith("<")
        }
    )
    pattern = "(?!(?:" + "|".join(re.escape(word) for word in reserved) + ")(?![^/]))[^/]+"

    class LegacyModelConverter(BaseConverter):
        regex = pattern

    return LegacyModelConverter


def _register_routes(app: Flask) -> None:
    app.url_map.converters["legacy_model"] = legacy_model_converter(ROUTES)
    for route in ROUTES:
        app.add_url_rule(route.rule, route.endpoint, route.view, methods=list(route.methods))


# --- Hooks and errors


def _register_hooks(app: Flask) -> None:
    @app.before_request
    def start_request() -> None:
        g.started = time.perf_counter()
        state = service_state()
        # What the request does, for its log line and metrics; ended in end_request.
        g.record, g.record_token = stages.begin()
        state.metrics.request_started()
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.trace = parse_traceparent(request.headers.get("traceparent"))
        require_host(request.environ)
        if (request.content_length or 0) > state.config.max_body_bytes:
            raise PayloadTooLarge(
                f"request body is larger than the limit of {state.config.max_body_bytes} bytes"
            )
        buffer_body(state.config.max_body_bytes)
        route = ROUTE_BY_ENDPOINT.get(request.endpoint or "")
        if route is None or route.public:
            return
        if state.config.auth_disabled:
            g.owner = DEFAULT_OWNER
            return
        fields = body_fields(route.key_body_field)
        token = presented_token(dict(request.headers), request.args, fields, route.key_body_field)
        if token is None and route.family in state.config.open_routes:
            client = client_address(
                request.remote_addr,
                request.headers.get("X-Forwarded-For"),
                state.config.trusted_proxies,
            )
            if open_route_allowed(client, state.config.open_routes_networks):
                g.owner = OPEN_ROUTES_OWNER
                return
        # Whose request this is: what an owner stores (the image repository) is theirs alone.
        g.owner = check_token(token, state.config.credentials)

    @app.after_request
    def finish_request(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-Id"] = request_id
        # Browsers must not guess another type (a JSON error rendered as HTML, say).
        response.headers["X-Content-Type-Options"] = "nosniff"
        started = g.get("started")
        seconds = time.perf_counter() - started if started else 0.0
        record: stages.RequestRecord | None = g.get("record")
        # The route's template is a bounded label; the path is the caller's.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        service_state().metrics.request_finished(route, response.status_code, seconds, record)
        trace = g.get("trace")
        # The path only (the formatter escapes its bytes): a query string can hold the API key.
        log_event(
            logger,
            logging.INFO,
            "request",
            request_id=request_id,
            method=request.method,
            path=wsgi_path(request.environ),
            route=route,
            status=response.status_code,
            latency_ms=round(seconds * 1000, 1),
            model=record.model if record is not None and record.models else None,
            images=record.images if record is not None else 0,
            errors=record.errors if record is not None and record.errors else None,
            stages_ms=record.stage_ms() if record is not None else None,
            trace_id=trace.trace_id if trace is not None else None,
            parent_id=trace.parent_id if trace is not None else None,
        )
        return response

    @app.teardown_request
    def end_request(_error: BaseException | None) -> None:
        token = g.pop("record_token", None)
        if token is not None:
            stages.end(token)
            service_state().metrics.request_ended()


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError) -> Response:
        stages.answered_error(error.code)
        if error.detail:
            log_event(
                logger,
                logging.INFO,
                "error_detail",
                request_id=g.get("request_id"),
                code=error.code,
                detail=error.detail[:500],
            )
        route = ROUTE_BY_ENDPOINT.get(request.endpoint or "")
        error_body = route.error_body if route is not None else google.error_envelope
        response = json_response(error_body(error), error.status)
        response.headers.update(error.headers())
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


def _log_open_routes(config: ServiceConfig) -> None:
    if not config.open_routes:
        return
    networks = ", ".join(str(n) for n in config.open_routes_networks) or "every address"
    proxies = ", ".join(str(n) for n in config.trusted_proxies) or "none"
    logger.warning(
        "OPEN_ROUTES=%s: these routes answer callers WITHOUT a token from %s (trusted proxies: "
        "%s). Anyone who can reach this port from there can run detections and use its CPU; "
        "limit OPEN_ROUTES_NETWORKS to your cameras' network",
        ",".join(sorted(config.open_routes)),
        networks,
        proxies,
    )


def create_app(
    config: ServiceConfig | None = None,
    detector: DetectorLike | ModelRegistry | None = None,
    metrics: Metrics | None = None,
    repository: Repository | None = None,
) -> Flask:
    """Build the app. Reads the environment once when no config is given; loads the models
    unless a detector or a registry is injected (tests); records metrics in a registry of
    its own unless `metrics` is given (none with METRICS_PORT=0); opens the image repository
    named by the config (DATA_DIR, REPO_DB_URL) unless one is injected. Gunicorn calls this in
    each worker, after the fork, so that every worker builds its own onnxruntime sessions, its
    own metrics (files of its own in prometheus_client's multiprocess mode) and its own
    database engine."""
    if config is None:
        config = load_config(os.environ)
    configure_service_logger(
        logger, config.log_level, config.log_format, (t.secret for t in config.credentials)
    )
    if metrics is None:
        metrics = ServiceMetrics() if config.metrics_port else NullMetrics()
    if detector is None:
        verified = master_models.verified_weights()
        models = ModelSlot(
            lambda: load_registry(config, verified, on_loaded=metrics.model_loaded),
            config.model_retry_s,
            hidden_prefixes=(str(config.models_dir.resolve()), str(config.models_dir)),
            on_ready=lambda registry: metrics.models_ready(model_labels(registry)),
        )
        # A worker whose models do not load still starts (see ModelSlot), answering 503.
        models.try_load()
    else:
        registry = detector if isinstance(detector, ModelRegistry) else ModelRegistry.of(detector)
        metrics.models_ready(model_labels(registry))
        models = ModelSlot(lambda: registry, config.model_retry_s, registry=registry)
    app = Flask(__name__)
    # Werkzeug enforces this for bodies with a Content-Length; read_body covers chunked ones.
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    # No separate limit for form fields: the body is read whole within MAX_BODY_BYTES before
    # the form parser sees it (compat.routes.buffer_body); Werkzeug's own check of its buffer
    # against this setting refused a multipart body of exactly the limit.
    app.config["MAX_FORM_MEMORY_SIZE"] = None
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    server_name = socket.gethostname() or "localhost"
    app.extensions["detection_service"] = ServiceState(
        config=config,
        models=models,
        metrics=metrics,
        server_name=server_name,
        server_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, server_name)),
    )
    _log_open_routes(config)
    if repository is None and config.data_dir is not None:
        repository = Repository.open(config, models)
    repository_routes.install(
        app,
        repository_routes.RepositoryState(
            repository, config.max_images_per_request, config.max_body_bytes, metrics
        ),
    )
    if repository is not None:
        metrics.repository_changed(repository.size)
    _register_hooks(app)
    _register_routes(app)
    _register_error_handlers(app)
    return app
