"""KServe V2 / the Open Inference Protocol over REST, as `tritonclient[http]` and kserve's
`InferenceRESTClient` call it: each model takes encoded image files and gives detections.

- health (`/v2/health/live`, `/v2/health/ready`), server metadata (`/v2`), model metadata
  and readiness (`/v2/models/<m>[/versions/<v>][/ready]`), all with JSON bodies;
- `POST /v2/models/<m>[/versions/<v>]/infer`: one input `IMAGE`, datatype BYTES, shape `[N]`,
  one encoded file (JPEG, PNG, ...) per element, as JSON (each element the base64 of the file)
  or in Triton's binary-data extension (`Inference-Header-Content-Length`, each element a
  4-byte little-endian length and the bytes); thresholds are request `parameters` under the
  service's own names (`score_th`, `nms_iou`, `min_height`, `min_width`, `max_results`,
  `classes`, `agnostic_nms`);
- the outputs, per image `i` of the batch and detection `j`, padded to the batch's largest
  count `M`: `num_detections` INT32 `[N]`, `detection_boxes` FP32 `[N, M, 4]` (x1, y1, x2, y2
  in the original pixels), `detection_scores` FP32 `[N, M]`, `detection_classes` INT32
  `[N, M]` (-1 in padding) and `detection_labels` BYTES `[N, M]` ("" in padding); each as JSON
  or, when asked (`binary_data_output`, or an output's `binary_data`), as binary data;
- errors as `{"error": "<message>"}`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detection_types import DetectionParams, ModelInfo
from errors import ApiError, InvalidJson, InvalidParameter, InvalidRequest, NotFound
from registry import ModelRegistry
from utils_serve import (
    AGNOSTIC_FIELDS,
    CLASSES_FIELDS,
    SPELLINGS,
    ImageTask,
    TaskOutcome,
    decode_base64,
    parse_detection_params,
    parse_json_body,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT_NAME = "IMAGE"
MODEL_VERSION = "1"
SERVER_NAME = "onnx-detection-service"
EXTENSIONS = ("binary_tensor_data",)
# Request parameters that belong to the protocol (Triton's reserved ones), not to detection.
PROTOCOL_PARAMETERS = frozenset(
    {
        "sequence_id",
        "sequence_start",
        "sequence_end",
        "priority",
        "timeout",
        "headers",
        "binary_data_output",
    }
)
DETECTION_PARAMETERS = frozenset({*SPELLINGS, *CLASSES_FIELDS, *AGNOSTIC_FIELDS})
# name -> (datatype, shape with -1 for the batch and the detections)
OUTPUTS: Mapping[str, tuple[str, tuple[int, ...]]] = {
    "num_detections": ("INT32", (-1,)),
    "detection_boxes": ("FP32", (-1, -1, 4)),
    "detection_scores": ("FP32", (-1, -1)),
    "detection_classes": ("INT32", (-1, -1)),
    "detection_labels": ("BYTES", (-1, -1)),
}
_NUMPY_TYPES = {"INT32": "<i4", "FP32": "<f4"}


# --- Metadata


def live() -> dict[str, Any]:
    return {"live": True}


def ready(registry: ModelRegistry) -> dict[str, Any]:
    return {"ready": registry.ready}


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": version, "extensions": list(EXTENSIONS)}


def resolve_model(name: str, version: str | None, registry: ModelRegistry) -> str:
    """The model a V2 path names; the only version is "1". Unknown: 404."""
    if name not in registry.detectors:
        raise NotFound(f"unknown model {name[:80]!r}; this server has {', '.join(registry.names)}")
    if version not in (None, "", MODEL_VERSION):
        raise NotFound(f"model {name!r} has no version {version[:20]!r}; its only version is 1")
    return name


def model_metadata(info: ModelInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "versions": [MODEL_VERSION],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": name, "datatype": datatype, "shape": list(shape)}
            for name, (datatype, shape) in OUTPUTS.items()
        ],
        "parameters": {"classes": list(info.class_names)},
    }


def model_ready(info: ModelInfo, is_ready: bool) -> dict[str, Any]:
    return {"name": info.name, "ready": is_ready}


# --- Requests


@dataclass(frozen=True)
class InferRequest:
    """What an infer request asks for: the tasks, the request id and, per requested output in
    order, whether it goes back as binary data."""

    tasks: list[ImageTask]
    request_id: str | None
    outputs: list[tuple[str, bool]]


def _split_body(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    if header_length is None:
        return parse_json_body(body), b""
    text = header_length.strip()
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= len(body):
        raise InvalidRequest(
            f"{HEADER_LENGTH} must be the byte length of the JSON header, at most the body's "
            f"{len(body)} bytes; got {header_length[:20]!r}"
        )
    return parse_json_body(body[: int(text)]), body[int(text) :]


def _deserialize_bytes(raw: bytes, count: int) -> list[bytes]:
    """Triton's BYTES tensor: each element a 4-byte little-endian length, then the bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidRequest("IMAGE binary data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidRequest("IMAGE binary data ends inside an element")
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count:
        raise InvalidRequest(f"IMAGE has shape [{count}] but its binary data holds {len(elements)}")
    return elements


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [item for element in data for item in _flatten(element)]
    return [data]


