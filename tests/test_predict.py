"""Fast unit tests of predict's own functions: geometry (box area and IoU), NMS, the class and
size filters, the letterbox and its inverse, load_model's errors and the Detector's checks at
construction. The Detector construction tests need the real model files (`make model`,
`make test-models`); no test here runs inference on photos (tests/test_real_models.py does).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import manifests
import predict
from detection_types import (
    DetectionParams,
    Detections,
    FloatArray,
    LetterboxInfo,
    ModelLoadError,
    ModelManifest,
    PreprocessSpec,
)
from families import GflFamily, YoloxFamily
from predict import MAX_NMS_CANDIDATES
from tests.helpers import MODELS_DIR, boxes, dets, model_weights, textured_image

INPUT = 416
YOLOX_SPEC = YoloxFamily.preprocess
GFL_SPEC = GflFamily.preprocess
# Stretched to the input, RGB, scaled to 0..1 (PP-PicoDet's input, without the mean and std).
STRETCH_SPEC = PreprocessSpec(resize="stretch", channel_order="rgb", scale=1 / 255)


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
        pytest.param(
            DetectionParams(min_width_fraction=0.1, min_height_fraction=0.1),
            [1, 0],
            id="ten-percent-each-side",
        ),
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
        pytest.param(
            DetectionParams(min_width_fraction=1.0, min_height_fraction=1.0),
            [],
            id="whole-image-minimum",
        ),
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


# --- load_model -----------------------------------------------------------------------------------


def test_load_model_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ModelLoadError, match="yolox_nano") as caught:
        predict.load_model(MODELS_DIR, "no_such_model")
    assert "no_such_model.json" in str(caught.value)


def test_load_model_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="none"):
        predict.load_model(tmp_path, "anything")


# --- Detector construction with a real model file -------------------------------------------------


def real_manifest(name: str = "yolox_nano") -> tuple[ModelManifest, Path]:
    path = model_weights(name)
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
