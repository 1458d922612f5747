"""The one owner of OpenCV: image loading (with the pixel limit), resizing and encoding.

OpenCV reads `OPENCV_IO_MAX_IMAGE_PIXELS` once, when cv2 is first imported, so this module
sets it before importing cv2, and every other module takes cv2 from here (tests/test_layout.py
checks that no other module imports it). It is a backstop only: the service checks the pixel
count from the image header (`image_header`) before anything is decoded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from config import MAX_IMAGE_PIXELS_CEILING
from detection_types import ImageArray, ImageDecodeError
from errors import ImageTooLarge, InvalidImage
from image_header import ImageFormat, ImageHeader, ImageHeaderError, read_image_header
from stages import timed

os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS_CEILING))

import cv2
import numpy as np

__all__ = [
    "DEFAULT_JPEG_QUALITY",
    "MIME_TYPES",
    "DecodedImage",
    "Fit",
    "ImageEncodeError",
    "OutputFormat",
    "PixelBudget",
    "check_image",
    "cv2",
    "decode_image",
    "downscale",
    "encode_image",
    "jpeg_reduction",
    "load_image",
]

OutputFormat = Literal["png", "jpeg"]

MIME_TYPES: Final[Mapping[OutputFormat, str]] = {"png": "image/png", "jpeg": "image/jpeg"}

DEFAULT_JPEG_QUALITY: Final = 90
# zlib level: 3 compresses nearly as well as 9 at a fraction of the time.
PNG_COMPRESSION: Final = 3


class ImageEncodeError(Exception):
    """An image could not be encoded."""


def decode_image(data: bytes | bytearray | memoryview, flags: int = cv2.IMREAD_COLOR) -> ImageArray:
    """Decode encoded image bytes into a BGR uint8 array (EXIF orientation applied); `flags`
    may ask for a reduced JPEG decode (cv2.IMREAD_REDUCED_COLOR_2/4/8).

    The caller is expected to have checked the pixel count from the header already.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageDecodeError("the image is empty")
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error as exc:
        raise ImageDecodeError("the image could not be decoded") from exc
    # OpenCV >= 4.11 answers None for truncated or corrupt data instead of a partial image.
    if image is None or image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageDecodeError("the image could not be decoded (corrupt or unsupported)")
    return np.asarray(image, dtype=np.uint8)


class PixelBudget:
    """What is left of one request's pixel budget (MAX_REQUEST_PIXELS), counted from the
    headers before anything is decoded: made per request, passed to each image's load."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.remaining = total

    def take(self, header: ImageHeader) -> None:
        if header.pixels > self.remaining:
            raise ImageTooLarge(
                f"the image is {header.width}x{header.height} = {header.pixels} pixels and the "
                f"request's images may have {self.total} together; {self.remaining} were left"
            )
        self.remaining -= header.pixels


@dataclass(frozen=True)
class Fit:
    """A size the decoded image must still cover: it is resized into `width` x `height`
    keeping its aspect ratio (`letterbox`) or not (stretched to exactly that size)."""

    width: int
    height: int
    letterbox: bool = True

    def needs(self, width: int, height: int) -> tuple[int, int]:
        """The size an image of `width` x `height` is resized to."""
        if not self.letterbox:
            return self.width, self.height
        scale = min(self.width / width, self.height / height)
        return min(width, int(width * scale)), min(height, int(height * scale))


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image, maybe at 1/`factor` of its size (a reduced JPEG decode); `width` and
    `height` are the full image's, EXIF orientation applied. A pixel x of `pixels` is x *
    `factor` of the full image (libjpeg's DCT scaling maps each block to one pixel)."""

    pixels: ImageArray
    width: int
    height: int
    factor: int = 1


_REDUCED_FLAGS: Final = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def jpeg_reduction(width: int, height: int, fits: Sequence[Fit]) -> int:
    """The largest DCT reduction (8, 4, 2, else 1) whose decode still covers every fit, in
    both orientations (the EXIF orientation is only known after decoding)."""

    def covers(width: int, height: int, reduced_w: int, reduced_h: int) -> bool:
        needs = [fit.needs(width, height) for fit in fits]
        return all(reduced_w >= need_w and reduced_h >= need_h for need_w, need_h in needs)

    for factor in (8, 4, 2):
        reduced_w, reduced_h = -(-width // factor), -(-height // factor)
        if covers(width, height, reduced_w, reduced_h) and covers(
            height, width, reduced_h, reduced_w
        ):
            return factor
    return 1


def check_image(data: bytes, max_pixels: int) -> ImageHeader:
    """The header, checked against the per-image pixel limit; nothing is decoded."""
    try:
        header = read_image_header(data)
    except ImageHeaderError as exc:
        raise InvalidImage(str(exc)) from None
    if header.pixels > max_pixels:
        raise ImageTooLarge(
            f"the image is {header.width}x{header.height} = {header.pixels} pixels; "
            f"the limit is {max_pixels}"
        )
    return header


def load_image(
    data: bytes,
    max_pixels: int,
    budget: PixelBudget | None = None,
    fits: Sequence[Fit] = (),
) -> DecodedImage:
    """Check the header's pixel count against the limit and the request's budget, then
    decode: a JPEG at the largest reduction that still covers `fits` (none: full size)."""
    header = check_image(data, max_pixels)
    if budget is not None:
        budget.take(header)
    factor = jpeg_reduction(header.width, header.height, fits) if fits else 1
    if header.format is not ImageFormat.JPEG:
        factor = 1
    try:
        with timed("decode"):
            pixels = decode_image(data, _REDUCED_FLAGS.get(factor, cv2.IMREAD_COLOR))
    except ImageDecodeError as exc:
        raise InvalidImage(str(exc)) from None
    rows, columns = pixels.shape[:2]
    stored = (-(-header.width // factor), -(-header.height // factor))
    # EXIF orientation 5 to 8 swaps the sides: the full image's are swapped alike.
    rotated = (columns, rows) != stored and (rows, columns) == stored
    width, height = (header.height, header.width) if rotated else (header.width, header.height)
    return DecodedImage(pixels, width, height, factor)


def downscale(image: ImageArray, max_side: int | None) -> ImageArray:
    """`image` shrunk (area interpolation, aspect ratio kept) so that its longer side is
    `max_side`; the image itself when no limit is given or it already fits."""
    if max_side is None:
        return image
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    height, width = image.shape[:2]
    longer = max(height, width)
    if longer <= max_side:
        return image
    if width >= height:
        new_width, new_height = max_side, max(1, round(height * max_side / width))
    else:
        new_width, new_height = max(1, round(width * max_side / height)), max_side
    resized = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
    return np.asarray(resized, dtype=np.uint8)


def encode_image(
    image: ImageArray, fmt: OutputFormat, jpeg_quality: int = DEFAULT_JPEG_QUALITY
) -> bytes:
    """PNG or JPEG bytes of a BGR image; `ImageEncodeError` when OpenCV cannot encode it."""
    if fmt == "png":
        extension, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    elif fmt == "jpeg":
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be between 1 and 100, got {jpeg_quality}")
        extension, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    else:
        raise ValueError(f"unknown output format {fmt!r}; known: {', '.join(MIME_TYPES)}")
    try:
        with timed("serialize"):
            ok, buffer = cv2.imencode(extension, image, params)
    except cv2.error as exc:
        raise ImageEncodeError(f"the image could not be encoded as {fmt}") from exc
    if not ok:
        raise ImageEncodeError(f"the image could not be encoded as {fmt}")
    return buffer.tobytes()
