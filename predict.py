"""Object detection with ONNX models: decode an image, letterbox it, run the model, decode the
model family's head, apply NMS and undo the letterbox.

This module knows nothing of HTTP. Everything per request is a local or a return value; the
`Detector` only holds what is fixed at load time (the session, the decoded head layout).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


class DetectorError(Exception):
    """Base of the errors raised by this module; messages are safe to show to a caller."""


class ModelLoadError(DetectorError):
    """The model or its manifest cannot be loaded or does not match what it claims to be."""


class ImageDecodeError(DetectorError):
    """The bytes are not an image OpenCV can decode."""


# --------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionParams:
    """Per-request filtering parameters; fractions are of the original image's size."""

    score_threshold: float = 0.3
    nms_iou_threshold: float = 0.4
    min_height_fraction: float = 0.03
    min_width_fraction: float = 0.03
    max_results: int = 20


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
    """How an image was fitted into the network input, so that boxes can be mapped back."""

    scale: float
    pad_x: int
    pad_y: int
    image_width: int
    image_height: int


@dataclass(frozen=True)
class PreprocessSpec:
    """How a model family wants its input: where the resized image sits and how it is scaled."""

    pad_position: Literal["top_left", "center"]
    pad_value: int
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
    """What `models/<name>.json` says about a model."""

    name: str
    family: str
    file: str
    input_width: int
    input_height: int
    class_names: tuple[str, ...]
    license: str
    upstream_url: str | None
    sha256: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model, as `GET /v1/models` describes it."""

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


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------


def _manifest_field(raw: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelLoadError(f"{path}: field {key!r} must be a {kind.__name__}, got {value!r}")
    return value


def load_manifest(path: Path) -> ModelManifest:
    """Read and validate a model manifest; errors name the file and the field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read model manifest {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: a manifest is a JSON object")
    size = _manifest_field(raw, "input_size", dict, path)
    width, height = size.get("width"), size.get("height")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        raise ModelLoadError(f"{path}: input_size needs positive integer width and height")
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
        raise ModelLoadError(f"{path}: give either 'class_names' or 'labels_file'")
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ModelLoadError(f"{path}: class names must be a non-empty list of strings")
    sha256 = raw.get("sha256", [])
    if not isinstance(sha256, list) or not all(isinstance(s, str) for s in sha256):
        raise ModelLoadError(f"{path}: 'sha256' must be a list of hex strings")
    upstream = raw.get("upstream_url")
    if upstream is not None and not isinstance(upstream, str):
        raise ModelLoadError(f"{path}: 'upstream_url' must be a string")
    return ModelManifest(
        name=_manifest_field(raw, "name", str, path),
        family=_manifest_field(raw, "family", str, path),
        file=_manifest_field(raw, "file", str, path),
        input_width=width,
        input_height=height,
        class_names=tuple(names),
        license=_manifest_field(raw, "license", str, path),
        upstream_url=upstream,
        sha256=tuple(s.lower() for s in sha256),
        description=str(raw.get("description", "")),
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Image decoding and letterbox
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
    """Fit `image` into the network input keeping its aspect ratio; returns an NCHW tensor."""
    image_height, image_width = image.shape[:2]
    scale = min(input_width / image_width, input_height / image_height)
    # Rounded down, as the reference pre-processing does; at least one pixel each way.
    resized_width = max(1, min(input_width, int(image_width * scale)))
    resized_height = max(1, min(input_height, int(image_height * scale)))
    if spec.pad_position == "center":
        pad_x = (input_width - resized_width) // 2
        pad_y = (input_height - resized_height) // 2
    else:
        pad_x = pad_y = 0
    resized = cv2.resize(image, (resized_width, resized_height), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((input_height, input_width, 3), spec.pad_value, dtype=np.uint8)
    canvas[pad_y : pad_y + resized_height, pad_x : pad_x + resized_width] = resized
    scaled = canvas.astype(np.float32)
    if spec.mean is not None:
        scaled -= np.asarray(spec.mean, dtype=np.float32)
    if spec.std is not None:
        scaled /= np.asarray(spec.std, dtype=np.float32)
    tensor: FloatArray = np.ascontiguousarray(scaled.transpose(2, 0, 1)[np.newaxis])
    info = LetterboxInfo(
        scale=scale,
        pad_x=pad_x,
        pad_y=pad_y,
        image_width=image_width,
        image_height=image_height,
    )
    return tensor, info


def unletterbox(xyxy: FloatArray, info: LetterboxInfo) -> FloatArray:
    """Map boxes from network-input pixels back to the original image, clipped to it."""
    boxes = xyxy.astype(np.float32, copy=True)
    boxes[:, [0, 2]] -= info.pad_x
    boxes[:, [1, 3]] -= info.pad_y
    boxes /= info.scale
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


def batched_nms(detections: Detections, iou_threshold: float) -> Detections:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Each class is shifted by its own offset larger than the span of all coordinates (boxes
    may be negative before clipping), so one NMS pass handles all classes without a loop.
    """
    if len(detections) == 0:
        return detections
    if len(detections) > MAX_NMS_CANDIDATES:
        top = np.argsort(-detections.scores, kind="stable")[:MAX_NMS_CANDIDATES]
        detections = detections.select(top)
    offset = float(detections.xyxy.max() - detections.xyxy.min()) + 1.0
    shifted = detections.xyxy + (detections.class_ids.astype(np.float32) * offset)[:, None]
    return detections.select(nms(shifted, detections.scores, iou_threshold))


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
    name: str
    shape: tuple[int | str | None, ...]


class Head(Protocol):
    """A model family's decoder, bound to one model's output layout."""

    def decode(self, outputs: Mapping[str, FloatArray], score_threshold: float) -> Detections: ...


class Family(Protocol):
    name: str
    preprocess: PreprocessSpec

    def bind(self, outputs: Sequence[OutputSpec], manifest: ModelManifest) -> Head: ...


def _static_dims(spec: OutputSpec) -> tuple[int, ...]:
    """The output's shape with the batch axis, which may be symbolic, taken as 1."""
    dims = list(spec.shape)
    if dims and not isinstance(dims[0], int):
        dims[0] = 1
    if not all(isinstance(d, int) for d in dims):
        raise ModelLoadError(f"output {spec.name!r} has a dynamic shape {spec.shape}")
    return tuple(int(d) for d in dims)  # type: ignore[arg-type]


def _strides_for_cells(cells: int, input_width: int, input_height: int) -> int:
    """The stride whose grid over the input has exactly `cells` cells."""
    for stride in (4, 8, 16, 32, 64, 128):
        if math.ceil(input_width / stride) * math.ceil(input_height / stride) == cells:
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


@dataclass(frozen=True)
class YoloxHead:
    """YOLOX raw grid output `[1, cells, 5 + C]`: dx, dy, dw, dh, objectness, class probs."""

    output_name: str
    grid_x: FloatArray
    grid_y: FloatArray
    strides: FloatArray

    def decode(self, outputs: Mapping[str, FloatArray], score_threshold: float) -> Detections:
        rows = outputs[self.output_name][0]
        objectness = rows[:, 4]
        # score = objectness * p_class <= objectness, so the objectness test is a cheap prefilter.
        candidates = np.nonzero(objectness >= score_threshold)[0]
        class_probs = rows[candidates, 5:]
        class_ids = class_probs.argmax(axis=1)
        scores = objectness[candidates] * class_probs[np.arange(candidates.size), class_ids]
        passing = scores >= score_threshold
        candidates, class_ids, scores = candidates[passing], class_ids[passing], scores[passing]
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
        return Detections(
            xyxy=xyxy.astype(np.float32),
            scores=scores.astype(np.float32),
            class_ids=class_ids.astype(np.int64),
        )


class YoloxFamily:
    name = "yolox"
    preprocess = PreprocessSpec(pad_position="top_left", pad_value=114)
    strides = (8, 16, 32)

    def bind(self, outputs: Sequence[OutputSpec], manifest: ModelManifest) -> Head:
        if len(outputs) != 1:
            raise ModelLoadError(f"a YOLOX model has one output, this one has {len(outputs)}")
        dims = _static_dims(outputs[0])
        if len(dims) != 3 or dims[0] != 1:
            raise ModelLoadError(f"YOLOX output must be [1, cells, 5 + classes], got {dims}")
        _check_class_count(manifest, dims[2] - 5, outputs[0].name)
        grid_xs, grid_ys, strides = [], [], []
        for stride in self.strides:
            xs, ys = _grid_centres(manifest.input_width, manifest.input_height, stride)
            grid_xs.append(xs)
            grid_ys.append(ys)
            strides.append(np.full(xs.shape, stride, np.float32))
        grid_x = np.concatenate(grid_xs)
        if grid_x.size != dims[1]:
            raise ModelLoadError(
                f"YOLOX output has {dims[1]} rows; strides {self.strides} over "
                f"{manifest.input_width}x{manifest.input_height} give {grid_x.size}"
            )
        return YoloxHead(
            output_name=outputs[0].name,
            grid_x=grid_x,
            grid_y=np.concatenate(grid_ys),
            strides=np.concatenate(strides),
        )


@dataclass(frozen=True)
class GflLevel:
    stride: int
    cls_name: str
    dis_name: str
    centre_x: FloatArray
    centre_y: FloatArray


@dataclass(frozen=True)
class GflHead:
    """NanoDet-style GFL head: per stride, class scores `[1, N, C]` (sigmoided) and
    distribution logits `[1, N, 4 * bins]` for the left, top, right, bottom distances."""

    levels: tuple[GflLevel, ...]
    bins: int
    input_width: int
    input_height: int

    def decode(self, outputs: Mapping[str, FloatArray], score_threshold: float) -> Detections:
        boxes, all_scores, all_ids = [], [], []
        bin_values = np.arange(self.bins, dtype=np.float32)
        for level in self.levels:
            class_scores = outputs[level.cls_name][0]
            class_ids = class_scores.argmax(axis=1)
            scores = class_scores[np.arange(class_scores.shape[0]), class_ids]
            candidates = np.nonzero(scores >= score_threshold)[0]
            if candidates.size == 0:
                continue
            logits = outputs[level.dis_name][0][candidates].reshape(-1, 4, self.bins)
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


class GflFamily:
    """NanoDet / PP-PicoDet GFL heads without post-processing in the graph."""

    name = "nanodet"
    preprocess = PreprocessSpec(
        pad_position="center",
        pad_value=0,
        mean=(103.53, 116.28, 123.675),
        std=(57.375, 57.12, 58.395),
    )

    def bind(self, outputs: Sequence[OutputSpec], manifest: ModelManifest) -> Head:
        num_classes = len(manifest.class_names)
        by_cells: dict[int, dict[str, tuple[str, int]]] = {}
        for output in outputs:
            dims = _static_dims(output)
            if len(dims) != 3 or dims[0] != 1:
                raise ModelLoadError(f"GFL outputs are [1, N, K]; {output.name!r} is {dims}")
            # Class scores have C channels; distributions have 4 * bins, told apart by name
            # when the two counts could clash.
            is_cls = dims[2] == num_classes and "dis" not in output.name.lower()
            kind = "cls" if is_cls else "dis"
            by_cells.setdefault(dims[1], {})[kind] = (output.name, dims[2])
        levels, bins_seen = [], set()
        for cells, pair in sorted(by_cells.items(), reverse=True):
            if set(pair) != {"cls", "dis"}:
                raise ModelLoadError(
                    f"GFL level with {cells} cells lacks a class-score or distribution output "
                    f"(a class-score output must have {num_classes} channels, one per class name)"
                )
            dis_name, dis_channels = pair["dis"]
            if dis_channels % 4:
                raise ModelLoadError(f"{dis_name!r} has {dis_channels} channels, not 4 x bins")
            bins_seen.add(dis_channels // 4)
            stride = _strides_for_cells(cells, manifest.input_width, manifest.input_height)
            xs, ys = _grid_centres(manifest.input_width, manifest.input_height, stride)
            offset = 0.5 * (stride - 1)
            levels.append(
                GflLevel(
                    stride=stride,
                    cls_name=pair["cls"][0],
                    dis_name=dis_name,
                    centre_x=xs * stride + offset,
                    centre_y=ys * stride + offset,
                )
            )
        if not levels or len(bins_seen) != 1:
            raise ModelLoadError(
                f"no consistent GFL levels among outputs {[o.name for o in outputs]}"
            )
        return GflHead(
            levels=tuple(levels),
            bins=bins_seen.pop(),
            input_width=manifest.input_width,
            input_height=manifest.input_height,
        )


def _check_class_count(manifest: ModelManifest, output_classes: int, output_name: str) -> None:
    if output_classes != len(manifest.class_names):
        raise ModelLoadError(
            f"model {manifest.name!r}: output {output_name!r} has {output_classes} classes "
            f"but the manifest names {len(manifest.class_names)}"
        )


FAMILIES: Mapping[str, Family] = {"yolox": YoloxFamily(), "nanodet": GflFamily()}


# --------------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------------


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


class Detector:
    """One ONNX model, loaded once per worker process, safe to call from one thread at a time
    or several (onnxruntime sessions are thread-safe; nothing per request is stored here)."""

    def __init__(self, manifest: ModelManifest, model_path: Path, intra_op_threads: int = 1):
        if intra_op_threads < 1:
            raise ModelLoadError("intra_op_threads must be at least 1")
        family = FAMILIES.get(manifest.family)
        if family is None:
            raise ModelLoadError(
                f"model {manifest.name!r}: unknown family {manifest.family!r}; "
                f"known: {', '.join(sorted(FAMILIES))}"
            )
        if not model_path.is_file():
            raise ModelLoadError(
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
        input_shape = list(inputs[0].shape)
        if len(input_shape) != 4:
            raise ModelLoadError(f"input {inputs[0].name!r} is not NCHW: {input_shape}")
        for axis, expected in ((2, manifest.input_height), (3, manifest.input_width)):
            if isinstance(input_shape[axis], int) and input_shape[axis] != expected:
                raise ModelLoadError(
                    f"input {inputs[0].name!r} has shape {input_shape} but the manifest says "
                    f"{manifest.input_width}x{manifest.input_height}"
                )
        output_specs = [OutputSpec(o.name, tuple(o.shape)) for o in session.get_outputs()]
        self._session = session
        self._input_name: str = inputs[0].name
        self._output_names = [o.name for o in output_specs]
        self._family = family
        self._head = family.bind(output_specs, manifest)
        self.manifest = manifest
        self.info = ModelInfo(
            name=manifest.name,
            family=family.name,
            input_width=manifest.input_width,
            input_height=manifest.input_height,
            class_names=manifest.class_names,
            sha256=sha256,
            license=manifest.license,
            execution_providers=tuple(session.get_providers()),
            intra_op_threads=intra_op_threads,
        )
        self.ready = False
        self._warm_up()
        self.ready = True

    def _warm_up(self) -> None:
        """One inference at load, so the first request does not pay for lazy initialisation."""
        blank = np.full((self.manifest.input_height, self.manifest.input_width, 3), 114, np.uint8)
        self.detect(blank, DetectionParams())

    def run(self, tensor: FloatArray) -> dict[str, FloatArray]:
        values = self._session.run(self._output_names, {self._input_name: tensor})
        return {
            name: np.asarray(value, dtype=np.float32)
            for name, value in zip(self._output_names, values, strict=True)
        }

    def detect(self, image: ImageArray, params: DetectionParams) -> DetectionResult:
        """The whole pipeline on one decoded BGR image."""
        started = time.perf_counter()
        tensor, letterbox_info = letterbox(
            image, self.manifest.input_width, self.manifest.input_height, self._family.preprocess
        )
        preprocessed = time.perf_counter()
        outputs = self.run(tensor)
        inferred = time.perf_counter()
        candidates = self._head.decode(outputs, params.score_threshold)
        kept = batched_nms(candidates, params.nms_iou_threshold)
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


def load_detector(models_dir: Path, model_name: str, intra_op_threads: int = 1) -> Detector:
    """Load `models_dir/<model_name>.json` and the weights it names."""
    manifest_path = models_dir / f"{model_name}.json"
    if not manifest_path.is_file():
        available = sorted(p.stem for p in models_dir.glob("*.json"))
        raise ModelLoadError(
            f"no manifest {manifest_path}; models with a manifest: {', '.join(available) or 'none'}"
        )
    manifest = load_manifest(manifest_path)
    detector = Detector(manifest, models_dir / manifest.file, intra_op_threads)
    logger.info(
        "loaded model %s (%s, %dx%d, sha256 %s)",
        manifest.name,
        manifest.family,
        manifest.input_width,
        manifest.input_height,
        detector.info.sha256[:12],
    )
    return detector
