"""Tests for image_header: sizes read from headers alone, and nothing but ImageHeaderError."""

from __future__ import annotations

import ast
import random
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import image_header
from image_header import ImageFormat, ImageHeader, ImageHeaderError, read_image_header
from tests.helpers import SAMPLE_IMAGES, SHARED_IMAGES

SUPPORTED_TEXT = "JPEG, PNG, WebP, BMP, TIFF"

# --- builders for crafted headers ----------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR declares width x height (8-bit RGB), with correct CRCs."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr)
    if idat:
        chunks += png_chunk(b"IDAT", idat)
    return b"\x89PNG\r\n\x1a\n" + chunks + png_chunk(b"IEND", b"")


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_sof(width: int, height: int, marker: int = 0xC0) -> bytes:
    components = b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return jpeg_segment(marker, struct.pack(">BHHB", 8, height, width, 3) + components)


def jpeg(*segments: bytes) -> bytes:
    return b"\xff\xd8" + b"".join(segments) + b"\xff\xd9"


JFIF_APP0 = jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
# A DHT segment whose payload, read as a frame header, would say 9999x9999.
DHT_LOOKS_LIKE_SOF = jpeg_segment(0xC4, struct.pack(">BHHB", 8, 9999, 9999, 3) + bytes(20))


def bmp(header_size: int, width: int, height: int) -> bytes:
    if header_size == 12:
        dib = struct.pack("<IHHHH", 12, width, height, 1, 24)
    else:
        dib = struct.pack("<IiiHH", header_size, width, height, 1, 24)
        dib += bytes(header_size - len(dib))
    return b"BM" + struct.pack("<IHHI", 14 + len(dib), 0, 0, 14 + len(dib)) + dib


TiffEntry = tuple[int, int, int, int]  # tag, type, count, value


def tiff(entries: Sequence[TiffEntry], *, order: str = "<", big: bool = False) -> bytes:
    """A TIFF (or BigTIFF) whose first IFD, right after the header, holds ``entries``."""
    mark = b"II" if order == "<" else b"MM"
    value_formats = {3: "H", 4: "I", 16: "Q", 2: "B"}
    body = b""
    for tag, kind, count, value in entries:
        field = struct.pack(order + value_formats[kind], value)
        if big:
            body += struct.pack(order + "HHQ", tag, kind, count) + field.ljust(8, b"\x00")
        else:
            body += struct.pack(order + "HHI", tag, kind, count) + field.ljust(4, b"\x00")
    if big:
        header = mark + struct.pack(order + "HHHQ", 43, 8, 0, 16)
        return header + struct.pack(order + "Q", len(entries)) + body + bytes(8)
    header = mark + struct.pack(order + "HI", 42, 8)
    return header + struct.pack(order + "H", len(entries)) + body + bytes(4)


def webp(fourcc: bytes, payload: bytes) -> bytes:
    chunk = fourcc + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def vp8_key_frame(width: int, height: int, *, key_frame: bool = True) -> bytes:
    # Frame tag: bit 0 is 0 on a key frame, 1 on an interframe.
    tag = bytes([0x10 if key_frame else 0x11, 0x02, 0x00])
    return tag + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + bytes(8)


def vp8l(width: int, height: int, *, signature: int = 0x2F, version: int = 0) -> bytes:
    bits = (width - 1) | ((height - 1) << 14) | (version << 29)
    return bytes([signature]) + struct.pack("<I", bits) + bytes(4)


def vp8x(width: int, height: int) -> bytes:
    return bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")


# --- crafted headers that must be read exactly ---------------------------------------------

# The 30000x30000 PNG bomb: a valid IHDR, a tiny IDAT; decoding it would allocate 2.7 GB.
PNG_BOMB = png(30000, 30000, idat=zlib.compress(b"\x00" * 30001 * 4))

