"""The YOLOX and GFL (NanoDet) head decoders on synthetic output arrays, without ONNX models:
binding to declared output shapes (and the errors naming what does not fit) and decoding known
cells to known boxes. tests/test_families.py runs every family end to end on tiny ONNX models.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np
import pytest

import families
from detection_types import FloatArray, ModelLoadError, ModelManifest, OutputSpec
from families import GflFamily, YoloxFamily

INPUT = 416
NUM_CLASSES = 80
# Grid cells per stride over a 416x416 input: 52x52, 26x26, 13x13.
CELLS = {8: 52 * 52, 16: 26 * 26, 32: 13 * 13}
YOLOX_ROWS = sum(CELLS.values())  # 3549
BINS = 8


def make_manifest(**changes: Any) -> ModelManifest:
    base = ModelManifest(
        name="synthetic",
        family="yolox",
        file="synthetic.onnx",
        input_width=INPUT,
        input_height=INPUT,
        class_names=tuple(f"class{i}" for i in range(NUM_CLASSES)),
        license="Apache-2.0",
        upstream_url=None,
        sha256=(),
    )
    return dataclasses.replace(base, **changes)


# --- YOLOX head on synthetic outputs --------------------------------------------------------------


def yolox_row(stride: int, grid_x: int, grid_y: int) -> int:
    """Row of the YOLOX output for a cell: grids of strides 8, 16, 32 in order, row-major."""
    offset = sum(cells for s, cells in CELLS.items() if s < stride)
    return offset + grid_y * math.ceil(INPUT / stride) + grid_x


def bind_yolox(manifest: ModelManifest | None = None) -> families.Head:
    return YoloxFamily().bind(
        [OutputSpec("output", (1, YOLOX_ROWS, 5 + NUM_CLASSES))], manifest or make_manifest()
    )


def yolox_output(
    stride: int,
    cell: tuple[int, int],
    deltas: tuple[float, float, float, float],
    objectness: float,
    class_id: int,
    prob: float,
) -> dict[str, FloatArray]:
    output = np.zeros((1, YOLOX_ROWS, 5 + NUM_CLASSES), np.float32)
    row = yolox_row(stride, *cell)
    output[0, row, :4] = deltas
    output[0, row, 4] = objectness
    output[0, row, 5 + class_id] = prob
    return {"output": output}


@pytest.mark.parametrize(
    ("stride", "cell", "deltas", "objectness", "class_id", "prob", "expected_box"),
    [
        # First row (stride 8, cell 0,0), zero deltas: centre (0, 0), an 8x8 box; the head does
        # not clip (unletterbox does).
        pytest.param(8, (0, 0), (0, 0, 0, 0), 1.0, 0, 0.5, [-4, -4, 4, 4], id="first-row"),
        # Stride 8, cell (10, 20): centre ((0.5+10)*8, (0.5+20)*8) = (84, 164), w = e^0*8.
        pytest.param(8, (10, 20), (0.5, 0.5, 0, 0), 0.8, 79, 1.0, [80, 160, 88, 168], id="s8"),
        # Stride 16, cell (5, 3): centre (88, 52); w = 4*16 = 64, h = 2*16 = 32.
        pytest.param(
            16,
            (5, 3),
            (0.5, 0.25, math.log(4), math.log(2)),
            0.9,
            16,
            0.8,
            [56, 36, 120, 68],
            id="s16",
        ),
        # Last row (stride 32, cell 12,12): centre (400, 400); w = 2*32 = 64, h = 32.
        pytest.param(
            32, (12, 12), (0.5, 0.5, math.log(2), 0), 0.75, 41, 1.0, [368, 384, 432, 416], id="last"
        ),
        # Negative deltas move the centre back; a negative dw shrinks the box.
        pytest.param(
            32,
            (1, 1),
            (-0.5, -0.25, -math.log(2), 0),
            0.5,
            2,
            1.0,
            [8, 8, 24, 40],
            id="negative-deltas",
        ),
    ],
)
def test_yolox_decode_one_box(
    stride: int,
    cell: tuple[int, int],
    deltas: tuple[float, float, float, float],
    objectness: float,
    class_id: int,
    prob: float,
    expected_box: list[float],
) -> None:
    head = bind_yolox()
    outputs = yolox_output(stride, cell, deltas, objectness, class_id, prob)
    decoded = head.decode(outputs, score_threshold=0.3)
    assert len(decoded) == 1
    np.testing.assert_allclose(decoded.xyxy[0], expected_box, atol=1e-3)
    assert decoded.scores[0] == pytest.approx(objectness * prob, abs=1e-6)
    assert decoded.class_ids.tolist() == [class_id]
    assert decoded.xyxy.dtype == np.float32
    assert decoded.scores.dtype == np.float32
    assert decoded.class_ids.dtype == np.int64


@pytest.mark.parametrize(
    ("objectness", "prob", "threshold", "kept"),
    [
        # Score = 0.5 * 1.0 exactly at the threshold: kept (>=).
        pytest.param(0.5, 1.0, 0.5, True, id="at-threshold"),
        # Objectness passes the prefilter, objectness * prob (0.375) does not.
        pytest.param(0.75, 0.5, 0.5, False, id="product-below"),
        # Objectness below the threshold: dropped even with prob 1.
        pytest.param(0.25, 1.0, 0.5, False, id="objectness-below"),
        # Threshold 0 keeps every row (the other 3548 zero rows too).
        pytest.param(0.25, 1.0, 0.0, True, id="zero-threshold"),
    ],
)
def test_yolox_decode_threshold(
    objectness: float, prob: float, threshold: float, kept: bool
) -> None:
    outputs = yolox_output(16, (5, 3), (0, 0, 0, 0), objectness, 3, prob)
    decoded = bind_yolox().decode(outputs, score_threshold=threshold)
    assert (objectness * prob in decoded.scores.tolist()) == kept
    if threshold == 0.0:
        assert len(decoded) == YOLOX_ROWS


def test_yolox_decode_picks_the_best_class_and_clamps_wild_sizes() -> None:
    outputs = yolox_output(8, (3, 4), (0, 0, 50.0, 50.0), 1.0, 7, 0.6)
    outputs["output"][0, yolox_row(8, 3, 4), 5 + 2] = 0.4  # a weaker second class
    decoded = bind_yolox().decode(outputs, score_threshold=0.3)
    assert decoded.class_ids.tolist() == [7]
    # exp(50) would be 5e21 pixels; the logit is clamped at 10.
    half = math.exp(10) * 8 / 2
    assert np.all(np.isfinite(decoded.xyxy))
    np.testing.assert_allclose(
        decoded.xyxy[0], [24 - half, 32 - half, 24 + half, 32 + half], rtol=1e-5
    )


def test_yolox_decode_nothing_above_threshold() -> None:
    output = np.zeros((1, YOLOX_ROWS, 5 + NUM_CLASSES), np.float32)
    decoded = bind_yolox().decode({"output": output}, score_threshold=0.3)
    assert len(decoded) == 0
    assert decoded.xyxy.shape == (0, 4)


def test_yolox_bind_accepts_a_symbolic_batch() -> None:
    head = YoloxFamily().bind(
        [OutputSpec("out", ("batch", YOLOX_ROWS, 5 + NUM_CLASSES))], make_manifest()
    )
    outputs = yolox_output(16, (5, 3), (0, 0, 0, 0), 1.0, 1, 1.0)
    decoded = head.decode({"out": outputs["output"]}, 0.5)
    np.testing.assert_allclose(decoded.xyxy, [[72, 40, 88, 56]])


@pytest.mark.parametrize(
    ("outputs", "manifest", "message"),
    [
        # No output at all.
        pytest.param([], make_manifest(), "one output", id="none"),
        # Two outputs.
        pytest.param(
            [OutputSpec("a", (1, YOLOX_ROWS, 85)), OutputSpec("b", (1, YOLOX_ROWS, 85))],
            make_manifest(),
            "one output",
            id="two",
        ),
        # 84 columns: 79 classes against a manifest naming 80.
        pytest.param(
            [OutputSpec("output", (1, YOLOX_ROWS, 84))], make_manifest(), "79 classes", id="84"
        ),
        # The manifest names 79 classes but the model has 80.
        pytest.param(
            [OutputSpec("output", (1, YOLOX_ROWS, 85))],
            make_manifest(class_names=tuple(f"c{i}" for i in range(79))),
            "names 79",
            id="manifest-79",
        ),
        # One row short of the 3549 grid cells.
        pytest.param(
            [OutputSpec("output", (1, YOLOX_ROWS - 1, 85))], make_manifest(), "3548 rows", id="rows"
        ),
        # Rows for a 640x640 input against a 416x416 manifest.
        pytest.param([OutputSpec("output", (1, 8400, 85))], make_manifest(), "8400", id="640"),
        # A symbolic number of rows.
        pytest.param(
            [OutputSpec("output", (1, "cells", 85))], make_manifest(), "dynamic", id="dynamic"
        ),
        # Unknown dims (None).
        pytest.param(
            [OutputSpec("output", (1, None, None))], make_manifest(), "dynamic", id="none-dims"
        ),
        # Two dimensions.
        pytest.param([OutputSpec("output", (YOLOX_ROWS, 85))], make_manifest(), "[1,", id="2d"),
        # Batch of 2.
        pytest.param(
            [OutputSpec("output", (2, YOLOX_ROWS, 85))], make_manifest(), "[1,", id="batch-2"
        ),
    ],
)
def test_yolox_bind_errors(
    outputs: list[OutputSpec], manifest: ModelManifest, message: str
) -> None:
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        YoloxFamily().bind(outputs, manifest)


# --- GFL (NanoDet) head on synthetic outputs ------------------------------------------------------


def gfl_specs(num_classes: int = NUM_CLASSES, bins: int = BINS) -> list[OutputSpec]:
    specs = [OutputSpec(f"cls_pred_stride_{s}", (1, c, num_classes)) for s, c in CELLS.items()]
    specs += [OutputSpec(f"dis_pred_stride_{s}", (1, c, 4 * bins)) for s, c in CELLS.items()]
    return specs


def gfl_zero_outputs(num_classes: int = NUM_CLASSES) -> dict[str, FloatArray]:
    outputs: dict[str, FloatArray] = {}
    for stride, cells in CELLS.items():
        outputs[f"cls_pred_stride_{stride}"] = np.zeros((1, cells, num_classes), np.float32)
        outputs[f"dis_pred_stride_{stride}"] = np.zeros((1, cells, 4 * BINS), np.float32)
    return outputs


# Which bins of a side's distribution are hot (equal, large logits); () = uniform.
Sides = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def set_gfl_cell(
    outputs: dict[str, FloatArray],
    stride: int,
    cell: tuple[int, int],
    class_id: int,
    score: float,
    sides: Sides,
) -> None:
    index = cell[1] * math.ceil(INPUT / stride) + cell[0]
    outputs[f"cls_pred_stride_{stride}"][0, index, class_id] = score
    logits = np.zeros((4, BINS), np.float32)
    for side, hot in enumerate(sides):
        logits[side, list(hot)] = 50.0  # softmax weight of the others: e^-50, nothing
    outputs[f"dis_pred_stride_{stride}"][0, index] = logits.reshape(-1)


@pytest.mark.parametrize(
    ("stride", "cell", "sides", "expected_box"),
    [
        # Stride 16, cell (5, 3): centre (5*16 + 7.5, 3*16 + 7.5) = (87.5, 55.5); peaked bins
        # left 2, top 1, right 3, bottom 7 -> distances 32, 16, 48, 112.
        pytest.param(16, (5, 3), ((2,), (1,), (3,), (7,)), [55.5, 39.5, 135.5, 167.5], id="s16"),
        # Stride 8, cell (0, 0): centre (3.5, 3.5); left 7 bins = 56 px, clipped to 0.
        pytest.param(8, (0, 0), ((7,), (0,), (1,), (2,)), [0, 3.5, 11.5, 19.5], id="s8-clip"),
        # Stride 32, last cell (12, 12): centre 399.5; right/bottom 224 px, clipped to 416.
        pytest.param(
            32, (12, 12), ((4,), (2,), (7,), (7,)), [271.5, 335.5, 416, 416], id="s32-clip"
        ),
        # Two equally hot bins (2 and 3): expected value 2.5 -> 20 px at stride 8; centre
        # (83.5, 163.5).
        pytest.param(
            8, (10, 20), ((2, 3), (2, 3), (2, 3), (2, 3)), [63.5, 143.5, 103.5, 183.5], id="split"
        ),
        # Uniform distributions: expected value 3.5 bins -> 56 px at stride 16; centre 215.5.
        pytest.param(16, (13, 13), ((), (), (), ()), [159.5, 159.5, 271.5, 271.5], id="uniform"),
        # Zero distances: a point box at the centre of stride-8 cell (51, 51) = 411.5.
        pytest.param(8, (51, 51), ((0,), (0,), (0,), (0,)), [411.5, 411.5, 411.5, 411.5], id="0"),
    ],
)
def test_gfl_decode_one_box(
    stride: int, cell: tuple[int, int], sides: Sides, expected_box: list[float]
) -> None:
    head = GflFamily().bind(gfl_specs(), make_manifest(family="nanodet"))
    outputs = gfl_zero_outputs()
    set_gfl_cell(outputs, stride, cell, class_id=16, score=0.75, sides=sides)
    decoded = head.decode(outputs, score_threshold=0.5)
    assert len(decoded) == 1
    np.testing.assert_allclose(decoded.xyxy[0], expected_box, atol=1e-3)
    assert decoded.scores.tolist() == [0.75]
    assert decoded.class_ids.tolist() == [16]
    assert decoded.xyxy.dtype == np.float32
    assert decoded.class_ids.dtype == np.int64


def test_gfl_decode_several_levels_best_class_and_threshold() -> None:
    head = GflFamily().bind(gfl_specs(), make_manifest(family="nanodet"))
    outputs = gfl_zero_outputs()
    peaked: Sides = ((1,), (1,), (1,), (1,))
    set_gfl_cell(outputs, 8, (1, 1), class_id=0, score=0.9, sides=peaked)
    set_gfl_cell(outputs, 32, (0, 0), class_id=5, score=0.6, sides=peaked)
    # A second, weaker class on the stride-32 cell: the best class wins.
    outputs["cls_pred_stride_32"][0, 0, 7] = 0.55
    # Exactly at the threshold: kept (>=).
    set_gfl_cell(outputs, 16, (2, 2), class_id=3, score=0.5, sides=peaked)
    # Below the threshold: dropped.
    set_gfl_cell(outputs, 16, (9, 9), class_id=4, score=0.49, sides=peaked)
    decoded = head.decode(outputs, score_threshold=0.5)
    # Levels in stride order 8, 16, 32.
    assert decoded.class_ids.tolist() == [0, 3, 5]
    np.testing.assert_allclose(decoded.scores, [0.9, 0.5, 0.6])
    np.testing.assert_allclose(
        decoded.xyxy,
        [[3.5, 3.5, 19.5, 19.5], [23.5, 23.5, 55.5, 55.5], [0, 0, 47.5, 47.5]],
        atol=1e-3,
    )


def test_gfl_decode_nothing_above_threshold() -> None:
    head = GflFamily().bind(gfl_specs(), make_manifest(family="nanodet"))
    decoded = head.decode(gfl_zero_outputs(), score_threshold=0.1)
    assert len(decoded) == 0
    assert decoded.xyxy.shape == (0, 4)


def test_gfl_bind_levels_in_stride_order_with_a_symbolic_batch() -> None:
    specs = [OutputSpec(s.name, ("batch", *s.shape[1:])) for s in reversed(gfl_specs())]
    head = GflFamily().bind(specs, make_manifest(family="nanodet"))
    assert isinstance(head, families.GflHead)
    assert [level.stride for level in head.levels] == [8, 16, 32]
    assert [level.cls_name for level in head.levels] == [
        "cls_pred_stride_8",
        "cls_pred_stride_16",
        "cls_pred_stride_32",
    ]
    assert head.bins == BINS


def test_gfl_bind_32_classes_told_apart_by_name() -> None:
    # 32 classes = 4 x 8 bins: the distribution outputs are recognised by 'dis' in the name.
    names = tuple(f"c{i}" for i in range(32))
    head = GflFamily().bind(gfl_specs(num_classes=32), make_manifest(class_names=names))
    assert isinstance(head, families.GflHead)
    assert [level.dis_name for level in head.levels] == [
        "dis_pred_stride_8",
        "dis_pred_stride_16",
        "dis_pred_stride_32",
    ]


def _without(name: str) -> list[OutputSpec]:
    return [spec for spec in gfl_specs() if spec.name != name]


def _replaced(name: str, shape: tuple[int | str | None, ...]) -> list[OutputSpec]:
    return [OutputSpec(s.name, shape) if s.name == name else s for s in gfl_specs()]


@pytest.mark.parametrize(
    ("outputs", "class_count", "message"),
    [
        # No outputs.
        pytest.param([], NUM_CLASSES, "no consistent GFL levels", id="none"),
        # Class outputs have 80 channels but the manifest names 79: no class output matches.
        pytest.param(gfl_specs(), 79, "79 channels", id="class-count"),
        # Class outputs with 81 channels against 80 names.
        pytest.param(gfl_specs(num_classes=81), NUM_CLASSES, "80 channels", id="81-channels"),
        # A level without its distribution output.
        pytest.param(_without("dis_pred_stride_16"), NUM_CLASSES, "676 cells", id="no-dis"),
        # A level without its class output.
        pytest.param(_without("cls_pred_stride_32"), NUM_CLASSES, "169 cells", id="no-cls"),
        # Distribution channels not a multiple of 4.
        pytest.param(
            _replaced("dis_pred_stride_8", (1, 2704, 30)), NUM_CLASSES, "not 4 x bins", id="dis-30"
        ),
        # Levels disagree on the number of bins (8, 8, 7).
        pytest.param(
            _replaced("dis_pred_stride_32", (1, 169, 28)),
            NUM_CLASSES,
            "no consistent GFL levels",
            id="bins-mixed",
        ),
        # A row count that matches no stride over 416x416.
        pytest.param(
            [OutputSpec("cls", (1, 2700, 80)), OutputSpec("dis", (1, 2700, 32))],
            NUM_CLASSES,
            "2700 cells",
            id="rows",
        ),
        # Dynamic number of cells.
        pytest.param(
            _replaced("cls_pred_stride_8", (1, "n", 80)), NUM_CLASSES, "dynamic", id="dynamic"
        ),
        # Two-dimensional output.
        pytest.param(_replaced("cls_pred_stride_8", (2704, 80)), NUM_CLASSES, "[1, N, K]", id="2d"),
    ],
)
def test_gfl_bind_errors(outputs: list[OutputSpec], class_count: int, message: str) -> None:
    manifest = make_manifest(
        family="nanodet", class_names=tuple(f"c{i}" for i in range(class_count))
    )
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        GflFamily().bind(outputs, manifest)
