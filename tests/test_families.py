"""Every model family end to end on tiny synthetic ONNX models (tests/onnx_builders.py): known
boxes in the raw outputs come back as known boxes on the image through the real `Detector`,
for each pre-processing geometry; family detection without a manifest; metadata; manifest
overrides; class filtering and class-agnostic NMS; the models folder.

Boxes are placed at fractions of the part of the network input that the image covers, so
that the expected boxes on the image are the same fractions of the image's size, whatever
the letterbox or stretch did.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from onnx import TensorProto

import detection_types
import families
import image_io
import manifests
import predict
from detection_types import DetectionParams, DetectionResult, ModelLoadError, OutputSpec
from predict import Detector
from tests.helpers import MODELS_DIR, load_real_model, model_weights, sample_image
from tests.onnx_builders import Channel0Score, build_model, ultralytics_metadata

NAMES = ("c0", "c1", "c2")
BINS = 8
# Everything the decoders give, so that the tests see the decoders and not the size filter.
PARAMS = DetectionParams(
    score_threshold=0.25, min_width_fraction=0, min_height_fraction=0, max_results=100
)
# 64x64 image into a 64x64 input: boxes come back as they are.
SAME = np.zeros((64, 64, 3), np.uint8)
ALL_SCORES = DetectionParams(
    score_threshold=0.0, min_width_fraction=0, min_height_fraction=0, max_results=100
)

Box = tuple[float, float, float, float]
# A box in network-input pixels, its class and its score.
Truth = tuple[Box, int, float]
Outputs = dict[str, npt.NDArray[Any]]
Encoder = Callable[[Sequence[Truth], int, int], Outputs]

# (fractions of the covered part of the input: x1, y1, x2, y2; class; score). The third is
# below PARAMS.score_threshold and must never come back.
FRACTION_TRUTHS: list[tuple[Box, int, float]] = [
    ((0.1, 0.2, 0.5, 0.8), 1, 0.9),
    ((0.55, 0.1, 0.95, 0.6), 2, 0.6),
    ((0.6, 0.65, 0.9, 1.0), 0, 0.1),
]


@dataclass(frozen=True)
class Geometry:
    """How an image of `image_width` x `image_height` lands in the network input: the scale
    and padding worked out by hand from the letterbox rules, and the manifest's
    `preprocess` that asks for them."""

    input_width: int
    input_height: int
    image_width: int
    image_height: int
    preprocess: Mapping[str, Any]
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def truths(self) -> list[Truth]:
        covered_w, covered_h = self.image_width * self.scale_x, self.image_height * self.scale_y
        return [
            (
                (
                    self.pad_x + fx1 * covered_w,
                    self.pad_y + fy1 * covered_h,
                    self.pad_x + fx2 * covered_w,
                    self.pad_y + fy2 * covered_h,
                ),
                class_id,
                score,
            )
            for (fx1, fy1, fx2, fy2), class_id, score in FRACTION_TRUTHS
        ]

    def expected(self) -> list[Truth]:
        """The boxes on the image, best first, without the one under the threshold."""
        w, h = self.image_width, self.image_height
        return [
            ((fx1 * w, fy1 * h, fx2 * w, fy2 * h), class_id, score)
            for (fx1, fy1, fx2, fy2), class_id, score in FRACTION_TRUTHS
            if score >= PARAMS.score_threshold
        ]

    def image(self) -> npt.NDArray[np.uint8]:
        return np.zeros((self.image_height, self.image_width, 3), np.uint8)


# 128x64 into 64x64, centred: scale 0.5, the 64x32 image has 16 rows of padding above.
CENTER = Geometry(64, 64, 128, 64, {"pad_position": "center"}, 0.5, 0.5, 0, 16)
# The same at the top left: no offset.
TOP_LEFT = Geometry(64, 64, 128, 64, {"pad_position": "top_left"}, 0.5, 0.5, 0, 0)
# 128x256 stretched onto 64x64: x halved, y quartered, no padding.
STRETCH = Geometry(64, 64, 128, 256, {"resize": "stretch"}, 0.5, 0.25, 0, 0)
# 384x128 into a 96 wide, 64 high input: scale min(0.25, 0.5), 96x32 centred 16 rows down.
NON_SQUARE = Geometry(96, 64, 384, 128, {"pad_position": "center"}, 0.25, 0.25, 0, 16)


# --- encoders: known boxes -> the raw outputs of each layout --------------------------------------


def cxcywh(box: Box) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


def yolov8_outputs(
    truths: Sequence[Truth], width: int, height: int, anchors: int = 40, transposed: bool = False
) -> Outputs:
    out = np.zeros((1, 4 + len(NAMES), anchors), np.float32)
    for column, (box, class_id, score) in enumerate(truths):
        out[0, :4, column] = cxcywh(box)
        out[0, 4 + class_id, column] = score
    return {"output0": np.ascontiguousarray(out.transpose(0, 2, 1)) if transposed else out}


def yolov5_outputs(truths: Sequence[Truth], width: int, height: int, rows: int = 40) -> Outputs:
    out = np.zeros((1, rows, 5 + len(NAMES)), np.float32)
    for row, (box, class_id, score) in enumerate(truths):
        # objectness x class probability = score
        out[0, row, :5] = (*cxcywh(box), math.sqrt(score))
        out[0, row, 5 + class_id] = math.sqrt(score)
    # High objectness, low class probability: 0.9 x 0.2 = 0.18, under the threshold.
    out[0, rows - 1, :5] = (10, 10, 8, 8, 0.9)
    out[0, rows - 1, 5] = 0.2
    return {"output": out}


def yolox_outputs(truths: Sequence[Truth], width: int, height: int) -> Outputs:
    cells = [(s, math.ceil(width / s), math.ceil(height / s)) for s in (8, 16, 32)]
    out = np.zeros((1, sum(c * r for _, c, r in cells), 5 + len(NAMES)), np.float32)
    for box, class_id, score in truths:
        cx, cy, w, h = cxcywh(box)
        gx, gy = int(cx // 8), int(cy // 8)  # the stride-8 cell holding the centre
        row = gy * cells[0][1] + gx
        out[0, row, :5] = (cx / 8 - gx, cy / 8 - gy, math.log(w / 8), math.log(h / 8), 0.0)
        out[0, row, 4] = math.sqrt(score)
        out[0, row, 5 + class_id] = math.sqrt(score)
    return {"output": out}


def _distribution(distance: float, stride: int) -> npt.NDArray[np.float32]:
    """Logits whose softmax has the expected value distance / stride (two adjacent bins)."""
    bins = distance / stride
    low = int(bins)
    weights = np.full(BINS, 1e-30)
    weights[low] = 1 - (bins - low)
    if low + 1 < BINS:
        weights[low + 1] = max(bins - low, 1e-30)
    return np.asarray(np.log(weights), dtype=np.float32)


def _centre(index: int, stride: int, cell_center: str) -> float:
    if cell_center == "corner":
        return float(index * stride)
    if cell_center == "center":
        return (index + 0.5) * stride
    return index * stride + 0.5 * (stride - 1)


def gfl_outputs(
    truths: Sequence[Truth],
    width: int,
    height: int,
    strides: Sequence[int] = (8, 16, 32),
    cell_center: str = "pixel_center",
    single: bool = False,
) -> Outputs:
    """Each box on the coarsest level where a cell centre inside it reaches its sides."""
    grids = {s: (math.ceil(width / s), math.ceil(height / s)) for s in strides}
    scores = {s: np.zeros((c * r, len(NAMES)), np.float32) for s, (c, r) in grids.items()}
    dists = {s: np.zeros((c * r, 4 * BINS), np.float32) for s, (c, r) in grids.items()}
    for box, class_id, score in truths:
        cx, cy, _, _ = cxcywh(box)
        for stride in sorted(strides, reverse=True):
            columns, rows = grids[stride]
            gx = min(max(int(cx // stride), 0), columns - 1)
            gy = min(max(int(cy // stride), 0), rows - 1)
            px, py = _centre(gx, stride, cell_center), _centre(gy, stride, cell_center)
            sides = (px - box[0], py - box[1], box[2] - px, box[3] - py)
            index = gy * columns + gx
            if (
                all(0 <= d <= (BINS - 1) * stride for d in sides)
                and not scores[stride][index].any()
            ):
                scores[stride][index, class_id] = score
                dists[stride][index] = np.concatenate([_distribution(d, stride) for d in sides])
                break
        else:
            raise AssertionError(f"no GFL cell can hold {box}")
    if single:
        rows_out = [np.concatenate([scores[s], dists[s]], axis=1) for s in strides]
        return {"output": np.concatenate(rows_out)[np.newaxis]}
    outputs: Outputs = {}
    for s in strides:
        outputs[f"cls_pred_stride_{s}"] = scores[s][np.newaxis]
        outputs[f"dis_pred_stride_{s}"] = dists[s][np.newaxis]
    return outputs


def e2e_rows_outputs(truths: Sequence[Truth], width: int, height: int, rows: int = 10) -> Outputs:
    out = np.zeros((1, rows, 6), np.float32)  # zero rows: padding (score 0)
    for row, (box, class_id, score) in enumerate(truths):
        out[0, row] = (*box, score, class_id)
    return {"output0": out}


def e2e_split_outputs(
    truths: Sequence[Truth], width: int, height: int, rows: int = 10, num_dets: int | None = None
) -> Outputs:
    boxes = np.zeros((1, rows, 4), np.float32)
    scores = np.zeros((1, rows), np.float32)
    classes = np.full((1, rows), -1, np.int32)  # EfficientNMS pads with class -1
    for row, (box, class_id, score) in enumerate(truths):
        boxes[0, row], scores[0, row], classes[0, row] = box, score, class_id
    count = len(truths) if num_dets is None else num_dets
    return {
        "num_dets": np.array([[count]], np.int32),
        "det_boxes": boxes,
        "det_scores": scores,
        "det_classes": classes,
    }


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def write_model(
    models_dir: Path,
    name: str,
    outputs: Outputs,
    manifest: Mapping[str, Any] | None = None,
    **build: Any,
) -> Path:
    """`<name>.onnx`, and `<name>.json` naming it when `manifest` is given."""
    path = build_model(models_dir / f"{name}.onnx", outputs, **build)
    if manifest is not None:
        raw = {"file": f"{name}.onnx", "license": "test", **manifest}
        (models_dir / f"{name}.json").write_text(json.dumps(raw), encoding="utf-8")
    return path


def found(result: DetectionResult) -> list[tuple[list[float], int, float]]:
    d = result.detections
    return [
        (box.tolist(), int(c), float(s))
        for box, c, s in zip(d.xyxy, d.class_ids, d.scores, strict=True)
    ]


def assert_detections(result: DetectionResult, expected: Sequence[Truth]) -> None:
    got = found(result)
    assert len(got) == len(expected), got
    for (box, class_id, score), (want_box, want_class, want_score) in zip(
        got, expected, strict=True
    ):
        assert class_id == want_class, got
        assert score == pytest.approx(want_score, abs=1e-5), got
        np.testing.assert_allclose(box, want_box, atol=0.02, err_msg=str(got))


def input_shape(width: int, height: int) -> tuple[int, int, int, int]:
    return (1, 3, height, width)


# --- each family decodes its layout end to end ------------------------------------------------


DECODE_CASES = [
    # YOLOX raw grid at its reference top-left letterbox.
    pytest.param("yolox", yolox_outputs, TOP_LEFT, id="yolox-top-left"),
    # YOLOX on a non-square input: the grid is 12x8 + 6x4 + 3x2 cells.
    pytest.param("yolox", yolox_outputs, NON_SQUARE, id="yolox-non-square"),
    # YOLOv5 rows (objectness x class probability), letterboxed and stretched.
    pytest.param("yolov5", yolov5_outputs, CENTER, id="yolov5-center"),
    pytest.param("yolov5", yolov5_outputs, STRETCH, id="yolov5-stretch"),
    # YOLOv8 [1, 4 + C, N], on every geometry.
    pytest.param("yolov8", yolov8_outputs, CENTER, id="yolov8-center"),
    pytest.param("yolov8", yolov8_outputs, NON_SQUARE, id="yolov8-non-square"),
    pytest.param("yolov8", yolov8_outputs, STRETCH, id="yolov8-stretch"),
    # YOLOv8 transposed [1, N, 4 + C]: accepted because the manifest says yolov8.
    pytest.param(
        "yolov8",
        functools.partial(yolov8_outputs, transposed=True),
        CENTER,
        id="yolov8-transposed",
    ),
    # End-to-end [1, N, 6] rows with zero padding rows.
    pytest.param("e2e", e2e_rows_outputs, CENTER, id="e2e-rows-center"),
    pytest.param("e2e", e2e_rows_outputs, NON_SQUARE, id="e2e-rows-non-square"),
    # End-to-end four outputs (num_dets, boxes, scores, classes) with class -1 padding.
    pytest.param("e2e", e2e_split_outputs, CENTER, id="e2e-split-center"),
    pytest.param("e2e", e2e_split_outputs, STRETCH, id="e2e-split-stretch"),
    # GFL per-stride outputs (NanoDet-m cell centres), square, non-square and stretched.
    pytest.param("gfl", gfl_outputs, CENTER, id="gfl-center"),
    pytest.param("gfl", gfl_outputs, NON_SQUARE, id="gfl-non-square"),
    pytest.param("gfl", gfl_outputs, STRETCH, id="gfl-stretch"),
    # The 'nanodet' alias is the same family.
    pytest.param("nanodet", gfl_outputs, CENTER, id="nanodet-alias"),
    # The 'picodet' alias puts the cell centres at (i + 0.5) x stride.
    pytest.param(
        "picodet",
        functools.partial(gfl_outputs, cell_center="center"),
        STRETCH,
        id="picodet-alias",
    ),
    # NanoDet-Plus single output [1, cells of strides 8..64, C + 4 x bins], corner centres.
    pytest.param(
        "gfl",
        functools.partial(gfl_outputs, strides=(8, 16, 32, 64), cell_center="corner", single=True),
        CENTER,
        id="gfl-single-center",
    ),
    pytest.param(
        "gfl",
        functools.partial(gfl_outputs, strides=(8, 16, 32, 64), cell_center="corner", single=True),
        NON_SQUARE,
        id="gfl-single-non-square",
    ),
]


@pytest.mark.parametrize(("family", "encode", "geometry"), DECODE_CASES)
def test_family_decodes_known_boxes(
    models_dir: Path, family: str, encode: Encoder, geometry: Geometry
) -> None:
    outputs = encode(geometry.truths(), geometry.input_width, geometry.input_height)
    manifest = {"family": family, "class_names": NAMES, "preprocess": dict(geometry.preprocess)}
    shape = input_shape(geometry.input_width, geometry.input_height)
    write_model(models_dir, "m", outputs, manifest, input_shape=shape)
    detector = predict.load_model(models_dir, "m")
    assert detector.info.family == families.FAMILIES[family].name
    assert detector.info.source == "manifest"
    assert_detections(detector.detect(geometry.image(), PARAMS), geometry.expected())


@pytest.mark.parametrize(
    "strides",
    [
        # Two levels only.
        pytest.param((8, 16), id="2"),
        # NanoDet-m's three.
        pytest.param((8, 16, 32), id="3"),
        # NanoDet-Plus / PicoDet's four.
        pytest.param((8, 16, 32, 64), id="4"),
        # Five, the last a single 1x1 cell over a 128x96 input.
        pytest.param((8, 16, 32, 64, 128), id="5"),
        # Starting at 16, not 8.
        pytest.param((16, 32), id="16-32"),
    ],
)
@pytest.mark.parametrize("single", [False, True], ids=["per-stride", "single-output"])
def test_gfl_any_number_of_strides(
    models_dir: Path, strides: tuple[int, ...], single: bool
) -> None:
    # A 256x192 image halved into 128x96 without padding. A big box lands on the coarsest
    # level that can hold it, the small ones on finer levels.
    truths: list[Truth] = [
        ((8, 8, 120, 88), 0, 0.95),
        ((20, 30, 44, 60), 1, 0.9),
        ((70, 10, 100, 40), 2, 0.6),
    ]
    cell_center = "corner" if single else "pixel_center"
    outputs = gfl_outputs(truths, 128, 96, strides, cell_center, single)
    manifest = {"family": "gfl", "class_names": NAMES, "cell_center": cell_center}
    write_model(models_dir, "m", outputs, manifest, input_shape=input_shape(128, 96))
    detector = predict.load_model(models_dir, "m")
    result = detector.detect(np.zeros((192, 256, 3), np.uint8), PARAMS)
    expected: list[Truth] = [
        ((x1 * 2, y1 * 2, x2 * 2, y2 * 2), c, s) for (x1, y1, x2, y2), c, s in truths
    ]
    assert_detections(result, expected)


@pytest.mark.parametrize(
    ("cell_center", "offset"),
    [
        # NanoDet-m: (i + 0.5) x stride - 0.5.
        pytest.param("pixel_center", 3.5, id="pixel-center"),
        # NanoDet-Plus: i x stride.
        pytest.param("corner", 0.0, id="corner"),
        # PicoDet: (i + 0.5) x stride.
        pytest.param("center", 4.0, id="center"),
    ],
)
def test_gfl_cell_center_override(models_dir: Path, cell_center: str, offset: float) -> None:
    # Cell (2, 3) of stride 8, each side one bin (8 px) from the cell's centre, wherever the
    # manifest says that is. A 64x64 image into the 64x64 input: no scaling.
    outputs = gfl_outputs([], 64, 64)
    outputs["cls_pred_stride_8"][0, 3 * 8 + 2, 1] = 0.9
    outputs["dis_pred_stride_8"][0, 3 * 8 + 2] = np.tile(np.eye(BINS)[1] * 50, 4)
    manifest = {"family": "gfl", "class_names": NAMES, "cell_center": cell_center}
    write_model(models_dir, "m", outputs, manifest)
    detector = predict.load_model(models_dir, "m")
    cx, cy = 16 + offset, 24 + offset
    assert_detections(detector.detect(SAME, PARAMS), [((cx - 8, cy - 8, cx + 8, cy + 8), 1, 0.9)])


def test_cell_center_only_for_gfl(models_dir: Path) -> None:
    outputs = yolov8_outputs([], 64, 64)
    manifest = {"family": "yolov8", "class_names": NAMES, "cell_center": "corner"}
    write_model(models_dir, "m", outputs, manifest)
    with pytest.raises(ModelLoadError, match="'cell_center' is for the gfl family"):
        predict.load_model(models_dir, "m")


# --- end-to-end padding and num_dets ------------------------------------------------------------


def e2e_detector(models_dir: Path, outputs: Outputs) -> Detector:
    write_model(models_dir, "m", outputs, {"family": "e2e", "class_names": NAMES})
    return predict.load_model(models_dir, "m")


def test_e2e_rows_padding_is_ignored_even_at_threshold_zero(models_dir: Path) -> None:
    rows = np.zeros((1, 8, 6), np.float32)
    rows[0, 0] = (4, 4, 20, 20, 0.8, 2)  # a detection
    rows[0, 1] = (30, 30, 50, 50, 0.95, -1)  # class -1: padding, whatever its score
    rows[0, 2] = (30, 4, 50, 20, 0.0, 1)  # score 0: padding
    rows[0, 3] = (4, 30, 20, 50, 0.9, 3)  # class 3 of 3 names: not a class of this model
    # rows 4..7: all zeros, Ultralytics' padding
    detector = e2e_detector(models_dir, {"output0": rows})
    assert_detections(detector.detect(SAME, ALL_SCORES), [((4, 4, 20, 20), 2, 0.8)])


@pytest.mark.parametrize(
    ("num_dets", "expected_classes"),
    [
        # None counted: nothing, although the rows hold boxes.
        pytest.param(0, [], id="zero"),
        # The first two of three rows.
        pytest.param(2, [0, 1], id="two"),
        # All three.
        pytest.param(3, [0, 1, 2], id="three"),
        # More than the rows there are: clamped to the rows (padding rows then ignored).
        pytest.param(50, [0, 1, 2], id="too-many"),
        # Negative: nothing.
        pytest.param(-1, [], id="negative"),
    ],
)
def test_e2e_split_counts_only_num_dets_rows(
    models_dir: Path, num_dets: int, expected_classes: list[int]
) -> None:
    truths: list[Truth] = [
        ((0, 0, 10, 10), 0, 0.9),
        ((20, 0, 30, 10), 1, 0.8),
        ((40, 0, 50, 10), 2, 0.7),
    ]
    detector = e2e_detector(models_dir, e2e_split_outputs(truths, 64, 64, num_dets=num_dets))
    result = detector.detect(SAME, ALL_SCORES)
    assert [c for _, c, _ in found(result)] == expected_classes


def test_e2e_score_threshold_and_nms_still_apply(models_dir: Path) -> None:
    truths: list[Truth] = [
        ((0, 0, 20, 20), 1, 0.9),
        ((0, 0, 20, 20), 1, 0.7),  # a duplicate the graph's NMS let through: removed
        ((30, 30, 50, 50), 2, 0.2),  # under the threshold
    ]
    detector = e2e_detector(models_dir, e2e_rows_outputs(truths, 64, 64))
    result = detector.detect(SAME, PARAMS)
    assert_detections(result, [((0, 0, 20, 20), 1, 0.9)])


# --- family detection without a manifest --------------------------------------------------------


def yolox_grid(width: int, height: int, classes: int) -> Outputs:
    cells = sum(math.ceil(width / s) * math.ceil(height / s) for s in (8, 16, 32))
    return {"output": np.zeros((1, cells, 5 + classes), np.float32)}


META = ultralytics_metadata(NAMES)
META_ONE = ultralytics_metadata(("solo",))

# (outputs, input shape, metadata, the family found)
DETECT_CASES = [
    # YOLOv8 [1, 4 + C, N] with Ultralytics metadata.
    pytest.param(yolov8_outputs([], 64, 64), (1, 3, 64, 64), META, "yolov8", id="yolov8"),
    # YOLOv5 [1, N, 5 + C], N not a YOLOX grid.
    pytest.param(yolov5_outputs([], 64, 64), (1, 3, 64, 64), META, "yolov5", id="yolov5"),
    # YOLOX: N is exactly the stride 8/16/32 grid over 64x64 (64 + 16 + 4 cells).
    pytest.param(yolox_grid(64, 64, 3), (1, 3, 64, 64), META, "yolox", id="yolox"),
    # YOLOX on a non-square input.
    pytest.param(yolox_grid(96, 64, 3), (1, 3, 64, 96), META, "yolox", id="yolox-non-square"),
    # One-class YOLOX [1, 84, 6]: the grid count wins over the [1, N, 6] of e2e.
    pytest.param(yolox_grid(64, 64, 1), (1, 3, 64, 64), META_ONE, "yolox", id="yolox-1-class"),
    # One-class YOLOv5: 3 anchors x 84 cells = 252 rows of 6, not e2e.
    pytest.param(
        {"output": np.zeros((1, 252, 6), np.float32)},
        (1, 3, 64, 64),
        META_ONE,
        "yolov5",
        id="yolov5-1-class",
    ),
    # End-to-end rows [1, N, 6].
    pytest.param(e2e_rows_outputs([], 64, 64), (1, 3, 64, 64), META, "e2e", id="e2e-rows"),
    # End-to-end four outputs.
    pytest.param(e2e_split_outputs([], 64, 64), (1, 3, 64, 64), META, "e2e", id="e2e-split"),
    # GFL per-stride outputs.
    pytest.param(gfl_outputs([], 64, 64), (1, 3, 64, 64), META, "gfl", id="gfl"),
    # GFL per-stride outputs on a non-square input with four strides.
    pytest.param(
        gfl_outputs([], 96, 64, strides=(8, 16, 32, 64)),
        (1, 3, 64, 96),
        META,
        "gfl",
        id="gfl-non-square",
    ),
    # NanoDet-Plus single output: 64 + 16 + 4 + 1 cells of strides 8..64.
    pytest.param(
        gfl_outputs([], 64, 64, strides=(8, 16, 32, 64), single=True),
        (1, 3, 64, 64),
        META,
        "gfl",
        id="gfl-single",
    ),
    # YOLOv8 exported with dynamic=True: no fixed input or anchors; the size comes from imgsz.
    pytest.param(
        yolov8_outputs([], 64, 64),
        ("batch", 3, "height", "width"),
        META,
        "yolov8",
        id="yolov8-dynamic",
    ),
]


@pytest.mark.parametrize(("outputs", "shape", "metadata", "family"), DETECT_CASES)
def test_family_detected_without_a_manifest(
    models_dir: Path,
    outputs: Outputs,
    shape: Sequence[int | str],
    metadata: Mapping[str, str],
    family: str,
) -> None:
    output_shapes = None
    if shape[0] == "batch":  # declare the anchors axis symbolic, as Ultralytics does
        output_shapes = {"output0": ["batch", 4 + len(NAMES), "anchors"]}
    write_model(
        models_dir,
        "bare",
        outputs,
        input_shape=shape,
        metadata=metadata,
        output_shapes=output_shapes,
    )
    detector = predict.load_model(models_dir, "bare")
    info = detector.info
    assert info.family == family
    assert info.class_names == manifests.metadata_class_names(metadata, "bare")
    assert info.source == "onnx metadata"
    assert info.license == META["license"]
    assert info.description == META["description"]
    assert detector.manifest.family == family
    assert detector.preprocess == families.FAMILIES[family].preprocess
    # Runs: a blank image gives nothing from the all-zero outputs.
    blank = np.zeros((32, 32, 3), np.uint8)
    assert len(detector.detect(blank, PARAMS).detections) == 0


@pytest.mark.parametrize(
    ("outputs", "family"),
    [
        # The 80-class layouts whose shapes give the class count.
        pytest.param(yolox_grid(128, 128, 80), "yolox", id="yolox"),
        pytest.param({"output0": np.zeros((1, 84, 400), np.float32)}, "yolov8", id="yolov8"),
        pytest.param({"output": np.zeros((1, 3 * 336, 85), np.float32)}, "yolov5", id="yolov5"),
    ],
)
def test_80_classes_without_names_are_coco_with_a_warning(
    models_dir: Path, outputs: Outputs, family: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_model(models_dir, "bare", outputs, input_shape=(1, 3, 128, 128))
    with caplog.at_level(logging.WARNING, logger="detection_service.predict"):
        detector = predict.load_model(models_dir, "bare")
    coco = (MODELS_DIR / "coco80.txt").read_text(encoding="utf-8").splitlines()
    assert detector.info.family == family
    assert detector.info.class_names == tuple(n.strip() for n in coco if n.strip())
    assert detector.info.license == "unknown"
    assert "assuming the 80 COCO classes" in caplog.text


def test_yolov8_with_metadata_names_answers_with_them(models_dir: Path) -> None:
    # No manifest at all: names, input size and licence from the metadata alone.
    names = ("zebra", "okapi", "tapir", "quagga")
    out = np.zeros((1, 4 + len(names), 30), np.float32)
    out[0, :4, 5] = (32, 32, 16, 16)
    out[0, 4 + 3, 5] = 0.75
    write_model(
        models_dir,
        "yolo11_animals",
        {"output0": out},
        metadata=ultralytics_metadata(names, imgsz=(64, 64)),
    )
    (name,) = manifests.discover_models(models_dir)
    detector = predict.load_model(models_dir, name)
    result = detector.detect(np.zeros((64, 64, 3), np.uint8), PARAMS)
    ((box, class_id, score),) = found(result)
    assert detector.info.class_names[class_id] == "quagga"
    assert detector.info.name == "yolo11_animals"
    assert score == pytest.approx(0.75)
    np.testing.assert_allclose(box, [24, 24, 40, 40])


@pytest.mark.parametrize(
    ("imgsz", "manifest_size", "expected"),
    [
        # imgsz is [height, width].
        pytest.param((32, 64), None, (64, 32), id="imgsz-rectangular"),
        # A single number: square.
        pytest.param(48, None, (48, 48), id="imgsz-int"),
        # A manifest's input_size wins over imgsz for a dynamic input.
        pytest.param((64, 64), {"width": 96, "height": 32}, (96, 32), id="manifest-wins"),
    ],
)
def test_dynamic_input_size(
    models_dir: Path,
    imgsz: Any,
    manifest_size: Mapping[str, int] | None,
    expected: tuple[int, int],
) -> None:
    metadata = {**META, "imgsz": str(list(imgsz) if isinstance(imgsz, tuple) else imgsz)}
    manifest = None if manifest_size is None else {"input_size": manifest_size}
    write_model(
        models_dir,
        "m",
        yolov8_outputs([], 64, 64),
        manifest,
        input_shape=("batch", 3, "height", "width"),
        metadata=metadata,
    )
    detector = predict.load_model(models_dir, "m")
    assert (detector.info.input_width, detector.info.input_height) == expected


def test_float16_input(models_dir: Path) -> None:
    # A half-precision export (Ultralytics half=True): the tensor is fed as float16.
    write_model(
        models_dir,
        "m",
        yolov8_outputs([((8, 8, 24, 24), 1, 0.8)], 64, 64),
        metadata=META,
        input_type=TensorProto.FLOAT16,
    )
    detector = predict.load_model(models_dir, "m")
    assert_detections(detector.detect(SAME, PARAMS), [((8, 8, 24, 24), 1, 0.8)])


# --- models that are refused, and what the message says ----------------------------------------


@pytest.mark.parametrize(
    ("outputs", "shapes"),
    [
        # A classifier-like [1, 7].
        pytest.param({"logits": np.zeros((1, 7), np.float32)}, ["[1, 7]"], id="1x7"),
        # A feature map [1, 3, 10, 10].
        pytest.param(
            {"features": np.zeros((1, 3, 10, 10), np.float32)}, ["[1, 3, 10, 10]"], id="nchw"
        ),
        # Two [1, N, K] outputs of different cell counts: no GFL pairs.
        pytest.param(
            {"a": np.zeros((1, 64, 3), np.float32), "b": np.zeros((1, 16, 32), np.float32)},
            ["[1, 64, 3]", "[1, 16, 32]"],
            id="unpaired",
        ),
        # [1, N, 5]: rows too short for any YOLO layout.
        pytest.param({"rows": np.zeros((1, 30, 5), np.float32)}, ["[1, 30, 5]"], id="5-cols"),
    ],
)
def test_unknown_layout_is_refused_with_what_was_found(
    models_dir: Path, outputs: Outputs, shapes: list[str]
) -> None:
    write_model(models_dir, "mystery", outputs, metadata={"producer_note": "x"})
    with pytest.raises(ModelLoadError) as caught:
        predict.load_model(models_dir, "mystery")
    message = str(caught.value)
    assert "cannot tell which detector family model 'mystery' is" in message
    for shape in [*shapes, "[1, 3, 64, 64]"]:  # the outputs and the input
        assert shape in message
    assert "producer_note" in message  # the metadata keys
    for field in ("manifest", '"family"', '"input_size"', '"class_names"', '"preprocess"'):
        assert field in message


@pytest.mark.parametrize(
    ("outputs", "metadata", "message"),
    [
        # 3 classes, no names anywhere: only 80 classes are taken as COCO.
        pytest.param(yolov8_outputs([], 64, 64), {}, "have 3 classes", id="3-classes"),
        # End-to-end outputs do not say how many classes there are.
        pytest.param(e2e_rows_outputs([], 64, 64), {}, "do not say how many", id="e2e"),
        # A segmentation model.
        pytest.param(
            yolov8_outputs([], 64, 64),
            ultralytics_metadata(NAMES, task="segment"),
            "a 'segment' model",
            id="task-segment",
        ),
        # A pose model.
        pytest.param(
            yolov8_outputs([], 64, 64),
            ultralytics_metadata(NAMES, task="pose"),
            "a 'pose' model",
            id="task-pose",
        ),
        # names that are not a literal.
        pytest.param(
            yolov8_outputs([], 64, 64),
            {"names": "{0: person"},
            "metadata 'names' is not a Python literal",
            id="names-broken",
        ),
        # names that are code, not data: refused, never run.
        pytest.param(
            yolov8_outputs([], 64, 64),
            {"names": "__import__('os').getcwd()"},
            "metadata 'names' is not a Python literal",
            id="names-code",
        ),
        # names with gaps in the indices.
        pytest.param(
            yolov8_outputs([], 64, 64),
            {"names": "{0: 'a', 2: 'b'}"},
            "metadata 'names' is not a list",
            id="names-gap",
        ),
        # names that disagree with the outputs.
        pytest.param(
            yolov8_outputs([], 64, 64),
            ultralytics_metadata(("a", "b")),
            "6 channels",
            id="names-count",
        ),
    ],
)
def test_refused_models(
    models_dir: Path, outputs: Outputs, metadata: Mapping[str, str], message: str
) -> None:
    write_model(models_dir, "m", outputs, metadata=metadata)
    with pytest.raises(ModelLoadError, match=message):
        predict.load_model(models_dir, "m")


def test_dynamic_input_without_a_size_is_refused(models_dir: Path) -> None:
    write_model(
        models_dir,
        "m",
        yolov8_outputs([], 64, 64),
        input_shape=("batch", 3, "height", "width"),
        metadata={"names": str(dict(enumerate(NAMES)))},
    )
    with pytest.raises(ModelLoadError, match=r"no fixed size.*'input_size'.*'imgsz'"):
        predict.load_model(models_dir, "m")


def test_task_is_refused_even_with_a_manifest(models_dir: Path) -> None:
    manifest = {"family": "yolov8", "class_names": NAMES}
    write_model(
        models_dir,
        "m",
        yolov8_outputs([], 64, 64),
        manifest,
        metadata=ultralytics_metadata(NAMES, task="classify"),
    )
    with pytest.raises(ModelLoadError, match="'classify' model"):
        predict.load_model(models_dir, "m")


@pytest.mark.parametrize(
    ("family", "outputs", "message"),
    [
        # A manifest family whose layout the outputs do not have: the family's own error,
        # with what the model has.
        pytest.param("yolox", yolov8_outputs([], 64, 64), "'output0' has 35 classes", id="yolox"),
        pytest.param("e2e", yolov8_outputs([], 64, 64), "an end-to-end model", id="e2e"),
        pytest.param("yolov8", e2e_rows_outputs([], 64, 64), "YOLOv8 output", id="yolov8"),
        pytest.param("gfl", yolov8_outputs([], 64, 64), "GFL output", id="gfl"),
    ],
)
def test_manifest_family_that_does_not_fit(
    models_dir: Path, family: str, outputs: Outputs, message: str
) -> None:
    write_model(models_dir, "m", outputs, {"family": family, "class_names": NAMES})
    with pytest.raises(ModelLoadError, match=message) as caught:
        predict.load_model(models_dir, "m")
    assert "outputs 'output0'" in str(caught.value)


# --- detect_family on declared shapes (no ONNX files) ------------------------------------------


def spec(name: str, *shape: int | str, dtype: str = "tensor(float)") -> OutputSpec:
    return OutputSpec(name, tuple(shape), dtype)


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        # Nothing at all.
        pytest.param([], None, id="none"),
        # One 2-D output.
        pytest.param([spec("o", 1, 7)], None, id="2d"),
        # [1, N, N]: neither orientation.
        pytest.param([spec("o", 1, 40, 40)], None, id="square"),
        # [1, 4, N]: 4 channels, no class.
        pytest.param([spec("o", 1, 4, 100)], None, id="4-channels"),
        # Batch 2.
        pytest.param([spec("o", 2, 84, 8400)], None, id="batch-2"),
        # Ultralytics YOLOv8n at 640: [1, 84, 8400].
        pytest.param([spec("o", 1, 84, 8400)], "yolov8", id="yolov8-640"),
        # Symbolic batch.
        pytest.param([spec("o", "batch", 84, 8400)], "yolov8", id="yolov8-batch"),
        # Dynamic anchors.
        pytest.param([spec("o", "batch", 84, "anchors")], "yolov8", id="yolov8-dynamic"),
        # YOLOX-Nano at 640: 8400 grid cells.
        pytest.param([spec("o", 1, 8400, 85)], "yolox", id="yolox-640"),
        # YOLOv5s at 640: 25200 rows.
        pytest.param([spec("o", 1, 25200, 85)], "yolov5", id="yolov5-640"),
        # YOLOv5 with a dynamic row count.
        pytest.param([spec("o", 1, "rows", 85)], "yolov5", id="yolov5-dynamic"),
        # Ultralytics nms=True / YOLOv10: [1, 300, 6].
        pytest.param([spec("o", 1, 300, 6)], "e2e", id="e2e-300"),
        # The same with a dynamic row count.
        pytest.param([spec("o", 1, "n", 6)], "e2e", id="e2e-dynamic"),
        # NanoDet-Plus-m 416: 3598 rows of 80 + 32.
        pytest.param([spec("o", 1, 3598, 112)], "gfl", id="nanodet-plus-416"),
        # The NanoDet-Plus row count with too few columns for 4 x 8 bins: YOLOv5.
        pytest.param([spec("o", 1, 3598, 30)], "yolov5", id="plus-rows-few-columns"),
        # TensorRT EfficientNMS names and types.
        pytest.param(
            [
                spec("num_dets", 1, 1, dtype="tensor(int32)"),
                spec("det_boxes", 1, 100, 4),
                spec("det_scores", 1, 100),
                spec("det_classes", 1, 100, dtype="tensor(int32)"),
            ],
            "e2e",
            id="efficient-nms",
        ),
        # Four outputs, neutral names: the integer one holds the classes.
        pytest.param(
            [
                spec("a", 1),
                spec("b", 1, 100, 4),
                spec("c", 1, 100),
                spec("d", 1, 100, dtype="tensor(int64)"),
            ],
            "e2e",
            id="e2e-by-type",
        ),
        # Four outputs, neutral names, both floats: cannot tell scores from classes.
        pytest.param(
            [spec("a", 1, 1), spec("b", 1, 100, 4), spec("c", 1, 100), spec("d", 1, 100)],
            None,
            id="e2e-ambiguous",
        ),
        # Four outputs whose row counts disagree.
        pytest.param(
            [
                spec("num", 1, 1),
                spec("boxes", 1, 100, 4),
                spec("scores", 1, 100),
                spec("classes", 1, 50),
            ],
            None,
            id="e2e-rows-differ",
        ),
        # NanoDet-m 416: cls/dis per stride.
        pytest.param(
            [spec(f"cls_pred_stride_{s}", 1, c, 80) for s, c in ((8, 2704), (16, 676))]
            + [spec(f"dis_pred_stride_{s}", 1, c, 32) for s, c in ((8, 2704), (16, 676))],
            "gfl",
            id="nanodet-m",
        ),
        # PicoDet-like names that say nothing: the 32-channel output of a pair is the
        # distribution.
        pytest.param(
            [spec(f"t{i}", 1, c, k) for i, (c, k) in enumerate([(2704, 80), (2704, 32)])],
            "gfl",
            id="neutral-names",
        ),
        # Neutral names, 32 classes and 32 distribution channels: cannot tell.
        pytest.param([spec("t0", 1, 2704, 32), spec("t1", 1, 2704, 32)], None, id="gfl-32-32"),
        # A pair whose cell count is no stride's grid over 416x416.
        pytest.param([spec("cls", 1, 2700, 80), spec("dis", 1, 2700, 32)], None, id="gfl-cells"),
        # Three outputs with the same cell count.
        pytest.param(
            [spec("cls", 1, 2704, 80), spec("dis", 1, 2704, 32), spec("x", 1, 2704, 8)],
            None,
            id="gfl-three",
        ),
    ],
)
def test_detect_family(outputs: list[OutputSpec], expected: str | None) -> None:
    # 416x416 for the per-stride and NanoDet-Plus cases; 640x640 when a case says so.
    size = 640 if any(d in (8400, 25200) for o in outputs for d in o.shape) else 416
    assert families.detect_family(outputs, size, size) == expected


# --- manifest overrides of the pre-processing ------------------------------------------------


@pytest.mark.parametrize(
    ("preprocess", "expected_score"),
    [
        # The YOLOv8 default: RGB, so channel 0 is the image's red: 255 * 1/255.
        pytest.param(None, 1.0, id="default-rgb"),
        # BGR: channel 0 is blue, 0 in a red image: no detection.
        pytest.param({"channel_order": "bgr"}, None, id="bgr"),
        # Another scale: 255 * 0.5/255.
        pytest.param({"scale": 0.5 / 255}, 0.5, id="scale"),
        # Mean and std in the tensor's (RGB) order: (1.0 - 0.5) / 2.
        pytest.param({"mean": [0.5, 0, 0], "std": [2, 1, 1]}, 0.25, id="mean-std"),
        # Stretch and letterbox agree on a square image into a square input.
        pytest.param({"resize": "stretch"}, 1.0, id="stretch"),
    ],
)
def test_preprocess_overrides_change_the_tensor(
    models_dir: Path, preprocess: Mapping[str, Any] | None, expected_score: float | None
) -> None:
    # One YOLOv8 anchor whose class-0 score is the mean of input channel 0.
    out = np.zeros((1, 4 + len(NAMES), 20), np.float32)
    out[0, :4, 0] = (32, 32, 20, 20)
    manifest: dict[str, Any] = {"family": "yolov8", "class_names": NAMES}
    if preprocess is not None:
        manifest["preprocess"] = dict(preprocess)
    write_model(
        models_dir,
        "m",
        {"output0": out},
        manifest,
        channel0_score=Channel0Score("output0", (0, 4, 0)),
    )
    detector = predict.load_model(models_dir, "m")
    red = np.zeros((64, 64, 3), np.uint8)
    red[:, :, 2] = 255  # BGR
    result = detector.detect(red, PARAMS)
    expected = [] if expected_score is None else [((22.0, 22.0, 42.0, 42.0), 0, expected_score)]
    assert_detections(result, expected)


def test_detector_preprocess_is_defaults_plus_overrides(models_dir: Path) -> None:
    manifest = {"family": "nanodet", "class_names": NAMES, "preprocess": {"channel_order": "rgb"}}
    write_model(models_dir, "m", gfl_outputs([], 64, 64), manifest)
    detector = predict.load_model(models_dir, "m")
    defaults = families.FAMILIES["gfl"].preprocess
    assert detector.preprocess.channel_order == "rgb"
    assert (detector.preprocess.mean, detector.preprocess.std) == (defaults.mean, defaults.std)
    assert detector.manifest.family == detector.info.family == "gfl"


@pytest.mark.parametrize(
    ("family", "resize", "pad_position", "pad_value", "channel_order", "scale"),
    [
        # YOLOX: the reference demo's letterbox at the top left, BGR, 0..255.
        pytest.param("yolox", "letterbox", "top_left", 114, "bgr", 1.0, id="yolox"),
        # NanoDet-m (per the shared README): centred, black pad, BGR, mean/std below.
        pytest.param("nanodet", "letterbox", "center", 0, "bgr", 1.0, id="nanodet"),
        # Ultralytics-style exports: centred grey pad, RGB, 0..1.
        pytest.param("yolov5", "letterbox", "center", 114, "rgb", 1 / 255, id="yolov5"),
        pytest.param("yolov8", "letterbox", "center", 114, "rgb", 1 / 255, id="yolov8"),
        pytest.param("e2e", "letterbox", "center", 114, "rgb", 1 / 255, id="e2e"),
        # PP-PicoDet (PaddleDetection infer_cfg): stretched, RGB, 0..1 then ImageNet mean/std.
        pytest.param("picodet", "stretch", "center", 114, "rgb", 1 / 255, id="picodet"),
    ],
)
def test_family_preprocess_defaults(
    family: str, resize: str, pad_position: str, pad_value: int, channel_order: str, scale: float
) -> None:
    spec = families.FAMILIES[family].preprocess
    assert (spec.resize, spec.pad_position, spec.pad_value) == (resize, pad_position, pad_value)
    assert spec.channel_order == channel_order
    assert spec.scale == pytest.approx(scale)
    if family == "nanodet":
        assert spec.mean == (103.53, 116.28, 123.675)
        assert spec.std == (57.375, 57.12, 58.395)
    elif family == "picodet":
        assert spec.mean == (0.485, 0.456, 0.406)
        assert spec.std == (0.229, 0.224, 0.225)
    else:
        assert spec.mean is None
        assert spec.std is None


# --- class filter and class-agnostic NMS -------------------------------------------------------


@pytest.mark.parametrize(
    ("class_ids", "class_agnostic", "expected"),
    [
        # Class-aware: the two overlapping boxes of different classes both stay.
        pytest.param(None, False, [(0, 0.9), (1, 0.8), (2, 0.5)], id="aware"),
        # Class-agnostic: the better one suppresses the other; the disjoint one stays.
        pytest.param(None, True, [(0, 0.9), (2, 0.5)], id="agnostic"),
        # Only class 1, agnostic: class 0 is gone before NMS and cannot suppress it.
        pytest.param(frozenset({1}), True, [(1, 0.8)], id="filter-before-nms"),
        # Only class 0.
        pytest.param(frozenset({0}), False, [(0, 0.9)], id="only-0"),
        # A class the model does not have: nothing.
        pytest.param(frozenset({7}), False, [], id="absent-class"),
        # No class at all: nothing.
        pytest.param(frozenset(), False, [], id="empty-set"),
        # Every class named, agnostic: the same as no filter.
        pytest.param(frozenset({0, 1, 2}), True, [(0, 0.9), (2, 0.5)], id="all-agnostic"),
    ],
)
def test_class_filter_and_agnostic_nms(
    models_dir: Path,
    class_ids: frozenset[int] | None,
    class_agnostic: bool,
    expected: list[tuple[int, float]],
) -> None:
    truths: list[Truth] = [
        ((10, 10, 40, 40), 0, 0.9),
        ((12, 11, 41, 40), 1, 0.8),  # IoU with the first about 0.89
        ((45, 45, 60, 60), 2, 0.5),
    ]
    write_model(models_dir, "m", yolov8_outputs(truths, 64, 64), metadata=META)
    detector = predict.load_model(models_dir, "m")
    params = DetectionParams(
        score_threshold=0.25,
        min_width_fraction=0,
        min_height_fraction=0,
        class_ids=class_ids,
        class_agnostic=class_agnostic,
    )
    result = detector.detect(SAME, params)
    got = found(result)
    assert [c for _, c, _ in got] == [c for c, _ in expected]
    np.testing.assert_allclose([s for _, _, s in got], [s for _, s in expected], rtol=1e-6)


# --- the models folder ------------------------------------------------------------------------


def test_discover_models(models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    tiny = yolov8_outputs([], 64, 64)
    # A manifest and its weights: listed by the manifest.
    write_model(models_dir, "alpha", tiny, {"family": "yolov8", "class_names": NAMES})
    # A bare .onnx: listed by itself.
    write_model(models_dir, "bravo", tiny, metadata=META)
    # A manifest naming weights of another name: the weights are not listed on their own.
    write_model(models_dir, "shared_weights", tiny, metadata=META)
    raw = {"file": "shared_weights.onnx", "license": "test", "family": "yolov8"}
    (models_dir / "charlie.json").write_text(json.dumps(raw), encoding="utf-8")
    # A JSON file that is no manifest, with no model of its name: skipped with a warning.
    (models_dir / "notes.json").write_text('{"remark": "hello"}', encoding="utf-8")
    # Broken JSON next to weights of its name: listed, so that loading says what is wrong.
    write_model(models_dir, "delta", tiny, metadata=META)
    (models_dir / "delta.json").write_text("{not json", encoding="utf-8")
    # A manifest that names other weights, and weights of its own name: the manifest wins.
    write_model(models_dir, "echo", tiny, metadata=META)
    raw = {"file": "alpha.onnx", "license": "test"}
    (models_dir / "echo.json").write_text(json.dumps(raw), encoding="utf-8")
    # Files of other kinds are not models.
    (models_dir / "coco80.txt").write_text("person\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="detection_service.predict"):
        models = manifests.discover_models(models_dir)
    assert list(models) == ["alpha", "bravo", "charlie", "delta", "echo"]
    assert models["alpha"] == models_dir / "alpha.json"
    assert models["bravo"] == models_dir / "bravo.onnx"
    assert models["charlie"] == models_dir / "charlie.json"
    assert models["delta"] == models_dir / "delta.json"
    assert models["echo"] == models_dir / "echo.json"
    assert "notes.json" in caplog.text
    assert "echo.onnx" in caplog.text
    # Each loads from where it was found.
    assert predict.load_model(models_dir, "alpha").info.source == "manifest"
    assert predict.load_model(models_dir, "bravo").info.source == "onnx metadata"
    charlie = predict.load_model(models_dir, "charlie")
    assert charlie.info.class_names == NAMES  # from the shared weights' metadata
    assert charlie.info.license == "test"
    with pytest.raises(ModelLoadError, match=r"cannot read model manifest .*delta\.json"):
        predict.load_model(models_dir, "delta")
    assert manifests.model_weights_path(models_dir, "charlie") == models_dir / "shared_weights.onnx"
    assert manifests.model_weights_path(models_dir, "bravo") == models_dir / "bravo.onnx"


def test_discover_models_missing_or_empty_folder(tmp_path: Path) -> None:
    assert manifests.discover_models(tmp_path / "absent") == {}
    assert manifests.discover_models(tmp_path) == {}
    with pytest.raises(ModelLoadError, match="models there: none"):
        predict.load_model(tmp_path / "absent", "anything")


def test_repository_models_folder() -> None:
    # The shipped manifests are found whether or not their weights have been fetched.
    models = manifests.discover_models(MODELS_DIR)
    assert models["yolox_nano"] == MODELS_DIR / "yolox_nano.json"
    assert models["nanodet_m_416"] == MODELS_DIR / "nanodet_m_416.json"
    assert all(path.suffix in (".json", ".onnx") for path in models.values())


def test_load_model_passes_the_thread_count(models_dir: Path) -> None:
    write_model(models_dir, "m", yolov8_outputs([], 64, 64), metadata=META)
    detector = predict.load_model(models_dir, "m", intra_op_threads=2)
    assert detector.info.intra_op_threads == 2
    assert detector.ready


def test_missing_weights_have_their_own_error(models_dir: Path) -> None:
    # The registry skips a manifest whose weights were never fetched by this type.
    raw = {"file": "absent.onnx", "license": "test"}
    (models_dir / "m.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(detection_types.ModelFileMissingError, match=r"absent\.onnx is missing"):
        predict.load_model(models_dir, "m")


@pytest.mark.real_model
@pytest.mark.parametrize(
    ("name", "family"),
    [
        pytest.param("yolox_nano", "yolox", id="yolox_nano"),
        pytest.param("nanodet_m_416", "gfl", id="nanodet_m_416"),
    ],
)
def test_real_models_without_their_manifests(models_dir: Path, name: str, family: str) -> None:
    # The bare .onnx files are recognised from their shapes and, with the family's default
    # pre-processing and COCO-80, answer exactly as with their manifests.
    weights = model_weights(name)
    (models_dir / weights.name).symlink_to(weights)
    bare = predict.load_model(models_dir, name)
    with_manifest = load_real_model(name)
    assert bare.info.family == with_manifest.info.family == family
    assert bare.info.class_names == with_manifest.info.class_names
    assert bare.preprocess == with_manifest.preprocess
    image = image_io.decode_image(sample_image("coffee.png").read_bytes())
    first = bare.detect(image, PARAMS).detections
    second = with_manifest.detect(image, PARAMS).detections
    assert len(first) > 0
    np.testing.assert_array_equal(first.xyxy, second.xyxy)
    np.testing.assert_array_equal(first.class_ids, second.class_ids)