CRAFTED_VALID = [
    # The decompression bomb the module exists for: read, not decoded.
    pytest.param(PNG_BOMB, ImageFormat.PNG, 30000, 30000, id="png-bomb-30000x30000"),
    # Largest size a JPEG frame header can declare.
    pytest.param(
        jpeg(JFIF_APP0, jpeg_sof(65535, 65535)),
        ImageFormat.JPEG,
        65535,
        65535,
        id="jpeg-sof-65535x65535",
    ),
    # Smallest PNG: 1x1.
    pytest.param(png(1, 1), ImageFormat.PNG, 1, 1, id="png-1x1"),
    # Largest PNG dimension the spec allows (2^31-1).
    pytest.param(png(2**31 - 1, 1), ImageFormat.PNG, 2**31 - 1, 1, id="png-max-width"),
    # A DHT segment (C4, inside the SOF range) before the frame header must be skipped.
    pytest.param(
        jpeg(JFIF_APP0, DHT_LOOKS_LIKE_SOF, jpeg_sof(320, 200)),
        ImageFormat.JPEG,
        320,
        200,
        id="jpeg-dht-before-sof",
    ),
    # DAC (CC) and JPG (C8) are not frame headers either.
    pytest.param(
        jpeg(jpeg_segment(0xCC, bytes(8)), jpeg_segment(0xC8, bytes(8)), jpeg_sof(5, 6)),
        ImageFormat.JPEG,
        5,
        6,
        id="jpeg-dac-jpg-before-sof",
    ),
    # Fill bytes before markers, and standalone TEM/RST markers, are legal and skipped.
    pytest.param(
        b"\xff\xd8\xff\xff\xff\xff\x01\xff\xd0\xff\xd7" + JFIF_APP0 + b"\xff\xff" + jpeg_sof(7, 9),
        ImageFormat.JPEG,
        7,
        9,
        id="jpeg-fill-bytes-and-standalone-markers",
    ),
    # Progressive (SOF2), lossless (SOF3) and arithmetic (SOF15) frames carry sizes too.
    pytest.param(jpeg(jpeg_sof(11, 12, marker=0xC2)), ImageFormat.JPEG, 11, 12, id="jpeg-sof2"),
    pytest.param(jpeg(jpeg_sof(13, 14, marker=0xC3)), ImageFormat.JPEG, 13, 14, id="jpeg-sof3"),
    pytest.param(jpeg(jpeg_sof(15, 16, marker=0xCF)), ImageFormat.JPEG, 15, 16, id="jpeg-sof15"),
    # Large APP segments (EXIF, ICC) before the frame header are stepped over by length.
    pytest.param(
        jpeg(
            jpeg_segment(0xE1, b"Exif\x00\x00" + bytes(65000)),
            jpeg_segment(0xE2, bytes(60000)),
            jpeg_sof(3000, 2000),
        ),
        ImageFormat.JPEG,
        3000,
        2000,
        id="jpeg-large-app-segments",
    ),
    # OS/2 BITMAPCOREHEADER: 16-bit sizes.
    pytest.param(bmp(12, 65535, 3), ImageFormat.BMP, 65535, 3, id="bmp-core-header"),
    # BITMAPINFOHEADER with a negative height: a top-down bitmap, size is its magnitude.
    pytest.param(bmp(40, 640, -480), ImageFormat.BMP, 640, 480, id="bmp-top-down"),
    # BITMAPV5HEADER.
    pytest.param(bmp(124, 100000, 100000), ImageFormat.BMP, 100000, 100000, id="bmp-v5-header"),
    # Little-endian TIFF with SHORT sizes; other tags around them are ignored.
    pytest.param(
        tiff([(254, 4, 1, 0), (256, 3, 1, 640), (257, 3, 1, 480), (258, 3, 1, 8)]),
        ImageFormat.TIFF,
        640,
        480,
        id="tiff-le-short",
    ),
    # Big-endian TIFF with LONG sizes.
    pytest.param(
        tiff([(256, 4, 1, 70000), (257, 4, 1, 80000)], order=">"),
        ImageFormat.TIFF,
        70000,
        80000,
        id="tiff-be-long",
    ),
    # Big-endian SHORT: the value is left-justified in the 4-byte field.
    pytest.param(
        tiff([(256, 3, 1, 33), (257, 3, 1, 44)], order=">"),
        ImageFormat.TIFF,
        33,
        44,
        id="tiff-be-short",
    ),
    # Tags out of order are still found.
    pytest.param(
        tiff([(257, 3, 1, 2), (256, 3, 1, 1)]), ImageFormat.TIFF, 1, 2, id="tiff-tags-out-of-order"
    ),
    # BigTIFF with a LONG8 width.
    pytest.param(
        tiff([(256, 16, 1, 50000), (257, 3, 1, 50000)], big=True),
        ImageFormat.TIFF,
        50000,
        50000,
        id="bigtiff-long8",
    ),
    # Big-endian BigTIFF.
    pytest.param(
        tiff([(256, 4, 1, 9), (257, 4, 1, 10)], order=">", big=True),
        ImageFormat.TIFF,
        9,
        10,
        id="bigtiff-be",
    ),
    # WebP lossy, the largest 14-bit size.
    pytest.param(
        webp(b"VP8 ", vp8_key_frame(16383, 16383)),
        ImageFormat.WEBP,
        16383,
        16383,
        id="webp-vp8-16383",
    ),
    # VP8's 2-bit scale fields are not part of the size.
    pytest.param(
        webp(b"VP8 ", vp8_key_frame(0xC000 | 100, 0x4000 | 50)),
        ImageFormat.WEBP,
        100,
        50,
        id="webp-vp8-scale-bits",
    ),
    # WebP lossless, smallest and largest.
    pytest.param(webp(b"VP8L", vp8l(1, 1)), ImageFormat.WEBP, 1, 1, id="webp-vp8l-1x1"),
    pytest.param(
        webp(b"VP8L", vp8l(16384, 16384)), ImageFormat.WEBP, 16384, 16384, id="webp-vp8l-16384"
    ),
    # WebP extended: 24-bit canvas size.
    pytest.param(webp(b"VP8X", vp8x(2**24, 3)), ImageFormat.WEBP, 2**24, 3, id="webp-vp8x-max"),
]


