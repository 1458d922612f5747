"""EXIF metadata of an uploaded photo, read with Pillow from the header only (the pixels are
decoded once, elsewhere, by OpenCV), and the GPS position removed from a stored file.

Reading never fails: a malformed or oversized EXIF block leaves the fields None and says why
in `ExifInfo.error` (capped in length). Pillow is imported on first use, so a worker that
never stores an image never loads it.
"""

from __future__ import annotations

import math
import struct
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from typing import Any, Final

from image_header import ImageFormat

# The largest EXIF block read (a JPEG APP1 segment holds at most 64 KiB; PNG and WebP allow
# more, which no camera writes).
MAX_EXIF_BYTES: Final = 64 * 1024
MAX_TEXT_CHARS: Final = 128
MAX_REASON_CHARS: Final = 200
EXIF_PREFIX: Final = b"Exif\x00\x00"

# Tags (EXIF 2.32): IFD0, the Exif sub-IFD, the GPS sub-IFD.
TAG_MAKE, TAG_MODEL, TAG_ORIENTATION = 0x010F, 0x0110, 0x0112
TAG_EXIF_IFD, TAG_GPS_IFD = 0x8769, 0x8825
TAG_EXPOSURE, TAG_FNUMBER, TAG_ISO = 0x829A, 0x829D, 0x8827
TAG_DATETIME_ORIGINAL, TAG_OFFSET_ORIGINAL = 0x9003, 0x9011
TAG_FOCAL_LENGTH, TAG_LENS_MODEL = 0x920A, 0xA434
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON, GPS_ALT_REF, GPS_ALT = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class ExifInfo:
    """What the EXIF block says; None for anything absent or unreadable."""

    taken_at: datetime | None = None  # aware when the offset is known, naive local otherwise
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    iso: int | None = None
    f_number: float | None = None
    exposure_s: float | None = None
    focal_length_mm: float | None = None
    orientation: int | None = None
    gps_latitude: float | None = None
    gps_longitude: float | None = None
    gps_altitude_m: float | None = None
    # Why fields are missing although the file has an EXIF block; None when all was read.
    error: str | None = None
    # Whether the file carries an EXIF block at all (and so may carry a GPS position).
    present: bool = False

    @property
    def has_gps(self) -> bool:
        return self.gps_latitude is not None or self.gps_longitude is not None

    def without_gps(self) -> ExifInfo:
        return replace(self, gps_latitude=None, gps_longitude=None, gps_altitude_m=None)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    cleaned = "".join(ch for ch in value.replace("\x00", " ") if ch.isprintable()).strip()
    return cleaned[:MAX_TEXT_CHARS] or None


def _number(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) and low <= number <= high else None


def _taken_at(raw: Any, offset: Any) -> datetime | None:
    text = _text(raw)
    if text is None:
        return None
    try:
        local = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset_text = _text(offset)
    if offset_text and len(offset_text) == 6 and offset_text[0] in "+-":
        try:
            hours, minutes = int(offset_text[1:3]), int(offset_text[4:6])
        except ValueError:
            return local
        delta = timedelta(hours=hours, minutes=minutes)
        if delta <= timedelta(hours=14):
            return local.replace(tzinfo=timezone(-delta if offset_text[0] == "-" else delta))
    return local


def _degrees(value: Any, reference: Any, negative: str) -> float | None:
    if not isinstance(value, tuple) or len(value) != 3:
        return None
    parts = [_number(part, 0, 360) for part in value]
    if any(part is None for part in parts):
        return None
    degrees, minutes, seconds = (float(p) for p in parts)  # type: ignore[arg-type]
    result = degrees + minutes / 60 + seconds / 3600
    ref = _text(reference)
    return -result if ref is not None and ref.upper().startswith(negative) else result


def _from_tags(
    ifd0: Mapping[int, Any], exif: Mapping[int, Any], gps: Mapping[int, Any]
) -> ExifInfo:
    latitude = _degrees(gps.get(GPS_LAT), gps.get(GPS_LAT_REF), "S")
    longitude = _degrees(gps.get(GPS_LON), gps.get(GPS_LON_REF), "W")
    altitude = _number(gps.get(GPS_ALT), 0, 100_000)
    if altitude is not None and gps.get(GPS_ALT_REF) in (1, b"\x01"):
        altitude = -altitude
    orientation = ifd0.get(TAG_ORIENTATION)
    iso = _number(exif.get(TAG_ISO), 1, 10_000_000)
    return ExifInfo(
        taken_at=_taken_at(exif.get(TAG_DATETIME_ORIGINAL), exif.get(TAG_OFFSET_ORIGINAL)),
        camera_make=_text(ifd0.get(TAG_MAKE)),
        camera_model=_text(ifd0.get(TAG_MODEL)),
        lens=_text(exif.get(TAG_LENS_MODEL)),
        iso=int(iso) if iso is not None else None,
        f_number=_number(exif.get(TAG_FNUMBER), 0.1, 1000),
        exposure_s=_number(exif.get(TAG_EXPOSURE), 0, 100_000),
        focal_length_mm=_number(exif.get(TAG_FOCAL_LENGTH), 0.1, 100_000),
        orientation=orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
        gps_latitude=latitude if latitude is not None and abs(latitude) <= 90 else None,
        gps_longitude=longitude if longitude is not None and abs(longitude) <= 180 else None,
        gps_altitude_m=altitude if latitude is not None else None,
        present=True,
    )


