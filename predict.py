"""Object detection with ONNX models: decode an image, fit it into the network input, run the
model, decode the model family's head, apply NMS and map the boxes back onto the image.

This module knows nothing of HTTP. Everything per request is a local or a return value; the
`Detector` only holds what is fixed at load time (the session, the decoded head layout).

Model families (the `family` of a manifest; every decoder answers boxes in network-input pixels):

- `yolox`: YOLOX raw grid, one output `[1, cells, 5 + C]` (dx, dy, dw, dh, objectness, class
  probabilities) over the grids of strides 8, 16, 32. The default model.
- `gfl` (aliases `nanodet`, `picodet`): GFL heads without post-processing in the graph. Either
  per-stride pairs of class scores `[1, N, C]` and distributions `[1, N, 4 * bins]` (any number
  of strides; NanoDet-m, PP-PicoDet), or the single NanoDet-Plus output `[1, N_total, C + 4 *
  bins]`: per row the C class scores first, then the 4 distributions (left, top, right,
  bottom), the levels concatenated in stride order (8, 16, 32, 64 for NanoDet-Plus; any run of
  doubling strides from 4, 8 or 16 is accepted). Class scores are already sigmoided.
- `yolov5`: one output `[1, N, 5 + C]`: cx, cy, w, h in input pixels, objectness, class
  probabilities (sigmoided). Score = objectness x class probability. Also YOLOX exported with
  `decode_in_inference` (give `"preprocess"` for YOLOX's BGR, top-left, unscaled input).
- `yolov8` (Ultralytics YOLOv8 / YOLO11): one output `[1, 4 + C, N]`: cx, cy, w, h, class
  scores, no objectness. A manifest that says `yolov8` may also give the transposed `[1, N, 4 +
  C]`; detection without a manifest never guesses it (that shape is YOLOv5's).
- `e2e`: graphs that already ran NMS. One output `[1, N, 6]`: x1, y1, x2, y2, score, class
  (Ultralytics `nms=True`, YOLOv10); or four: `num_dets [1, 1]`, `boxes [1, N, 4]` (x1, y1, x2,
  y2), `scores [1, N]`, `classes [1, N]` (TensorRT EfficientNMS layout, YOLOv6/v7 end2end). Only
  the first num_dets rows count; rows with score <= 0 or a class outside the class names are
  padding. The service's own NMS still runs (harmless) and the score threshold applies.

Manifest `models/<name>.json` (a JSON object; unknown keys are logged and ignored):

- `file` (required): the ONNX file, relative to the manifest's folder.
- `license` (required): the weights' licence.
- `name`: optional; when given it must equal the file name's stem.
- `family`: one of the families or aliases above; absent or null: detected from the outputs.
- `input_size`: `{"width": W, "height": H}`; needed only when the ONNX input has no fixed size
  and the metadata has no `imgsz`. Must agree with a fixed input size.
- `class_names` (list of strings) or `labels_file` (one name per line, relative to the
  manifest); neither: the ONNX metadata `names`, else COCO-80 when the model has 80 classes.
- `preprocess`: overrides of the family's defaults, all optional: `resize` ("letterbox" keeps
  the aspect ratio and pads, "stretch" resizes to the input size), `pad_position` ("top_left" |
  "center"), `pad_value` (0..255, the colour of the padding before scaling), `channel_order`
  ("bgr" | "rgb"), `scale` (> 0), `mean` and `std` (3 numbers in the tensor's channel order, or
  null for none). The tensor is `x = (pixel * scale - mean) / std`, pixel in 0..255.
- `cell_center` (gfl only): where a GFL cell's centre is: "pixel_center" `(i + 0.5) * stride -
  0.5` (NanoDet-m, the default for per-stride outputs), "corner" `i * stride` (NanoDet-Plus,
  the default for the single output), "center" `(i + 0.5) * stride` (PP-PicoDet).
- `description`, `upstream_url`, `sha256` (list of accepted digests; empty: any).

Pre-processing defaults: yolox: letterbox, top_left, pad 114, BGR, scale 1, no mean/std. gfl /
nanodet: letterbox, center, pad 0, BGR, mean (103.53, 116.28, 123.675), std (57.375, 57.12,
58.395). picodet: PaddleDetection's: stretch, RGB, scale 1/255, ImageNet mean and std.
yolov5, yolov8, e2e: letterbox, center, pad 114, RGB, scale 1/255.

A bare `<name>.onnx` without a manifest is served too: its family is detected from the output
shapes (`detect_family`), its class names, input size, task, licence and description come from
the ONNX metadata that Ultralytics exports write (`names`, `imgsz`, `task`, `license`,
`description`; read with `ast.literal_eval`, never `eval`). A model whose metadata `task` is not
`detect` is refused.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol

# OpenCV reads this variable once, when cv2 is imported, so it has to be set first. It is a
# backstop only: the service checks the pixel count from the image header before decoding.
OPENCV_PIXEL_BACKSTOP = 1 << 28
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(OPENCV_PIXEL_BACKSTOP))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import onnxruntime as ort  # noqa: E402

logger = logging.getLogger("detection_service.predict")

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
ImageArray = npt.NDArray[np.uint8]

# Before the O(N^2) NMS only the best candidates are kept: a threshold of 0 would otherwise
# send every anchor of the model into it.
MAX_NMS_CANDIDATES = 2000
# The largest network input side taken from a manifest or ONNX metadata: every request
# allocates a float tensor of that size, so a typo like 64000 must fail at load.
MAX_INPUT_SIDE = 8192
# Metadata strings parsed with ast.literal_eval are bounded: a hostile file could otherwise
# make the parser build a huge structure at load.
MAX_METADATA_CHARS = 1 << 20
# The label list used for an 80-class model that names none of its classes.
COCO80_FILE = "coco80.txt"
# Distribution bins per side that NanoDet, NanoDet-Plus and PicoDet all ship (reg_max 7); only
# used to read a class count from a shape when nothing else says it.
DEFAULT_GFL_BINS = 8

Resize = Literal["letterbox", "stretch"]
PadPosition = Literal["top_left", "center"]
ChannelOrder = Literal["bgr", "rgb"]
CellCenter = Literal["pixel_center", "corner", "center"]
ModelSource = Literal["manifest", "onnx metadata"]


class DetectorError(Exception):
    """Base of the errors raised by this module; messages are safe to show to a caller."""


class ModelLoadError(DetectorError):
    """The model or its manifest cannot be loaded or does not match what it claims to be."""


class ModelFileMissingError(ModelLoadError):
    """The weights file a manifest names is not there (not fetched yet)."""


class ImageDecodeError(DetectorError):
    """The bytes are not an image OpenCV can decode."""


# --------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionParams:
    """Per-request filtering parameters; fractions are of the original image's size.

    `class_ids`: keep only these classes (None: all). Applied before NMS, so that a class the
    caller does not want can never suppress one it does. `class_agnostic`: NMS across classes
    (one box per object whatever its class) instead of per class.
    """

    score_threshold: float = 0.3
    nms_iou_threshold: float = 0.4
    min_height_fraction: float = 0.03
    min_width_fraction: float = 0.03
    max_results: int = 20
    class_ids: frozenset[int] | None = None
    class_agnostic: bool = False


@dataclass(frozen=True)
class Detections:
    """Boxes as `xyxy` pixel corners (N, 4), their `scores` (N,) and `class_ids` (N,)."""

    xyxy: FloatArray
    scores: FloatArray
    class_ids: IntArray

    def __post_init__(self) -> None:
        n = self.scores.shape[0] if self.scores.ndim == 1 else -1
        if self.xyxy.shape != (n, 4) or self.class_ids.shape != (n,):
            raise ValueError(
                f"inconsistent detection shapes: xyxy {self.xyxy.shape}, "
                f"scores {self.scores.shape}, class_ids {self.class_ids.shape}"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int64),
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, index: npt.NDArray[Any]) -> Detections:
        """A new `Detections` holding the rows picked by a boolean mask or an index array."""
        return Detections(
            xyxy=self.xyxy[index], scores=self.scores[index], class_ids=self.class_ids[index]
        )


@dataclass(frozen=True)
class LetterboxInfo:
    """How an image was fitted into the network input, so that boxes can be mapped back:
    input = original * scale + pad, per axis (the two scales are equal for a letterbox)."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    image_width: int
    image_height: int


@dataclass(frozen=True)
class PreprocessSpec:
    """How a model wants its input tensor (NCHW float) made from a BGR uint8 image.

    `resize`: "letterbox" keeps the aspect ratio and pads at `pad_position` with `pad_value`
    (0..255); "stretch" resizes to the input size, x and y scaled separately. Then the channels
    are put in `channel_order` and each value is `(pixel * scale - mean) / std`, with `mean` and
    `std` in the tensor's channel order (None: 0 and 1).
    """

    resize: Resize = "letterbox"
    pad_position: PadPosition = "center"
    pad_value: int = 114
    channel_order: ChannelOrder = "bgr"
    scale: float = 1.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class DetectionResult:
    detections: Detections
    image_width: int
    image_height: int
    timings_ms: Mapping[str, float]