@pytest.mark.parametrize(("data", "image_format", "width", "height"), CRAFTED_VALID)
def test_crafted_headers_are_read_exactly(
    data: bytes, image_format: ImageFormat, width: int, height: int
) -> None:
    assert read_image_header(data) == ImageHeader(image_format, width, height)


def _peak_allocation(call: Callable[[], object]) -> int:
    """The most memory `call` had allocated at once, in bytes (no timing: the machines are
    shared and noisy, memory is what a decode or a copy of the input would show)."""
    tracemalloc.start()
    try:
        call()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_png_bomb_is_small_and_read_without_decoding() -> None:
    assert len(PNG_BOMB) < 1000
    assert read_image_header(PNG_BOMB).pixels == 900_000_000
    # A decode of 900 megapixels would allocate gigabytes; the header read allocates nearly nothing.
    assert _peak_allocation(lambda: read_image_header(PNG_BOMB)) < 64 * 1024


# --- input that must be refused, with a message saying why ---------------------------------

CRAFTED_INVALID = [
    # Nothing at all, in each accepted type.
    pytest.param(b"", "empty", id="empty-bytes"),
    pytest.param(bytearray(), "empty", id="empty-bytearray"),
    pytest.param(memoryview(b""), "empty", id="empty-memoryview"),
    # One byte that starts no signature.
    pytest.param(b"\x00", "unrecognised image format", id="one-zero-byte"),
    # Text.
    pytest.param(b"hello, this is not an image", SUPPORTED_TEXT, id="text"),
    # GIF is recognised by name and refused, listing what is supported.
    pytest.param(
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "GIF images are not supported", id="gif89a"
    ),
    pytest.param(b"GIF87a\x01\x00\x01\x00", SUPPORTED_TEXT, id="gif87a-lists-supported"),
    # HEIC, AVIF and PDF are named too.
    pytest.param(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "HEIC", id="heic"),
    pytest.param(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "AVIF", id="avif"),
    pytest.param(b"%PDF-1.7\n", "PDF", id="pdf"),
    # A RIFF file that is not WebP (WAV).
    pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt ", "unrecognised image format", id="riff-wav"),
    # Signature prefixes: truncated, named after the format they begin.
    pytest.param(b"\x89PN", "truncated PNG header", id="png-signature-prefix"),
    pytest.param(b"\xff\xd8", "truncated JPEG header", id="jpeg-soi-only"),
    pytest.param(b"RIFF\x00\x00", "truncated WebP header", id="riff-prefix"),
    # PNG: zero width, zero height.
    pytest.param(png(0, 10), "zero dimension (0x10)", id="png-zero-width"),
    pytest.param(png(10, 0), "zero dimension (10x0)", id="png-zero-height"),
    # PNG: IHDR with a wrong CRC.
    pytest.param(png(10, 10)[:29] + b"\x00\x00\x00\x00", "checksum", id="png-bad-crc"),
    # PNG: first chunk is not IHDR.
    pytest.param(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", bytes(13)),
        "not IHDR",
        id="png-first-chunk-not-ihdr",
    ),
    # PNG: IHDR of the wrong length.
    pytest.param(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", bytes(14)), "not 13", id="png-ihdr-wrong-length"
    ),
    # PNG: width beyond the spec's 2^31-1.
    pytest.param(png(2**31, 1), "exceed", id="png-width-over-limit"),
    # JPEG: height 0 (size given later by DNL, which libjpeg refuses).
    pytest.param(jpeg(jpeg_sof(10, 0)), "zero dimension", id="jpeg-zero-height-dnl"),
    # JPEG: scan data before any frame header.
    pytest.param(jpeg(jpeg_segment(0xDA, bytes(10))), "no frame header", id="jpeg-sos-first"),
    # JPEG: end of image before any frame header.
    pytest.param(b"\xff\xd8\xff\xd9", "no frame header", id="jpeg-eoi-first"),
    # JPEG: garbage where a marker should be.
    pytest.param(
        b"\xff\xd8" + JFIF_APP0 + b"\x00\x00" + jpeg_sof(1, 1),
        "expected a marker",
        id="jpeg-garbage-between-segments",
    ),
    # JPEG: a segment length below 2 would loop forever in a naive parser.
    pytest.param(b"\xff\xd8\xff\xe0\x00\x00", "less than 2", id="jpeg-segment-length-0"),
    # JPEG: a frame header too short to hold a size.
    pytest.param(jpeg(jpeg_segment(0xC0, bytes(3))), "too short", id="jpeg-short-sof"),
    # JPEG: a frame header whose length runs past the data.
    pytest.param(
        b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x10\x00\x10", "truncated", id="jpeg-sof-past-end"
    ),
    # JPEG: SOI repeated.
    pytest.param(b"\xff\xd8\xff\xd8" + jpeg_sof(1, 1), "repeated", id="jpeg-repeated-soi"),
    # JPEG: FF00 outside entropy-coded data.
    pytest.param(b"\xff\xd8\xff\x00" + jpeg_sof(1, 1), "stuffed", id="jpeg-ff00"),
    # JPEG: thousands of standalone markers hit the segment bound.
    pytest.param(
        b"\xff\xd8" + b"\xff\xd0" * 5000 + jpeg_sof(1, 1), "segments", id="jpeg-segment-bound"
    ),
    # JPEG: megabytes of fill bytes end in truncation, quickly.
    pytest.param(b"\xff\xd8" + b"\xff" * 8_000_000, "truncated", id="jpeg-8mb-fill-bytes"),
    # BMP: unknown DIB header size.
    pytest.param(
        bmp(12, 1, 1)[:14] + struct.pack("<I", 41) + bytes(40),
        "DIB header size 41",
        id="bmp-unknown-header-size",
    ),
    # BMP: negative width.
    pytest.param(bmp(40, -5, 5), "negative width", id="bmp-negative-width"),
    # BMP: zero width in either header.
    pytest.param(bmp(40, 0, 5), "zero dimension", id="bmp-zero-width"),
    pytest.param(bmp(12, 5, 0), "zero dimension", id="bmp-core-zero-height"),
    # TIFF: no ImageWidth tag.
    pytest.param(tiff([(257, 3, 1, 10)]), "lacks ImageWidth", id="tiff-no-width"),
    # TIFF: an empty first IFD.
    pytest.param(tiff([]), "lacks ImageWidth", id="tiff-empty-ifd"),
    # TIFF: ImageWidth of type BYTE.
    pytest.param(tiff([(256, 2, 1, 10), (257, 3, 1, 10)]), "SHORT or LONG", id="tiff-width-byte"),
    # TIFF: ImageWidth with two values.
    pytest.param(
        tiff([(256, 3, 2, 10), (257, 3, 1, 10)]), "SHORT or LONG", id="tiff-width-count-2"
    ),
    # TIFF: LONG8 is BigTIFF only.
    pytest.param(
        tiff([(256, 16, 1, 10), (257, 3, 1, 10)]), "SHORT or LONG", id="tiff-long8-in-classic"
    ),
    # TIFF: zero length.
    pytest.param(tiff([(256, 3, 1, 10), (257, 3, 1, 0)]), "zero dimension", id="tiff-zero"),
    # TIFF: first IFD offset points into the header.
    pytest.param(
        b"II*\x00\x00\x00\x00\x00" + bytes(20),
        "points into the file header",
        id="tiff-ifd-offset-0",
    ),
    # TIFF: first IFD offset far past the data.
    pytest.param(b"MM\x00*\xff\xff\xff\xf0" + bytes(20), "truncated", id="tiff-ifd-past-end"),
    # BigTIFF: an entry count of 2^64-1 is refused before any loop.
    pytest.param(
        b"II+\x00\x08\x00\x00\x00" + struct.pack("<Q", 16) + b"\xff" * 8,
        "implausible",
        id="bigtiff-huge-entry-count",
    ),
    # BigTIFF: bad offset byte size.
    pytest.param(
        b"II+\x00\x04\x00\x00\x00" + bytes(16), "bad BigTIFF header", id="bigtiff-bad-header"
    ),
    # WebP: unknown first chunk.
    pytest.param(webp(b"ALPH", bytes(10)), "unknown first chunk", id="webp-unknown-chunk"),
    # WebP: a VP8 interframe first.
    pytest.param(
        webp(b"VP8 ", vp8_key_frame(5, 5, key_frame=False)),
        "key frame",
        id="webp-vp8-not-key-frame",
    ),
    # WebP: VP8 start code wrong.
    pytest.param(
        webp(b"VP8 ", vp8_key_frame(5, 5)[:3] + b"\x00\x00\x00" + bytes(12)),
        "start code",
        id="webp-vp8-bad-start-code",
    ),
    # WebP: VP8 zero size.
    pytest.param(webp(b"VP8 ", vp8_key_frame(0, 5)), "zero dimension", id="webp-vp8-zero"),
    # WebP: VP8 chunk too short.
    pytest.param(webp(b"VP8 ", bytes(4)), "too short", id="webp-vp8-short-chunk"),
    # WebP: VP8L signature and version.
    pytest.param(webp(b"VP8L", vp8l(5, 5, signature=0x2E)), "signature", id="webp-vp8l-sig"),
    pytest.param(webp(b"VP8L", vp8l(5, 5, version=1)), "version", id="webp-vp8l-version"),
    # WebP: VP8X chunk too short.
    pytest.param(webp(b"VP8X", bytes(6)), "too short", id="webp-vp8x-short-chunk"),
]


