"""The result value type: Detections' shape validation, its empty value and selection."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from detection_types import Detections
from tests.helpers import dets


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