@dataclass(frozen=True)
class ModelManifest:
    """What `models/<name>.json` says about a model (see the module documentation).

    `family`, `input_width`/`input_height` and `class_names` may be unknown (None, None, ()):
    the `Detector` then finds them in the model, and its own `manifest` has them filled in.
    `preprocess` holds only the overridden `PreprocessSpec` fields. `bare` marks a manifest made
    up for a `.onnx` file that has none.
    """

    name: str
    family: str | None
    file: str
    input_width: int | None
    input_height: int | None
    class_names: tuple[str, ...]
    license: str
    upstream_url: str | None
    sha256: tuple[str, ...]
    description: str = ""
    preprocess: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    cell_center: CellCenter | None = None
    bare: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model, as `GET /v1/models` describes it. `source` says where its description
    came from: a manifest file, or only the ONNX file itself."""

    name: str
    family: str
    input_width: int
    input_height: int
    class_names: tuple[str, ...]
    sha256: str
    license: str
    execution_providers: tuple[str, ...]
    intra_op_threads: int
    default_params: DetectionParams = field(default_factory=DetectionParams)
    description: str = ""
    source: ModelSource = "manifest"


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------

MANIFEST_KEYS = frozenset(
    {
        "name",
        "family",
        "file",
        "input_size",
        "class_names",
        "labels_file",
        "license",
        "description",
        "upstream_url",
        "sha256",
        "preprocess",
        "cell_center",
    }
)
PREPROCESS_CHOICES: Mapping[str, tuple[str, ...]] = {
    "resize": ("letterbox", "stretch"),
    "pad_position": ("top_left", "center"),
    "channel_order": ("bgr", "rgb"),
}
PREPROCESS_KEYS = ("resize", "pad_position", "pad_value", "channel_order", "scale", "mean", "std")
CELL_CENTERS: tuple[CellCenter, ...] = ("pixel_center", "corner", "center")


def _manifest_field(raw: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelLoadError(f"{path}: field {key!r} must be a {kind.__name__}, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _side(value: Any) -> int | None:
    """A network input side: an integer 1..MAX_INPUT_SIDE, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_INPUT_SIDE:
        return value
    return None


def _parse_preprocess(raw: Any, path: Path) -> Mapping[str, Any]:
    """The `preprocess` object of a manifest as `PreprocessSpec` field values."""
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: 'preprocess' must be an object, got {raw!r}")
    unknown = sorted(set(raw) - set(PREPROCESS_KEYS))
    if unknown:
        # A misspelt key would otherwise be silently ignored and the model fed the wrong tensor.
        raise ModelLoadError(
            f"{path}: unknown preprocess keys {unknown}; known: {', '.join(PREPROCESS_KEYS)}"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}: preprocess.{key}"
        if key in PREPROCESS_CHOICES:
            if value not in PREPROCESS_CHOICES[key]:
                choices = " | ".join(PREPROCESS_CHOICES[key])
                raise ModelLoadError(f"{where} must be one of {choices}, got {value!r}")
            values[key] = value
        elif key == "pad_value":
            if not _is_int(value) or not 0 <= value <= 255:
                raise ModelLoadError(f"{where} must be an integer 0..255, got {value!r}")
            values[key] = value
        elif key == "scale":
            if not _is_number(value) or value <= 0:
                raise ModelLoadError(f"{where} must be a positive number, got {value!r}")
            values[key] = float(value)
        elif value is None:  # mean or std: null removes the family's default
            values[key] = None
        else:
            if not isinstance(value, list) or len(value) != 3 or not all(map(_is_number, value)):
                raise ModelLoadError(f"{where} must be 3 numbers or null, got {value!r}")
            if key == "std" and not all(v > 0 for v in value):
                raise ModelLoadError(f"{where} must be positive, got {value!r}")
            values[key] = (float(value[0]), float(value[1]), float(value[2]))
    return MappingProxyType(values)


def _parse_input_size(raw: Any, path: Path) -> tuple[int, int]:
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: field 'input_size' must be a dict, got {raw!r}")
    width, height = _side(raw.get("width")), _side(raw.get("height"))
    if width is None or height is None:
        raise ModelLoadError(
            f"{path}: input_size needs integer width and height, 1..{MAX_INPUT_SIDE}"
        )
    return width, height


def _parse_class_names(raw: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    if "class_names" in raw:
        names = _manifest_field(raw, "class_names", list, path)
    elif "labels_file" in raw:
        labels_path = path.parent / _manifest_field(raw, "labels_file", str, path)
        try:
            lines = labels_path.read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8
            raise ModelLoadError(f"{path}: cannot read labels file {labels_path}: {exc}") from exc
        names = [line.strip() for line in lines if line.strip()]
    else:
        return ()  # found in the ONNX metadata, or COCO-80, when the model is loaded
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ModelLoadError(f"{path}: class names must be a non-empty list of strings")
    return tuple(names)


def load_manifest(path: Path) -> ModelManifest:
    """Read and validate a model manifest; errors name the file and the field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read model manifest {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: a manifest is a JSON object")
    unknown = sorted(set(raw) - MANIFEST_KEYS)
    if unknown:
        logger.warning("%s: ignoring unknown manifest keys %s", path, ", ".join(unknown))
    name = path.stem
    if "name" in raw:
        name = _manifest_field(raw, "name", str, path)
        if name != path.stem:
            # The registry knows a model by its file name; a second name would be ambiguous.
            raise ModelLoadError(
                f"{path}: field 'name' is {name!r} but a manifest's name is its file name "
                f"({path.stem!r}); drop the field or rename the file"
            )
    family = raw.get("family")
    if family is not None:
        family = _manifest_field(raw, "family", str, path)
        if family not in FAMILIES:
            raise ModelLoadError(
                f"{path}: unknown family {family!r}; known: {', '.join(sorted(FAMILIES))}"
            )
    width = height = None
    if raw.get("input_size") is not None:
        width, height = _parse_input_size(raw["input_size"], path)
    sha256 = raw.get("sha256", [])
    if not isinstance(sha256, list) or not all(isinstance(s, str) for s in sha256):
        raise ModelLoadError(f"{path}: 'sha256' must be a list of hex strings")
    upstream = raw.get("upstream_url")
    if upstream is not None and not isinstance(upstream, str):
        raise ModelLoadError(f"{path}: 'upstream_url' must be a string")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ModelLoadError(f"{path}: 'description' must be a string")
    cell_center = raw.get("cell_center")
    if cell_center is not None and cell_center not in CELL_CENTERS:
        raise ModelLoadError(
            f"{path}: 'cell_center' must be one of {' | '.join(CELL_CENTERS)}, got {cell_center!r}"
        )
    preprocess = raw.get("preprocess")
    return ModelManifest(
        name=name,
        family=family,
        file=_manifest_field(raw, "file", str, path),
        input_width=width,
        input_height=height,
        class_names=_parse_class_names(raw, path),
        license=_manifest_field(raw, "license", str, path),
        upstream_url=upstream,
        sha256=tuple(s.lower() for s in sha256),
        description=description,
        preprocess=(
            MappingProxyType({}) if preprocess is None else _parse_preprocess(preprocess, path)
        ),
        cell_center=cell_center,
    )


def bare_manifest(model_path: Path) -> ModelManifest:
    """The manifest of a `.onnx` file that has none: everything is read from the model."""
    return ModelManifest(
        name=model_path.stem,
        family=None,
        file=model_path.name,
        input_width=None,
        input_height=None,
        class_names=(),
        license="unknown",
        upstream_url=None,
        sha256=(),
        bare=True,
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Image decoding and pre-processing
# --------------------------------------------------------------------------------------------


def decode_image(data: bytes | bytearray | memoryview) -> ImageArray:
    """Decode encoded image bytes into a BGR uint8 array (EXIF orientation applied).

    The caller is expected to have checked the pixel count from the header already.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageDecodeError("the image is empty")
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError("the image could not be decoded") from exc
    # OpenCV >= 4.11 answers None for truncated or corrupt data instead of a partial image.
    if image is None or image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageDecodeError("the image could not be decoded (corrupt or unsupported)")
    return np.asarray(image, dtype=np.uint8)


def letterbox(
    image: ImageArray, input_width: int, input_height: int, spec: PreprocessSpec
) -> tuple[FloatArray, LetterboxInfo]:
    """Fit `image` into the network input as `spec` says (letterbox or stretch, channel order,
    scaling); returns a new NCHW float32 tensor and how to map boxes back."""
    image_height, image_width = image.shape[:2]
    if spec.resize == "stretch":
        scale_x, scale_y = input_width / image_width, input_height / image_height
        resized_width, resized_height = input_width, input_height
        pad_x = pad_y = 0
    else:
        scale_x = scale_y = min(input_width / image_width, input_height / image_height)
        # Rounded down, as the reference pre-processing does; at least one pixel each way.
        resized_width = max(1, min(input_width, int(image_width * scale_x)))
        resized_height = max(1, min(input_height, int(image_height * scale_y)))
        if spec.pad_position == "center":
            pad_x = (input_width - resized_width) // 2
            pad_y = (input_height - resized_height) // 2
        else:
            pad_x = pad_y = 0
    resized = cv2.resize(image, (resized_width, resized_height), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((input_height, input_width, 3), spec.pad_value, dtype=np.uint8)
    canvas[pad_y : pad_y + resized_height, pad_x : pad_x + resized_width] = resized
    # Reversed as a view; astype makes the copy.
    ordered = canvas[:, :, ::-1] if spec.channel_order == "rgb" else canvas
    scaled = ordered.astype(np.float32)
    if spec.scale != 1.0:
        scaled *= np.float32(spec.scale)
    if spec.mean is not None:
        scaled -= np.asarray(spec.mean, dtype=np.float32)
    if spec.std is not None:
        scaled /= np.asarray(spec.std, dtype=np.float32)
    tensor: FloatArray = np.ascontiguousarray(scaled.transpose(2, 0, 1)[np.newaxis])
    info = LetterboxInfo(
        scale_x=scale_x,
        scale_y=scale_y,
        pad_x=pad_x,
        pad_y=pad_y,
        image_width=image_width,
        image_height=image_height,
    )
    return tensor, info


def unletterbox(xyxy: FloatArray, info: LetterboxInfo) -> FloatArray:
    """Map boxes from network-input pixels back to the original image, clipped to it."""
    boxes = xyxy.astype(np.float32, copy=True)
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - info.pad_x) / info.scale_x
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - info.pad_y) / info.scale_y
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, info.image_width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, info.image_height)
    return boxes


