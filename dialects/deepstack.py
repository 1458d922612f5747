"""DeepStack / CodeProject.AI object detection (`POST /v1/vision/detection`), as NVR and
home-automation software (Frigate, Blue Iris, Home Assistant) calls it: one multipart image,
`min_confidence`, the key as the form field `api_key`, and DeepStack's own answer and error
shapes, which those clients parse."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detection_types import DetectionParams, DetectionResult, ModelInfo
from errors import ApiError, InvalidParameter, InvalidRequest, UnsupportedMediaType
from registry import ModelRegistry
from utils_serve import ImageTask, MultiValueMapping, input_kind, params_from_fields

# The form field DeepStack's clients send the key in, besides the service's own places.
KEY_FIELD = "api_key"

# DeepStack's own default confidence; it filters by nothing else, so neither do we here.
DEFAULTS = DetectionParams(
    score_threshold=0.4,
    nms_iou_threshold=0.4,
    min_height_fraction=0.0,
    min_width_fraction=0.0,
    max_results=100,
)


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
) -> ImageTask:
    """DeepStack's request: one multipart file `image`, `min_confidence` as the threshold."""
    parts = files.getlist("image")
    if len(parts) != 1:
        raise InvalidRequest(
            f"send exactly one image in the multipart file field 'image' (got {len(parts)})"
        )
    fields = {name: form.get(name) for name in form}
    confidence = fields.pop("min_confidence", None) or query.get("min_confidence")
    if confidence is not None:
        if "score_th" in fields:
            raise InvalidParameter("give either min_confidence or score_th, not both")
        fields["score_th"] = confidence
    model, params = params_from_fields(query, fields, DEFAULTS, registry)
    return ImageTask(parts[0].read(), params, model)


def response(result: DetectionResult, info: ModelInfo) -> dict[str, Any]:
    detections = result.detections
    predictions = [
        {
            "label": info.class_names[class_id],
            "confidence": round(float(score), 4),
            "x_min": round(x1),
            "y_min": round(y1),
            "x_max": round(x2),
            "y_max": round(y2),
        }
        for (x1, y1, x2, y2), score, class_id in zip(
            detections.xyxy.tolist(),
            detections.scores.tolist(),
            detections.class_ids.tolist(),
            strict=True,
        )
    ]
    timings = result.timings_ms
    return {
        "success": True,
        "predictions": predictions,
        "count": len(predictions),
        "message": f"Found {len(predictions)} objects" if predictions else "No objects found",
        "inferenceMs": round(float(timings.get("inference", 0.0)), 2),
        "processMs": round(float(sum(timings.values())), 2),
        "code": 200,
        "command": "detect",
        "moduleId": info.name,
        "executionProvider": "CPU",
    }


def error_body(error: ApiError) -> dict[str, Any]:
    return {"success": False, "error": error.public_message, "code": error.status}
