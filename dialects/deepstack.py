"""DeepStack / CodeProject.AI object detection, as NVR and home-automation software (Frigate,
Blue Iris, Agent DVR, AITool, Home Assistant, Node-RED) calls it.

- `POST /v1/vision/detection` and `POST /v1/vision/custom/<model>`: one multipart image,
  `min_confidence`, the key (when the client has one) as the form field `api_key`;
- `/v1/vision/custom/list` (CodeProject.AI) and `/v1/vision/listmodels` (DeepStack): the models;
- `/v1/server/status/ping` and `/v1/status/ping`: a liveness answer.

Answers are DeepStack's shape with CodeProject.AI's documented fields, whose timings .NET clients
bind as integers. Predictions come best first and at most `max_predictions` of them: Frigate's
detector fills a fixed array of 20 rows and crashes on a 21st.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from detection_types import DetectionParams, DetectionResult, ModelInfo
from errors import ApiError, InvalidParameter, InvalidRequest, UnsupportedMediaType
from registry import ModelRegistry
from utils_serve import ImageTask, MultiValueMapping, input_kind, params_from_fields

# The form field DeepStack's clients send the key in, besides the service's own places.
KEY_FIELD = "api_key"
# The route family that OPEN_ROUTES=deepstack opens to callers without a token.
FAMILY = "deepstack"

# DeepStack's own default confidence; it filters by nothing else, so neither do we here.
DEFAULTS = DetectionParams(
    score_threshold=0.4,
    nms_iou_threshold=0.4,
    min_height_fraction=0.0,
    min_width_fraction=0.0,
    max_results=100,
)
MODULE_NAME = "Object Detection (ONNX)"


@dataclass(frozen=True)
class ServerFacts:
    """What CodeProject.AI's answers say about the server and the request, besides the
    detections: who answered, the request id and how long the whole request took so far."""

    processed_by: str
    request_id: str
    round_trip_ms: float


def require_form(mimetype: str) -> None:
    if input_kind(mimetype) not in ("multipart", "form"):
        raise UnsupportedMediaType(
            "send multipart/form-data with the image in the file field 'image'"
        )


def parse_task(
    files: MultiValueMapping,
    form: MultiValueMapping,
    query: Mapping[str, str],
    registry: ModelRegistry,
    model: str | None = None,
) -> ImageTask:
    """DeepStack's request: one multipart file `image`, `min_confidence` as the threshold.
    `model` is the custom route's model name; an unknown one is a 404."""
    if model is not None:
        model = registry.resolve(model)
    parts = files.getlist("image")
    if len(parts) != 1:
        raise InvalidRequest(
            f"send exactly one image in the multipart file field 'image' (got {len(parts)})"
        )
    fields = {name: form.get(name) for name in form}
    if model is not None:
        fields["model"] = model
    confidence = fields.pop("min_confidence", None) or query.get("min_confidence")
    if confidence is not None:
        if "score_th" in fields:
            raise InvalidParameter("give either min_confidence or score_th, not both")
        fields["score_th"] = confidence
    chosen, params = params_from_fields(query, fields, DEFAULTS, registry)
    return ImageTask(parts[0].read(), params, chosen)


def _module_fields(info_name: str, command: str, facts: ServerFacts) -> dict[str, Any]:
    return {
        "moduleId": info_name,
        "moduleName": MODULE_NAME,
        "command": command,
        "executionProvider": "CPU",
        "canUseGPU": False,
        "inferenceDevice": "CPU",
        "processedBy": facts.processed_by,
        "requestId": facts.request_id,
        "timestampUTC": formatdate(usegmt=True),
        "analysisRoundTripMs": round(facts.round_trip_ms),
    }


def response(
    result: DetectionResult,
    info: ModelInfo,
    max_predictions: int,
    facts: ServerFacts,
    command: str = "detect",
) -> dict[str, Any]:
    """DeepStack's answer: the best `max_predictions` boxes in integer pixels, and
    CodeProject.AI's fields, with every timing an integer of milliseconds."""
    detections = result.detections
    rows = sorted(
        zip(
            detections.xyxy.tolist(),
            detections.scores.tolist(),
            detections.class_ids.tolist(),
            strict=True,
        ),
        key=lambda row: -row[1],
    )[:max_predictions]
    predictions = [
        {
            "label": info.class_names[class_id],
            "confidence": round(float(score), 4),
            "x_min": round(x1),
            "y_min": round(y1),
            "x_max": round(x2),
            "y_max": round(y2),
        }
        for (x1, y1, x2, y2), score, class_id in rows
    ]
    timings = result.timings_ms
    return {
        "success": True,
        "predictions": predictions,
        "count": len(predictions),
        "message": f"Found {len(predictions)} objects" if predictions else "No objects found",
        "inferenceMs": round(float(timings.get("inference", 0.0))),
        "processMs": round(float(sum(timings.values()))),
        "code": 200,
        **_module_fields(info.name, command, facts),
    }


def custom_list(registry: ModelRegistry, facts: ServerFacts) -> dict[str, Any]:
    """CodeProject.AI's `/v1/vision/custom/list`: the names a custom route takes."""
    names: Sequence[str] = registry.names
    return {
        "success": True,
        "models": list(names),
        "message": f"{len(names)} models",
        "code": 200,
        **_module_fields(registry.default, "list-custom", facts),
    }


def list_models(registry: ModelRegistry) -> dict[str, Any]:
    """DeepStack's `/v1/vision/listmodels`: one object per custom model."""
    return {
        "success": True,
        "models": [{"name": name} for name in registry.names],
    }


def ping() -> dict[str, Any]:
    return {"success": True, "code": 200}


def error_body(error: ApiError) -> dict[str, Any]:
    return {"success": False, "error": error.public_message, "code": error.status}
