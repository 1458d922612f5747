"""Fast unit tests for predict: geometry, NMS, filtering, letterbox, decoding, manifests and
both head decoders on synthetic outputs. Only the Detector construction tests need a real
model file (skipped when `make model` has not been run); no test here runs inference on photos.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

import families
import image_io
import manifests
import predict
from detection_types import (
    DetectionParams,
    Detections,
    FloatArray,
    ImageArray,
    ImageDecodeError,
    LetterboxInfo,
    ModelLoadError,
    ModelManifest,
    OutputSpec,
    PreprocessSpec,
)
from families import GflFamily, YoloxFamily
from predict import MAX_NMS_CANDIDATES

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"
INPUT = 416
NUM_CLASSES = 80
# Grid cells per stride over a 416x416 input: 52x52, 26x26, 13x13.
CELLS = {8: 52 * 52, 16: 26 * 26, 32: 13 * 13}
YOLOX_ROWS = sum(CELLS.values())  # 3549
BINS = 8
YOLOX_SPEC = YoloxFamily.preprocess
GFL_SPEC = GflFamily.preprocess
# Stretched to the input, RGB, scaled to 0..1 (PP-PicoDet's input, without the mean and std).
STRETCH_SPEC = PreprocessSpec(resize="stretch", channel_order="rgb", scale=1 / 255)


# --- helpers --------------------------------------------------------------------------------------


def boxes(*rows: Sequence[float]) -> FloatArray:
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def dets(
    xyxy: Sequence[Sequence[float]], scores: Sequence[float], class_ids: Sequence[int]
) -> Detections:
    return Detections(
        xyxy=boxes(*xyxy),
        scores=np.asarray(scores, dtype=np.float32).reshape(-1),
        class_ids=np.asarray(class_ids, dtype=np.int64).reshape(-1),
    )


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


def encode(image: npt.NDArray[Any], ext: str) -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def textured_image(height: int, width: int, seed: int = 0) -> ImageArray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def model_file(name: str) -> Path:
    path = MODELS_DIR / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is missing: run `make model` (`make test-models` for NanoDet)")
    return path


# --- box_area and box_iou -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("boxes_a", "boxes_b", "expected"),
    [
        # Empty against empty: a (0, 0) matrix, no division warnings.
        pytest.param(boxes(), boxes(), np.zeros((0, 0)), id="empty-empty"),
        # Empty against some: (0, M).
        pytest.param(boxes(), boxes([0, 0, 1, 1], [1, 1, 2, 2]), np.zeros((0, 2)), id="empty-two"),
        # Some against empty: (N, 0).
        pytest.param(boxes([0, 0, 1, 1]), boxes(), np.zeros((1, 0)), id="one-empty"),
        # A box with itself.
        pytest.param(boxes([0, 0, 10, 10]), boxes([0, 0, 10, 10]), [[1.0]], id="identical"),
        # Disjoint boxes.
        pytest.param(boxes([0, 0, 1, 1]), boxes([5, 5, 6, 6]), [[0.0]], id="disjoint"),
        # Sharing an edge only: zero-area intersection.
        pytest.param(boxes([0, 0, 1, 1]), boxes([1, 0, 2, 1]), [[0.0]], id="touching"),
        # Half overlap of two unit-height boxes: 1 / 3.
        pytest.param(boxes([0, 0, 2, 1]), boxes([1, 0, 3, 1]), [[1 / 3]], id="third"),
        # One box inside another: area ratio.
        pytest.param(boxes([0, 0, 4, 4]), boxes([1, 1, 3, 3]), [[0.25]], id="contained"),
        # A zero-area box against itself: the union is empty, IoU 0 instead of NaN.
        pytest.param(boxes([5, 5, 5, 5]), boxes([5, 5, 5, 5]), [[0.0]], id="zero-area-self"),
        # A zero-width line inside a real box.
        pytest.param(boxes([2, 0, 2, 4]), boxes([0, 0, 4, 4]), [[0.0]], id="zero-width"),
        # An inverted box has no area.
        pytest.param(boxes([4, 4, 0, 0]), boxes([0, 0, 4, 4]), [[0.0]], id="inverted"),
        # Pairwise: (2, 3) matrix.
        pytest.param(
            boxes([0, 0, 2, 2], [10, 10, 12, 12]),
            boxes([0, 0, 2, 2], [1, 0, 3, 2], [10, 10, 11, 11]),
            [[1.0, 1 / 3, 0.0], [0.0, 0.0, 0.25]],
            id="pairwise",
        ),
    ],
)
def test_box_iou(boxes_a: FloatArray, boxes_b: FloatArray, expected: Any) -> None:
    iou = predict.box_iou(boxes_a, boxes_b)
    expected_array = np.asarray(expected, dtype=np.float32)
    assert iou.dtype == np.float32
    assert iou.shape == expected_array.shape
    np.testing.assert_allclose(iou, expected_array, rtol=1e-6)
    assert np.all(np.isfinite(iou))


@pytest.mark.parametrize(
    ("xyxy", "expected"),
    [
        # Empty input.
        pytest.param(boxes(), [], id="empty"),
        # Ordinary boxes.
        pytest.param(boxes([0, 0, 2, 3], [1, 1, 2, 2]), [6.0, 1.0], id="plain"),
        # Degenerate and inverted boxes have zero area, never negative.
        pytest.param(boxes([1, 1, 1, 5], [3, 3, 1, 1]), [0.0, 0.0], id="degenerate"),
    ],
)
def test_box_area(xyxy: FloatArray, expected: list[float]) -> None:
    area = predict.box_area(xyxy)
    assert area.dtype == np.float32
    np.testing.assert_array_equal(area, np.asarray(expected, dtype=np.float32))


# --- nms ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xyxy", "scores", "threshold", "expected"),
    [
        # Nothing in, nothing out.
        pytest.param(boxes(), [], 0.5, [], id="empty"),
        # A single box is kept.
        pytest.param(boxes([0, 0, 1, 1]), [0.1], 0.5, [0], id="one"),
        # Disjoint boxes are all kept, best score first.
        pytest.param(
            boxes([0, 0, 1, 1], [5, 5, 6, 6], [10, 10, 11, 11]),
            [0.2, 0.9, 0.5],
            0.5,
            [1, 2, 0],
            id="best-first",
        ),
        # Two identical boxes: only the better one stays.
        pytest.param(boxes([0, 0, 4, 4], [0, 0, 4, 4]), [0.3, 0.6], 0.5, [1], id="duplicate"),
        # IoU exactly at the threshold (0.5) is kept: only IoU > threshold suppresses.
        pytest.param(boxes([0, 0, 2, 1], [0, 0, 1, 1]), [0.9, 0.8], 0.5, [0, 1], id="at-thresh"),
        # The same pair just above the threshold is suppressed.
        pytest.param(boxes([0, 0, 2, 1], [0, 0, 1, 1]), [0.9, 0.8], 0.49, [0], id="above"),
        # Greedy chain: A suppresses B, so C (which overlaps only B) survives.
        pytest.param(
            boxes([0, 0, 10, 10], [2, 0, 12, 10], [4, 0, 14, 10]),
            [0.9, 0.8, 0.7],
            0.5,
            [0, 2],
            id="chain",
        ),
        # Threshold 0: any overlap at all suppresses; touching edges do not.
        pytest.param(
            boxes([0, 0, 10, 10], [9, 9, 20, 20], [10, 0, 20, 9]),
            [0.9, 0.8, 0.7],
            0.0,
            [0, 2],
            id="zero-threshold",
        ),
        # Threshold 1: nothing is ever suppressed, duplicates included.
        pytest.param(boxes([0, 0, 4, 4], [0, 0, 4, 4]), [0.3, 0.6], 1.0, [1, 0], id="one-thresh"),
        # Equal scores keep their input order (stable sort).
        pytest.param(boxes([0, 0, 1, 1], [5, 5, 6, 6]), [0.5, 0.5], 0.5, [0, 1], id="ties"),
    ],
)
def test_nms(xyxy: FloatArray, scores: list[float], threshold: float, expected: list[int]) -> None:
    keep = predict.nms(xyxy, np.asarray(scores, dtype=np.float32), threshold)
    assert keep.dtype == np.int64
    assert keep.tolist() == expected


# --- batched (class-aware) nms --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "threshold", "expected_scores"),
    [
        # Empty in, empty out.
        pytest.param(Detections.empty(), 0.5, [], id="empty"),
        # One box.
        pytest.param(dets([[0, 0, 1, 1]], [0.5], [3]), 0.5, [0.5], id="one"),
        # Identical boxes of different classes never suppress each other.
        pytest.param(
            dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 1]),
            0.5,
            [0.9, 0.8],
            id="different-classes",
        ),
        # Identical boxes of the same class: the better one stays.
        pytest.param(
            dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0.8, 0.9], [7, 7]),
            0.5,
            [0.9],
            id="same-class",
        ),
        # Same class, IoU exactly at the threshold (0.5): kept.
        pytest.param(
            dets([[0, 0, 2, 1], [0, 0, 1, 1]], [0.9, 0.8], [5, 5]),
            0.5,
            [0.9, 0.8],
            id="at-threshold",
        ),
        # Same class, just above the threshold: suppressed.
        pytest.param(
            dets([[0, 0, 2, 1], [0, 0, 1, 1]], [0.9, 0.8], [5, 5]),
            0.49,
            [0.9],
            id="above-threshold",
        ),
        # Mixed: class 1 pair collapses, the class 2 copy of the same box survives, and the
        # result is best-first over all classes.
        pytest.param(
            dets(
                [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]],
                [0.6, 0.7, 0.95, 0.1],
                [1, 1, 2, 1],
            ),
            0.5,
            [0.95, 0.7, 0.1],
            id="mixed",
        ),
        # Boxes that leave the input at the top-left (YOLOX boxes are not clipped before NMS)
        # must not be shifted onto a neighbouring class's boxes, even at threshold 0.
        pytest.param(
            dets([[0, 0, 100, 100], [-100, -100, 0, 0]], [0.9, 0.8], [0, 1]),
            0.0,
            [0.9, 0.8],
            id="negative-coords",
        ),
        # Same, with the negative box in the lower class.
        pytest.param(
            dets([[-50, -50, 10, 10], [0, 0, 60, 60]], [0.9, 0.8], [3, 4]),
            0.0,
            [0.9, 0.8],
            id="negative-coords-lower-class",
        ),
    ],
)
def test_batched_nms(
    candidates: Detections, threshold: float, expected_scores: list[float]
) -> None:
    kept = predict.batched_nms(candidates, threshold)
    np.testing.assert_allclose(kept.scores, np.asarray(expected_scores, np.float32))
    assert kept.xyxy.dtype == np.float32
    assert kept.class_ids.dtype == np.int64


def test_batched_nms_keeps_best_of_each_class_with_real_coordinates() -> None:
    # Three classes, each with a cluster of near-duplicates at different places: one per class.
    rng = np.random.default_rng(1)
    rows: list[list[float]] = []
    scores: list[float] = []
    ids: list[int] = []
    for class_id, (x, y) in enumerate([(10, 10), (200, 50), (10, 10)]):
        for _ in range(5):
            jitter = rng.uniform(-1, 1, 4)
            rows.append([x + jitter[0], y + jitter[1], x + 80 + jitter[2], y + 60 + jitter[3]])
            scores.append(float(rng.uniform(0.3, 0.9)))
            ids.append(class_id)
    candidates = dets(rows, scores, ids)
    kept = predict.batched_nms(candidates, 0.5)
    assert sorted(kept.class_ids.tolist()) == [0, 1, 2]
    for class_id in range(3):
        of_class = candidates.scores[candidates.class_ids == class_id]
        assert kept.scores[kept.class_ids == class_id][0] == of_class.max()
    assert np.all(np.diff(kept.scores) <= 0)


@pytest.mark.parametrize(
    ("candidates", "expected_ids"),
    [
        # Empty in, empty out.
        pytest.param(Detections.empty(), [], id="empty"),
        # Identical boxes of different classes: only the best survives, whatever its class.
        pytest.param(
            dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0.8, 0.9], [0, 1]), [1], id="across-classes"
        ),
        # Disjoint boxes are all kept, best first.
        pytest.param(
            dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.5, 0.9], [3, 3]), [3, 3], id="disjoint"
        ),
    ],
)
def test_batched_nms_class_agnostic(candidates: Detections, expected_ids: list[int]) -> None:
    kept = predict.batched_nms(candidates, 0.5, class_agnostic=True)
    assert kept.class_ids.tolist() == expected_ids
    assert np.all(np.diff(kept.scores) <= 0)


@pytest.mark.parametrize(
    ("wanted", "expected_ids"),
    [
        # No class wanted: nothing.
        pytest.param(frozenset(), [], id="none"),
        # One class.
        pytest.param(frozenset({2}), [2, 2], id="one"),
        # Several, in input order.
        pytest.param(frozenset({1, 3}), [1, 3], id="two"),
        # Classes the candidates do not have change nothing.
        pytest.param(frozenset({1, 2, 3, 99}), [1, 2, 3, 2], id="extra"),
    ],
)
def test_select_classes(wanted: frozenset[int], expected_ids: list[int]) -> None:
    candidates = dets([[0, 0, 1, 1]] * 4, [0.1, 0.2, 0.3, 0.4], [1, 2, 3, 2])
    assert predict.select_classes(candidates, wanted).class_ids.tolist() == expected_ids


def test_batched_nms_caps_candidates_keeping_the_best() -> None:
    # More disjoint boxes than the cap: the best MAX_NMS_CANDIDATES survive, best first.
    count = MAX_NMS_CANDIDATES + 500
    rng = np.random.default_rng(2)
    scores = (rng.permutation(count) / count).astype(np.float32)
    x = np.arange(count, dtype=np.float32) * 10
    xyxy = np.stack([x, np.zeros(count), x + 5, np.full(count, 5)], axis=1).astype(np.float32)
    candidates = Detections(xyxy=xyxy, scores=scores, class_ids=np.zeros(count, np.int64))
    kept = predict.batched_nms(candidates, 0.5)
    assert len(kept) == MAX_NMS_CANDIDATES
    np.testing.assert_array_equal(kept.scores, np.sort(scores)[::-1][:MAX_NMS_CANDIDATES])


def test_batched_nms_over_the_cap_of_duplicates_leaves_one() -> None:
    # Many copies of one box, over the cap: exactly the best one is left.
    count = MAX_NMS_CANDIDATES * 2
    scores = np.linspace(0.01, 0.99, count, dtype=np.float32)
    candidates = Detections(
        xyxy=np.tile(boxes([1, 2, 30, 40]), (count, 1)),
        scores=scores,
        class_ids=np.full(count, 9, np.int64),
    )
    kept = predict.batched_nms(candidates, 0.4)
    assert len(kept) == 1
    assert kept.scores[0] == scores.max()


# --- filter_detections ----------------------------------------------------------------------------

# Image 200 wide, 100 high for every case below.
FILTER_INPUT = dets(
    [
        [0, 0, 100, 50],  # 0: big
        [0, 0, 20, 10],  # 1: exactly 10% x 10%
        [0, 0, 19.9, 50],  # 2: a bit too narrow for 10%
        [0, 0, 100, 9.9],  # 3: a bit too low for 10%
        [50, 50, 50, 60],  # 4: zero width (clipped onto a border)
        [0, 0, 2, 1],  # 5: tiny
    ],
    [0.5, 0.9, 0.7, 0.6, 0.95, 0.3],
    [0, 1, 2, 3, 4, 5],
)


@pytest.mark.parametrize(
    ("params", "expected_ids"),
    [
        # 10% of each side: exactly-10% kept (>=), the two just under dropped, sorted by score.
        pytest.param(DetectionParams(min_width_fraction=0.1, min_height_fraction=0.1), [1, 0]),
        # Only a width limit.
        pytest.param(
            DetectionParams(min_width_fraction=0.1, min_height_fraction=0.0), [1, 3, 0], id="w"
        ),
        # Only a height limit.
        pytest.param(
            DetectionParams(min_width_fraction=0.0, min_height_fraction=0.1), [1, 2, 0], id="h"
        ),
        # Explicit zeros keep every box with a positive area, best first.
        pytest.param(
            DetectionParams(min_width_fraction=0.0, min_height_fraction=0.0),
            [1, 2, 3, 0, 5],
            id="zeros",
        ),
        # max_results caps after sorting: the best two.
        pytest.param(
            DetectionParams(min_width_fraction=0.0, min_height_fraction=0.0, max_results=2),
            [1, 2],
            id="max-2",
        ),
        # max_results 1: the single best.
        pytest.param(
            DetectionParams(min_width_fraction=0.0, min_height_fraction=0.0, max_results=1),
            [1],
            id="max-1",
        ),
        # max_results 0: nothing.
        pytest.param(
            DetectionParams(min_width_fraction=0.0, min_height_fraction=0.0, max_results=0),
            [],
            id="max-0",
        ),
        # A cap larger than the count keeps everything.
        pytest.param(
            DetectionParams(min_width_fraction=0.0, min_height_fraction=0.0, max_results=1000),
            [1, 2, 3, 0, 5],
            id="max-large",
        ),
        # The whole image as minimum: nothing is that big.
        pytest.param(DetectionParams(min_width_fraction=1.0, min_height_fraction=1.0), []),
    ],
)
def test_filter_detections(params: DetectionParams, expected_ids: list[int]) -> None:
    kept = predict.filter_detections(FILTER_INPUT, params, image_width=200, image_height=100)
    assert kept.class_ids.tolist() == expected_ids
    assert np.all(np.diff(kept.scores) <= 0)


def test_filter_detections_empty_and_one() -> None:
    # Empty in, empty out (with the right shapes).
    empty = predict.filter_detections(Detections.empty(), DetectionParams(), 100, 100)
    assert len(empty) == 0
    assert empty.xyxy.shape == (0, 4)
    # One box big enough: kept unchanged.
    one = dets([[10, 10, 90, 90]], [0.4], [2])
    kept = predict.filter_detections(one, DetectionParams(), 100, 100)
    np.testing.assert_array_equal(kept.xyxy, one.xyxy)


def test_filter_detections_ties_keep_input_order() -> None:
    # Equal scores: the stable sort keeps the order the NMS produced.
    tied = dets([[0, 0, 50, 50], [50, 50, 99, 99], [10, 10, 60, 60]], [0.5, 0.5, 0.5], [7, 8, 9])
    kept = predict.filter_detections(tied, DetectionParams(), 100, 100)
    assert kept.class_ids.tolist() == [7, 8, 9]


# --- Detections -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xyxy", "scores", "class_ids"),
    [
        # Boxes with 3 coordinates.
        pytest.param(np.zeros((2, 3), np.float32), np.zeros(2), np.zeros(2), id="xyxy-3-cols"),
        # One box more than scores.
        pytest.param(np.zeros((3, 4), np.float32), np.zeros(2), np.zeros(2), id="more-boxes"),
        # One class id more than scores.
        pytest.param(np.zeros((2, 4), np.float32), np.zeros(2), np.zeros(3), id="more-ids"),
        # Class ids as a column.
        pytest.param(np.zeros((2, 4), np.float32), np.zeros(2), np.zeros((2, 1)), id="ids-2d"),
        # Scores as a column.
        pytest.param(np.zeros((2, 4), np.float32), np.zeros((2, 1)), np.zeros(2), id="scores-2d"),
        # Scores as a 0-d array (a single float).
        pytest.param(np.zeros((1, 4), np.float32), np.zeros(()), np.zeros(1), id="scores-0d"),
        # Flat boxes.
        pytest.param(np.zeros(4, np.float32), np.zeros(1), np.zeros(1), id="xyxy-flat"),
    ],
)
def test_detections_shape_validation(xyxy: Any, scores: Any, class_ids: Any) -> None:
    with pytest.raises(ValueError, match="inconsistent detection shapes"):
        Detections(
            xyxy=xyxy,
            scores=np.asarray(scores, np.float32),
            class_ids=np.asarray(class_ids, np.int64),
        )


def test_detections_empty() -> None:
    empty = Detections.empty()
    assert len(empty) == 0
    assert empty.xyxy.shape == (0, 4)
    assert empty.scores.shape == (0,)
    assert empty.class_ids.shape == (0,)
    assert empty.xyxy.dtype == np.float32
    assert empty.scores.dtype == np.float32
    assert empty.class_ids.dtype == np.int64


@pytest.mark.parametrize(
    ("index", "expected_ids"),
    [
        # Empty mask: nothing.
        pytest.param(np.zeros(3, bool), [], id="mask-none"),
        # Boolean mask.
        pytest.param(np.array([True, False, True]), [10, 12], id="mask"),
        # Empty index array.
        pytest.param(np.zeros(0, np.int64), [], id="index-none"),
        # Index array reorders.
        pytest.param(np.array([2, 0]), [12, 10], id="reorder"),
        # Index array may repeat rows.
        pytest.param(np.array([1, 1]), [11, 11], id="repeat"),
    ],
)
def test_detections_select(index: Any, expected_ids: list[int]) -> None:
    three = dets([[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]], [0.1, 0.2, 0.3], [10, 11, 12])
    picked = three.select(index)
    assert picked.class_ids.tolist() == expected_ids
    assert len(picked) == len(expected_ids)
    for row, class_id in zip(picked.xyxy, picked.class_ids, strict=True):
        offset = float(class_id - 10)
        assert row.tolist() == [offset, offset, offset + 1, offset + 1]
    # The original is untouched.
    assert three.class_ids.tolist() == [10, 11, 12]


def test_detections_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Detections.empty().scores = np.ones(1, np.float32)  # type: ignore[misc]


# --- decode_image ---------------------------------------------------------------------------------


def test_decode_png_round_trips_exactly() -> None:
    image = textured_image(37, 53)
    decoded = image_io.decode_image(encode(image, ".png"))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decode_accepts_bytes_like(kind: type) -> None:
    image = textured_image(8, 9)
    decoded = image_io.decode_image(kind(encode(image, ".png")))
    np.testing.assert_array_equal(decoded, image)


def test_decode_jpeg() -> None:
    image = np.full((60, 80, 3), (10, 120, 240), np.uint8)
    decoded = image_io.decode_image(encode(image, ".jpg"))
    assert decoded.shape == (60, 80, 3)
    # Lossy, but a flat colour stays close and in BGR order.
    assert np.abs(decoded.astype(int) - image.astype(int)).max() <= 4


def test_decode_grayscale_gives_three_equal_channels() -> None:
    gray = textured_image(20, 30)[:, :, 0]
    decoded = image_io.decode_image(encode(gray, ".png"))
    assert decoded.shape == (20, 30, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[:, :, channel], gray)


def test_decode_alpha_is_dropped() -> None:
    bgra = np.dstack([textured_image(20, 30), np.linspace(0, 255, 600).reshape(20, 30)])
    decoded = image_io.decode_image(encode(bgra.astype(np.uint8), ".png"))
    assert decoded.shape == (20, 30, 3)
    np.testing.assert_array_equal(decoded, bgra[:, :, :3])


def test_decode_16_bit_png_gives_8_bit() -> None:
    deep = (textured_image(10, 12).astype(np.uint16) * 257).astype(np.uint16)
    decoded = image_io.decode_image(encode(deep, ".png"))
    assert decoded.shape == (10, 12, 3)
    assert decoded.dtype == np.uint8


def _jpeg() -> bytes:
    return encode(textured_image(64, 64), ".jpg")


def _png() -> bytes:
    return encode(textured_image(64, 64), ".png")


@pytest.mark.parametrize(
    "data",
    [
        # No bytes at all.
        pytest.param(b"", id="empty"),
        # One byte.
        pytest.param(b"\xff", id="one-byte"),
        # Text.
        pytest.param(b"this is not an image", id="text"),
        # Zeros.
        pytest.param(bytes(1000), id="zeros"),
        # A JPEG cut in half.
        pytest.param(_jpeg()[: len(_jpeg()) // 2], id="truncated-jpeg"),
        # Only the JPEG start-of-image marker.
        pytest.param(_jpeg()[:2], id="jpeg-soi-only"),
        # A PNG with only its signature and header chunk.
        pytest.param(_png()[:33], id="png-header-only"),
        # A PNG whose pixel data is cut short.
        pytest.param(_png()[: len(_png()) - 200], id="truncated-png"),
    ],
)
def test_decode_rejects_bad_bytes(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        image_io.decode_image(data)


# --- letterbox / unletterbox ----------------------------------------------------------------------


def test_letterbox_top_left_pads_bottom_with_114() -> None:
    # Wide image 200x100 -> 416x208 at the top; rows 208.. are padding.
    image = np.full((100, 200, 3), (10, 20, 30), np.uint8)
    tensor, info = predict.letterbox(image, INPUT, INPUT, YOLOX_SPEC)
    assert tensor.shape == (1, 3, INPUT, INPUT)
    assert tensor.dtype == np.float32
    assert tensor.flags["C_CONTIGUOUS"]
    assert (info.pad_x, info.pad_y) == (0, 0)
    assert info.scale_x == info.scale_y == pytest.approx(2.08)
    for channel, value in enumerate((10, 20, 30)):  # BGR order kept, no scaling
        assert np.all(tensor[0, channel, :208, :] == value)
    assert np.all(tensor[0, :, 208:, :] == 114)


def test_letterbox_top_left_pads_right_with_114() -> None:
    # Tall image 100 wide, 200 high -> 208x416 at the left; columns 208.. are padding.
    image = np.full((200, 100, 3), 7, np.uint8)
    tensor, _ = predict.letterbox(image, INPUT, INPUT, YOLOX_SPEC)
    assert np.all(tensor[0, :, :, :208] == 7)
    assert np.all(tensor[0, :, :, 208:] == 114)


def test_letterbox_center_normalises_and_pads_with_zero_pixels() -> None:
    # Tall image 100 wide, 400 high -> 104x416 centred: 156 columns of padding each side.
    bgr = (10, 20, 30)
    image = np.full((400, 100, 3), bgr, np.uint8)
    tensor, info = predict.letterbox(image, INPUT, INPUT, GFL_SPEC)
    assert tensor.shape == (1, 3, INPUT, INPUT)
    assert tensor.dtype == np.float32
    assert (info.pad_x, info.pad_y) == (156, 0)
    assert GFL_SPEC.mean is not None
    assert GFL_SPEC.std is not None
    for channel in range(3):
        mean, std = GFL_SPEC.mean[channel], GFL_SPEC.std[channel]
        plane = tensor[0, channel]
        pad = (0 - mean) / std
        np.testing.assert_allclose(plane[:, :156], pad, rtol=1e-6)
        np.testing.assert_allclose(plane[:, 260:], pad, rtol=1e-6)
        np.testing.assert_allclose(plane[:, 156:260], (bgr[channel] - mean) / std, rtol=1e-5)


def test_letterbox_center_pads_top_and_bottom() -> None:
    # Wide image 400x100 -> 416x104, 156 rows above and below.
    image = np.full((100, 400, 3), 255, np.uint8)
    tensor, info = predict.letterbox(image, INPUT, INPUT, GFL_SPEC)
    assert (info.pad_x, info.pad_y) == (0, 156)
    assert GFL_SPEC.mean is not None
    assert GFL_SPEC.std is not None
    pad = (0 - GFL_SPEC.mean[0]) / GFL_SPEC.std[0]
    np.testing.assert_allclose(tensor[0, 0, :156], pad, rtol=1e-6)
    np.testing.assert_allclose(tensor[0, 0, 260:], pad, rtol=1e-6)
    assert np.all(tensor[0, 0, 156:260] > 0)


def test_letterbox_non_square_input_is_nchw() -> None:
    # Width and height of the network input are not swapped.
    tensor, info = predict.letterbox(textured_image(50, 50), 320, 256, YOLOX_SPEC)
    assert tensor.shape == (1, 3, 256, 320)
    assert info.scale_x == info.scale_y == pytest.approx(256 / 50)


@pytest.mark.parametrize(
    "spec", [YOLOX_SPEC, GFL_SPEC, STRETCH_SPEC], ids=["top_left", "center", "stretch"]
)
def test_letterbox_does_not_mutate_or_alias_its_input(spec: PreprocessSpec) -> None:
    image = textured_image(123, 77)
    before = image.copy()
    tensor, _ = predict.letterbox(image, INPUT, INPUT, spec)
    np.testing.assert_array_equal(image, before)
    assert not np.shares_memory(tensor, image)
    # The returned tensor is writable and independent: scribbling on it changes nothing.
    tensor[...] = 0
    np.testing.assert_array_equal(image, before)


# (height, width) of the original image; the network input is 416x416.
ROUND_TRIP_SIZES = [
    pytest.param(800, 200, id="tall"),
    pytest.param(100, 1000, id="wide"),
    pytest.param(300, 300, id="square-smaller"),
    pytest.param(416, 416, id="square-same"),
    pytest.param(1000, 1000, id="square-bigger"),
    pytest.param(1, 1, id="1x1"),
    pytest.param(7, 3, id="tiny-tall"),
    pytest.param(1080, 1920, id="bigger-wide"),
    pytest.param(50, 80, id="smaller-wide"),
    pytest.param(333, 555, id="odd"),
    pytest.param(2000, 30, id="very-tall"),
]


@pytest.mark.parametrize(
    "spec", [YOLOX_SPEC, GFL_SPEC, STRETCH_SPEC], ids=["top_left", "center", "stretch"]
)
@pytest.mark.parametrize(("height", "width"), ROUND_TRIP_SIZES)
def test_letterbox_round_trip(spec: PreprocessSpec, height: int, width: int) -> None:
    # A bright box drawn on a mid-grey image (mid-grey so that it differs from both pads).
    x1, y1 = int(width * 0.25), int(height * 0.3)
    x2, y2 = max(int(width * 0.6), x1 + 1), max(int(height * 0.8), y1 + 1)
    image = np.full((height, width, 3), 60, np.uint8)
    image[y1:y2, x1:x2] = 250
    drawn = boxes([x1, y1, x2, y2])
    tensor, info = predict.letterbox(image, INPUT, INPUT, spec)

    # 1. The arithmetic: original -> letterbox coordinates -> unletterbox is the identity.
    scales = np.array([info.scale_x, info.scale_y] * 2, np.float32)
    forward = drawn * scales + np.array([info.pad_x, info.pad_y] * 2, np.float32)
    np.testing.assert_allclose(predict.unletterbox(forward, info), drawn, atol=1e-3)

    # 2. The pixels: where the box really landed in the tensor maps back onto the drawn box.
    blue = tensor[0, 2 if spec.channel_order == "rgb" else 0] / spec.scale
    if spec.std is not None:
        blue = blue * spec.std[0]
    if spec.mean is not None:
        blue = blue + spec.mean[0]
    rows, columns = np.nonzero(blue > 155)  # halfway between 60 and 250
    found = boxes([float(columns.min()), float(rows.min()), columns.max() + 1.0, rows.max() + 1.0])
    back = predict.unletterbox(found, info)[0]
    # Within 1 px of the original, or of the network input where the image was shrunk (then
    # one input pixel covers 1/scale original pixels). Measured: at most 0.48 input pixels.
    tolerance = np.array([max(1.0, 1.0 / info.scale_x), max(1.0, 1.0 / info.scale_y)] * 2)
    assert np.all(np.abs(back - drawn[0]) <= tolerance), (back, drawn[0], info)
    assert (info.image_width, info.image_height) == (width, height)


@pytest.mark.parametrize(
    ("xyxy", "expected"),
    [
        # Empty input keeps its shape.
        pytest.param(boxes(), boxes(), id="empty"),
        # Pad removed, scale undone.
        pytest.param(boxes([10, 0, 210, 100]), boxes([0, 0, 100, 50]), id="whole-image"),
        # Inside.
        pytest.param(boxes([30, 20, 50, 40]), boxes([10, 10, 20, 20]), id="inside"),
        # Outside on every side: clipped to the image.
        pytest.param(boxes([-100, -50, 500, 300]), boxes([0, 0, 100, 50]), id="clipped"),
        # Entirely in the left pad: a zero-width box on the border.
        pytest.param(boxes([0, 10, 5, 20]), boxes([0, 5, 0, 10]), id="in-pad"),
    ],
)
def test_unletterbox(xyxy: FloatArray, expected: FloatArray) -> None:
    info = LetterboxInfo(
        scale_x=2.0, scale_y=2.0, pad_x=10, pad_y=0, image_width=100, image_height=50
    )
    before = xyxy.copy()
    out = predict.unletterbox(xyxy, info)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected)
    # A new array: the input is neither changed nor shared.
    np.testing.assert_array_equal(xyxy, before)
    assert not np.shares_memory(out, xyxy)


@pytest.mark.parametrize(
    ("xyxy", "expected"),
    [
        # Empty input keeps its shape.
        pytest.param(boxes(), boxes(), id="empty"),
        # x halved, y divided by 4: the two scales are undone separately.
        pytest.param(boxes([20, 40, 100, 200]), boxes([10, 10, 50, 50]), id="inside"),
        # The whole input is the whole image.
        pytest.param(boxes([0, 0, 200, 400]), boxes([0, 0, 100, 100]), id="whole"),
        # Outside: clipped.
        pytest.param(boxes([-20, -40, 400, 800]), boxes([0, 0, 100, 100]), id="clipped"),
    ],
)
def test_unletterbox_stretch(xyxy: FloatArray, expected: FloatArray) -> None:
    info = LetterboxInfo(
        scale_x=2.0, scale_y=4.0, pad_x=0, pad_y=0, image_width=100, image_height=100
    )
    np.testing.assert_allclose(predict.unletterbox(xyxy, info), expected)


def test_letterbox_stretch_fills_the_input_with_separate_scales() -> None:
    # 100 wide, 400 high into 416x416: no padding anywhere, x scaled 4.16, y 1.04.
    image = np.full((400, 100, 3), (10, 20, 30), np.uint8)
    tensor, info = predict.letterbox(image, INPUT, INPUT, PreprocessSpec(resize="stretch"))
    assert (info.pad_x, info.pad_y) == (0, 0)
    assert info.scale_x == pytest.approx(4.16)
    assert info.scale_y == pytest.approx(1.04)
    for channel, value in enumerate((10, 20, 30)):
        assert np.all(tensor[0, channel] == value)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # Defaults: BGR order, pixel values as they are.
        pytest.param(PreprocessSpec(), (10, 20, 30), id="bgr"),
        # RGB: the channels are reversed.
        pytest.param(PreprocessSpec(channel_order="rgb"), (30, 20, 10), id="rgb"),
        # scale first: pixel * scale.
        pytest.param(PreprocessSpec(scale=0.5), (5, 10, 15), id="scale"),
        # Then the mean, in the tensor's channel order.
        pytest.param(
            PreprocessSpec(channel_order="rgb", mean=(1, 2, 3)), (29, 18, 7), id="rgb-mean"
        ),
        # Then the std: (pixel * scale - mean) / std.
        pytest.param(
            PreprocessSpec(scale=2.0, mean=(10, 20, 30), std=(2, 4, 5)), (5, 5, 6), id="all"
        ),
    ],
)
def test_letterbox_channel_order_and_normalisation(
    spec: PreprocessSpec, expected: tuple[float, float, float]
) -> None:
    image = np.full((16, 16, 3), (10, 20, 30), np.uint8)  # BGR, as OpenCV decodes
    tensor, _ = predict.letterbox(image, 16, 16, spec)
    for channel, value in enumerate(expected):
        np.testing.assert_allclose(tensor[0, channel], value, rtol=1e-6)


def test_letterbox_pads_with_the_pad_value_before_normalising() -> None:
    # 32x16 into 32x32, centred: 8 rows of pad above and below, pad 255 scaled to 1.0.
    image = np.zeros((16, 32, 3), np.uint8)
    spec = PreprocessSpec(pad_position="center", pad_value=255, scale=1 / 255)
    tensor, info = predict.letterbox(image, 32, 32, spec)
    assert (info.pad_x, info.pad_y) == (0, 8)
    np.testing.assert_allclose(tensor[0, :, :8], 1.0, rtol=1e-6)
    np.testing.assert_allclose(tensor[0, :, 8:24], 0.0)
    np.testing.assert_allclose(tensor[0, :, 24:], 1.0, rtol=1e-6)


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


# --- manifests ------------------------------------------------------------------------------------

COCO_LABELS = "\n".join(f"name{i}" for i in range(NUM_CLASSES)) + "\n"


def valid_manifest() -> dict[str, Any]:
    return {
        "name": "m",
        "family": "yolox",
        "file": "m.onnx",
        "input_size": {"width": 416, "height": 320},
        "labels_file": "labels.txt",
        "license": "Apache-2.0",
        "upstream_url": None,
        "sha256": ["ABCDEF"],
    }


def write_manifest(folder: Path, raw: Any) -> Path:
    (folder / "labels.txt").write_text(COCO_LABELS, encoding="utf-8")
    (folder / "blank.txt").write_text("\n  \n\n", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (folder / "a_folder").mkdir(exist_ok=True)
    path = folder / "m.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def test_load_manifest_valid(tmp_path: Path) -> None:
    manifest = manifests.load_manifest(write_manifest(tmp_path, valid_manifest()))
    assert (manifest.name, manifest.family, manifest.file) == ("m", "yolox", "m.onnx")
    assert (manifest.input_width, manifest.input_height) == (416, 320)
    assert manifest.class_names == tuple(f"name{i}" for i in range(NUM_CLASSES))
    assert manifest.sha256 == ("abcdef",)  # lower-cased
    assert manifest.upstream_url is None
    assert manifest.description == ""


def test_load_manifest_minimal(tmp_path: Path) -> None:
    # Only file and license: name from the file, the rest found in the model when loaded.
    raw = {"file": "m.onnx", "license": "MIT"}
    manifest = manifests.load_manifest(write_manifest(tmp_path, raw))
    assert manifest.name == "m"
    assert manifest.family is None
    assert (manifest.input_width, manifest.input_height) == (None, None)
    assert manifest.class_names == ()
    assert dict(manifest.preprocess) == {}
    assert manifest.cell_center is None
    assert manifest.bare is False


def test_load_manifest_preprocess_and_cell_center(tmp_path: Path) -> None:
    raw = valid_manifest()
    raw["family"] = "picodet"  # an alias is kept as written; the Detector resolves it
    raw["cell_center"] = "corner"
    raw["preprocess"] = {
        "resize": "stretch",
        "pad_position": "top_left",
        "pad_value": 0,
        "channel_order": "bgr",
        "scale": 1,
        "mean": [1, 2.5, 3],
        "std": None,
    }
    manifest = manifests.load_manifest(write_manifest(tmp_path, raw))
    assert manifest.family == "picodet"
    assert manifest.cell_center == "corner"
    assert dict(manifest.preprocess) == {
        "resize": "stretch",
        "pad_position": "top_left",
        "pad_value": 0,
        "channel_order": "bgr",
        "scale": 1.0,
        "mean": (1.0, 2.5, 3.0),
        "std": None,
    }
    # The overrides are PreprocessSpec fields: replacing the defaults with them works.
    spec = dataclasses.replace(families.FAMILIES["gfl"].preprocess, **manifest.preprocess)
    assert spec.std is None
    assert spec.mean == (1.0, 2.5, 3.0)


def test_load_manifest_unknown_keys_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = valid_manifest()
    raw["preprocessing"] = {}
    with caplog.at_level("WARNING", logger="detection_service.predict"):
        manifests.load_manifest(write_manifest(tmp_path, raw))
    assert "preprocessing" in caplog.text


def test_load_manifest_inline_class_names(tmp_path: Path) -> None:
    raw = valid_manifest()
    del raw["labels_file"]
    raw["class_names"] = ["cat", "dog"]
    raw["description"] = "two classes"
    manifest = manifests.load_manifest(write_manifest(tmp_path, raw))
    assert manifest.class_names == ("cat", "dog")
    assert manifest.description == "two classes"


@pytest.mark.parametrize("name", ["yolox_nano", "nanodet_m_416"])
def test_repository_manifests_load(name: str) -> None:
    manifest = manifests.load_manifest(MODELS_DIR / f"{name}.json")
    assert manifest.name == name
    assert manifest.family in families.FAMILIES
    assert len(manifest.class_names) == NUM_CLASSES
    assert manifest.class_names[0] == "person"
    assert manifest.class_names[16] == "dog"
    assert all(len(digest) == 64 for digest in manifest.sha256)
    assert manifest.sha256


MISSING = object()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # Required string fields, missing or of the wrong type, are named.
        pytest.param({"file": MISSING}, "'file'", id="no-file"),
        pytest.param({"license": MISSING}, "'license'", id="no-license"),
        pytest.param({"name": 3}, "'name'", id="name-int"),
        pytest.param({"file": True}, "'file'", id="file-bool"),
        pytest.param({"family": 1}, "'family'", id="family-int"),
        pytest.param({"description": 1}, "'description'", id="description-int"),
        # A name other than the file's stem: two names for one model.
        pytest.param({"name": "other"}, "'name' is 'other'", id="name-not-stem"),
        # A family nobody knows, with the known ones listed.
        pytest.param({"family": "ssd"}, "unknown family 'ssd'.*gfl.*yolov8", id="family-unknown"),
        # input_size: not an object, or without positive integers.
        pytest.param({"input_size": 416}, "'input_size'", id="input-size-int"),
        pytest.param({"input_size": {"width": 416}}, "input_size", id="no-height"),
        pytest.param({"input_size": {"width": 0, "height": 416}}, "input_size", id="zero"),
        pytest.param({"input_size": {"width": 416, "height": -1}}, "input_size", id="negative"),
        pytest.param({"input_size": {"width": "416", "height": 416}}, "input_size", id="string"),
        pytest.param({"input_size": {"width": 416.0, "height": 416}}, "input_size", id="float"),
        pytest.param({"input_size": {"width": True, "height": 416}}, "input_size", id="bool"),
        pytest.param({"input_size": {"width": 9000, "height": 416}}, "input_size", id="huge"),
        # class_names: not a list, empty, or with non-strings or empty strings.
        pytest.param({"class_names": "person"}, "'class_names'", id="names-string"),
        pytest.param({"class_names": []}, "class names", id="names-empty"),
        pytest.param({"class_names": ["a", 2]}, "class names", id="names-int"),
        pytest.param({"class_names": ["a", ""]}, "class names", id="names-blank"),
        # labels_file: wrong type, missing, a folder, only blank lines, not UTF-8.
        pytest.param({"labels_file": 1}, "'labels_file'", id="labels-int"),
        pytest.param({"labels_file": "nope.txt"}, "labels file", id="labels-missing"),
        pytest.param({"labels_file": "a_folder"}, "labels file", id="labels-folder"),
        pytest.param({"labels_file": "blank.txt"}, "class names", id="labels-blank"),
        pytest.param({"labels_file": "latin1.txt"}, "labels file", id="labels-not-utf8"),
        # sha256 must be a list of strings.
        pytest.param({"sha256": "abc"}, "'sha256'", id="sha-string"),
        pytest.param({"sha256": [1]}, "'sha256'", id="sha-int"),
        # upstream_url, when given, is a string.
        pytest.param({"upstream_url": 5}, "'upstream_url'", id="url-int"),
        # cell_center: one of three names.
        pytest.param({"cell_center": "middle"}, "'cell_center'", id="cell-center"),
        # preprocess: an object of known keys with valid values.
        pytest.param({"preprocess": []}, "'preprocess' must be an object", id="pre-list"),
        pytest.param({"preprocess": {"resise": "stretch"}}, "unknown preprocess", id="pre-typo"),
        pytest.param({"preprocess": {"resize": "crop"}}, "preprocess.resize", id="pre-resize"),
        pytest.param({"preprocess": {"pad_position": "top"}}, "pad_position", id="pre-pad-pos"),
        pytest.param({"preprocess": {"channel_order": "RGB"}}, "channel_order", id="pre-order"),
        pytest.param({"preprocess": {"pad_value": 256}}, "pad_value", id="pre-pad-256"),
        pytest.param({"preprocess": {"pad_value": 1.5}}, "pad_value", id="pre-pad-float"),
        pytest.param({"preprocess": {"pad_value": True}}, "pad_value", id="pre-pad-bool"),
        pytest.param({"preprocess": {"scale": 0}}, "preprocess.scale", id="pre-scale-0"),
        pytest.param({"preprocess": {"scale": "1/255"}}, "preprocess.scale", id="pre-scale-str"),
        pytest.param({"preprocess": {"mean": [1, 2]}}, "preprocess.mean", id="pre-mean-2"),
        pytest.param({"preprocess": {"mean": [1, 2, "3"]}}, "preprocess.mean", id="pre-mean-str"),
        pytest.param({"preprocess": {"std": [1, 0, 1]}}, "preprocess.std", id="pre-std-0"),
    ],
)
def test_load_manifest_errors(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    raw = valid_manifest()
    if "class_names" in changes:
        del raw["labels_file"]  # class_names would win otherwise
    for key, value in changes.items():
        if value is MISSING:
            del raw[key]
        else:
            raw[key] = value
    with pytest.raises(ModelLoadError, match=message) as caught:
        manifests.load_manifest(write_manifest(tmp_path, raw))
    assert "m.json" in str(caught.value)  # the file is named too


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # Not JSON at all.
        pytest.param(b"{name: m", "cannot read model manifest", id="not-json"),
        # Empty file.
        pytest.param(b"", "cannot read model manifest", id="empty"),
        # Not UTF-8.
        pytest.param(b'{"name": "\xff"}', "cannot read model manifest", id="not-utf8"),
        # JSON, but a list.
        pytest.param(b"[1, 2]", "JSON object", id="array"),
        # JSON, but a string.
        pytest.param(b'"manifest"', "JSON object", id="string"),
    ],
)
def test_load_manifest_unreadable(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        manifests.load_manifest(path)


def test_load_manifest_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read model manifest"):
        manifests.load_manifest(tmp_path / "absent.json")


def test_load_model_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ModelLoadError, match="yolox_nano") as caught:
        predict.load_model(MODELS_DIR, "no_such_model")
    assert "no_such_model.json" in str(caught.value)


def test_load_model_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="none"):
        predict.load_model(tmp_path, "anything")


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


# --- Detector construction with a real model file -------------------------------------------------


def real_manifest(name: str = "yolox_nano") -> tuple[ModelManifest, Path]:
    path = model_file(name)
    return manifests.load_manifest(MODELS_DIR / f"{name}.json"), path


def test_detector_unknown_family() -> None:
    manifest, path = real_manifest()
    with pytest.raises(
        ModelLoadError, match=r"unknown family 'ssd'; known: e2e, gfl, nanodet, picodet, yolov5"
    ):
        predict.Detector(dataclasses.replace(manifest, family="ssd"), path)


def test_detector_missing_file(tmp_path: Path) -> None:
    manifest, _ = real_manifest()
    with pytest.raises(ModelLoadError, match="missing: run `make model`"):
        predict.Detector(manifest, tmp_path / "yolox_nano.onnx")


def test_detector_rejects_a_sha256_the_manifest_does_not_accept() -> None:
    manifest, path = real_manifest()
    changed = dataclasses.replace(manifest, sha256=("0" * 64,))
    with pytest.raises(ModelLoadError, match="does not accept"):
        predict.Detector(changed, path)


def test_detector_class_count_mismatch() -> None:
    manifest, path = real_manifest()
    changed = dataclasses.replace(manifest, class_names=manifest.class_names[:79])
    with pytest.raises(ModelLoadError, match="80 classes but the manifest names 79"):
        predict.Detector(changed, path)


def test_detector_nanodet_class_count_mismatch() -> None:
    manifest, path = real_manifest("nanodet_m_416")
    changed = dataclasses.replace(manifest, class_names=manifest.class_names[:79])
    with pytest.raises(ModelLoadError, match="79 channels"):
        predict.Detector(changed, path)


def test_detector_input_size_mismatch() -> None:
    manifest, path = real_manifest()
    changed = dataclasses.replace(manifest, input_width=320, input_height=320)
    with pytest.raises(ModelLoadError, match="320x320"):
        predict.Detector(changed, path)


def test_detector_zero_threads() -> None:
    manifest, path = real_manifest()
    with pytest.raises(ModelLoadError, match="intra_op_threads"):
        predict.Detector(manifest, path, intra_op_threads=0)


def test_detector_not_an_onnx_file(tmp_path: Path) -> None:
    manifest, _ = real_manifest()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model" * 100)
    # No sha256 pinned, so the file reaches onnxruntime, whose error is wrapped.
    changed = dataclasses.replace(manifest, sha256=())
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        predict.Detector(changed, garbage)