@pytest.mark.parametrize(("data", "message"), CRAFTED_INVALID)
def test_invalid_input_raises_image_header_error(
    data: bytes | bytearray | memoryview, message: str
) -> None:
    with pytest.raises(ImageHeaderError) as excinfo:
        read_image_header(data)
    assert message in str(excinfo.value)


def test_fill_byte_flood_is_cheap() -> None:
    flood = b"\xff\xd8" + b"\xff" * 32_000_000
    with pytest.raises(ImageHeaderError, match="truncated JPEG"):
        read_image_header(flood)

    def read() -> None:
        with pytest.raises(ImageHeaderError):
            read_image_header(flood)

    # The 32 MB of fill bytes are skipped in place, never copied.
    assert _peak_allocation(read) < 1024 * 1024


def test_error_is_a_value_error() -> None:
    # Callers that already map ValueError to a 400 need no change.
    assert issubclass(ImageHeaderError, ValueError)


# --- real images encoded by OpenCV ---------------------------------------------------------

# (id, extension, imencode parameters, channels (0: 16-bit gray), expected format)
ENCODINGS = [
    ("jpeg", ".jpg", [], 3, ImageFormat.JPEG),
    ("jpeg-progressive", ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], 3, ImageFormat.JPEG),
    ("jpeg-gray", ".jpg", [], 1, ImageFormat.JPEG),
    ("png", ".png", [], 3, ImageFormat.PNG),
    ("png-gray-16bit", ".png", [], 0, ImageFormat.PNG),
    ("webp-lossy", ".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], 3, ImageFormat.WEBP),
    ("webp-lossless", ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], 3, ImageFormat.WEBP),
    ("webp-alpha", ".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], 4, ImageFormat.WEBP),
    ("bmp", ".bmp", [], 3, ImageFormat.BMP),
    ("bmp-gray", ".bmp", [], 1, ImageFormat.BMP),
    ("tiff", ".tiff", [], 3, ImageFormat.TIFF),
    ("tiff-gray", ".tiff", [], 1, ImageFormat.TIFF),
]
SIZES = [(1, 1), (37, 23), (640, 480)]  # width, height


