"""Google Cloud Vision's `images:annotate`, as the official clients call it for
OBJECT_LOCALIZATION: the request batch and its features, `LocalizedObjectAnnotation`s, and
Google's status codes and error envelope.

Our own JSON on `POST /` has the same batch and response shape (see `dialects.native`): the
functions here take the feature rule and the extras as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from detection_types import DetectionParams, DetectionResult, ModelInfo
from errors import (
    ApiError,
    InvalidBase64,
    InvalidImage,
    InvalidRequest,
    UnsupportedFeature,
    UnsupportedMediaType,
)
from registry import ModelRegistry
from utils_serve import (
    PARAMETERS,
    ImageTask,
    TaskOutcome,
    decode_base64,
    is_json_mimetype,
    parse_detection_params,
    tasks_from_elements,
)

# Google's canonical status (google.rpc.Code name and number) for each HTTP status we answer.
STATUS_BY_HTTP: Mapping[int, tuple[str, int]] = {
    400: ("INVALID_ARGUMENT", 3),
    401: ("UNAUTHENTICATED", 16),
    404: ("NOT_FOUND", 5),
    405: ("UNIMPLEMENTED", 12),
    406: ("INVALID_ARGUMENT", 3),
    413: ("INVALID_ARGUMENT", 3),
    415: ("INVALID_ARGUMENT", 3),
    416: ("OUT_OF_RANGE", 11),
    422: ("INVALID_ARGUMENT", 3),
    500: ("INTERNAL", 13),
    503: ("UNAVAILABLE", 14),
    507: ("RESOURCE_EXHAUSTED", 8),
}
UNKNOWN_STATUS = ("UNKNOWN", 2)

OBJECT_LOCALIZATION = "OBJECT_LOCALIZATION"
# Google's Feature.Type enum, so that integer types (as the official client sends) read right.
FEATURE_TYPES = {
    0: "TYPE_UNSPECIFIED",
    1: "FACE_DETECTION",
    2: "LANDMARK_DETECTION",
    3: "LOGO_DETECTION",
    4: "LABEL_DETECTION",
    5: "TEXT_DETECTION",
    6: "SAFE_SEARCH_DETECTION",
    7: "IMAGE_PROPERTIES",
    9: "CROP_HINTS",
    10: "WEB_DETECTION",
    11: "DOCUMENT_TEXT_DETECTION",
    12: "PRODUCT_SEARCH",
    19: "OBJECT_LOCALIZATION",
}
_MAX_RESULTS = next(p for p in PARAMETERS if p.attribute == "max_results")

FeatureRule = Callable[[Mapping[str, Any]], Mapping[str, Any]]
Extras = Callable[[TaskOutcome, ModelInfo], Mapping[str, Any]]


# --- Errors


def error_envelope(error: ApiError) -> dict[str, Any]:
    """Google's whole-request error envelope, plus our stable `reason` code."""
    name, _ = STATUS_BY_HTTP.get(error.status, UNKNOWN_STATUS)
    return {
        "error": {
            "code": error.status,
            "message": error.public_message,
            "status": name,
            "reason": error.code,
        }
    }


def image_status(error: ApiError) -> dict[str, Any]:
    """A per-image error, shaped like google.rpc.Status inside a batch response."""
    _, number = STATUS_BY_HTTP.get(error.status, UNKNOWN_STATUS)
    return {"error": {"code": number, "message": error.public_message}}


# --- Requests


def require_json(mimetype: str) -> None:
    if not is_json_mimetype(mimetype):
        raise UnsupportedMediaType(
            f"Content-Type {mimetype or '(none)'} is not supported here: "
            "send Content-Type: application/json"
        )


def _feature_type_name(raw: Any) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return FEATURE_TYPES.get(raw, str(raw))
    return str(raw).upper()


def _features(element: Mapping[str, Any]) -> list[dict[str, Any]]:
    features = element.get("features")
    if features is None:
        features = []
    if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
        raise InvalidRequest("features must be a list of objects")
    return features


