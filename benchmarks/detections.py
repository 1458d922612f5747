"""Comparing detections: the service's JSON answer against the in-process pipeline's boxes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Box:
    """A detection as plain numbers: corners in pixels of the original image."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_id: int


def boxes_from_answer(answer: Mapping[str, Any]) -> list[Box]:
    """The boxes of the first image of a `{"responses": [...]}` answer, from the pixel
    `vertices` (top-left and bottom-right corners)."""
    response = answer["responses"][0]
    if "error" in response:
        raise ValueError(f"the service answered an error: {response['error']}")
    boxes = []
    for annotation in response["localizedObjectAnnotations"]:
        vertices = annotation["boundingPoly"]["vertices"]
        boxes.append(
            Box(
                float(vertices[0]["x"]),
                float(vertices[0]["y"]),
                float(vertices[2]["x"]),
                float(vertices[2]["y"]),
                float(annotation["score"]),
                int(annotation["classId"]),
            )
        )
    return boxes


def as_answered(box: Box) -> Box:
    """The box as the service writes it: corners rounded to whole pixels, score to 4 digits."""
    return Box(
        float(round(box.x1)),
        float(round(box.y1)),
        float(round(box.x2)),
        float(round(box.y2)),
        round(box.score, 4),
        box.class_id,
    )


def iou(a: Box, b: Box) -> float:
    """Intersection over union; 0 when the union is empty."""
    inter_w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    inter_h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = inter_w * inter_h
    union = (
        max(0.0, a.x2 - a.x1) * max(0.0, a.y2 - a.y1)
        + max(0.0, b.x2 - b.x1) * max(0.0, b.y2 - b.y1)
        - inter
    )
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class MatchResult:
    matched: int
    expected: int
    got: int

    @property
    def all_matched(self) -> bool:
        return self.matched == self.expected == self.got

    def describe(self) -> str:
        return f"{self.matched} of {self.expected} matched, {self.got} returned"


def match_boxes(
    expected: Sequence[Box], got: Sequence[Box], min_iou: float = 0.9, score_tolerance: float = 0.05
) -> MatchResult:
    """Greedy one-to-one matching, best expected score first: a pair matches when the class is
    the same, the IoU is at least `min_iou` and the scores differ by at most
    `score_tolerance`."""
    unused = list(got)
    matched = 0
    for box in sorted(expected, key=lambda b: -b.score):
        candidates = [
            (iou(box, other), index)
            for index, other in enumerate(unused)
            if other.class_id == box.class_id and abs(other.score - box.score) <= score_tolerance
        ]
        best = max(candidates, default=None)
        if best is not None and best[0] >= min_iou:
            matched += 1
            unused.pop(best[1])
    return MatchResult(matched, len(expected), len(got))