def encode(extension: str, params: list[int], channels: int, width: int, height: int) -> bytes:
    """Random pixels (so nothing compresses away) encoded by OpenCV."""
    rng = np.random.default_rng(width * 1000 + height)
    if channels == 0:  # 16-bit single channel
        image = rng.integers(0, 65536, size=(height, width), dtype=np.uint16)
    elif channels == 1:
        image = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    else:
        image = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    ok, encoded = cv2.imencode(extension, image, params)
    assert ok
    return encoded.tobytes()


RealImage = tuple[str, bytes, ImageFormat, int, int]  # id, data, format, width, height


def real_images(sizes: Sequence[tuple[int, int]]) -> list[RealImage]:
    return [
        (
            f"{name}-{width}x{height}",
            encode(extension, params, channels, width, height),
            image_format,
            width,
            height,
        )
        for name, extension, params, channels, image_format in ENCODINGS
        for width, height in sizes
    ]


ALL_SIZES = real_images(SIZES)
SMALL_SIZES = real_images([size for size in SIZES if size[0] * size[1] < 10_000])
REAL_IMAGES = [pytest.param(*case[1:], id=case[0]) for case in ALL_SIZES]
SMALL_REAL_IMAGES = [pytest.param(*case[1:], id=case[0]) for case in SMALL_SIZES]