def _image_input(payload: Mapping[str, Any], tail: bytes, max_images: int) -> list[bytes]:
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidRequest(f"send exactly one input, named {INPUT_NAME} (BYTES, shape [N])")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME:
        raise InvalidRequest(f"unknown input {str(tensor.get('name'))[:40]!r}: it is {INPUT_NAME}")
    if tensor.get("datatype") != "BYTES":
        raise InvalidRequest(f"{INPUT_NAME} must be datatype BYTES (one encoded image per element)")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or any(d != 1 for d in shape[1:])
    ):
        raise InvalidRequest(f"{INPUT_NAME} must have shape [N] (or [N, 1]), got {shape!r}")
    count = shape[0]
    if not 1 <= count <= max_images:
        raise InvalidRequest(f"{INPUT_NAME}: between 1 and {max_images} images, got {count}")
    parameters = tensor.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(tail):
            raise InvalidRequest(
                f"{INPUT_NAME}: binary_data_size {size!r} does not fit the {len(tail)} bytes "
                f"after the JSON header ({HEADER_LENGTH})"
            )
        if size != len(tail):
            raise InvalidRequest(f"{size} bytes of binary data announced, {len(tail)} sent")
        return _deserialize_bytes(tail, count)
    if tail:
        raise InvalidRequest(
            f"binary data after the JSON header, but {INPUT_NAME} has no binary_data_size"
        )
    elements = _flatten(tensor.get("data"))
    if len(elements) != count or not all(isinstance(e, str) for e in elements):
        raise InvalidRequest(
            f"{INPUT_NAME}: data must hold {count} base64 strings, one encoded image each"
        )
    return [decode_base64(element) for element in elements]


def _params(parameters: Any, info: ModelInfo) -> DetectionParams:
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise InvalidRequest("parameters must be an object")
    unknown = sorted(
        name
        for name in parameters
        if name not in PROTOCOL_PARAMETERS
        and name not in DETECTION_PARAMETERS
        and not name.startswith("triton_")
    )
    if unknown:
        raise InvalidParameter(
            f"unknown parameter {', '.join(unknown)[:120]}; the detection parameters are "
            "score_th, nms_iou, min_height, min_width, max_results, classes, agnostic_nms"
        )
    feature = {k: v for k, v in parameters.items() if k in DETECTION_PARAMETERS}
    return parse_detection_params(feature, DetectionParams(), info.class_names)


def _requested_outputs(payload: Mapping[str, Any]) -> list[tuple[str, bool]]:
    parameters = payload.get("parameters")
    default_binary = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    requested = payload.get("outputs")
    if requested is None:
        return [(name, default_binary) for name in OUTPUTS]
    if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
        raise InvalidRequest("outputs must be a list of objects with a name")
    chosen = []
    for output in requested:
        name = output.get("name")
        if name not in OUTPUTS:
            raise InvalidRequest(f"unknown output {str(name)[:40]!r}; known: {', '.join(OUTPUTS)}")
        output_parameters = output.get("parameters") or {}
        binary = default_binary
        if isinstance(output_parameters, dict) and "binary_data" in output_parameters:
            binary = output_parameters["binary_data"] is True
        chosen.append((str(name), binary))
    return chosen


