"""Values from the code's tables: the `{{name}}` placeholders of the fragments, and substituting
them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import config
import errors
import serve_http
import utils_serve
from detection_types import DetectionParams
from dialects import deepstack, google, native, roboflow
from manifests import COCO80_FILE, coco80_names
from ui import routes as ui_routes

from .common import BuildError, Json, codes_list, number, openapi_path

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def error_class_by_code() -> dict[str, type[errors.ApiError]]:
    classes = {cls.code: cls for cls in errors.error_classes()}
    if len(classes) != len(errors.error_classes()):
        raise BuildError("two error classes share a code")
    return classes


def errors_by_status() -> str:
    """`400 `bad_request`, `invalid_json`, ...; 401 `unauthenticated`; ...` from the tree."""
    by_status: dict[int, list[str]] = {}
    for cls in errors.error_classes():
        by_status.setdefault(cls.status, []).append(cls.code)
    return "; ".join(f"{status} {codes_list(by_status[status])}" for status in sorted(by_status))


def per_image_errors() -> str:
    """The per-image errors by their google.rpc.Code number, as `image_status` writes them."""
    by_number: dict[tuple[int, str], list[str]] = {}
    for cls in utils_serve.PER_IMAGE_ERRORS:
        name, code_number = google.STATUS_BY_HTTP.get(cls.status, google.UNKNOWN_STATUS)
        by_number.setdefault((code_number, name), []).append(cls.code)
    return "; ".join(
        f"{code_number} ({name}) for {codes_list(codes)}"
        for (code_number, name), codes in sorted(by_number.items())
    )


def google_status_names() -> list[str]:
    """Every status name `error_envelope` can write, in google.rpc.Code order."""
    statuses = {*google.STATUS_BY_HTTP.values(), google.UNKNOWN_STATUS}
    return [name for name, _ in sorted(statuses, key=lambda status: status[1])]


def google_status_table() -> str:
    by_name: dict[str, list[int]] = {}
    for http_status, (name, _) in sorted(google.STATUS_BY_HTTP.items()):
        by_name.setdefault(name, []).append(http_status)
    return "; ".join(
        f"{', '.join(map(str, statuses))}: `{name}`" for name, statuses in by_name.items()
    )


def public_paths() -> str:
    """`/a`, `/b` and `/c`: the routes that need no token."""
    paths = [f"`{openapi_path(route.rule)}`" for route in serve_http.ROUTES if route.public]
    return ", ".join(paths[:-1]) + " and " + paths[-1] if len(paths) > 1 else "".join(paths)


def placeholders() -> dict[str, Json]:
    """The values fragments may name as `{{name}}`."""
    defaults = DetectionParams()
    low_side, high_side = native.MAX_SIDE_RANGE
    return {
        "max_images": config.DEFAULT_MAX_IMAGES,
        "max_body_bytes": config.DEFAULT_MAX_BODY_BYTES,
        "max_body_mib": f"{config.DEFAULT_MAX_BODY_BYTES / 2**20:g}",
        "max_image_megapixels": f"{config.DEFAULT_MAX_IMAGE_PIXELS / 1e6:g}",
        "error_codes": [cls.code for cls in errors.error_classes()],
        "errors_by_status": errors_by_status(),
        "per_image_errors": per_image_errors(),
        "google_status_names": google_status_names(),
        "google_status_table": google_status_table(),
        "feature_type_names": [name for _, name in sorted(google.FEATURE_TYPES.items())],
        "feature_type_numbers": sorted(google.FEATURE_TYPES),
        "output_formats": [mimetype.split("/")[1] for mimetype in native.ACCEPTABLE],
        "max_side_low": low_side,
        "max_side_high": high_side,
        "public_paths": public_paths(),
        "deepstack_key_field": deepstack.KEY_FIELD,
        "deepstack_score_threshold": deepstack.DEFAULTS.score_threshold,
        "deepstack_max_predictions": config.DEFAULT_DEEPSTACK_MAX_PREDICTIONS,
        "roboflow_confidence": roboflow.DEFAULTS.score_threshold,
        "roboflow_iou": roboflow.DEFAULTS.nms_iou_threshold,
        "roboflow_max_detections": roboflow.DEFAULTS.max_results,
        "score_threshold_low": number(parameter("score_threshold").low),
        "score_threshold_high": number(parameter("score_threshold").high),
        "score_threshold_default": defaults.score_threshold,
        "default_class_names": list(default_class_names()),
        "default_class_id_max": len(default_class_names()) - 1,
        "default_classes_text_pattern": classes_text_pattern(default_class_names()),
        "ui_files": sorted(ui_routes.UI_FILES),
    }


def parameter(attribute: str) -> utils_serve.Parameter:
    for candidate in utils_serve.PARAMETERS:
        if candidate.attribute == attribute:
            return candidate
    raise BuildError(f"no parameter {attribute} in utils_serve.PARAMETERS")


def substitute(node: Json, values: Mapping[str, Json], used: set[str]) -> Json:
    """Replace every `{{name}}` in the strings (and keys) of a fragment."""

    def text(value: str) -> Json:
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return lookup(whole.group(1))
        return _PLACEHOLDER.sub(lambda match: str(lookup(match.group(1))), value)

    def lookup(name: str) -> Json:
        if name not in values:
            raise BuildError(f"unknown placeholder {{{{{name}}}}}")
        used.add(name)
        return values[name]

    if isinstance(node, dict):
        return {text(key): substitute(value, values, used) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute(value, values, used) for value in node]
    if isinstance(node, str):
        return text(node)
    return node


def default_class_names() -> tuple[str, ...]:
    """The default model's class names (COCO-80, models/coco80.txt)."""
    names = coco80_names(Path(config.PROJECT_ROOT) / "models" / "yolox_nano.onnx")
    if names is None:
        raise BuildError(f"models/{COCO80_FILE} is missing or not 80 names")
    return names


def classes_text_pattern(names: Sequence[str]) -> str:
    """`classes` as text: comma-separated names or ids, as utils_serve.parse_class_filter
    reads them (each item stripped), in a pattern that only such text matches."""
    # Longest first, so that "10" is tried before "1".
    ids = sorted((str(i) for i in range(len(names))), key=len, reverse=True)
    item = r"\s*(?:" + "|".join([*map(re.escape, names), *ids]) + r")\s*"
    return f"^{item}(?:,{item})*$"