def object_localization_feature(element: Mapping[str, Any]) -> Mapping[str, Any]:
    """Google's rule: the element must ask for OBJECT_LOCALIZATION, and nothing else."""
    features = _features(element)
    if not features:
        raise UnsupportedFeature(
            f"no feature requested; this service answers type {OBJECT_LOCALIZATION}"
        )
    types = [_feature_type_name(f.get("type", 0)) for f in features]
    unsupported = sorted({t for t in types if t != OBJECT_LOCALIZATION})
    if unsupported:
        raise UnsupportedFeature(
            f"unsupported feature type {', '.join(unsupported)}; "
            f"this service answers type {OBJECT_LOCALIZATION} only"
        )
    feature = dict(features[0])
    # proto3 JSON cannot tell an unset `maxResults` from 0, so Google reads 0 as "default".
    given = [s for s in _MAX_RESULTS.spellings if feature.get(s) is not None]
    if len(given) == 1 and _is_zero(feature[given[0]]):
        del feature[given[0]]
    return feature


def _is_zero(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


def first_feature(element: Mapping[str, Any]) -> Mapping[str, Any]:
    """Any feature list will do; the first feature holds the parameters."""
    features = _features(element)
    return dict(features[0]) if features else {}


def _image_bytes(element: Mapping[str, Any]) -> bytes:
    image = element.get("image")
    if not isinstance(image, dict):
        raise InvalidRequest("needs an image object with base64 content")
    content = image.get("content")
    if content is None:
        if image.get("source") is not None:
            raise InvalidImage(
                "image.source (URIs) is not supported: send the image bytes in image.content"
            )
        raise InvalidRequest("image.content is missing")
    if not isinstance(content, str):
        raise InvalidBase64("image.content must be a base64 string")
    return decode_base64(content)


def parse_batch(
    payload: Any,
    max_images: int,
    registry: ModelRegistry,
    defaults: DetectionParams,
    feature_rule: FeatureRule = object_localization_feature,
) -> list[ImageTask | ApiError]:
    """Split an AnnotateImage batch into tasks. Errors of the whole request raise; an
    element's own error takes its place in the list so that the other images are answered.
    `feature_rule` picks the feature holding the parameters (Google's own by default)."""
    if not isinstance(payload, dict):
        raise InvalidRequest("the body must be a JSON object with a 'requests' list")
    elements = payload.get("requests")
    if not isinstance(elements, list):
        raise InvalidRequest("the body needs a 'requests' list")
    if not elements:
        raise InvalidRequest("'requests' is empty; send at least one image")

    def read_element(element: Any) -> ImageTask:
        if not isinstance(element, dict):
            raise InvalidRequest("must be an object")
        feature = feature_rule(element)
        model = registry.resolve(feature.get("model"))
        class_names = registry.detector(model).info.class_names
        params = parse_detection_params(feature, defaults, class_names)
        return ImageTask(_image_bytes(element), params, model)

    return tasks_from_elements(elements, max_images, read_element)


# --- Responses


def _round(value: float, digits: int = 6) -> float:
    return round(float(value), digits)


def object_annotations(result: DetectionResult, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Google's LocalizedObjectAnnotation list, best score first, corners TL, TR, BR, BL."""
    width, height = result.image_width, result.image_height
    items = []
    detections = result.detections
    for (x1, y1, x2, y2), score, class_id in zip(
        detections.xyxy.tolist(),
        detections.scores.tolist(),
        detections.class_ids.tolist(),
        strict=True,
    ):
        corners = ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
        items.append(
            {
                "mid": "",
                "name": class_names[class_id],
                "score": _round(score, 4),
                "classId": int(class_id),
                "boundingPoly": {
                    "vertices": [{"x": round(x), "y": round(y)} for x, y in corners],
                    "normalizedVertices": [
                        {"x": _round(x / width), "y": _round(y / height)} for x, y in corners
                    ],
                },
            }
        )
    return items


def responses(
    outcomes: Sequence[TaskOutcome | ApiError],
    registry: ModelRegistry,
    extras: Extras | None = None,
) -> dict[str, Any]:
    """The BatchAnnotateImagesResponse: one AnnotateImageResponse or status per image."""
    answered: list[dict[str, Any]] = []
    for outcome in outcomes:
        if isinstance(outcome, ApiError):
            answered.append(image_status(outcome))
            continue
        info = registry.detector(outcome.task.model).info
        response: dict[str, Any] = {
            "localizedObjectAnnotations": object_annotations(outcome.result, info.class_names)
        }
        if extras is not None:
            response.update(extras(outcome, info))
        answered.append(response)
    return {"responses": answered}
