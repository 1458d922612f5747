"""Draw detections onto an image, and the annotated picture encoded as PNG or JPEG.

Everything here is a pure function of its arguments: the caller's array is never modified,
each transform returns a new array. Line widths and label sizes follow the image's diagonal,
so a thumbnail and a 24-megapixel photo both come out legible.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from typing import Final

import numpy as np

from detection_types import Detections, ImageArray
from image_io import DEFAULT_JPEG_QUALITY, OutputFormat, cv2, downscale, encode_image

# Sizes as fractions of the image diagonal, with floors for small images.
LINE_FRACTION: Final = 0.0025
MIN_LINE_THICKNESS: Final = 1
TEXT_FRACTION: Final = 0.016
MIN_TEXT_HEIGHT: Final = 8
FONT: Final = cv2.FONT_HERSHEY_SIMPLEX

# Successive hues a golden-ratio step apart stay far from each other for any number of classes.
_GOLDEN_RATIO_CONJUGATE: Final = 0.618033988749895

Color = tuple[int, int, int]
BLACK: Final[Color] = (0, 0, 0)
WHITE: Final[Color] = (255, 255, 255)


# --------------------------------------------------------------------------------------------
# Style
# --------------------------------------------------------------------------------------------


def class_color(class_id: int) -> Color:
    """A stable BGR colour for a class id; neighbouring ids get clearly different hues."""
    hue = (0.1 + class_id * _GOLDEN_RATIO_CONJUGATE) % 1.0
    # Alternate two brightness levels so that classes with close hues still differ.
    value = 0.95 if class_id % 2 == 0 else 0.8
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.8, value)
    return round(blue * 255), round(green * 255), round(red * 255)


def _relative_luminance(color: Color) -> float:
    """WCAG relative luminance of a BGR colour (0 black .. 1 white)."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    blue, green, red = color
    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def text_color(background: Color) -> Color:
    """Black or white, whichever contrasts more with `background` (WCAG contrast ratio)."""
    luminance = _relative_luminance(background)
    contrast_black = (luminance + 0.05) / 0.05
    contrast_white = 1.05 / (luminance + 0.05)
    return BLACK if contrast_black >= contrast_white else WHITE


def line_thickness(width: int, height: int) -> int:
    """Box line width in pixels for an image of this size."""
    return max(MIN_LINE_THICKNESS, round(math.hypot(width, height) * LINE_FRACTION))


def text_height(width: int, height: int) -> int:
    """Label cap height in pixels for an image of this size."""
    return max(MIN_TEXT_HEIGHT, round(math.hypot(width, height) * TEXT_FRACTION))


def format_label(class_id: int, score: float, class_names: Sequence[str]) -> str:
    """`"<name> <score>"`; an id the names do not cover is shown as the number."""
    name = class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)
    return f"{name} {score:.2f}"


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def _box_corners(
    xyxy: Sequence[float], width: int, height: int, half: int
) -> tuple[int, int, int, int]:
    """Integer corners for the line centres, kept `half` pixels inside the image so that a
    box touching the border still shows a line of full thickness."""
    values = [0.0 if math.isnan(v) else float(v) for v in xyxy]  # infinities clamp below
    left, right = sorted((values[0], values[2]))
    top, bottom = sorted((values[1], values[3]))
    max_x = max(half, width - 1 - half)
    max_y = max(half, height - 1 - half)

    def clamp(value: float, low: int, high: int) -> int:
        return round(min(max(value, low), high))

    # The right/bottom corner is exclusive (x2 = x1 + w), the line's last pixel is one before.
    return (
        clamp(left, half, max_x),
        clamp(top, half, max_y),
        clamp(right - 1, half, max_x),
        clamp(bottom - 1, half, max_y),
    )


def _draw_label(
    canvas: ImageArray,
    label: str,
    color: Color,
    anchor_x: int,
    anchor_y: int,
    cap_height: int,
) -> None:
    """A filled tag with the label, its bottom-left at the anchor (the box's outer top-left
    corner); moved inside the box when it would leave the top of the image, and shifted left
    when it would leave the right edge (clipped only when wider than the image)."""
    image_height, image_width = canvas.shape[:2]
    thickness = max(1, round(cap_height / 14))
    scale = cv2.getFontScaleFromHeight(FONT, cap_height, thickness)
    (text_w, text_h), baseline = cv2.getTextSize(label, FONT, scale, thickness)
    pad = max(1, round(text_h * 0.3))
    tag_w = text_w + 2 * pad
    tag_h = text_h + baseline + pad
    top = anchor_y - tag_h
    if top < 0:
        top = max(0, anchor_y)  # inside the box, hanging from its top edge
    left = max(0, min(anchor_x, image_width - tag_w))
    right = min(image_width, left + tag_w) - 1
    bottom = min(image_height, top + tag_h) - 1
    cv2.rectangle(canvas, (left, top), (right, bottom), color, cv2.FILLED)
    origin = (left + pad, top + pad + text_h)
    cv2.putText(canvas, label, origin, FONT, scale, text_color(color), thickness, cv2.LINE_AA)


def draw_detections(
    image: ImageArray, detections: Detections, class_names: Sequence[str]
) -> ImageArray:
    """A copy of the BGR `image` with every detection drawn: its box in the class's colour and
    a tag `"<name> <score>"` above it. The best detection is drawn last, so its label is on
    top; all boxes are drawn before any label, so no line crosses a label."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR image of shape (H, W, 3), got {image.shape}")
    canvas: ImageArray = np.array(image, dtype=np.uint8, order="C", copy=True)
    if len(detections) == 0:
        return canvas
    height, width = canvas.shape[:2]
    thickness = line_thickness(width, height)
    half = thickness // 2
    cap_height = text_height(width, height)
    # Ascending score, stable: equal scores keep their order, the best comes last.
    order = np.argsort(detections.scores, kind="stable")
    boxes = [
        (
            _box_corners(detections.xyxy[i].tolist(), width, height, half),
            int(detections.class_ids[i]),
            float(detections.scores[i]),
        )
        for i in order
    ]
    for (x1, y1, x2, y2), class_id, _ in boxes:
        cv2.rectangle(canvas, (x1, y1), (x2, y2), class_color(class_id), thickness)
    for (x1, y1, _, _), class_id, score in boxes:
        _draw_label(
            canvas,
            format_label(class_id, score, class_names),
            class_color(class_id),
            anchor_x=x1 - half,
            anchor_y=y1 - half,
            cap_height=cap_height,
        )
    return canvas


def render_annotated(
    image: ImageArray,
    detections: Detections,
    class_names: Sequence[str],
    fmt: OutputFormat,
    max_side: int | None = None,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
) -> bytes:
    """Draw at full resolution (boxes are in original pixels), then downscale (lines and text
    shrink with the picture), then encode."""
    annotated = draw_detections(image, detections, class_names)
    return encode_image(downscale(annotated, max_side), fmt, jpeg_quality)
