"""The one owner of OpenCV: image loading (with the pixel limit), resizing and encoding.

OpenCV reads `OPENCV_IO_MAX_IMAGE_PIXELS` once, when cv2 is first imported, so this module
sets it before importing cv2, and every other module takes cv2 from here (tests/test_layout.py
checks that no other module imports it). It is a backstop only: the service checks the pixel
count from the image header (`image_header`) before anything is decoded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, Literal

from config import MAX_IMAGE_PIXELS_CEILING
from detection_types import ImageArray, ImageDecodeError
from errors import ImageTooLarge, InvalidImage
from image_header import ImageHeaderError, read_image_header
from stages import timed

os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS_CEILING))

import cv2
import numpy as np

__all__ = [
    "DEFAULT_JPEG_QUALITY",
    "MIME_TYPES",
    "ImageEncodeError",
    "OutputFormat",
    "cv2",
    "decode_image",
    "downscale",
    "encode_image",
    "load_image",
]

OutputFormat = Literal["png", "jpeg"]

MIME_TYPES: Final[Mapping[OutputFormat, str]] = {"png": "image/png", "jpeg": "image/jpeg"}

DEFAULT_JPEG_QUALITY: Final = 90
# zlib level: 3 compresses nearly as well as 9 at a fraction of the time.
PNG_COMPRESSION: Final = 3


class ImageEncodeError(Exception):
    """An image could not be encoded."""


def decode_image(data: bytes | bytearray | memoryview) -> ImageArray:
    """Decode encoded image bytes into a BGR uint8 array (EXIF orientation applied).

    The caller is expected to have checked the pixel count from the header already.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageDecodeError("the image is empty")
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError("the image could not be decoded") from exc
    # OpenCV >= 4.11 answers None for truncated or corrupt data instead of a partial image.
    if image is None or image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageDecodeError("the image could not be decoded (corrupt or unsupported)")
    return np.asarray(image, dtype=np.uint8)


def load_image(data: bytes, max_pixels: int) -> ImageArray:
    """Check the header's pixel count against the limit, then decode."""
    try:
        header = read_image_header(data)
    except ImageHeaderError as exc:
        raise InvalidImage(str(exc)) from None
    if header.pixels > max_pixels:
        raise ImageTooLarge(
            f"the image is {header.width}x{header.height} = {header.pixels} pixels; "
            f"the limit is {max_pixels}"
        )
    try:
        with timed("decode"):
            return decode_image(data)
    except ImageDecodeError as exc:
        raise InvalidImage(str(exc)) from None


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
