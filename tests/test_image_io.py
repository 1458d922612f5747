"""image_io, the one owner of OpenCV: decoding, loading with the pixel limit, downscaling and
encoding."""

from __future__ import annotations

import numpy as np
import pytest

import image_io
from detection_types import ImageArray, ImageDecodeError
from errors import ImageTooLarge, InvalidImage
from image_io import MIME_TYPES, ImageEncodeError, OutputFormat, downscale, encode_image, load_image
from tests.helpers import decode_with_cv2, encode_array, textured_image
from tests.helpers import encode_image as random_image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"


def flat(height: int, width: int) -> ImageArray:
    return np.full((height, width, 3), 128, dtype=np.uint8)


# --- decode_image ---------------------------------------------------------------------------------


def test_decode_png_round_trips_exactly() -> None:
    image = textured_image(37, 53)
    decoded = image_io.decode_image(encode_array(image, ".png"))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(bytes, id="bytes"),
        pytest.param(bytearray, id="bytearray"),
        pytest.param(memoryview, id="memoryview"),
    ],
)
def test_decode_accepts_bytes_like(kind: type) -> None:
    image = textured_image(8, 9)
    decoded = image_io.decode_image(kind(encode_array(image, ".png")))
    np.testing.assert_array_equal(decoded, image)


def test_decode_jpeg() -> None:
    image = np.full((60, 80, 3), (10, 120, 240), np.uint8)
    decoded = image_io.decode_image(encode_array(image, ".jpg"))
    assert decoded.shape == (60, 80, 3)
    # Lossy, but a flat colour stays close and in BGR order.
    assert np.abs(decoded.astype(int) - image.astype(int)).max() <= 4


def test_decode_grayscale_gives_three_equal_channels() -> None:
    gray = textured_image(20, 30)[:, :, 0]
    decoded = image_io.decode_image(encode_array(gray, ".png"))
    assert decoded.shape == (20, 30, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[:, :, channel], gray)


def test_decode_alpha_is_dropped() -> None:
    bgra = np.dstack([textured_image(20, 30), np.linspace(0, 255, 600).reshape(20, 30)])
    decoded = image_io.decode_image(encode_array(bgra.astype(np.uint8), ".png"))
    assert decoded.shape == (20, 30, 3)
    np.testing.assert_array_equal(decoded, bgra[:, :, :3])


def test_decode_16_bit_png_gives_8_bit() -> None:
    deep = (textured_image(10, 12).astype(np.uint16) * 257).astype(np.uint16)
    decoded = image_io.decode_image(encode_array(deep, ".png"))
    assert decoded.shape == (10, 12, 3)
    assert decoded.dtype == np.uint8


def _jpeg() -> bytes:
    return encode_array(textured_image(64, 64), ".jpg")


def _png() -> bytes:
    return encode_array(textured_image(64, 64), ".png")


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


# --- load_image -----------------------------------------------------------------------------------


def test_load_image_decodes_real_images() -> None:
    for ext in (".png", ".jpg", ".webp", ".bmp", ".tiff"):
        image = load_image(random_image(37, 23, ext), max_pixels=10_000)
        assert image.shape == (23, 37, 3)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"", InvalidImage, id="empty"),
        pytest.param(b"GIF89a" + b"\0" * 20, InvalidImage, id="unsupported-format"),
        pytest.param(random_image(64, 64, ".jpg")[:200], InvalidImage, id="truncated-jpeg"),
        pytest.param(random_image(101, 100), ImageTooLarge, id="over-the-pixel-limit"),
    ],
)
def test_load_image_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        load_image(data, max_pixels=10_000)


# --- downscale ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "max_side", "expected"),
    [
        pytest.param((100, 200), 50, (25, 50), id="wide-halved"),
        pytest.param((200, 100), 50, (50, 25), id="tall-halved"),
        pytest.param((3000, 4000), 1024, (768, 1024), id="photo-to-1024"),
        pytest.param((333, 500), 100, (67, 100), id="rounded-side"),
        pytest.param((1000, 1), 10, (10, 1), id="one-pixel-wide"),
        pytest.param((1, 1000), 10, (1, 10), id="one-pixel-high"),
        pytest.param((500, 500), 1, (1, 1), id="down-to-1x1"),
        pytest.param((480, 640), 640, (480, 640), id="at-the-limit"),
        pytest.param((480, 640), 5000, (480, 640), id="under-the-limit"),
        pytest.param((480, 640), None, (480, 640), id="no-limit"),
    ],
)
def test_downscale(shape: tuple[int, int], max_side: int | None, expected: tuple[int, int]) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    before = image.copy()
    result = downscale(image, max_side)
    assert result.shape == (*expected, 3)
    assert result.dtype == np.uint8
    assert np.array_equal(image, before)
    if expected == shape:
        assert np.array_equal(result, image)


def test_downscale_averages_pixels() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    image[:, ::2] = 200  # alternating columns average to 100 with area interpolation
    assert np.all(downscale(image, 2) == 100)


@pytest.mark.parametrize("max_side", [pytest.param(0, id="zero"), pytest.param(-5, id="negative")])
def test_downscale_rejects_a_non_positive_limit(max_side: int) -> None:
    with pytest.raises(ValueError, match="max_side"):
        downscale(flat(10, 10), max_side)


# --- encode_image ---------------------------------------------------------------------------------


def gradient(height: int, width: int) -> ImageArray:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) % 256], axis=2).astype(
        np.uint8
    )


@pytest.mark.parametrize(
    ("fmt", "signature", "max_error"),
    [
        pytest.param("png", PNG_SIGNATURE, 0.0, id="png-lossless"),
        pytest.param("jpeg", JPEG_SIGNATURE, 4.0, id="jpeg-lossy"),
    ],
)
def test_encode_round_trip(fmt: OutputFormat, signature: bytes, max_error: float) -> None:
    image = gradient(60, 80)
    data = encode_image(image, fmt)
    assert data.startswith(signature)
    decoded = decode_with_cv2(data)
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(np.int16) - image).mean() <= max_error


def test_jpeg_quality_is_applied() -> None:
    image = gradient(120, 160)
    assert len(encode_image(image, "jpeg", 20)) < len(encode_image(image, "jpeg", 95))


@pytest.mark.parametrize("quality", [pytest.param(0, id="zero"), pytest.param(101, id="above-100")])
def test_jpeg_quality_out_of_range(quality: int) -> None:
    with pytest.raises(ValueError, match="jpeg_quality"):
        encode_image(flat(4, 4), "jpeg", quality)


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        encode_image(flat(4, 4), "gif")  # type: ignore[arg-type]


def test_encoding_failure_raises_render_error() -> None:
    with pytest.raises(ImageEncodeError):
        encode_image(np.zeros((0, 0, 3), np.uint8), "png")


def test_mime_types() -> None:
    assert dict(MIME_TYPES) == {"png": "image/png", "jpeg": "image/jpeg"}