def parse_infer(
    body: bytes,
    header_length: str | None,
    model: str,
    registry: ModelRegistry,
    max_images: int,
) -> InferRequest:
    payload, tail = _split_body(body, header_length)
    if not isinstance(payload, dict):
        raise InvalidJson("the inference request must be a JSON object")
    info = registry.detector(model).info
    params = _params(payload.get("parameters"), info)
    images = _image_input(payload, tail, max_images)
    request_id = payload.get("id")
    return InferRequest(
        tasks=[ImageTask(image, params, model) for image in images],
        request_id=str(request_id) if request_id is not None else None,
        outputs=_requested_outputs(payload),
    )


# --- Responses


def _tensors(outcomes: Sequence[TaskOutcome], class_names: Sequence[str]) -> dict[str, Any]:
    count = len(outcomes)
    width = max((len(o.result.detections) for o in outcomes), default=0)
    boxes = np.zeros((count, width, 4), dtype=np.float32)
    scores = np.zeros((count, width), dtype=np.float32)
    classes = np.full((count, width), -1, dtype=np.int32)
    labels = [["" for _ in range(width)] for _ in range(count)]
    numbers = np.zeros((count,), dtype=np.int32)
    for i, outcome in enumerate(outcomes):
        detections = outcome.result.detections
        n = len(detections)
        numbers[i] = n
        boxes[i, :n] = detections.xyxy
        scores[i, :n] = detections.scores
        classes[i, :n] = detections.class_ids
        for j, class_id in enumerate(detections.class_ids.tolist()):
            labels[i][j] = class_names[class_id]
    return {
        "num_detections": numbers,
        "detection_boxes": boxes,
        "detection_scores": scores,
        "detection_classes": classes,
        "detection_labels": labels,
    }


def _binary(datatype: str, value: Any) -> bytes:
    if datatype == "BYTES":
        encoded = [label.encode("utf-8") for row in value for label in row]
        return b"".join(struct.pack("<I", len(item)) + item for item in encoded)
    return bytes(np.ascontiguousarray(value, dtype=_NUMPY_TYPES[datatype]).tobytes())


def _json_data(datatype: str, value: Any) -> list[Any]:
    if datatype == "BYTES":
        return [label for row in value for label in row]
    if datatype == "FP32":
        return [round(float(v), 3) for v in np.asarray(value).ravel().tolist()]
    return [int(v) for v in np.asarray(value).ravel().tolist()]


def _shape(name: str, count: int, width: int) -> list[int]:
    return [count] if name == "num_detections" else [count, width, 4][: len(OUTPUTS[name][1])]


@dataclass(frozen=True)
class EncodedResponse:
    body: bytes
    # The JSON header's length when binary data follows it, else None.
    header_length: int | None


def infer_response(
    request: InferRequest, outcomes: Sequence[TaskOutcome | ApiError], registry: ModelRegistry
) -> EncodedResponse:
    """The inference response; any image that failed fails the request, naming it."""
    done: list[TaskOutcome] = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, ApiError):
            raise type(outcome)(f"{INPUT_NAME}[{index}]: {outcome.public_message}", outcome.detail)
        done.append(outcome)
    model = request.tasks[0].model
    tensors = _tensors(done, registry.detector(model).info.class_names)
    width = max((len(o.result.detections) for o in done), default=0)
    outputs, blobs = [], []
    for name, binary in request.outputs:
        datatype = OUTPUTS[name][0]
        output: dict[str, Any] = {
            "name": name,
            "datatype": datatype,
            "shape": _shape(name, len(done), width),
        }
        if binary:
            blob = _binary(datatype, tensors[name])
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output["data"] = _json_data(datatype, tensors[name])
        outputs.append(output)
    payload: dict[str, Any] = {"model_name": model, "model_version": MODEL_VERSION}
    if request.request_id is not None:
        payload["id"] = request.request_id
    payload["outputs"] = outputs
    header = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if not blobs:
        return EncodedResponse(header, None)
    return EncodedResponse(header + b"".join(blobs), len(header))


def error_body(error: ApiError) -> dict[str, Any]:
    return {"error": error.public_message}
