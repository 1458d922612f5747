"""Roboflow Inference's HTTP API, as its `inference-sdk` (`InferenceHTTPClient`) and scripts
built on `supervision` call it, for object detection:

- v1: `GET /info`, `GET /model/registry`, `POST /model/add`, `POST /infer/object_detection`
  with base64 image objects (one or a list) and `confidence`, `iou_threshold`,
  `max_detections`, `class_filter`, `class_agnostic_nms`, `visualize_predictions`;
- v0 (legacy): `POST /<project>/<version>` with the image as the base64 body whatever its
  Content-Type (or a multipart part `file`), parameters in the query, `format=image` for the
  annotated picture itself.

The model id is our model name, with an optional `/<version>` suffix (Roboflow's ids are
`project/version`). Answers give box centres `x`, `y` with `width` and `height` in original
pixels; errors are `{"message": ...}`, which the SDK reports.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from detection_types import DetectionParams, DetectionResult, ImageArray
from errors import ApiError, InvalidImage, InvalidParameter, InvalidRequest
from registry import ModelRegistry
from render import render_annotated
from utils_serve import (
    ImageTask,
    MultiValueMapping,
    decode_base64,
    detect_one,
    parse_detection_params,
)

# The JSON member (v1) the SDK sends the key in, besides the query's `api_key`.
KEY_FIELD = "api_key"
SERVER_NAME = "onnx-detection-service (Roboflow Inference API)"
TASK_TYPE = "object-detection"
# Roboflow's own defaults: confidence 0.4, IoU 0.3, 300 detections, no size filter.
DEFAULTS = DetectionParams(
    score_threshold=0.4,
    nms_iou_threshold=0.3,
    min_height_fraction=0.0,
    min_width_fraction=0.0,
    max_results=300,
)
# Other request members (preprocessing switches, active learning, usage reporting, the key)
# change nothing here and are ignored, as Roboflow's own server ignores members it does not use.
# Roboflow's spelling -> ours (utils_serve.PARAMETERS).
PARAMETER_NAMES = {
    "confidence": "score_th",
    "iou_threshold": "nms_iou",
    "max_detections": "maxResults",
    "class_filter": "classes",
    "class_agnostic_nms": "agnostic_nms",
}


def server_info(version: str, server_id: str) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": version, "uuid": server_id}


def resolve_model_id(model_id: Any, registry: ModelRegistry) -> str:
    """Our model name from Roboflow's model id: `name` or `name/<version>`."""
    if not isinstance(model_id, str) or not model_id:
        raise InvalidRequest("model_id must be a model name (see GET /model/registry)")
    name, _, version = model_id.partition("/")
    if version and not version.isascii():
        raise InvalidRequest(f"model_id {model_id[:80]!r}: the version must be plain text")
    return registry.resolve(name)


def _description(model_id: str, registry: ModelRegistry, max_images: int) -> dict[str, Any]:
    info = registry.detector(resolve_model_id(model_id, registry)).info
    return {
        "model_id": model_id,
        "task_type": TASK_TYPE,
        "batch_size": max_images,
        "input_height": info.input_height,
        "input_width": info.input_width,
    }


def registry_listing(
    registry: ModelRegistry, max_images: int, also: str | None = None
) -> dict[str, Any]:
    """`/model/registry`: every model; `also` adds the id a client just asked to load (with
    its version suffix), so that the SDK finds the very id it asked for."""
    ids = list(registry.names)
    if also is not None and also not in ids:
        ids.append(also)
    return {"models": [_description(model_id, registry, max_images) for model_id in ids]}


def model_to_add(payload: Any, registry: ModelRegistry) -> str:
    """`/model/add`: the model id to load, checked to exist (an unknown one is a 404)."""
    if not isinstance(payload, dict):
        raise InvalidRequest("the body must be a JSON object with a model_id")
    model_id = payload.get("model_id")
    resolve_model_id(model_id, registry)
    return str(model_id)


# --- Requests


def _confidence(value: Any) -> Any:
    """Roboflow's `confidence`: a fraction, or "default"/"best" for the model's own choice."""
    if isinstance(value, str) and value.strip().lower() in ("default", "best"):
        return None
    return value


def _params(members: Mapping[str, Any], class_names: Sequence[str]) -> DetectionParams:
    feature: dict[str, Any] = {}
    for theirs, ours in PARAMETER_NAMES.items():
        value = members.get(theirs)
        if theirs == "confidence":
            value = _confidence(value)
        if value is not None:
            feature[ours] = value
    return parse_detection_params(feature, DEFAULTS, class_names)


def _image_bytes(image: Any, index: int) -> bytes:
    if not isinstance(image, dict):
        raise InvalidRequest(f"image[{index}] must be an object {{type, value}}")
    kind, value = image.get("type", "base64"), image.get("value")
    if kind == "url":
        raise InvalidImage(
            f"image[{index}]: URLs are not fetched by this service; send type base64"
        )
    if kind != "base64":
        raise InvalidImage(f"image[{index}]: type {str(kind)[:20]!r} is not supported: use base64")
    if not isinstance(value, str):
        raise InvalidRequest(f"image[{index}].value must be a base64 string")
    return decode_base64(value)


