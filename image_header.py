"""Read an encoded image's pixel dimensions from its header, without decoding it.

The server calls :func:`read_image_header` before ``cv2.imdecode`` so that it can refuse a
decompression bomb (say an 875 KB PNG that declares 30000x30000 pixels: 5 GB and 16 s to decode)
while it is still a few bytes of header. Only the standard library is used, and only the first
bytes of the data are looked at; nothing is decompressed.

Supported: JPEG, PNG, WebP (lossy, lossless and extended), BMP (Windows and OS/2 headers) and
TIFF (classic and BigTIFF, first IFD). Any malformed input raises :class:`ImageHeaderError`,
never ``IndexError``/``struct.error``, so the caller needs exactly one ``except`` to turn it
into a 400 response.

The parsers are deliberately at least as strict as the decoders behind OpenCV (libjpeg, libpng,
libwebp, libtiff and OpenCV's own BMP reader): input read here as some size is either decoded at
that size or refused by the decoder, so the check cannot be dodged by a header that this module
and the decoder read differently.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ImageFormat", "ImageHeader", "ImageHeaderError", "read_image_header"]


class ImageFormat(StrEnum):
    """The encodings whose header this module can read."""

    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    BMP = "bmp"
    TIFF = "tiff"

    @property
    def display_name(self) -> str:
        """The format's usual spelling, for messages shown to users."""
        return _DISPLAY_NAMES[self]


