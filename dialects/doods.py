"""DOODS (Dedicated Open Object Detection Service), as `pydoods` and Home Assistant's `doods`
integration call it: `GET /detectors` and `POST /detect`, the key in the `doods-auth-key`
header.

A detect request is `{"id", "detector_name", "data": <base64 image>, "detect": {"*": 50,
"dog": 60}}`: thresholds in percent per label, `*` for any label; a label listed without `*`
limits the answer to the listed labels (DOODS' own rule). An empty or missing `detect` means
every label at the service's default threshold (0.3). The answer is `{"id", "detections": [{"top",
"left", "bottom", "right", "label", "confidence"}]}` with the corners as fractions of the image
and the confidence in percent; an error is `{"detections": [], "error": "..."}`, and a success
has no `error` member at all (Home Assistant treats its presence as a failure).

`detector_name` is a model name; `default` (pydoods' default) is the default model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from detection_types import DetectionParams, DetectionResult, ModelInfo
from errors import ApiError, InvalidParameter, InvalidRequest
from registry import ModelRegistry
from utils_serve import ImageTask, decode_base64

DEFAULT_DETECTOR = "default"
WILDCARD = "*"
DETECTOR_TYPE = "onnx"
# DOODS filters by confidence only: no size filter.
DEFAULTS = DetectionParams(min_height_fraction=0.0, min_width_fraction=0.0)


def _detector(name: str, info: ModelInfo) -> dict[str, Any]:
    return {
        "name": name,
        "type": DETECTOR_TYPE,
        "model": info.name,
        "labels": list(info.class_names),
        "width": info.input_width,
        "height": info.input_height,
    }


def detectors(registry: ModelRegistry) -> dict[str, Any]:
    """`GET /detectors`: `default` (the default model), then every model by name."""
    listed = [_detector(DEFAULT_DETECTOR, registry.detector(registry.default).info)]
    listed += [_detector(name, registry.detector(name).info) for name in registry.names]
    return {"detectors": listed}


@dataclass(frozen=True)
class DetectRequest:
    task: ImageTask
    request_id: str | None
    # Label -> minimum confidence as a fraction; WILDCARD for any label. Empty: no filter.
    thresholds: Mapping[str, float]


def _thresholds(raw: Any, class_names: Sequence[str]) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidRequest("detect must be an object of label: minimum confidence in percent")
    known = set(class_names)
    thresholds: dict[str, float] = {}
    for label, percent in raw.items():
        if label != WILDCARD and label not in known:
            raise InvalidParameter(
                f"detect: unknown label {str(label)[:40]!r}; GET /detectors lists the labels"
            )
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise InvalidParameter(f"detect[{label!r}] must be a number of percent")
        if not 0 <= percent <= 100:
            raise InvalidParameter(f"detect[{label!r}] must be between 0 and 100, got {percent!r}")
        thresholds[label] = float(percent) / 100
    return thresholds


def parse_detect(payload: Any, registry: ModelRegistry) -> DetectRequest:
    if not isinstance(payload, dict):
        raise InvalidRequest("the body must be a JSON object with data and detect")
    name = payload.get("detector_name") or DEFAULT_DETECTOR
    model = registry.resolve(None if name == DEFAULT_DETECTOR else name)
    for unsupported in ("regions", "preprocess", "image"):
        if payload.get(unsupported):
            raise InvalidParameter(f"{unsupported} is not supported by this service")
    data = payload.get("data")
    if not isinstance(data, str) or not data:
        raise InvalidRequest("data must be the base64 encoded image")
    info = registry.detector(model).info
    thresholds = _thresholds(payload.get("detect"), info.class_names)
    params = DEFAULTS
    if thresholds:
        # Run at the lowest threshold asked for, on the listed labels unless any label is.
        params = replace(params, score_threshold=min(thresholds.values()))
        if WILDCARD not in thresholds:
            params = replace(
                params,
                class_ids=frozenset(info.class_names.index(label) for label in thresholds),
            )
    request_id = payload.get("id")
    return DetectRequest(
        task=ImageTask(decode_base64(data), params, model),
        request_id=str(request_id) if request_id else None,
        thresholds=thresholds,
    )


def response(request: DetectRequest, result: DetectionResult, info: ModelInfo) -> dict[str, Any]:
    width, height = result.image_width, result.image_height
    detections = result.detections
    found = []
    for (x1, y1, x2, y2), score, class_id in zip(
        detections.xyxy.tolist(),
        detections.scores.tolist(),
        detections.class_ids.tolist(),
        strict=True,
    ):
        label = info.class_names[class_id]
        minimum = request.thresholds.get(label, request.thresholds.get(WILDCARD, 0.0))
        if request.thresholds and score < minimum:
            continue
        found.append(
            {
                "top": round(y1 / height, 6),
                "left": round(x1 / width, 6),
                "bottom": round(y2 / height, 6),
                "right": round(x2 / width, 6),
                "label": label,
                "confidence": round(float(score) * 100, 2),
            }
        )
    answer: dict[str, Any] = {"detections": found}
    if request.request_id is not None:
        answer = {"id": request.request_id, **answer}
    return answer


def error_body(error: ApiError) -> dict[str, Any]:
    return {"detections": [], "error": error.public_message}