# --------------------------------------------------------------------------------------------
# IoU and NMS
# --------------------------------------------------------------------------------------------


def box_area(xyxy: FloatArray) -> FloatArray:
    widths = np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None)
    heights = np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)
    return np.asarray(widths * heights, dtype=np.float32)


def box_iou(boxes_a: FloatArray, boxes_b: FloatArray) -> FloatArray:
    """Pairwise IoU (N, M); 0 where the union is empty (degenerate boxes)."""
    area_a = box_area(boxes_a)[:, None]
    area_b = box_area(boxes_b)[None, :]
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    inter_wh = np.clip(bottom_right - top_left, 0, None)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = area_a + area_b - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.asarray(iou, dtype=np.float32)


def nms(xyxy: FloatArray, scores: FloatArray, iou_threshold: float) -> IntArray:
    """Greedy NMS; the indices kept, best score first. Boxes with IoU > threshold are dropped."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        rest = order[1:]
        overlaps = box_iou(xyxy[best : best + 1], xyxy[rest])[0]
        order = rest[overlaps <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    detections: Detections, iou_threshold: float, class_agnostic: bool = False
) -> Detections:
    """NMS, best first. Class-aware by default: boxes of different classes never suppress each
    other. `class_agnostic`: any box suppresses any other, whatever their classes.

    Each class is shifted by its own offset larger than the span of all coordinates (boxes
    may be negative before clipping), so one NMS pass handles all classes without a loop.
    """
    if len(detections) == 0:
        return detections
    if len(detections) > MAX_NMS_CANDIDATES:
        top = np.argsort(-detections.scores, kind="stable")[:MAX_NMS_CANDIDATES]
        detections = detections.select(top)
    if class_agnostic:
        return detections.select(nms(detections.xyxy, detections.scores, iou_threshold))
    offset = float(detections.xyxy.max() - detections.xyxy.min()) + 1.0
    shifted = detections.xyxy + (detections.class_ids.astype(np.float32) * offset)[:, None]
    return detections.select(nms(shifted, detections.scores, iou_threshold))


def select_classes(detections: Detections, class_ids: frozenset[int]) -> Detections:
    """Only the detections of the given classes."""
    wanted = np.fromiter(class_ids, dtype=np.int64, count=len(class_ids))
    return detections.select(np.isin(detections.class_ids, wanted))


def filter_detections(
    detections: Detections, params: DetectionParams, image_width: int, image_height: int
) -> Detections:
    """Drop boxes below the size fractions, sort by score and keep `max_results`."""
    widths = detections.xyxy[:, 2] - detections.xyxy[:, 0]
    heights = detections.xyxy[:, 3] - detections.xyxy[:, 1]
    big_enough = (widths >= params.min_width_fraction * image_width) & (
        heights >= params.min_height_fraction * image_height
    )
    # Clipping can leave zero-area boxes on the border; they are never useful answers.
    big_enough &= (widths > 0) & (heights > 0)
    kept = detections.select(big_enough)
    order = np.argsort(-kept.scores, kind="stable")[: params.max_results]
    return kept.select(order)


# --------------------------------------------------------------------------------------------
# Model families: each turns the raw outputs into candidate boxes in network-input pixels
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputSpec:
    """A model output as the session describes it; `dtype` is onnxruntime's type string."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str = "tensor(float)"


class Head(Protocol):
    """A model family's decoder, bound to one model's output layout."""

    def decode(self, outputs: Mapping[str, FloatArray], score_threshold: float) -> Detections: ...


class Family(Protocol):
    """A model family: its default pre-processing and how to read its outputs."""

    name: str
    preprocess: PreprocessSpec

    def count_classes(self, outputs: Sequence[OutputSpec]) -> int | None:
        """How many classes the outputs' shapes imply, None when they do not say."""
        ...

    def bind(self, outputs: Sequence[OutputSpec], manifest: ModelManifest) -> Head:
        """The decoder for these outputs; `manifest` has input size and class names known."""
        ...


def _dims(spec: OutputSpec) -> tuple[int | None, ...]:
    """The output's shape with unknown axes as None, except the batch axis, taken as 1."""
    dims = [d if isinstance(d, int) and not isinstance(d, bool) else None for d in spec.shape]
    if dims and dims[0] is None:
        dims[0] = 1
    return tuple(dims)


def _static_dims(spec: OutputSpec) -> tuple[int, ...]:
    """The output's shape with the batch axis, which may be symbolic, taken as 1."""
    dims = _dims(spec)
    static = tuple(d for d in dims if d is not None)
    if len(static) != len(dims):
        raise ModelLoadError(f"output {spec.name!r} has a dynamic shape {spec.shape}")
    return static


def _input_size(manifest: ModelManifest) -> tuple[int, int]:
    if manifest.input_width is None or manifest.input_height is None:
        raise ModelLoadError(f"model {manifest.name!r}: the input size is not known")
    return manifest.input_width, manifest.input_height


def _grid_cells(input_width: int, input_height: int, strides: Sequence[int]) -> int:
    """Cells of the grids of `strides` over the input, each `ceil(side / stride)` wide."""
    return sum(
        math.ceil(input_width / stride) * math.ceil(input_height / stride) for stride in strides
    )


def _strides_for_cells(cells: int, input_width: int, input_height: int) -> int:
    """The stride whose grid over the input has exactly `cells` cells."""
    for stride in (4, 8, 16, 32, 64, 128):
        if _grid_cells(input_width, input_height, (stride,)) == cells:
            return stride
    raise ModelLoadError(
        f"{cells} cells match no stride grid over a {input_width}x{input_height} input"
    )


def _grid_centres(
    input_width: int, input_height: int, stride: int
) -> tuple[FloatArray, FloatArray]:
    """Cell indices (x, y) of a stride's grid, row-major, as float arrays."""
    columns, rows = math.ceil(input_width / stride), math.ceil(input_height / stride)
    ys, xs = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    return xs.reshape(-1).astype(np.float32), ys.reshape(-1).astype(np.float32)


def _check_class_count(manifest: ModelManifest, output_classes: int, output_name: str) -> None:
    if output_classes != len(manifest.class_names):
        raise ModelLoadError(
            f"model {manifest.name!r}: output {output_name!r} has {output_classes} classes "
            f"but the manifest names {len(manifest.class_names)}"
        )


def _cxcywh_to_xyxy(boxes: FloatArray) -> FloatArray:
    half_w, half_h = boxes[:, 2] / 2, boxes[:, 3] / 2
    xyxy = np.stack(
        [boxes[:, 0] - half_w, boxes[:, 1] - half_h, boxes[:, 0] + half_w, boxes[:, 1] + half_h],
        axis=1,
    )
    return xyxy.astype(np.float32)


