"""Model families: each turns a model's raw outputs into candidate boxes in network-input
pixels, and `detect_family` tells the family from the output shapes when no manifest names
it.

The families (the `family` of a manifest; every decoder answers boxes in network-input pixels):

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

Pre-processing defaults: yolox: letterbox, top_left, pad 114, BGR, scale 1, no mean/std. gfl /
nanodet: letterbox, center, pad 0, BGR, mean (103.53, 116.28, 123.675), std (57.375, 57.12,
58.395). picodet: PaddleDetection's: stretch, RGB, scale 1/255, ImageNet mean and std.
yolov5, yolov8, e2e: letterbox, center, pad 114, RGB, scale 1/255.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from detection_types import (
    CellCenter,
    Detections,
    FloatArray,
    IntArray,
    ModelLoadError,
    ModelManifest,
    OutputSpec,
    PreprocessSpec,
)

# Distribution bins per side that NanoDet, NanoDet-Plus and PicoDet all ship (reg_max 7); only
# used to read a class count from a shape when nothing else says it.
DEFAULT_GFL_BINS = 8


# --------------------------------------------------------------------------------------------
# Model families: each turns the raw outputs into candidate boxes in network-input pixels
# --------------------------------------------------------------------------------------------


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
