"""Our own JSON on `POST /` and `POST /v1/detect`: Google's AnnotateImage shape (parsed and
rendered by `dialects.google` with the first-feature rule) plus our extras per image, the
choice between JSON and the picture with its detections drawn, and the model descriptions of
`GET /v1/models`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from detection_types import ModelInfo
from errors import ApiError, InvalidParameter, NotAcceptable
from image_io import MIME_TYPES, OutputFormat, PixelBudget
from registry import ModelRegistry
from render import render_annotated
from utils_serve import ImageTask, TaskOutcome, decode_and_detect, is_integer_text

OutputKind = Literal["json", "png", "jpeg"]
_FORMATS: Mapping[str, OutputKind] = {"json": "json", "png": "png", "jpeg": "jpeg", "jpg": "jpeg"}
ACCEPTABLE = ("application/json", "image/png", "image/jpeg")
MAX_SIDE_RANGE = (16, 10_000)


def _round(value: float, digits: int) -> float:
    return round(float(value), digits)


def extras(outcome: TaskOutcome, info: ModelInfo) -> dict[str, Any]:
    """Our additions to each AnnotateImageResponse; a Google client ignores unknown fields."""
    result, params = outcome.result, outcome.task.params
    added: dict[str, Any] = {
        "imageSize": {"width": result.image_width, "height": result.image_height},
        "model": info.name,
        "parameters": {
            "score_th": params.score_threshold,
            "nms_iou": params.nms_iou_threshold,
            "min_height": params.min_height_fraction,
            "min_width": params.min_width_fraction,
            "maxResults": params.max_results,
            "classes": sorted(params.class_ids) if params.class_ids is not None else None,
            "agnostic_nms": params.class_agnostic,
        },
        "timingsMs": {k: _round(v, 2) for k, v in result.timings_ms.items()},
    }
    if outcome.task.fields:
        added["fields"] = dict(outcome.task.fields)
    return added


# --- JSON or a picture


@dataclass(frozen=True)
class OutputRequest:
    kind: OutputKind
    max_side: int | None = None


def requested_output(query: Mapping[str, str], accepted_mimetype: str | None) -> OutputRequest:
    """`?format=` wins over the Accept header's best match among ACCEPTABLE."""
    name = query.get("format")
    if name is not None:
        kind = _FORMATS.get(name.strip().lower())
        if kind is None:
            raise InvalidParameter(f"format must be json, png or jpeg, got {name[:20]!r}")
    elif accepted_mimetype == "image/png":
        kind = "png"
    elif accepted_mimetype == "image/jpeg":
        kind = "jpeg"
    else:
        kind = "json"
    max_side = None
    raw_side = query.get("max_side")
    if raw_side is not None:
        low, high = MAX_SIDE_RANGE
        if not is_integer_text(raw_side.strip()) or not low <= int(raw_side) <= high:
            raise InvalidParameter(
                f"max_side must be an integer between {low} and {high}, got {raw_side[:20]!r}"
            )
        max_side = int(raw_side)
    return OutputRequest(kind, max_side)


@dataclass(frozen=True)
class Picture:
    data: bytes
    mimetype: str
    detection_count: int


def annotated_picture(
    tasks: Sequence[ImageTask | ApiError],
    output: OutputRequest,
    registry: ModelRegistry,
    max_pixels: int,
    max_request_pixels: int,
) -> Picture:
    """The single image of the request with its detections drawn on it, drawn on a decode
    at the size asked for (a JPEG is decoded reduced when `max_side` allows)."""
    if len(tasks) != 1:
        raise NotAcceptable(
            f"a picture can be returned for one image only, this request has {len(tasks)}: "
            "send one image or ask for JSON"
        )
    (task,) = tasks
    if isinstance(task, ApiError):
        raise task
    budget = PixelBudget(max_request_pixels)
    decoded, result = decode_and_detect(task, registry, max_pixels, budget, output.max_side)
    picture_format: OutputFormat = "png" if output.kind == "png" else "jpeg"
    class_names = registry.detector(task.model).info.class_names
    data = render_annotated(
        decoded.pixels, result.detections, class_names, picture_format, output.max_side
    )
    return Picture(data, MIME_TYPES[picture_format], len(result.detections))


# --- Models


def model_description(info: ModelInfo, is_default: bool) -> dict[str, Any]:
    defaults = info.default_params
    return {
        "name": info.name,
        "default": is_default,
        "family": info.family,
        "description": info.description,
        "source": info.source,
        "inputSize": {"width": info.input_width, "height": info.input_height},
        "classNames": list(info.class_names),
        "sha256": info.sha256,
        "license": info.license,
        "executionProviders": list(info.execution_providers),
        "intraOpThreads": info.intra_op_threads,
        "defaults": {
            "score_th": defaults.score_threshold,
            "nms_iou": defaults.nms_iou_threshold,
            "min_height": defaults.min_height_fraction,
            "min_width": defaults.min_width_fraction,
            "maxResults": defaults.max_results,
        },
    }


def models_listing(registry: ModelRegistry) -> dict[str, Any]:
    described = [
        model_description(registry.detector(name).info, name == registry.default)
        for name in registry.names
    ]
    return {"default": registry.default, "models": described}