def _objectness_candidates(
    rows: FloatArray, score_threshold: float
) -> tuple[IntArray, IntArray, FloatArray]:
    """Rows `[N, 5 + C]` with objectness in column 4 and class probabilities from column 5:
    the rows whose objectness x best class probability reaches the threshold, their classes
    and scores."""
    objectness = rows[:, 4]
    # score = objectness * p_class <= objectness, so the objectness test is a cheap prefilter.
    candidates = np.nonzero(objectness >= score_threshold)[0]
    class_probs = rows[candidates, 5:]
    class_ids = class_probs.argmax(axis=1)
    scores = objectness[candidates] * class_probs[np.arange(candidates.size), class_ids]
    passing = scores >= score_threshold
    return (
        candidates[passing].astype(np.int64),
        class_ids[passing].astype(np.int64),
        scores[passing].astype(np.float32),
    )


# --- YOLOX ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class YoloxHead:
    """YOLOX raw grid output `[1, cells, 5 + C]`: dx, dy, dw, dh, objectness, class probs."""

    output_name: str
    grid_x: FloatArray
    grid_y: FloatArray
    strides: FloatArray

    def decode(self, outputs: Mapping[str, FloatArray], score_threshold: float) -> Detections:
        rows = outputs[self.output_name][0]
        candidates, class_ids, scores = _objectness_candidates(rows, score_threshold)
        deltas = rows[candidates, :4]
        strides = self.strides[candidates]
        centre_x = (deltas[:, 0] + self.grid_x[candidates]) * strides
        centre_y = (deltas[:, 1] + self.grid_y[candidates]) * strides
        # Clamped so that a wild logit cannot overflow exp(); 10 is far beyond any real box.
        half_w = np.exp(np.minimum(deltas[:, 2], 10.0)) * strides / 2
        half_h = np.exp(np.minimum(deltas[:, 3], 10.0)) * strides / 2
        xyxy = np.stack(
            [centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], axis=1
        )
        return Detections(xyxy=xyxy.astype(np.float32), scores=scores, class_ids=class_ids)


class YoloxFamily:
    name = "yolox"
    preprocess = PreprocessSpec(pad_position="top_left", pad_value=114)
    strides = (8, 16, 32)

    def count_classes(self, outputs: Sequence[OutputSpec]) -> int | None:
        return _rows_class_count(outputs, extra=5)

    def bind(self, outputs: Sequence[OutputSpec], manifest: ModelManifest) -> Head:
        if len(outputs) != 1:
            raise ModelLoadError(f"a YOLOX model has one output, this one has {len(outputs)}")
        dims = _static_dims(outputs[0])
        if len(dims) != 3 or dims[0] != 1:
            raise ModelLoadError(f"YOLOX output must be [1, cells, 5 + classes], got {dims}")
        _check_class_count(manifest, dims[2] - 5, outputs[0].name)
        width, height = _input_size(manifest)
        grid_xs, grid_ys, strides = [], [], []
        for stride in self.strides:
            xs, ys = _grid_centres(width, height, stride)
            grid_xs.append(xs)
            grid_ys.append(ys)
            strides.append(np.full(xs.shape, stride, np.float32))
        grid_x = np.concatenate(grid_xs)
        if grid_x.size != dims[1]:
            raise ModelLoadError(
                f"YOLOX output has {dims[1]} rows; strides {self.strides} over "
                f"{width}x{height} give {grid_x.size}"
            )
        return YoloxHead(
            output_name=outputs[0].name,
            grid_x=grid_x,
            grid_y=np.concatenate(grid_ys),
            strides=np.concatenate(strides),
        )


def _rows_class_count(outputs: Sequence[OutputSpec], extra: int) -> int | None:
    """Classes of one `[1, N, extra + C]` output."""
    if len(outputs) != 1:
        return None
    dims = _dims(outputs[0])
    if len(dims) == 3 and dims[2] is not None and dims[2] > extra:
        return dims[2] - extra
    return None


# --- YOLOv5 ---------------------------------------------------------------------------------

# Ultralytics' and YOLOv5's own exports: letterbox centred on grey, RGB, 0..1.
YOLO_PREPROCESS = PreprocessSpec(
    pad_position="center", pad_value=114, channel_order="rgb", scale=1 / 255
)


@dataclass(frozen=True)
class Yolov5Head:
    """Rows `[1, N, 5 + C]`: cx, cy, w, h in input pixels, objectness, class probabilities
    (both already sigmoided in the graph). Score = objectness x class probability."""

    output_name: str

    def decode(self, outputs: Mapping[str, FloatArray], score_threshold: float) -> Detections:
        rows = outputs[self.output_name][0]
        candidates, class_ids, scores = _objectness_candidates(rows, score_threshold)
        xyxy = _cxcywh_to_xyxy(rows[candidates, :4])
        return Detections(xyxy=xyxy, scores=scores, class_ids=class_ids)


class Yolov5Family:
    name = "yolov5"
    preprocess = YOLO_PREPROCESS

    def count_classes(self, outputs: Sequence[OutputSpec]) -> int | None:
        return _rows_class_count(outputs, extra=5)

    def bind(self, outputs: Sequence[OutputSpec], manifest: ModelManifest) -> Head:
        if len(outputs) != 1:
            raise ModelLoadError(f"a YOLOv5 model has one output, this one has {len(outputs)}")
        dims = _dims(outputs[0])
        if len(dims) != 3 or dims[0] != 1 or dims[2] is None:
            raise ModelLoadError(
                f"YOLOv5 output must be [1, N, 5 + classes], got {list(outputs[0].shape)}"
            )
        _check_class_count(manifest, dims[2] - 5, outputs[0].name)
        return Yolov5Head(output_name=outputs[0].name)


# --- YOLOv8 / YOLO11 ------------------------------------------------------------------------


@dataclass(frozen=True)
class Yolov8Head:
    """Ultralytics YOLOv8/YOLO11: `[1, 4 + C, N]` (or `[1, N, 4 + C]` when not
    `channels_first`): cx, cy, w, h in input pixels, then the class scores; no objectness."""

    output_name: str
    channels_first: bool

    def decode(self, outputs: Mapping[str, FloatArray], score_threshold: float) -> Detections:
        raw = outputs[self.output_name][0]
        # Channels-first is how Ultralytics exports: reduce along axis 0 instead of transposing
        # the whole (4 + C) x N matrix, then transpose only the candidates.
        by_channel = raw if self.channels_first else raw.T
        class_scores = by_channel[4:]
        best = class_scores.max(axis=0)
        candidates = np.nonzero(best >= score_threshold)[0]
        class_ids = class_scores[:, candidates].argmax(axis=0).astype(np.int64)
        xyxy = _cxcywh_to_xyxy(np.ascontiguousarray(by_channel[:4, candidates].T))
        return Detections(
            xyxy=xyxy, scores=best[candidates].astype(np.float32), class_ids=class_ids
        )


class Yolov8Family:
    name = "yolov8"
    preprocess = YOLO_PREPROCESS

    def count_classes(self, outputs: Sequence[OutputSpec]) -> int | None:
        if len(outputs) != 1:
            return None
        dims = _dims(outputs[0])
        if len(dims) != 3:
            return None
        known = [d for d in dims[1:] if d is not None]
        # N (anchors) is larger than 4 + C in every real model, whichever axis it is on.
        return min(known) - 4 if known and min(known) > 4 else None

    def bind(self, outputs: Sequence[OutputSpec], manifest: ModelManifest) -> Head:
        if len(outputs) != 1:
            raise ModelLoadError(f"a YOLOv8 model has one output, this one has {len(outputs)}")
        dims = _dims(outputs[0])
        channels = 4 + len(manifest.class_names)
        if len(dims) == 3 and dims[0] == 1 and dims[1] == channels:
            return Yolov8Head(output_name=outputs[0].name, channels_first=True)
        if len(dims) == 3 and dims[0] == 1 and dims[2] == channels:
            return Yolov8Head(output_name=outputs[0].name, channels_first=False)
        raise ModelLoadError(
            f"YOLOv8 output must be [1, 4 + classes, N] (or [1, N, 4 + classes]) with "
            f"{len(manifest.class_names)} classes, so {channels} channels; "
            f"{outputs[0].name!r} is {list(outputs[0].shape)}"
        )


# --- end-to-end (NMS in the graph) ----------------------------------------------------------


def _end_to_end_detections(
    xyxy: FloatArray,
    scores: FloatArray,
    classes: FloatArray,
    num_classes: int,
    score_threshold: float,
) -> Detections:
    """Rows that are real detections: padding rows have a score of 0 or a class of -1."""
    class_ids = np.rint(np.nan_to_num(classes, nan=-1.0)).astype(np.int64)
    keep = (
        (scores > 0)
        & (scores >= score_threshold)
        & (class_ids >= 0)
        & (class_ids < num_classes)
        & np.all(np.isfinite(xyxy), axis=1)
    )
    return Detections(
        xyxy=xyxy[keep].astype(np.float32),
        scores=scores[keep].astype(np.float32),
        class_ids=class_ids[keep],
    )