def _reason(text: str) -> str:
    return text[:MAX_REASON_CHARS]


def _open(data: bytes) -> Any:
    from PIL import Image

    with warnings.catch_warnings():
        # The caller has checked the pixel count from the header against its own limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(BytesIO(data))


def read_exif(data: bytes) -> ExifInfo:
    """The EXIF fields of an encoded image (JPEG, PNG or WebP), from its header only."""
    try:
        image = _open(data)
        raw = image.info.get("exif")
        if not raw:
            return ExifInfo()
        if len(raw) > MAX_EXIF_BYTES:
            return ExifInfo(
                error=_reason(f"EXIF block of {len(raw)} bytes is over {MAX_EXIF_BYTES}"),
                present=True,
            )
        tags = image.getexif()
        return _from_tags(
            dict(tags), dict(tags.get_ifd(TAG_EXIF_IFD)), dict(tags.get_ifd(TAG_GPS_IFD))
        )
    except Exception as exc:  # a malformed block must never fail the upload
        return ExifInfo(
            error=_reason(f"EXIF not readable: {type(exc).__name__}: {exc}"), present=True
        )


# --- GPS_POLICY=strip: the stored file without the GPS position


def strip_gps(data: bytes, image_format: ImageFormat) -> bytes:
    """`data` with the GPS sub-IFD removed from its EXIF block and everything else kept (the
    orientation too), the pixels untouched. An EXIF block that cannot be rewritten is removed
    whole. Files without EXIF come back as they are."""
    splice = _SPLICERS.get(image_format)
    if splice is None:
        return data
    try:
        image = _open(data)
        raw = image.info.get("exif")
        if not raw:
            return data
        rewritten: bytes | None = None
        if len(raw) <= MAX_EXIF_BYTES:
            tags = image.getexif()
            tags.get_ifd(TAG_EXIF_IFD)  # loaded, so that tobytes() writes it back
            if TAG_GPS_IFD not in tags:
                return data
            del tags[TAG_GPS_IFD]
            rewritten = tags.tobytes()
    except Exception:  # unreadable: the block goes whole
        rewritten = None
    if rewritten is not None and rewritten.startswith(EXIF_PREFIX):
        rewritten = rewritten[len(EXIF_PREFIX) :]
    return splice(data, rewritten)


def _splice_jpeg(data: bytes, tiff: bytes | None) -> bytes:
    """Replace (or drop, when `tiff` is None) every APP1 Exif segment before the scan."""
    out = bytearray(data[:2])
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            out.append(0xFF)
            pos += 1
            continue
        if marker == 0xDA or 0xD0 <= marker <= 0xD9 or marker == 0x01:
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segment = data[pos : pos + 2 + length]
        if marker == 0xE1 and segment[4:10] == EXIF_PREFIX:
            if tiff is not None and len(tiff) + 8 <= 0xFFFF:
                payload = EXIF_PREFIX + tiff
                out += b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
                tiff = None  # one Exif segment is written back, any further one dropped
        else:
            out += segment
        pos += 2 + length
    return bytes(out + data[pos:])


def _splice_png(data: bytes, tiff: bytes | None) -> bytes:
    out = bytearray(data[:8])
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if kind == b"eXIf":
            if tiff is not None:
                crc = zlib.crc32(b"eXIf" + tiff)
                out += struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", crc)
        else:
            out += data[pos:end]
        pos = end
    return bytes(out + data[pos:])


def _splice_webp(data: bytes, tiff: bytes | None) -> bytes:
    out = bytearray()
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        end = pos + 8 + length + (length & 1)
        if kind == b"EXIF":
            if tiff is not None:
                out += b"EXIF" + struct.pack("<I", len(tiff)) + tiff + b"\x00" * (len(tiff) & 1)
        else:
            out += data[pos:end]
        pos = end
    body = b"WEBP" + bytes(out)
    if tiff is None and body[4:8] == b"VP8X":
        flags = body[12] & ~0x08  # the VP8X "has EXIF" flag
        body = body[:12] + bytes([flags]) + body[13:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


_SPLICERS: Final[Mapping[ImageFormat, Callable[[bytes, bytes | None], bytes]]] = {
    ImageFormat.JPEG: _splice_jpeg,
    ImageFormat.PNG: _splice_png,
    ImageFormat.WEBP: _splice_webp,
}


def as_utc(taken_at: datetime | None) -> tuple[datetime | None, int | None]:
    """(UTC time, offset in minutes) to store: a naive local time is stored as if UTC."""
    if taken_at is None:
        return None, None
    if taken_at.tzinfo is None:
        return taken_at.replace(tzinfo=UTC), None
    offset = taken_at.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else None
    return taken_at.astimezone(UTC), minutes