_DISPLAY_NAMES = {
    ImageFormat.JPEG: "JPEG",
    ImageFormat.PNG: "PNG",
    ImageFormat.WEBP: "WebP",
    ImageFormat.BMP: "BMP",
    ImageFormat.TIFF: "TIFF",
}
SUPPORTED_FORMATS_TEXT = ", ".join(_DISPLAY_NAMES.values())


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header declares: its encoding and its size in pixels.

    The size is as stored. ``cv2.imdecode`` may swap width and height afterwards to honour an
    EXIF orientation tag; the pixel count, which is what the bomb check needs, is the same.
    """

    format: ImageFormat
    width: int
    height: int

    @property
    def pixels(self) -> int:
        """Width times height: what decoding will allocate, per channel."""
        return self.width * self.height


class ImageHeaderError(ValueError):
    """The data is not a readable header of a supported image; the message is user-presentable."""


# --- helpers -------------------------------------------------------------------------------

_U8 = struct.Struct("B")
_U16BE = struct.Struct(">H")
_U16LE = struct.Struct("<H")
_U32BE = struct.Struct(">I")
_U32LE = struct.Struct("<I")
_I32LE = struct.Struct("<i")


def _read(fmt: struct.Struct, buf: memoryview, offset: int, image_format: ImageFormat) -> int:
    """One unsigned/signed integer at ``offset``, or ImageHeaderError if the data ends first."""
    if offset < 0 or offset + fmt.size > len(buf):
        raise ImageHeaderError(f"truncated {image_format.display_name} header")
    value: int = fmt.unpack_from(buf, offset)[0]
    return value


def _corrupt(image_format: ImageFormat, why: str) -> ImageHeaderError:
    return ImageHeaderError(f"corrupt {image_format.display_name} header: {why}")


def _as_byte_view(data: bytes | bytearray | memoryview) -> memoryview:
    """A flat unsigned-byte view of ``data``; no copy unless it is a non-contiguous memoryview."""
    view = memoryview(data)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


# --- PNG -----------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# IHDR payload: width, height (u32 big-endian), bit depth, colour type, compression, filter,
# interlace (one byte each).
_PNG_IHDR_LENGTH = 13
_PNG_MAX_DIMENSION = 2**31 - 1  # PNG spec, section 11.2.2; libpng refuses larger.


def _read_png(buf: memoryview) -> ImageHeader:
    fmt = ImageFormat.PNG
    # Signature (8), then the first chunk, which must be IHDR: length (4), type (4), data (13),
    # CRC (4).
    length = _read(_U32BE, buf, 8, fmt)
    if len(buf) < 16:
        raise ImageHeaderError("truncated PNG header")
    if bytes(buf[12:16]) != b"IHDR":
        raise _corrupt(fmt, "the first chunk is not IHDR")
    if length != _PNG_IHDR_LENGTH:
        raise _corrupt(fmt, f"IHDR chunk is {length} bytes, not {_PNG_IHDR_LENGTH}")
    crc = _read(_U32BE, buf, 16 + _PNG_IHDR_LENGTH, fmt)
    # libpng refuses an IHDR whose CRC is wrong; say so now rather than after the size check.
    if zlib.crc32(buf[12 : 16 + _PNG_IHDR_LENGTH]) != crc:
        raise _corrupt(fmt, "IHDR checksum mismatch")
    width = _read(_U32BE, buf, 16, fmt)
    height = _read(_U32BE, buf, 20, fmt)
    if width > _PNG_MAX_DIMENSION or height > _PNG_MAX_DIMENSION:
        raise _corrupt(fmt, f"dimensions {width}x{height} exceed the PNG limit of 2^31-1")
    return ImageHeader(fmt, width, height)


# --- JPEG ----------------------------------------------------------------------------------

# Start-of-frame markers carry the frame size. C4 (DHT), C8 (JPG, reserved) and CC (DAC) share
# the range but are not frame headers.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and RST0..RST7.
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_SOI, _JPEG_EOI, _JPEG_SOS = 0xD8, 0xD9, 0xDA
# Real files have a dozen or so segments before the frame header (APPn, COM, DQT, DHT, DRI),
# a few hundred at most with a chunked ICC profile or XMP. The bound keeps hostile input cheap.
_JPEG_MAX_SEGMENTS = 4096
# SOF payload: precision (1), height (2), width (2), component count (1), then 3 per component.
_JPEG_SOF_MIN_LENGTH = 2 + 6


def _skip_jpeg_fill_bytes(buf: memoryview, pos: int) -> int:
    """Position of the first byte at or after ``pos`` that is not the 0xFF fill byte."""
    # A marker may be preceded by any number of 0xFF fill bytes; strip them in C-sized chunks
    # so that megabytes of 0xFF cost milliseconds, not a Python loop per byte.
    while pos < len(buf):
        chunk = bytes(buf[pos : pos + 65536])
        rest = chunk.lstrip(b"\xff")
        pos += len(chunk) - len(rest)
        if rest:
            break
    return pos


def _read_jpeg(buf: memoryview) -> ImageHeader:
    fmt = ImageFormat.JPEG
    pos = 2  # after SOI (FF D8)
    for _ in range(_JPEG_MAX_SEGMENTS):
        if pos >= len(buf):
            raise ImageHeaderError("truncated JPEG header")
        if buf[pos] != 0xFF:
            raise _corrupt(fmt, f"expected a marker at byte {pos}")
        pos = _skip_jpeg_fill_bytes(buf, pos)
        if pos >= len(buf):
            raise ImageHeaderError("truncated JPEG header")
        marker = buf[pos]
        pos += 1
        if marker in _JPEG_STANDALONE_MARKERS:
            continue
        if marker == 0x00:
            raise _corrupt(fmt, "stuffed zero byte outside entropy-coded data")
        if marker == _JPEG_SOI:
            raise _corrupt(fmt, "repeated start-of-image marker")
        if marker in (_JPEG_EOI, _JPEG_SOS):
            raise _corrupt(fmt, "no frame header before the image data")
        length = _read(_U16BE, buf, pos, fmt)  # counts itself, not the marker
        if length < 2:
            raise _corrupt(fmt, f"segment length {length} is less than 2")
        if marker in _JPEG_SOF_MARKERS:
            if length < _JPEG_SOF_MIN_LENGTH:
                raise _corrupt(fmt, f"frame header length {length} is too short")
            if pos + length > len(buf):
                raise ImageHeaderError("truncated JPEG header")
            height = _read(_U16BE, buf, pos + 3, fmt)
            width = _read(_U16BE, buf, pos + 5, fmt)
            # Height 0 means "given later by a DNL marker", which libjpeg does not support.
            return ImageHeader(fmt, width, height)
        pos += length
    raise _corrupt(fmt, f"no frame header within the first {_JPEG_MAX_SEGMENTS} segments")


# --- WebP ----------------------------------------------------------------------------------

_VP8_START_CODE = b"\x9d\x01\x2a"
_VP8L_SIGNATURE = 0x2F


def _read_webp(buf: memoryview) -> ImageHeader:
    fmt = ImageFormat.WEBP
    # RIFF header (12): "RIFF", size (u32 LE), "WEBP"; then the first chunk: FourCC (4),
    # size (u32 LE), payload from byte 20.
    if len(buf) < 16:
        raise ImageHeaderError("truncated WebP header")
    fourcc = bytes(buf[12:16])
    chunk_size = _read(_U32LE, buf, 16, fmt)
    if fourcc == b"VP8 ":
        # Lossy: 3-byte frame tag (bit 0 clear on a key frame), start code, then 14-bit width
        # and height, each with a 2-bit scale on top.
        if chunk_size < 10:
            raise _corrupt(fmt, "VP8 chunk is too short")
        frame_tag = _read(_U8, buf, 20, fmt)
        if len(buf) < 26:
            raise ImageHeaderError("truncated WebP header")
        if frame_tag & 1:
            raise _corrupt(fmt, "the first VP8 frame is not a key frame")
        if bytes(buf[23:26]) != _VP8_START_CODE:
            raise _corrupt(fmt, "bad VP8 start code")
        width = _read(_U16LE, buf, 26, fmt) & 0x3FFF
        height = _read(_U16LE, buf, 28, fmt) & 0x3FFF
        return ImageHeader(fmt, width, height)
    if fourcc == b"VP8L":
        # Lossless: signature byte, then 14 bits width-1, 14 bits height-1, 1 bit alpha,
        # 3 bits version (must be 0), little-endian.
        if chunk_size < 5:
            raise _corrupt(fmt, "VP8L chunk is too short")
        if _read(_U8, buf, 20, fmt) != _VP8L_SIGNATURE:
            raise _corrupt(fmt, "bad VP8L signature")
        bits = _read(_U32LE, buf, 21, fmt)
        if bits >> 29:
            raise _corrupt(fmt, "unknown VP8L version")
        return ImageHeader(fmt, (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if fourcc == b"VP8X":
        # Extended: flags (1), reserved (3), canvas width-1 and height-1 as 24-bit LE.
        if chunk_size < 10:
            raise _corrupt(fmt, "VP8X chunk is too short")
        if len(buf) < 30:
            raise ImageHeaderError("truncated WebP header")
        width = int.from_bytes(buf[24:27], "little") + 1
        height = int.from_bytes(buf[27:30], "little") + 1
        return ImageHeader(fmt, width, height)
    raise _corrupt(fmt, f"unknown first chunk {fourcc!r}")


# --- BMP -----------------------------------------------------------------------------------

_BMP_CORE_HEADER_SIZE = 12  # BITMAPCOREHEADER (OS/2 1.x): u16 width and height
# BITMAPINFOHEADER (40) and its successors V2 (52), V3 (56), V4 (108), V5 (124), and the OS/2
# 2.x header (16 or 64): i32 width and height at the same place.
_BMP_INFO_HEADER_SIZES = frozenset({16, 40, 52, 56, 64, 108, 124})


def _read_bmp(buf: memoryview) -> ImageHeader:
    fmt = ImageFormat.BMP
    # File header (14): "BM", file size, reserved, pixel-data offset; then the DIB header,
    # which starts with its own size.
    header_size = _read(_U32LE, buf, 14, fmt)
    if header_size == _BMP_CORE_HEADER_SIZE:
        width = _read(_U16LE, buf, 18, fmt)
        height = _read(_U16LE, buf, 20, fmt)
        return ImageHeader(fmt, width, height)
    if header_size in _BMP_INFO_HEADER_SIZES:
        width = _read(_I32LE, buf, 18, fmt)
        height = _read(_I32LE, buf, 22, fmt)
        if width < 0:
            raise _corrupt(fmt, f"negative width {width}")
        # A negative height means the rows are stored top-down; the size is its magnitude.
        return ImageHeader(fmt, width, abs(height))
    raise _corrupt(fmt, f"unknown DIB header size {header_size}")


# --- TIFF ----------------------------------------------------------------------------------

_TIFF_IMAGE_WIDTH = 256
_TIFF_IMAGE_LENGTH = 257
_TIFF_SHORT, _TIFF_LONG, _TIFF_LONG8 = 3, 4, 16
# A real first IFD has a few dozen entries; the bound keeps hostile input cheap.
_TIFF_MAX_ENTRIES = 4096


def _read_tiff(buf: memoryview) -> ImageHeader:
    fmt = ImageFormat.TIFF
    order = "<" if bytes(buf[:2]) == b"II" else ">"
    u16 = struct.Struct(order + "H")
    u32 = struct.Struct(order + "I")
    u64 = struct.Struct(order + "Q")
    big = _read(u16, buf, 2, fmt) == 43  # 42: classic TIFF, 43: BigTIFF
    if big:
        # BigTIFF: byte size of offsets (8), reserved (0), first IFD offset (u64).
        if _read(u16, buf, 4, fmt) != 8 or _read(u16, buf, 6, fmt) != 0:
            raise _corrupt(fmt, "bad BigTIFF header")
        header_size, ifd_offset = 16, _read(u64, buf, 8, fmt)
        count_struct, entry_size, value_offset = u64, 20, 12
        value_types = {_TIFF_SHORT: u16, _TIFF_LONG: u32, _TIFF_LONG8: u64}
    else:
        header_size, ifd_offset = 8, _read(u32, buf, 4, fmt)
        count_struct, entry_size, value_offset = u16, 12, 8
        value_types = {_TIFF_SHORT: u16, _TIFF_LONG: u32}
    if ifd_offset < header_size:
        raise _corrupt(fmt, f"first IFD offset {ifd_offset} points into the file header")
    count = _read(count_struct, buf, ifd_offset, fmt)
    if count > _TIFF_MAX_ENTRIES:
        raise _corrupt(fmt, f"implausible IFD entry count {count}")
    found: dict[int, int] = {}
    entry = ifd_offset + count_struct.size
    for _ in range(count):
        tag = _read(u16, buf, entry, fmt)
        if tag in (_TIFF_IMAGE_WIDTH, _TIFF_IMAGE_LENGTH) and tag not in found:
            value_type = _read(u16, buf, entry + 2, fmt)
            value_count = _read(count_struct if big else u32, buf, entry + 4, fmt)
            value_struct = value_types.get(value_type)
            if value_struct is None or value_count != 1:
                raise _corrupt(fmt, f"tag {tag} is not a single SHORT or LONG")
            # A single value sits left-justified in the entry's value field.
            found[tag] = _read(value_struct, buf, entry + value_offset, fmt)
            if len(found) == 2:
                return ImageHeader(fmt, found[_TIFF_IMAGE_WIDTH], found[_TIFF_IMAGE_LENGTH])
        entry += entry_size
    raise _corrupt(fmt, "the first IFD lacks ImageWidth or ImageLength")


# --- dispatch ------------------------------------------------------------------------------

_Reader = Callable[[memoryview], ImageHeader]
# (signature at byte 0, format, reader); WebP also needs "WEBP" at byte 8, checked below.
_SIGNATURES: tuple[tuple[bytes, ImageFormat, _Reader], ...] = (
    (b"\xff\xd8\xff", ImageFormat.JPEG, _read_jpeg),
    (_PNG_SIGNATURE, ImageFormat.PNG, _read_png),
    (b"RIFF", ImageFormat.WEBP, _read_webp),
    (b"BM", ImageFormat.BMP, _read_bmp),
    (b"II*\x00", ImageFormat.TIFF, _read_tiff),
    (b"MM\x00*", ImageFormat.TIFF, _read_tiff),
    (b"II+\x00", ImageFormat.TIFF, _read_tiff),
    (b"MM\x00+", ImageFormat.TIFF, _read_tiff),
)
# Formats people commonly try, named in the refusal so that it says more than "unsupported".
_KNOWN_UNSUPPORTED: tuple[tuple[int, bytes, str], ...] = (
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (4, b"ftypavif", "AVIF"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (0, b"%PDF-", "PDF"),
)


def _unsupported(buf: memoryview) -> ImageHeaderError:
    head = bytes(buf[:16])
    for offset, magic, name in _KNOWN_UNSUPPORTED:
        if head[offset : offset + len(magic)] == magic:
            return ImageHeaderError(
                f"{name} images are not supported; supported formats: {SUPPORTED_FORMATS_TEXT}"
            )
    return ImageHeaderError(
        f"unrecognised image format; supported formats: {SUPPORTED_FORMATS_TEXT}"
    )


def read_image_header(data: bytes | bytearray | memoryview) -> ImageHeader:
    """Read the format and pixel size that an encoded image declares, without decoding it.

    Raises ImageHeaderError, with a message fit to show the client, if the data is empty, not
    one of the supported formats (the message lists them), truncated or corrupt before the size
    is known, or declares a zero width or height. Never raises anything else for bytes-like
    input (a non-bytes-like argument is a programming error and raises TypeError).
    """
    buf = _as_byte_view(data)
    if not buf:
        raise ImageHeaderError("the image data is empty")
    head = bytes(buf[:12])
    for signature, image_format, reader in _SIGNATURES:
        if len(head) < len(signature):
            if signature.startswith(head):
                raise ImageHeaderError(f"truncated {image_format.display_name} header")
            continue
        if not head.startswith(signature):
            continue
        if image_format is ImageFormat.WEBP:
            if len(head) < 12:
                raise ImageHeaderError("truncated WebP header")
            if head[8:12] != b"WEBP":
                continue  # some other RIFF file (WAV, AVI)
        header = reader(buf)
        if header.width <= 0 or header.height <= 0:
            raise ImageHeaderError(
                f"the {image_format.display_name} header declares a zero dimension "
                f"({header.width}x{header.height})"
            )
        return header
    raise _unsupported(buf)