@dataclass(frozen=True)
class EndToEndRowsHead:
    """One output `[1, N, 6]`: x1, y1, x2, y2, score, class (Ultralytics nms=True, YOLOv10)."""

    output_name: str
    num_classes: int

    def decode(self, outputs: Mapping[str, FloatArray], score_threshold: float) -> Detections:
        rows = outputs[self.output_name][0]
        return _end_to_end_detections(
            rows[:, :4], rows[:, 4], rows[:, 5], self.num_classes, score_threshold
        )


@dataclass(frozen=True)
class EndToEndSplitHead:
    """Four outputs: num_dets `[1, 1]`, boxes `[1, N, 4]` x1 y1 x2 y2, scores `[1, N]`,
    classes `[1, N]` (TensorRT EfficientNMS layout); only the first num_dets rows count."""

    num_dets_name: str
    boxes_name: str
    scores_name: str
    classes_name: str
    num_classes: int

    def decode(self, outputs: Mapping[str, FloatArray], score_threshold: float) -> Detections:
        boxes = outputs[self.boxes_name][0]
        count = outputs[self.num_dets_name].reshape(-1)
        valid = int(np.clip(count[0], 0, boxes.shape[0])) if count.size else 0
        return _end_to_end_detections(
            boxes[:valid],
            outputs[self.scores_name][0][:valid],
            outputs[self.classes_name][0][:valid],
            self.num_classes,
            score_threshold,
        )


def _name_hint(name: str, hints: Mapping[str, tuple[str, ...]]) -> str | None:
    """The one role whose words appear in an output's name, None when none or several do."""
    lowered = name.lower()
    roles = {role for role, words in hints.items() if any(w in lowered for w in words)}
    return roles.pop() if len(roles) == 1 else None


E2E_HINTS: Mapping[str, tuple[str, ...]] = {
    "scores": ("score", "conf"),
    "classes": ("class", "label", "cls"),
}


def _end_to_end_outputs(outputs: Sequence[OutputSpec]) -> tuple[str, str, str, str] | None:
    """(num_dets, boxes, scores, classes) output names of a four-output end-to-end model."""
    if len(outputs) != 4:
        return None
    dims = {o.name: _dims(o) for o in outputs}
    boxes = [o for o in outputs if len(dims[o.name]) == 3 and dims[o.name][2] == 4]
    counts = [o for o in outputs if dims[o.name] in ((1,), (1, 1))]
    if len(counts) > 1:  # scores and classes of a model keeping one box look the same
        counts = [o for o in counts if "num" in o.name.lower()]
    if len(boxes) != 1 or len(counts) != 1:
        return None
    flat = [o for o in outputs if o not in boxes and o not in counts]
    if len(flat) != 2 or any(len(dims[o.name]) != 2 or dims[o.name][0] != 1 for o in flat):
        return None
    roles: dict[str, OutputSpec] = {}
    for output in flat:
        role = _name_hint(output.name, E2E_HINTS)
        if role is None:  # the classes are integers in every exporter that writes integers
            role = "scores" if "float" in output.dtype else "classes"
        roles.setdefault(role, output)
    if set(roles) != {"scores", "classes"}:
        return None
    rows = {dims[boxes[0].name][1], dims[flat[0].name][1], dims[flat[1].name][1]} - {None}
    if len(rows) > 1:
        return None
    return counts[0].name, boxes[0].name, roles["scores"].name, roles["classes"].name


class EndToEndFamily:
    name = "e2e"
    preprocess = YOLO_PREPROCESS

    def count_classes(self, outputs: Sequence[OutputSpec]) -> int | None:
        return None  # class ids are values, not channels: the shapes do not say

    def bind(self, outputs: Sequence[OutputSpec], manifest: ModelManifest) -> Head:
        num_classes = len(manifest.class_names)
        if len(outputs) == 1:
            dims = _dims(outputs[0])
            if len(dims) == 3 and dims[0] == 1 and dims[2] == 6:
                return EndToEndRowsHead(output_name=outputs[0].name, num_classes=num_classes)
        names = _end_to_end_outputs(outputs)
        if names is None:
            found = ", ".join(f"{o.name!r} {list(o.shape)}" for o in outputs)
            raise ModelLoadError(
                "an end-to-end model has one output [1, N, 6] (x1, y1, x2, y2, score, class) "
                "or four: num_dets [1, 1], boxes [1, N, 4], scores [1, N], classes [1, N]; "
                f"found {found or 'no outputs'}"
            )
        return EndToEndSplitHead(*names, num_classes=num_classes)


# --- GFL (NanoDet, NanoDet-Plus, PP-PicoDet) ------------------------------------------------


def _whole_axis() -> slice:
    return slice(None)


@dataclass(frozen=True)
class GflLevel:
    """One stride's cells: where its class scores and distributions are (whole outputs, or
    row and column ranges of the single NanoDet-Plus output) and the cells' centres."""

    stride: int
    cls_name: str
    dis_name: str
    centre_x: FloatArray
    centre_y: FloatArray
    rows: slice = field(default_factory=_whole_axis)
    cls_columns: slice = field(default_factory=_whole_axis)
    dis_columns: slice = field(default_factory=_whole_axis)


@dataclass(frozen=True)
class GflHead:
    """GFL head: per cell, class scores (sigmoided) and distribution logits `4 * bins` for
    the left, top, right, bottom distances from the cell centre, in strides."""

    levels: tuple[GflLevel, ...]
    bins: int
    input_width: int
    input_height: int

    def decode(self, outputs: Mapping[str, FloatArray], score_threshold: float) -> Detections:
        boxes, all_scores, all_ids = [], [], []
        bin_values = np.arange(self.bins, dtype=np.float32)
        for level in self.levels:
            class_scores = outputs[level.cls_name][0][level.rows, level.cls_columns]
            class_ids = class_scores.argmax(axis=1)
            scores = class_scores[np.arange(class_scores.shape[0]), class_ids]
            candidates = np.nonzero(scores >= score_threshold)[0]
            if candidates.size == 0:
                continue
            distributions = outputs[level.dis_name][0][level.rows, level.dis_columns]
            logits = distributions[candidates].reshape(-1, 4, self.bins)
            logits = logits - logits.max(axis=2, keepdims=True)
            weights = np.exp(logits)
            weights /= weights.sum(axis=2, keepdims=True)
            distances = (weights @ bin_values) * level.stride
            cx, cy = level.centre_x[candidates], level.centre_y[candidates]
            boxes.append(
                np.stack(
                    [
                        cx - distances[:, 0],
                        cy - distances[:, 1],
                        cx + distances[:, 2],
                        cy + distances[:, 3],
                    ],
                    axis=1,
                )
            )
            all_scores.append(scores[candidates])
            all_ids.append(class_ids[candidates])
        if not boxes:
            return Detections.empty()
        xyxy = np.concatenate(boxes).astype(np.float32)
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, self.input_width)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, self.input_height)
        return Detections(
            xyxy=xyxy,
            scores=np.concatenate(all_scores).astype(np.float32),
            class_ids=np.concatenate(all_ids).astype(np.int64),
        )


GFL_HINTS: Mapping[str, tuple[str, ...]] = {
    "cls": ("cls", "score", "class", "conf"),
    "dis": ("dis", "reg", "box", "bbox", "loc"),
}


@dataclass(frozen=True)
class _GflPair:
    cells: int
    cls_name: str
    cls_channels: int
    dis_name: str
    dis_channels: int


def _gfl_pairs(outputs: Sequence[OutputSpec], num_classes: int | None) -> list[_GflPair]:
    """Per-stride outputs paired by their number of cells, largest (finest stride) first.

    Which of a pair holds the class scores: its name says ('cls', 'dis', ...), else the one
    with one channel per class name; with no class names known, the other one of a pair whose
    partner has the usual 4 x 8 distribution channels.
    """
    by_cells: dict[int, list[tuple[str, int]]] = {}
    for output in outputs:
        dims = _static_dims(output)
        if len(dims) != 3 or dims[0] != 1:
            raise ModelLoadError(f"GFL outputs are [1, N, K]; {output.name!r} is {dims}")
        by_cells.setdefault(dims[1], []).append((output.name, dims[2]))
    pairs = []
    for cells, members in sorted(by_cells.items(), reverse=True):
        kinds = [_name_hint(name, GFL_HINTS) for name, _ in members]
        if num_classes is not None:
            kinds = [
                kind or ("cls" if channels == num_classes else "dis")
                for kind, (_, channels) in zip(kinds, members, strict=True)
            ]
        elif len(members) == 2 and None in kinds:
            known = [kind for kind in kinds if kind is not None]
            if known:
                other = "dis" if known[0] == "cls" else "cls"
                kinds = [kind or other for kind in kinds]
            elif [channels == 4 * DEFAULT_GFL_BINS for _, channels in members].count(True) == 1:
                kinds = [
                    "dis" if channels == 4 * DEFAULT_GFL_BINS else "cls" for _, channels in members
                ]
        if len(members) != 2 or sorted(map(str, kinds)) != ["cls", "dis"]:
            wanted = (
                ""
                if num_classes is None
                else f" (a class-score output must have {num_classes} channels, one per class name)"
            )
            raise ModelLoadError(
                f"GFL level with {cells} cells lacks a class-score or distribution output"
                f"{wanted}: {[name for name, _ in members]}"
            )
        cls_index = kinds.index("cls")
        (cls_name, cls_channels), (dis_name, dis_channels) = (
            members[cls_index],
            members[1 - cls_index],
        )
        pairs.append(_GflPair(cells, cls_name, cls_channels, dis_name, dis_channels))
    return pairs


