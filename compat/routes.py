"""Views of the other detection servers' protocols: each reads the request and hands plain
values to its protocol's module in `dialects/` (DeepStack / CodeProject.AI, Roboflow, KServe V2,
DOODS), then answers what that module renders. `serve_http.ROUTES` names them; errors raised
here are answered by the one error handler, in the shape of the route's protocol.

It also holds what every view of the service shares: the worker's state, the request body and
the JSON answer.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, g, request

import stages
from config import SERVICE_VERSION, ServiceConfig
from dialects import deepstack, doods, google, kserve, roboflow
from errors import ApiError, BadRequest, UnsupportedMediaType
from metrics import Metrics
from registry import ModelRegistry, ModelSlot
from stages import timed
from utils_serve import (
    ImageTask,
    TaskOutcome,
    detect_full,
    is_integer_text,
    is_json_mimetype,
    parse_json_body,
    read_body,
    run_tasks,
)

# --- What every view shares


@dataclass(frozen=True)
class ServiceState:
    """What one worker serves: its configuration, its models, its metrics, and who it is
    (CodeProject.AI's `processedBy`, and a stable id of it for Roboflow's `/info`)."""

    config: ServiceConfig
    # The worker's models, or why it has none (registry.ModelSlot).
    models: ModelSlot
    metrics: Metrics
    server_name: str = "localhost"
    server_id: str = ""

    @property
    def registry(self) -> ModelRegistry:
        """The worker's models; a 503 with the reason while they could not be loaded."""
        return self.models.get()


def service_state() -> ServiceState:
    state: ServiceState = current_app.extensions["detection_service"]
    return state


def require_host(environ: Mapping[str, Any]) -> None:
    """RFC 9112, section 3.2: an HTTP/1.1 request without Host is a 400."""
    if environ.get("SERVER_PROTOCOL") == "HTTP/1.1" and not environ.get("HTTP_HOST"):
        raise BadRequest("an HTTP/1.1 request needs a Host header (RFC 9112, section 3.2)")


def body_fields(key_body_field: str | None) -> Mapping[str, Any] | None:
    """The body's fields, for a route whose clients may send the token in one
    (`key_body_field`): the form, or the members of a JSON object (read whole before)."""
    if key_body_field is None:
        return None
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form_parsed()
        return request.form
    if not is_json_mimetype(request.mimetype):
        return None
    body: bytes = g.get("body", b"")  # read whole by buffer_body, before this
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None  # the view answers the bad JSON; without a token it is a 401 first
    return payload if isinstance(payload, dict) else None


def model_labels(registry: ModelRegistry) -> list[tuple[str, dict[str, str], bool]]:
    labels = []
    for name in registry.names:
        detector = registry.detector(name)
        info = detector.info
        size = f"{info.input_width}x{info.input_height}"
        described = {"family": info.family, "input_size": size, "sha256": info.sha256}
        labels.append((name, described, detector.ready))
    return labels


def buffer_body(max_bytes: int) -> None:
    """Read the body whole, up to the limit, before any view or form parser sees it.

    Every route then sees either a complete body or an error: 413 past the limit, 400 for a
    body shorter than its Content-Length or one the server cannot read (malformed chunks).
    Werkzeug's form parser and `get_data` would otherwise truncate a chunked body at the limit
    without a word. The body is handed on with its length (a chunked one too), and kept for
    the view (`g.body`), which then reads it without another copy.
    """
    environ = request.environ
    length = request.content_length
    if length is None and not environ.get("wsgi.input_terminated"):
        return
    with timed("read_body"):
        body = read_body(environ["wsgi.input"], length, max_bytes)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    # Now framed by its length: Werkzeug would otherwise cap the stream at MAX_CONTENT_LENGTH
    # and refuse a body of exactly that many bytes, unable to tell that nothing follows.
    environ.pop("wsgi.input_terminated", None)
    g.body = body


def request_body() -> bytes:
    body: bytes | None = g.get("body")  # read whole, and timed, by the before_request hook
    if body is not None:
        return body
    with timed("read_body"):
        return read_body(
            request.stream, request.content_length, service_state().config.max_body_bytes
        )


def form_parsed() -> None:
    """Have werkzeug read and parse a form body now, timed as reading it."""
    with timed("read_body"):
        request.files, request.form  # noqa: B018 - the parse is what is timed