def parse_infer(
    payload: Any, registry: ModelRegistry, max_images: int
) -> tuple[list[ImageTask], bool, bool]:
    """`/infer/object_detection`: the tasks, whether the image was a list (the answer is
    then a list too) and whether the annotated picture is wanted."""
    if not isinstance(payload, dict):
        raise InvalidRequest("the body must be a JSON object with model_id and image")
    model = resolve_model_id(payload.get("model_id"), registry)
    params = _params(payload, registry.detector(model).info.class_names)
    images = payload.get("image")
    is_list = isinstance(images, list)
    elements = images if is_list else [images]
    if images is None or not elements:
        raise InvalidRequest("image is missing: send {type: base64, value: ...} or a list of them")
    if len(elements) > max_images:
        raise InvalidRequest(f"at most {max_images} images per request, got {len(elements)}")
    visualize = payload.get("visualize_predictions", False)
    if not isinstance(visualize, bool):
        raise InvalidParameter("visualize_predictions must be true or false")
    tasks = [ImageTask(_image_bytes(e, i), params, model) for i, e in enumerate(elements)]
    return tasks, is_list, visualize


def _legacy_fraction(query: Mapping[str, str], name: str) -> float | None:
    """v0 takes a fraction or a percentage (`confidence=40`), as Roboflow's servers do."""
    text = query.get(name)
    if text is None or text.strip().lower() in ("default", "best"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidParameter(f"{name} must be a number, got {text[:20]!r}") from None
    return value / 100 if value >= 1 else value


def parse_legacy(
    project: str,
    body: bytes,
    files: MultiValueMapping,
    query: Mapping[str, str],
    registry: ModelRegistry,
) -> tuple[ImageTask, bool]:
    """v0 `/<project>/<version>`: the task and whether the picture itself is wanted."""
    model = registry.resolve(project)
    if query.get("image") is not None:
        raise InvalidImage("image URLs are not fetched by this service: send the image in the body")
    fmt = query.get("format", "json")
    if fmt not in ("json", "image"):
        raise InvalidParameter(f"format must be json or image, got {fmt[:20]!r}")
    members: dict[str, Any] = {
        "confidence": _legacy_fraction(query, "confidence"),
        "iou_threshold": _legacy_fraction(query, "overlap"),
    }
    if query.get("max_detections") is not None:
        text = query["max_detections"]
        if not text.strip().isascii() or not text.strip().isdigit():
            raise InvalidParameter(f"max_detections must be an integer, got {text[:20]!r}")
        members["max_detections"] = int(text)
    params = _params(members, registry.detector(model).info.class_names)
    parts = files.getlist("file")
    if parts:
        image = parts[0].read()
    else:
        if not body:
            raise InvalidRequest("the body is empty: send the base64 image (or a file part)")
        image = decode_base64(body)
    return ImageTask(image, params, model), fmt == "image"


# --- Running and answers


def _predictions(result: DetectionResult, class_names: Sequence[str]) -> list[dict[str, Any]]:
    detections = result.detections
    rows = zip(
        detections.xyxy.tolist(),
        detections.scores.tolist(),
        detections.class_ids.tolist(),
        strict=True,
    )
    return [
        {
            "x": round((x1 + x2) / 2, 1),
            "y": round((y1 + y2) / 2, 1),
            "width": round(x2 - x1, 1),
            "height": round(y2 - y1, 1),
            "confidence": round(float(score), 4),
            "class": class_names[class_id],
            "class_id": int(class_id),
            "detection_id": str(uuid.uuid4()),
        }
        for (x1, y1, x2, y2), score, class_id in rows
    ]


def picture(image: ImageArray, result: DetectionResult, class_names: Sequence[str]) -> bytes:
    """The annotated JPEG, as `visualize_predictions` and `format=image` return it."""
    return render_annotated(image, result.detections, class_names, "jpeg")


def legacy_picture(task: ImageTask, registry: ModelRegistry, max_pixels: int) -> bytes:
    """v0 `format=image`: the annotated JPEG itself."""
    image, result = detect_one(task, registry, max_pixels)
    return picture(image, result, registry.detector(task.model).info.class_names)


def answer(
    task: ImageTask, registry: ModelRegistry, max_pixels: int, visualize: bool
) -> dict[str, Any]:
    """One image run through the core and answered; a bad image fails the whole request, as
    it does in Roboflow's server."""
    image, result = detect_one(task, registry, max_pixels)
    class_names = registry.detector(task.model).info.class_names
    visualization = None
    if visualize:
        visualization = base64.b64encode(picture(image, result, class_names)).decode("ascii")
    return {
        "inference_id": str(uuid.uuid4()),
        "time": round(sum(result.timings_ms.values()) / 1000, 4),
        "image": {"width": result.image_width, "height": result.image_height},
        "predictions": _predictions(result, class_names),
        "visualization": visualization,
    }


def error_body(error: ApiError) -> dict[str, Any]:
    return {"message": error.public_message, "error_type": error.code}