def _cell_centres(cells: FloatArray, stride: int, cell_center: CellCenter) -> FloatArray:
    if cell_center == "corner":
        return cells * stride
    if cell_center == "center":
        return (cells + 0.5) * stride
    return cells * stride + 0.5 * (stride - 1)


def _single_output_strides(cells: int, input_width: int, input_height: int) -> tuple[int, ...]:
    """The run of doubling strides whose grids hold `cells` cells in all."""
    for first in (8, 4, 16):
        strides: list[int] = []
        total, stride = 0, first
        while total < cells and stride <= 1024:
            strides.append(stride)
            total += _grid_cells(input_width, input_height, (stride,))
            stride *= 2
        if total == cells:
            return tuple(strides)
    raise ModelLoadError(
        f"{cells} rows are no run of doubling stride grids (from 4, 8 or 16) over a "
        f"{input_width}x{input_height} input"
    )


class GflFamily:
    """NanoDet / NanoDet-Plus / PP-PicoDet GFL heads without post-processing in the graph."""

    name = "gfl"
    preprocess = PreprocessSpec(
        pad_position="center",
        pad_value=0,
        mean=(103.53, 116.28, 123.675),
        std=(57.375, 57.12, 58.395),
    )
    # None: by layout, "pixel_center" for per-stride outputs (NanoDet-m), "corner" for the
    # single output (NanoDet-Plus). A manifest's `cell_center` overrides it.
    cell_center: CellCenter | None = None

    def count_classes(self, outputs: Sequence[OutputSpec]) -> int | None:
        if len(outputs) == 1:
            return _rows_class_count(outputs, extra=4 * DEFAULT_GFL_BINS)
        try:
            pairs = _gfl_pairs(outputs, None)
        except ModelLoadError:
            return None
        counts = {pair.cls_channels for pair in pairs}
        return counts.pop() if len(counts) == 1 else None

    def _centre(self, manifest: ModelManifest, single_output: bool) -> CellCenter:
        if manifest.cell_center is not None:
            return manifest.cell_center
        if self.cell_center is not None:
            return self.cell_center
        return "corner" if single_output else "pixel_center"

    def _level(
        self, manifest: ModelManifest, stride: int, single_output: bool, **where: Any
    ) -> GflLevel:
        width, height = _input_size(manifest)
        xs, ys = _grid_centres(width, height, stride)
        centre = self._centre(manifest, single_output)
        return GflLevel(
            stride=stride,
            centre_x=_cell_centres(xs, stride, centre),
            centre_y=_cell_centres(ys, stride, centre),
            **where,
        )

    def bind(self, outputs: Sequence[OutputSpec], manifest: ModelManifest) -> Head:
        if len(outputs) == 1:
            return self._bind_single(outputs[0], manifest)
        num_classes = len(manifest.class_names)
        width, height = _input_size(manifest)
        levels, bins_seen = [], set()
        for pair in _gfl_pairs(outputs, num_classes):
            if pair.cls_channels != num_classes:
                raise ModelLoadError(
                    f"GFL class-score output {pair.cls_name!r} has {pair.cls_channels} "
                    f"channels but there are {num_classes} class names (a class-score output "
                    f"must have {num_classes} channels, one per class name)"
                )
            if pair.dis_channels % 4:
                raise ModelLoadError(
                    f"{pair.dis_name!r} has {pair.dis_channels} channels, not 4 x bins"
                )
            bins_seen.add(pair.dis_channels // 4)
            stride = _strides_for_cells(pair.cells, width, height)
            levels.append(
                self._level(manifest, stride, False, cls_name=pair.cls_name, dis_name=pair.dis_name)
            )
        if not levels or len(bins_seen) != 1:
            raise ModelLoadError(
                f"no consistent GFL levels among outputs {[o.name for o in outputs]}"
            )
        return GflHead(
            levels=tuple(sorted(levels, key=lambda level: level.stride)),
            bins=bins_seen.pop(),
            input_width=width,
            input_height=height,
        )

    def _bind_single(self, output: OutputSpec, manifest: ModelManifest) -> Head:
        """NanoDet-Plus: `[1, N_total, C + 4 * bins]`, levels concatenated in stride order."""
        dims = _static_dims(output)
        num_classes = len(manifest.class_names)
        if len(dims) != 3 or dims[0] != 1:
            raise ModelLoadError(
                f"a single GFL output is [1, cells, classes + 4 x bins]; {output.name!r} is {dims}"
            )
        distribution_channels = dims[2] - num_classes
        if distribution_channels <= 0 or distribution_channels % 4:
            raise ModelLoadError(
                f"GFL output {output.name!r} has {dims[2]} channels: with {num_classes} class "
                f"names that leaves {distribution_channels}, not 4 x bins"
            )
        width, height = _input_size(manifest)
        levels, start = [], 0
        for stride in _single_output_strides(dims[1], width, height):
            end = start + _grid_cells(width, height, (stride,))
            levels.append(
                self._level(
                    manifest,
                    stride,
                    True,
                    cls_name=output.name,
                    dis_name=output.name,
                    rows=slice(start, end),
                    cls_columns=slice(0, num_classes),
                    dis_columns=slice(num_classes, dims[2]),
                )
            )
            start = end
        return GflHead(
            levels=tuple(levels),
            bins=distribution_channels // 4,
            input_width=width,
            input_height=height,
        )


class PicodetFamily(GflFamily):
    """PP-PicoDet exported without post-processing: a GFL head fed as PaddleDetection's
    infer_cfg.yml says (stretched, RGB, ImageNet mean/std), cells centred at (i + 0.5) x stride."""

    preprocess = PreprocessSpec(
        resize="stretch",
        channel_order="rgb",
        scale=1 / 255,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    cell_center = "center"


_GFL = GflFamily()
# Every name a manifest may give; `family.name` is the canonical one ModelInfo reports.
FAMILIES: Mapping[str, Family] = {
    "yolox": YoloxFamily(),
    "gfl": _GFL,
    "nanodet": _GFL,
    "picodet": PicodetFamily(),
    "yolov5": Yolov5Family(),
    "yolov8": Yolov8Family(),
    "e2e": EndToEndFamily(),
}


# --------------------------------------------------------------------------------------------
# Telling the family from the outputs
# --------------------------------------------------------------------------------------------

# Strides of the YOLO grids (YOLOX, YOLOv5) and of NanoDet-Plus's levels.
YOLO_STRIDES = (8, 16, 32)
NANODET_PLUS_STRIDES = (8, 16, 32, 64)
# YOLOv5 predicts three anchors per grid cell.
YOLOV5_ANCHORS = 3


def detect_family(outputs: Sequence[OutputSpec], input_width: int, input_height: int) -> str | None:
    """The family whose output layout these are, or None when none fits. In order:

    - four outputs num_dets / boxes `[1, N, 4]` / scores `[1, N]` / classes `[1, N]`: e2e;
    - one output `[1, A, B]`:
      - B == 6: yolov5 when A is 3 anchors x the stride 8/16/32 grid cells, yolox when A is
        the grid cell count, else e2e (a one-class YOLOv5/YOLOX needs those exact counts);
      - A < B: yolov8 (`[1, 4 + C, N]`, A >= 5); A == B: none (ambiguous);
      - A == the YOLOX grid cells for strides 8, 16, 32 over the input: yolox;
      - A == the cells of strides 8, 16, 32, 64 and B > 32: gfl (NanoDet-Plus single output);
      - else yolov5 (B >= 6). With a dynamic N: yolov8 when A is fixed, yolov5 or e2e when B is;
    - several `[1, N, K]` outputs that pair into class scores and distributions per stride: gfl.
    """
    if _end_to_end_outputs(outputs) is not None:
        return "e2e"
    if len(outputs) == 1:
        dims = _dims(outputs[0])
        if len(dims) != 3 or dims[0] != 1:
            return None
        rows, columns = dims[1], dims[2]
        if rows is not None and columns is not None:
            yolo_cells = _grid_cells(input_width, input_height, YOLO_STRIDES)
            if columns == 6:
                if rows == YOLOV5_ANCHORS * yolo_cells:
                    return "yolov5"
                return "yolox" if rows == yolo_cells else "e2e"
            if rows == columns:  # which axis holds the boxes is anybody's guess
                return None
            if rows < columns:
                return "yolov8" if rows >= 5 else None
            if rows == yolo_cells:
                return "yolox"
            plus_cells = _grid_cells(input_width, input_height, NANODET_PLUS_STRIDES)
            if rows == plus_cells and columns > 4 * DEFAULT_GFL_BINS:
                return "gfl"
            return "yolov5" if columns > 5 else None
        if rows is not None:  # [1, 4 + C, anchors]: Ultralytics' dynamic export
            return "yolov8" if rows >= 5 else None
        if columns is not None and columns >= 6:
            return "e2e" if columns == 6 else "yolov5"
        return None
    if len(outputs) >= 2:
        try:
            pairs = _gfl_pairs(outputs, None)
            for pair in pairs:
                _strides_for_cells(pair.cells, input_width, input_height)
        except ModelLoadError:
            return None
        return "gfl" if pairs else None
    return None


# --------------------------------------------------------------------------------------------
# ONNX metadata (Ultralytics exports: names, imgsz, task, stride, license, description)
# --------------------------------------------------------------------------------------------


def _metadata_literal(metadata: Mapping[str, str], key: str, model: str) -> Any:
    """A metadata value written as a Python literal, parsed without evaluating code."""
    text = metadata[key]
    if len(text) > MAX_METADATA_CHARS:
        raise ModelLoadError(f"model {model!r}: ONNX metadata {key!r} is too long")
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ModelLoadError(
            f"model {model!r}: ONNX metadata {key!r} is not a Python literal ({exc}); "
            "give the value in a manifest instead"
        ) from exc


def metadata_class_names(metadata: Mapping[str, str], model: str) -> tuple[str, ...] | None:
    """Class names from the metadata `names` ("{0: 'person', ...}" or a list), None if absent."""
    if "names" not in metadata:
        return None
    value = _metadata_literal(metadata, "names", model)
    if isinstance(value, dict) and set(value) == set(range(len(value))):
        names = [value[i] for i in range(len(value))]
    elif isinstance(value, list | tuple):
        names = list(value)
    else:
        names = []
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ModelLoadError(
            f"model {model!r}: ONNX metadata 'names' is not a list of names or a dict "
            "{0: name, 1: name, ...}; give 'class_names' in a manifest instead"
        )
    return tuple(names)


def metadata_input_size(metadata: Mapping[str, str], model: str) -> tuple[int, int] | None:
    """(width, height) from the metadata `imgsz`, which Ultralytics writes as [height, width]."""
    if "imgsz" not in metadata:
        return None
    value = _metadata_literal(metadata, "imgsz", model)
    sides = [value] if _is_int(value) else list(value) if isinstance(value, list | tuple) else []
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2 or not all(_is_int(s) and 0 < s <= MAX_INPUT_SIDE for s in sides):
        raise ModelLoadError(
            f"model {model!r}: ONNX metadata 'imgsz' {metadata['imgsz']!r} is not "
            "[height, width]; give 'input_size' in a manifest instead"
        )
    return sides[1], sides[0]


def _custom_metadata(session: Any) -> dict[str, str]:
    try:
        raw = session.get_modelmeta().custom_metadata_map
    except Exception:  # onnxruntime raises its own untyped errors; metadata is optional
        return {}
    return {str(k): str(v) for k, v in dict(raw).items()}


def _coco80_names(model_path: Path) -> tuple[str, ...] | None:
    """COCO-80 from the model's folder, else from the repository's models folder."""
    for folder in (model_path.parent, Path(__file__).resolve().parent / "models"):
        try:
            lines = (folder / COCO80_FILE).read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError):
            continue
        names = tuple(line.strip() for line in lines if line.strip())
        if len(names) == 80:
            return names
    return None


# --------------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------------

INPUT_DTYPES: Mapping[str, type[np.floating[Any]]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


def _session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Old exporters list weights as graph inputs and onnxruntime warns once per weight.
    options.log_severity_level = 3
    if intra_op_threads > 1:
        # Spinning threads of several workers fight over the cores: measured to halve throughput.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _family_named(name: str, model: str) -> Family:
    family = FAMILIES.get(name)
    if family is None:
        raise ModelLoadError(
            f"model {model!r}: unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}"
        )
    return family


def _describe_model(
    input_name: str,
    input_shape: Sequence[Any],
    outputs: Sequence[OutputSpec],
    metadata: Mapping[str, str],
) -> str:
    found = ", ".join(f"{o.name!r} {list(o.shape)}" for o in outputs) or "none"
    keys = ", ".join(sorted(metadata)) or "none"
    return f"input {input_name!r} {list(input_shape)}; outputs {found}; ONNX metadata keys: {keys}"


def _manifest_advice(manifest: ModelManifest) -> str:
    return (
        f'write a manifest {manifest.name}.json next to it with "file": '
        f'"{manifest.file}", "license", "family" (one of '
        f'{", ".join(sorted(FAMILIES))}), "input_size" {{"width", "height"}}, '
        '"class_names" (or "labels_file") and, when the family\'s defaults do not fit, '
        '"preprocess" (see predict.py)'
    )


class Detector:
    """One ONNX model, loaded once per worker process, safe to call from one thread at a time
    or several (onnxruntime sessions are thread-safe; nothing per request is stored here).

    `manifest` is the one given with what the model itself said filled in (canonical family,
    input size, class names); `preprocess` is the family's defaults with the manifest's
    overrides.
    """

    def __init__(self, manifest: ModelManifest, model_path: Path, intra_op_threads: int = 1):
        if intra_op_threads < 1:
            raise ModelLoadError("intra_op_threads must be at least 1")
        named = None if manifest.family is None else _family_named(manifest.family, manifest.name)
        if not model_path.is_file():
            raise ModelFileMissingError(
                f"model file {model_path} is missing: run `make model` to fetch and verify it"
            )
        sha256 = file_sha256(model_path)
        if manifest.sha256 and sha256 not in manifest.sha256:
            raise ModelLoadError(
                f"model file {model_path} has sha256 {sha256}, which the manifest does not "
                "accept: delete it and run `make model` again"
            )
        try:
            session = ort.InferenceSession(
                str(model_path),
                sess_options=_session_options(intra_op_threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"onnxruntime cannot load {model_path}: {exc}") from exc
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"expected one image input, found {[i.name for i in inputs]}")
        input_name: str = inputs[0].name
        input_shape = list(inputs[0].shape)
        if len(input_shape) != 4 or (_is_int(input_shape[1]) and input_shape[1] != 3):
            raise ModelLoadError(f"input {input_name!r} is not NCHW with 3 channels: {input_shape}")
        input_dtype = INPUT_DTYPES.get(inputs[0].type)
        if input_dtype is None:
            raise ModelLoadError(
                f"input {input_name!r} is {inputs[0].type}; only float and float16 images are "
                "supported"
            )
        metadata = _custom_metadata(session)
        task = metadata.get("task")
        if task is not None and task.strip() != "detect":
            raise ModelLoadError(
                f"model {manifest.name!r} is a {task!r} model (ONNX metadata 'task'); only "
                "object detectors ('detect') are served"
            )
        outputs = [OutputSpec(o.name, tuple(o.shape), str(o.type)) for o in session.get_outputs()]
        described = _describe_model(input_name, input_shape, outputs, metadata)
        width, height = self._input_size(manifest, input_name, input_shape, metadata, described)
        if named is None:
            detected = detect_family(outputs, width, height)
            if detected is None:
                raise ModelLoadError(
                    f"cannot tell which detector family model {manifest.name!r} is: "
                    f"{described}. If it is one of the supported layouts, "
                    f"{_manifest_advice(manifest)}"
                )
            family = FAMILIES[detected]
        else:
            family = named
        if manifest.cell_center is not None and family.name != "gfl":
            raise ModelLoadError(
                f"model {manifest.name!r}: 'cell_center' is for the gfl family, not {family.name}"
            )
        class_names = self._class_names(manifest, family, outputs, metadata, model_path)
        self.manifest = dataclasses.replace(
            manifest,
            family=family.name,
            input_width=width,
            input_height=height,
            class_names=class_names,
            license=metadata.get("license", "unknown") if manifest.bare else manifest.license,
            description=manifest.description or metadata.get("description", ""),
        )
        self.preprocess = dataclasses.replace(family.preprocess, **manifest.preprocess)
        try:
            self._head = family.bind(outputs, self.manifest)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{exc} (model {manifest.name!r}: {described})") from exc
        self._session = session
        self._input_name = input_name
        self._input_dtype = input_dtype
        self._output_names = [o.name for o in outputs]
        self._input_width, self._input_height = width, height
        self.info = ModelInfo(
            name=manifest.name,
            family=family.name,
            input_width=width,
            input_height=height,
            class_names=class_names,
            sha256=sha256,
            license=self.manifest.license,
            execution_providers=tuple(session.get_providers()),
            intra_op_threads=intra_op_threads,
            description=self.manifest.description,
            source="onnx metadata" if manifest.bare else "manifest",
        )
        self.ready = False
        self._warm_up()
        self.ready = True

    @staticmethod
    def _input_size(
        manifest: ModelManifest,
        input_name: str,
        input_shape: Sequence[Any],
        metadata: Mapping[str, str],
        described: str,
    ) -> tuple[int, int]:
        """Per side: the model's fixed size, else the manifest's, else the metadata `imgsz`.

        The manifest comes before the metadata: it is what the operator chose for a model
        exported with a dynamic input size, while `imgsz` is only the size it was trained at.
        """
        fixed_height, fixed_width = (d if _is_int(d) else None for d in input_shape[2:4])
        sides: list[int] = []
        for axis, fixed, given in (
            (0, fixed_width, manifest.input_width),
            (1, fixed_height, manifest.input_height),
        ):
            if fixed is not None and given is not None and fixed != given:
                raise ModelLoadError(
                    f"input {input_name!r} has shape {list(input_shape)} but the manifest says "
                    f"{manifest.input_width}x{manifest.input_height}"
                )
            side = fixed if fixed is not None else given
            if side is None:
                # Parsed only when needed: a bad imgsz must not fail a model that has a size.
                from_metadata = metadata_input_size(metadata, manifest.name)
                side = None if from_metadata is None else from_metadata[axis]
            if side is None:
                raise ModelLoadError(
                    f"model {manifest.name!r}: the input has no fixed size and neither a "
                    f"manifest 'input_size' nor the ONNX metadata 'imgsz' gives one: "
                    f"{described}; {_manifest_advice(manifest)}"
                )
            if not 0 < side <= MAX_INPUT_SIDE:
                raise ModelLoadError(f"model {manifest.name!r}: input side {side} is too large")
            sides.append(side)
        return sides[0], sides[1]

    @staticmethod
    def _class_names(
        manifest: ModelManifest,
        family: Family,
        outputs: Sequence[OutputSpec],
        metadata: Mapping[str, str],
        model_path: Path,
    ) -> tuple[str, ...]:
        """The manifest's names, else the metadata's, else COCO-80 for an 80-class model."""
        if manifest.class_names:
            return manifest.class_names
        from_metadata = metadata_class_names(metadata, manifest.name)
        if from_metadata is not None:
            return from_metadata
        count = family.count_classes(outputs)
        coco = _coco80_names(model_path) if count == 80 else None
        if coco is None:
            said = "do not say how many classes" if count is None else f"have {count} classes"
            raise ModelLoadError(
                f"model {manifest.name!r} ({family.name}) names no classes: no manifest "
                f"'class_names' or 'labels_file', no ONNX metadata 'names', and its outputs "
                f"{said} (only an 80-class model is taken as COCO); "
                f"{_manifest_advice(manifest)}"
            )
        logger.warning(
            "model %s names no classes (no manifest, no ONNX metadata 'names'): assuming the "
            "80 COCO classes of %s",
            manifest.name,
            COCO80_FILE,
        )
        return coco

    def _warm_up(self) -> None:
        """One inference at load, so the first request does not pay for lazy initialisation;
        it also proves that the outputs at run time have the shapes the decoder expects."""
        blank = np.full((self._input_height, self._input_width, 3), 114, np.uint8)
        try:
            self.detect(blank, DetectionParams())
        except DetectorError:
            raise
        except Exception as exc:  # onnxruntime's untyped errors and numpy shape errors
            raise ModelLoadError(
                f"model {self.manifest.name!r}: a test inference failed: {exc}"
            ) from exc

    def run(self, tensor: FloatArray) -> dict[str, FloatArray]:
        feed = tensor.astype(self._input_dtype, copy=False)
        values = self._session.run(self._output_names, {self._input_name: feed})
        return {
            name: np.asarray(value, dtype=np.float32)
            for name, value in zip(self._output_names, values, strict=True)
        }

    def detect(self, image: ImageArray, params: DetectionParams) -> DetectionResult:
        """The whole pipeline on one decoded BGR image."""
        started = time.perf_counter()
        tensor, letterbox_info = letterbox(
            image, self._input_width, self._input_height, self.preprocess
        )
        preprocessed = time.perf_counter()
        outputs = self.run(tensor)
        inferred = time.perf_counter()
        candidates = self._head.decode(outputs, params.score_threshold)
        if params.class_ids is not None:
            candidates = select_classes(candidates, params.class_ids)
        kept = batched_nms(candidates, params.nms_iou_threshold, params.class_agnostic)
        in_image = Detections(
            xyxy=unletterbox(kept.xyxy, letterbox_info),
            scores=kept.scores,
            class_ids=kept.class_ids,
        )
        final = filter_detections(
            in_image, params, letterbox_info.image_width, letterbox_info.image_height
        )
        finished = time.perf_counter()
        return DetectionResult(
            detections=final,
            image_width=letterbox_info.image_width,
            image_height=letterbox_info.image_height,
            timings_ms={
                "preprocess": (preprocessed - started) * 1000,
                "inference": (inferred - preprocessed) * 1000,
                "postprocess": (finished - inferred) * 1000,
            },
        )


# --------------------------------------------------------------------------------------------
# The models folder
# --------------------------------------------------------------------------------------------


def _manifest_file(path: Path) -> str | None:
    """The `file` a JSON file names when it is a manifest (an object with a string `file`)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    file = raw.get("file") if isinstance(raw, dict) else None
    return file if isinstance(file, str) else None


def discover_models(models_dir: Path) -> dict[str, Path]:
    """Every model in `models_dir`, name -> its manifest `<name>.json` or, for a `.onnx` that no
    manifest names in its `file`, the `.onnx` itself (name: the file's stem). Sorted by name.

    A `*.json` that is not a manifest (not a JSON object with a string `file`) is skipped with
    a warning, unless a `.onnx` of the same stem is there: then it is taken as that model's
    broken manifest, so that loading the model reports what is wrong with it instead of
    silently serving the weights without it (and without its sha256 check). A bare `.onnx`
    whose stem a manifest already uses is skipped with a warning.
    """
    if not models_dir.is_dir():
        return {}
    found: dict[str, Path] = {}
    claimed: set[Path] = set()
    for path in sorted(models_dir.glob("*.json")):
        file = _manifest_file(path)
        if file is not None:
            found[path.stem] = path
            claimed.add((models_dir / file).resolve())
        elif (models_dir / f"{path.stem}.onnx").is_file():
            found[path.stem] = path
        else:
            logger.warning("skipping %s: not a model manifest (no string 'file' in it)", path)
    for path in sorted(models_dir.glob("*.onnx")):
        if path.resolve() in claimed:
            continue
        if path.stem in found:
            logger.warning(
                "skipping %s: the model name %r belongs to %s, which names another file",
                path,
                path.stem,
                found[path.stem].name,
            )
            continue
        found[path.stem] = path
    return dict(sorted(found.items()))


def model_weights_path(models_dir: Path, name: str) -> Path:
    """The `.onnx` file model `name` would load (whether or not it is there yet)."""
    path = _discovered(models_dir, name)
    if path.suffix == ".onnx":
        return path
    return models_dir / load_manifest(path).file


def _discovered(models_dir: Path, name: str) -> Path:
    models = discover_models(models_dir)
    path = models.get(name)
    if path is None:
        raise ModelLoadError(
            f"no model {name!r} in {models_dir} (looked for {name}.json and {name}.onnx); "
            f"models there: {', '.join(models) or 'none'}"
        )
    return path


def load_model(models_dir: Path, name: str, intra_op_threads: int = 1) -> Detector:
    """Load model `name` of `models_dir` (see `discover_models`): its manifest and the weights
    it names, or a bare `<name>.onnx` described by its own metadata."""
    path = _discovered(models_dir, name)
    if path.suffix == ".onnx":
        manifest, weights = bare_manifest(path), path
    else:
        manifest = load_manifest(path)
        weights = models_dir / manifest.file
    detector = Detector(manifest, weights, intra_op_threads)
    info = detector.info
    logger.info(
        "loaded model %s (%s, %dx%d, %d classes, from its %s, sha256 %s)",
        info.name,
        info.family,
        info.input_width,
        info.input_height,
        len(info.class_names),
        info.source,
        info.sha256[:12],
    )
    return detector


def load_detector(models_dir: Path, model_name: str, intra_op_threads: int = 1) -> Detector:
    """The former name of `load_model`, kept for callers that still use it."""
    return load_model(models_dir, model_name, intra_op_threads)
