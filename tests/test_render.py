"""Tests for render: drawing detections (on plain gray images, so every changed pixel is one we
drew) and the annotated picture (downscaling and encoding themselves: tests/test_image_io.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

import render
from detection_types import Detections, ImageArray
from image_io import (
    OutputFormat,
    decode_image,
)
from render import class_color, draw_detections, format_label, render_annotated, text_color
from tests.helpers import SAMPLE_IMAGES, decode_with_cv2

NAMES = ("person", "bicycle", "car", "dog")
GRAY = 128
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"


def gray(height: int, width: int) -> ImageArray:
    return np.full((height, width, 3), GRAY, dtype=np.uint8)


def make_detections(
    boxes: Sequence[Sequence[float]],
    scores: Sequence[float] | None = None,
    class_ids: Sequence[int] | None = None,
) -> Detections:
    count = len(boxes)
    return Detections(
        xyxy=np.asarray(boxes, dtype=np.float32).reshape(count, 4),
        scores=np.asarray(scores if scores is not None else [0.9] * count, dtype=np.float32),
        class_ids=np.asarray(class_ids if class_ids is not None else [0] * count, np.int64),
    )


def changed(drawn: ImageArray, original: ImageArray) -> npt.NDArray[np.bool_]:
    """(H, W) mask of the pixels that differ in any channel."""
    return np.asarray(np.any(drawn != original, axis=2))


# --------------------------------------------------------------------------------------------
# draw_detections
# --------------------------------------------------------------------------------------------


def test_draw_changes_box_edges_and_label_only() -> None:
    image = gray(200, 300)
    before = image.copy()
    drawn = draw_detections(image, make_detections([[50, 60, 150, 160]]), NAMES)

    assert drawn.shape == image.shape
    assert drawn.dtype == np.uint8
    assert np.array_equal(image, before), "the input array was modified"
    assert not np.shares_memory(drawn, image)
    diff = changed(drawn, image)
    # Thickness 1 at this size: the line runs through the first and the last pixel of the box.
    assert diff[60:160, 50].all()
    assert diff[60:160, 149].all()
    assert diff[60, 50:150].all()
    assert diff[159, 50:150].all()
    # The filled label tag sits right above the box's top-left corner.
    assert diff[55:60, 50:60].all()
    # Inside the box, below the tag, and far from it nothing changed.
    assert not diff[70:150, 60:140].any()
    assert not diff[170:, :].any()
    assert not diff[:, 200:].any()
    assert np.array_equal(drawn[60:160, 50], np.tile(class_color(0), (100, 1)))


def test_no_detections_gives_an_identical_copy() -> None:
    image = gray(40, 60)
    drawn = draw_detections(image, Detections.empty(), NAMES)
    assert np.array_equal(drawn, image)
    assert not np.shares_memory(drawn, image)


def test_non_bgr_image_is_rejected() -> None:
    with pytest.raises(ValueError, match="BGR"):
        draw_detections(np.zeros((10, 10), np.uint8), make_detections([[1, 1, 5, 5]]), NAMES)


@pytest.mark.parametrize(
    ("shape", "box"),
    [
        pytest.param((200, 300), (10, 0, 100, 80), id="top-edge"),
        pytest.param((200, 300), (250, 50, 300, 150), id="right-edge"),
        pytest.param((200, 300), (0, 0, 300, 200), id="whole-image"),
        pytest.param((200, 300), (100, 100, 101, 101), id="tiny-1x1"),
        pytest.param((200, 300), (100.4, 100.6, 100.4, 100.6), id="zero-size"),
        pytest.param((200, 300), (150, 150, 50, 50), id="reversed-corners"),
        pytest.param((200, 300), (-50, -20, 5000, 90), id="beyond-the-image"),
        pytest.param((200, 300), (float("nan"), 10, float("inf"), 50), id="not-finite"),
        pytest.param((16, 16), (2, 2, 14, 14), id="16x16-image"),
        pytest.param((1, 1), (0, 0, 1, 1), id="1x1-image"),
        pytest.param((3000, 4000), (100, 100, 3900, 2900), id="4000x3000-image"),
    ],
)
def test_awkward_boxes_draw_within_the_image(
    shape: tuple[int, int], box: tuple[float, float, float, float]
) -> None:
    image = gray(*shape)
    drawn = draw_detections(image, make_detections([box], [0.5], [3]), NAMES)
    assert drawn.shape == image.shape
    assert drawn.dtype == np.uint8
    assert changed(drawn, image).any()
    assert np.all(image == GRAY), "the input array was modified"


def test_label_moves_inside_the_box_at_the_top_edge() -> None:
    image = gray(200, 300)
    drawn = draw_detections(image, make_detections([[40, 0, 200, 150]]), NAMES)
    diff = changed(drawn, image)
    # No room above: the tag hangs inside the box, from its top edge down.
    assert diff[0:8, 40:60].all()
    assert not diff[:, :39].any()


def test_label_shifts_left_at_the_right_edge() -> None:
    image = gray(200, 300)
    drawn = draw_detections(image, make_detections([[290, 100, 300, 150]]), NAMES)
    diff = changed(drawn, image)
    tag_rows = diff[92:100]
    # The tag "person 0.90" is wider than the 10-px box: it ends at the image's right edge and
    # reaches to the left of the box.
    assert tag_rows[:, 299].all()
    assert tag_rows[:, 250:290].all()


def test_label_is_clipped_when_wider_than_the_image() -> None:
    image = gray(64, 20)
    drawn = draw_detections(image, make_detections([[2, 30, 18, 60]]), ["a long class name"])
    diff = changed(drawn, image)
    assert diff[25:30, :].all()


def run_length_across_left_edge(size: tuple[int, int]) -> int:
    """Changed pixels on a row through the middle of a box, from the image's left border to the
    box's centre: the width of the box's left line."""
    height, width = size
    box = (width * 0.25, height * 0.25, width * 0.75, height * 0.75)
    image = gray(height, width)
    drawn = draw_detections(image, make_detections([box]), NAMES)
    row = changed(drawn, image)[height // 2, : width // 2]
    return int(row.sum())


def label_height_above_box(size: tuple[int, int]) -> int:
    height, width = size
    top, left = int(height * 0.5), int(width * 0.1)
    image = gray(height, width)
    drawn = draw_detections(image, make_detections([[left, top, width * 0.9, height]]), NAMES)
    column = changed(drawn, image)[:top, left + 1]
    return int(column.sum())


def test_line_and_label_grow_with_the_image() -> None:
    sizes = [(64, 64), (480, 640), (2000, 2000), (4000, 6000)]
    lines = [run_length_across_left_edge(size) for size in sizes]
    labels = [label_height_above_box(size) for size in sizes]
    assert lines[0] == 1
    assert lines == sorted(lines)
    assert lines[-1] >= 10 * lines[0]
    # OpenCV's thick lines come out up to two pixels wider than asked.
    for (height, width), measured in zip(sizes, lines, strict=True):
        assert 0 <= measured - render.line_thickness(width, height) <= 2
    assert labels == sorted(labels)
    assert labels[-1] >= 5 * labels[0]
    assert labels[0] >= render.MIN_TEXT_HEIGHT


def test_class_colours_are_deterministic_and_distinct() -> None:
    assert class_color(7) == class_color(7)
    assert len({class_color(i) for i in range(80)}) == 80
    image = gray(100, 200)
    detections = make_detections([[10, 40, 90, 90], [110, 40, 190, 90]], [0.8, 0.7], [0, 1])
    first = draw_detections(image, detections, NAMES)
    assert np.array_equal(first, draw_detections(image, detections, NAMES))
    left_line, right_line = first[60, 10], first[60, 110]
    assert tuple(left_line) == class_color(0)
    assert tuple(right_line) == class_color(1)
    assert class_color(0) != class_color(1)


@pytest.mark.parametrize(
    ("background", "expected"),
    [
        pytest.param((255, 255, 255), render.BLACK, id="white-tag-black-text"),
        pytest.param((0, 0, 0), render.WHITE, id="black-tag-white-text"),
        # yellow (BGR)
        pytest.param((0, 255, 255), render.BLACK, id="yellow"),
        pytest.param((128, 0, 0), render.WHITE, id="dark-blue"),
        pytest.param((0, 200, 0), render.BLACK, id="green"),
    ],
)
def test_text_colour_contrasts_with_the_tag(
    background: tuple[int, int, int], expected: tuple[int, int, int]
) -> None:
    assert text_color(background) == expected


@pytest.mark.parametrize(
    ("class_id", "score", "expected"),
    [
        pytest.param(3, 0.856, "dog 0.86", id="dog"),
        pytest.param(0, 1.0, "person 1.00", id="person-full-score"),
        pytest.param(9, 0.5, "9 0.50", id="id-past-the-names"),
        pytest.param(-1, 0.25, "-1 0.25", id="negative-id"),
    ],
)
def test_label_text(class_id: int, score: float, expected: str) -> None:
    assert format_label(class_id, score, NAMES) == expected


@pytest.mark.parametrize(
    "best_first", [pytest.param(True, id="best-first"), pytest.param(False, id="best-last")]
)
def test_best_detection_is_drawn_on_top(best_first: bool) -> None:
    box = [40, 60, 160, 160]
    rows = [([*box], 0.9, 0), ([*box], 0.4, 1)]
    if not best_first:
        rows.reverse()
    detections = make_detections([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    image = gray(200, 300)
    # The best label is the longer one, so its tag covers the other one's entirely.
    drawn = draw_detections(image, detections, ["a rather long name", "b"])
    tag_area = drawn[40:60, 40:200].reshape(-1, 3)
    assert np.all(tag_area == class_color(0), axis=1).any()
    assert not np.all(tag_area == class_color(1), axis=1).any()
    assert tuple(drawn[100, 40]) == class_color(0)


def test_non_contiguous_input_is_drawn_on_a_copy() -> None:
    base = gray(100, 200)
    view = base[:, ::-1]
    drawn = draw_detections(view, make_detections([[10, 10, 50, 50]]), NAMES)
    assert changed(drawn, view).any()
    assert np.all(base == GRAY)


# --------------------------------------------------------------------------------------------
# render_annotated
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "max_side", "expected_shape"),
    [
        pytest.param("png", None, (300, 400, 3), id="png"),
        pytest.param("jpeg", None, (300, 400, 3), id="jpeg"),
        pytest.param("png", 200, (150, 200, 3), id="png-downscaled"),
        pytest.param("jpeg", 100, (75, 100, 3), id="jpeg-downscaled"),
        pytest.param("png", 1000, (300, 400, 3), id="png-limit-above-size"),
    ],
)
def test_render_annotated(
    fmt: OutputFormat, max_side: int | None, expected_shape: tuple[int, int, int]
) -> None:
    image = gray(300, 400)
    detections = make_detections([[50, 50, 200, 250], [220, 30, 390, 290]], [0.9, 0.6], [0, 3])
    data = render_annotated(image, detections, NAMES, fmt, max_side=max_side)
    assert data.startswith(PNG_SIGNATURE if fmt == "png" else JPEG_SIGNATURE)
    decoded = decode_with_cv2(data)
    assert decoded.shape == expected_shape
    assert np.all(image == GRAY)
    if fmt == "png" and (max_side is None or max_side >= 400):
        assert np.array_equal(decoded, draw_detections(image, detections, NAMES))


def test_render_real_photo() -> None:
    photo = decode_image((SAMPLE_IMAGES / "astronaut.png").read_bytes())
    detections = make_detections([[20, 10, 460, 512]], [0.86], [0])
    data = render_annotated(photo, detections, NAMES, "jpeg", max_side=256)
    assert decode_with_cv2(data).shape == (256, 256, 3)