@pytest.mark.parametrize(("data", "image_format", "width", "height"), REAL_IMAGES)
def test_opencv_encoded_images(
    data: bytes, image_format: ImageFormat, width: int, height: int
) -> None:
    header = read_image_header(data)
    assert header == ImageHeader(image_format, width, height)
    assert header.pixels == width * height
    # The decoder agrees.
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None
    assert decoded.shape[:2] == (height, width)


@pytest.mark.parametrize(("data", "image_format", "width", "height"), REAL_IMAGES[:6])
def test_accepts_bytearray_and_memoryview(
    data: bytes, image_format: ImageFormat, width: int, height: int
) -> None:
    expected = ImageHeader(image_format, width, height)
    assert read_image_header(bytearray(data)) == expected
    assert read_image_header(memoryview(data)) == expected
    # A non-contiguous view (every other byte of an interleaved buffer).
    interleaved = np.zeros(2 * len(data), dtype=np.uint8)
    interleaved[::2] = np.frombuffer(data, dtype=np.uint8)
    assert read_image_header(interleaved.data[::2]) == expected
    # A view whose items are not bytes.
    padded = data + bytes(-len(data) % 4)
    assert read_image_header(memoryview(padded).cast("I")) == expected


def sample_photos() -> list[Any]:  # pytest.param values
    photos = sorted(SAMPLE_IMAGES.glob("*.png"))
    shared = sorted(SHARED_IMAGES.glob("*.jpg")) + sorted(SHARED_IMAGES.glob("coco/*.jpg"))[:20]
    cases = [pytest.param(path, id=path.name) for path in photos + shared]
    if not shared:
        # Missing photos are a skip (a failure under CI=true), not silently fewer cases.
        reason = f"no photos in {SHARED_IMAGES}: put the shared test photos at ../shared/images"
        cases.append(pytest.param(None, id="shared-photos", marks=pytest.mark.skip(reason=reason)))
    return cases


@pytest.mark.parametrize("path", sample_photos())
def test_real_photos_agree_with_decoder(path: Path) -> None:
    data = path.read_bytes()
    header = read_image_header(data)
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None
    assert decoded.shape[:2] == (header.height, header.width)