def tasks_ran(
    tasks: Sequence[ImageTask | ApiError],
    outcomes: Sequence[TaskOutcome | ApiError] | None = None,
) -> None:
    """Note the models the request's images use, and each image's error, for its record."""
    stages.uses_models(task.model for task in tasks if isinstance(task, ImageTask))
    for outcome in outcomes or ():
        if isinstance(outcome, ApiError):
            stages.answered_error(outcome.code)


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON answer; its body is one bytes object, so it goes out with a Content-Length
    (never chunked), which DeepStack's and Triton's clients rely on."""
    with timed("serialize"):
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(body, status=status, mimetype="application/json")


# --- DeepStack / CodeProject.AI


def deepstack_facts(state: ServiceState) -> deepstack.ServerFacts:
    started = g.get("started") or time.perf_counter()
    return deepstack.ServerFacts(
        processed_by=state.server_name,
        request_id=g.get("request_id") or "",
        round_trip_ms=(time.perf_counter() - started) * 1000,
    )


def deepstack_detection_view(model: str | None = None) -> Response:
    """DeepStack / CodeProject.AI object detection, with the default or a named model."""
    state = service_state()
    if model is not None:
        state.registry.resolve(model)
    deepstack.require_form(request.mimetype)
    form_parsed()
    task = deepstack.parse_task(request.files, request.form, request.args, state.registry, model)
    tasks_ran([task])
    result = detect_full(task, state.registry, state.config.max_image_pixels)
    info = state.registry.detector(task.model).info
    command = "detect" if model is None else "custom"
    limit = state.config.deepstack_max_predictions
    with timed("render"):
        payload = deepstack.response(result, info, limit, deepstack_facts(state), command)
    return json_response(payload)


def deepstack_custom_list_view() -> Response:
    state = service_state()
    return json_response(deepstack.custom_list(state.registry, deepstack_facts(state)))


def deepstack_listmodels_view() -> Response:
    return json_response(deepstack.list_models(service_state().registry))


def deepstack_ping_view() -> Response:
    return json_response(deepstack.ping())


# --- Roboflow


def roboflow_info_view() -> Response:
    return json_response(roboflow.server_info(SERVICE_VERSION, service_state().server_id))


def roboflow_registry_view() -> Response:
    state = service_state()
    return json_response(
        roboflow.registry_listing(state.registry, state.config.max_images_per_request)
    )


def roboflow_add_view() -> Response:
    state = service_state()
    model_id = roboflow.model_to_add(parse_json_body(request_body()), state.registry)
    limit = state.config.max_images_per_request
    return json_response(roboflow.registry_listing(state.registry, limit, also=model_id))


def roboflow_infer_view() -> Response:
    state = service_state()
    google.require_json(request.mimetype)
    limit, max_pixels = state.config.max_images_per_request, state.config.max_image_pixels
    tasks, is_list, visualize = roboflow.parse_infer(
        parse_json_body(request_body()), state.registry, limit
    )
    answers = [roboflow.answer(task, state.registry, max_pixels, visualize) for task in tasks]
    return json_response(answers if is_list else answers[0])


def roboflow_legacy_view(model: str, model_version: str) -> Response:
    """Roboflow's v0 `/<project>/<version>`: a base64 body whatever its Content-Type."""
    state = service_state()
    state.registry.resolve(model)
    if not is_integer_text(model_version):
        # Any text in the rule, so that a bad version is answered in Roboflow's shape.
        raise BadRequest(f"the model version must be a number, got {model_version[:20]!r}")
    is_multipart = request.mimetype == "multipart/form-data"
    body = b"" if is_multipart else request_body()
    task, want_picture = roboflow.parse_legacy(
        model, body, request.files, request.args, state.registry
    )
    max_pixels = state.config.max_image_pixels
    if want_picture:
        picture = roboflow.legacy_picture(task, state.registry, max_pixels)
        return Response(picture, mimetype="image/jpeg")
    return json_response(roboflow.answer(task, state.registry, max_pixels, visualize=False))


# --- KServe V2 / Open Inference Protocol


def kserve_live_view() -> Response:
    return json_response(kserve.live())


def kserve_ready_view() -> Response:
    registry = service_state().registry
    return json_response(kserve.ready(registry), 200 if registry.ready else 503)


def kserve_server_metadata_view() -> Response:
    return json_response(kserve.server_metadata(SERVICE_VERSION))


def kserve_model_metadata_view(model: str, version: str | None = None) -> Response:
    registry = service_state().registry
    name = kserve.resolve_model(model, version, registry)
    return json_response(kserve.model_metadata(registry.detector(name).info))


def kserve_model_ready_view(model: str, version: str | None = None) -> Response:
    registry = service_state().registry
    detector = registry.detector(kserve.resolve_model(model, version, registry))
    return json_response(
        kserve.model_ready(detector.info, detector.ready), 200 if detector.ready else 503
    )


def kserve_infer_view(model: str, version: str | None = None) -> Response:
    """V2 inference; the body is JSON, or JSON then binary data (Triton's extension). The
    Content-Type is not looked at: tritonclient sends none."""
    state = service_state()
    name = kserve.resolve_model(model, version, state.registry)
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise UnsupportedMediaType("compressed request bodies are not supported: send them plain")
    parsed = kserve.parse_infer(
        request_body(),
        request.headers.get(kserve.HEADER_LENGTH),
        name,
        state.registry,
        state.config.max_images_per_request,
    )
    config = state.config
    outcomes = run_tasks(
        parsed.tasks, state.registry, config.max_image_pixels, config.max_request_pixels
    )
    encoded = kserve.infer_response(parsed, outcomes, state.registry)
    if encoded.header_length is None:
        return Response(encoded.body, mimetype="application/json")
    response = Response(encoded.body, mimetype="application/octet-stream")
    response.headers[kserve.HEADER_LENGTH] = str(encoded.header_length)
    return response


# --- DOODS


def doods_detectors_view() -> Response:
    return json_response(doods.detectors(service_state().registry))


def doods_detect_view() -> Response:
    state = service_state()
    google.require_json(request.mimetype)
    parsed = doods.parse_detect(parse_json_body(request_body()), state.registry)
    result = detect_full(parsed.task, state.registry, state.config.max_image_pixels)
    info = state.registry.detector(parsed.task.model).info
    return json_response(doods.response(parsed, result, info))