def test_sample_images_sizes() -> None:
    # The sizes stated in sample_images/README.md.
    expected = {"astronaut.png": (512, 512), "chelsea.png": (451, 300), "coffee.png": (600, 400)}
    for name, (width, height) in expected.items():
        header = read_image_header((SAMPLE_IMAGES / name).read_bytes())
        assert (header.format, header.width, header.height) == (ImageFormat.PNG, width, height)


# --- truncation: every prefix either raises ImageHeaderError or gives the full answer -------


def check_every_prefix(data: bytes, expected: ImageHeader) -> int:
    """Read every prefix; return the shortest one that parses. Shorter ones must all raise."""
    view = memoryview(data)
    first_ok = None
    for length in range(len(data) + 1):
        try:
            header = read_image_header(view[:length])
        except ImageHeaderError:
            assert first_ok is None, f"prefix {length} failed after prefix {first_ok} parsed"
            continue
        assert header == expected, f"prefix {length} gave {header}"
        if first_ok is None:
            first_ok = length
    assert first_ok is not None
    return first_ok


@pytest.mark.parametrize(("data", "image_format", "width", "height"), SMALL_REAL_IMAGES)
def test_every_truncation_of_real_images(
    data: bytes, image_format: ImageFormat, width: int, height: int
) -> None:
    check_every_prefix(data, ImageHeader(image_format, width, height))


@pytest.mark.parametrize(("data", "image_format", "width", "height"), CRAFTED_VALID)
def test_every_truncation_of_crafted_headers(
    data: bytes, image_format: ImageFormat, width: int, height: int
) -> None:
    first_ok = check_every_prefix(data, ImageHeader(image_format, width, height))
    assert first_ok > 0


def test_png_needs_the_whole_ihdr_chunk() -> None:
    # Signature (8) + IHDR length, type, data, CRC (4 + 4 + 13 + 4).
    assert check_every_prefix(PNG_BOMB, read_image_header(PNG_BOMB)) == 33


# --- fuzzing: nothing but ImageHeaderError, ever -------------------------------------------

SIGNATURES = [
    b"",
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00\x08\x00\x00\x00",
    b"MM\x00+\x00\x08\x00\x00",
]


def assert_only_header_errors(data: bytes) -> None:
    try:
        header = read_image_header(data)
    except ImageHeaderError as error:
        message = str(error)
    else:
        assert header.width > 0
        assert header.height > 0
        assert isinstance(header.format, ImageFormat)
        return
    assert message  # every refusal says why


@pytest.mark.parametrize("signature", SIGNATURES, ids=lambda s: repr(s[:8]))
def test_random_bytes_after_signature(signature: bytes) -> None:
    rng = random.Random(f"image-header-{signature!r}")
    for _ in range(3000):
        tail = rng.randbytes(rng.randrange(0, 80))
        assert_only_header_errors(signature + tail)


def test_random_mutations_of_valid_headers() -> None:
    rng = random.Random(20240601)
    seeds = [p.values[0] for p in CRAFTED_VALID] + [case[1] for case in SMALL_SIZES]
    for seed in seeds:
        assert isinstance(seed, bytes)
        head = bytearray(seed[:256])
        for _ in range(1000):
            mutated = bytearray(head)
            for _ in range(rng.randrange(1, 4)):
                position = rng.randrange(len(mutated))
                mutated[position] = rng.randrange(256)
            assert_only_header_errors(bytes(mutated[: rng.randrange(len(mutated) + 1)]))


# --- the module itself ---------------------------------------------------------------------


def test_module_uses_only_the_standard_library() -> None:
    # The point is to look at a header without any decoder: no cv2, no numpy.
    tree = ast.parse(Path(image_header.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "collections", "dataclasses", "enum", "struct", "zlib"}


def test_image_format_values_and_header_type() -> None:
    assert [f.value for f in ImageFormat] == ["jpeg", "png", "webp", "bmp", "tiff"]
    assert ImageFormat("webp") is ImageFormat.WEBP
    header = ImageHeader(ImageFormat.PNG, 3, 4)
    assert header.pixels == 12
    with pytest.raises(AttributeError):
        header.width = 5  # type: ignore[misc]
