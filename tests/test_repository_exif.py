"""EXIF on upload: the fields read from real and synthetic photos, GPS_POLICY store, hide and
strip, and a synthetic corpus of malformed and oversized EXIF blocks that must never fail an
upload (made here, in memory: no binary test files are committed)."""

from __future__ import annotations

import io
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from config import ServiceConfig
from image_header import ImageFormat
from repository.exif import read_exif, strip_gps
from serve_http import create_app
from tests.helpers import FakeDetector
from tests.repo_support import ALICE_AUTH, BufferedClient


def exif_block() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS 5D"
    exif[0x0112] = 6
    exif.get_ifd(0x8769).update(
        {
            0x9003: "2021:05:01 12:34:56",
            0x9011: "+02:00",
            0x829D: IFDRational(28, 10),
            0x829A: IFDRational(1, 250),
            0x8827: 400,
            0x920A: IFDRational(50, 1),
            0xA434: "EF50mm f/1.8",
        }
    )
    exif.get_ifd(0x8825).update(
        {
            1: "N",
            2: (IFDRational(48, 1), IFDRational(51, 1), IFDRational(2442, 100)),
            3: "W",
            4: (IFDRational(2, 1), IFDRational(21, 1), IFDRational(784, 100)),
            6: IFDRational(35, 1),
        }
    )
    return exif


def photo(
    fmt: str = "JPEG", exif: Image.Exif | bytes | None = None, size: tuple[int, int] = (64, 48)
) -> bytes:
    image = Image.new("RGB", size, (180, 40, 40))
    buffer = io.BytesIO()
    if exif is None:
        image.save(buffer, fmt)
    else:
        image.save(buffer, fmt, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_fields_are_read(fmt: str) -> None:
    info = read_exif(photo(fmt, exif_block()))
    assert info.error is None
    assert (info.camera_make, info.camera_model, info.lens) == ("Canon", "EOS 5D", "EF50mm f/1.8")
    assert (info.iso, info.f_number, info.exposure_s, info.focal_length_mm) == (
        400,
        2.8,
        0.004,
        50.0,
    )
    assert info.orientation == 6
    assert info.taken_at is not None
    assert info.taken_at.isoformat() == "2021-05-01T12:34:56+02:00"
    assert info.gps_latitude == pytest.approx(48.85678, abs=1e-5)
    assert info.gps_longitude == pytest.approx(-2.35218, abs=1e-5)  # W is negative
    assert info.gps_altitude_m == 35.0


@pytest.mark.parametrize(
    "fmt",
    [
        pytest.param(ImageFormat.JPEG, id="jpeg"),
        pytest.param(ImageFormat.PNG, id="png"),
        pytest.param(ImageFormat.WEBP, id="webp"),
    ],
)
def test_strip_removes_gps_and_keeps_the_rest(fmt: ImageFormat) -> None:
    original = photo(fmt.value.upper(), exif_block())
    stripped = strip_gps(original, fmt)
    info = read_exif(stripped)
    assert info.gps_latitude is None
    assert info.gps_longitude is None
    assert info.orientation == 6
    assert info.camera_model == "EOS 5D"
    assert info.taken_at is not None
    decoded = Image.open(io.BytesIO(stripped))
    decoded.load()  # the pixels are still there and decodable
    assert decoded.size == (64, 48)
    assert strip_gps(photo(fmt.value.upper()), fmt) == photo(fmt.value.upper())  # no EXIF: as is


def _jpeg_with_app1(payload: bytes) -> bytes:
    """A real JPEG with an APP1 Exif segment holding `payload` (after the Exif prefix)."""
    base = photo("JPEG")
    segment = b"Exif\x00\x00" + payload
    return base[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + base[2:]


def _tiff(entries: list[tuple[int, int, int, bytes]], next_ifd: int = 0, offset: int = 8) -> bytes:
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")[:4]
    return b"II*\x00" + struct.pack("<I", offset) + body + struct.pack("<I", next_ifd)


def _png_with_exif(raw: bytes) -> bytes:
    import zlib

    base = photo("PNG")
    chunk = (
        struct.pack(">I", len(raw)) + b"eXIf" + raw + struct.pack(">I", zlib.crc32(b"eXIf" + raw))
    )
    return base[:33] + chunk + base[33:]


# Each case: a photo whose EXIF block is broken in one way. None of them may fail the upload.
MALFORMED = [
    pytest.param(_jpeg_with_app1(b""), id="empty-exif"),
    pytest.param(_jpeg_with_app1(b"II*\x00"), id="truncated-tiff-header"),
    pytest.param(_jpeg_with_app1(b"XX*\x00\x08\x00\x00\x00"), id="bad-byte-order"),
    pytest.param(_jpeg_with_app1(b"II*\x00\xff\xff\xff\x7f"), id="ifd-offset-past-end"),
    pytest.param(_jpeg_with_app1(b"II*\x00\x08\x00\x00\x00\xff\xff"), id="entry-count-huge"),
    pytest.param(
        _jpeg_with_app1(_tiff([(0x8769, 4, 1, struct.pack("<I", 8))])), id="exif-ifd-loops"
    ),
    pytest.param(_jpeg_with_app1(_tiff([], next_ifd=8)), id="next-ifd-loops"),
    pytest.param(
        _jpeg_with_app1(_tiff([(0x8825, 4, 1, struct.pack("<I", 99999))])), id="gps-ifd-nowhere"
    ),
    pytest.param(
        _jpeg_with_app1(_tiff([(0x0110, 2, 1 << 30, struct.pack("<I", 26))])),
        id="string-count-huge",
    ),
    pytest.param(
        _jpeg_with_app1(_tiff([(0x0112, 3, 1, struct.pack("<H", 99))])),
        id="orientation-out-of-range",
    ),
    pytest.param(_jpeg_with_app1(_tiff([(0x010F, 2, 4, b"\xff\xfe\x00\x00")])), id="make-not-utf8"),
    pytest.param(_jpeg_with_app1(_tiff([(0x0112, 99, 1, b"\x01\x00")])), id="unknown-type"),
    pytest.param(
        _jpeg_with_app1(b"II*\x00\x08\x00\x00\x00" + b"\x00" * 60000), id="big-zero-block"
    ),
    pytest.param(_png_with_exif(b"MM\x00*" + b"\x00" * (2 * 1024 * 1024)), id="png-exif-2mib"),
    pytest.param(_png_with_exif(b"garbage"), id="png-exif-garbage"),
]


@pytest.fixture(params=["store", "strip"])
def exif_client(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    config = ServiceConfig(
        api_tokens=("alice:alice-token-1",),
        data_dir=tmp_path / "data",
        gps_policy=request.param,
        max_body_bytes=8 * 1024 * 1024,
    )
    app = create_app(config, FakeDetector())
    app.test_client_class = BufferedClient
    with app.test_client() as client:
        yield client
    app.extensions["image_repository"].repository.database.dispose()


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_or_huge_exif_never_fails_an_upload(
    exif_client: FlaskClient, data: bytes
) -> None:
    # As a raw body: the test client spools multipart bodies over 500 KB to a file it leaks.
    answer = exif_client.post(
        "/v1/images",
        headers={**ALICE_AUTH, "Content-Type": "application/octet-stream"},
        data=data,
    )
    assert answer.status_code == 201, answer.get_json()
    image = answer.get_json()["image"]
    assert image["width"] == 64
    assert image["height"] == 48
    assert image["gps"] is None
    assert image["exifError"] is None or len(image["exifError"]) <= 200
    assert image["camera"]["model"] is None or len(image["camera"]["model"]) <= 128


def test_oversized_exif_is_reported_not_parsed() -> None:
    huge = MALFORMED[-2].values[0]
    assert isinstance(huge, bytes)
    info = read_exif(huge)
    assert info.error is not None
    assert "over" in info.error
    assert info.camera_make is None


@pytest.mark.parametrize(
    ("policy", "shown", "stored_has_gps"),
    [
        # Stored and shown.
        pytest.param("store", True, True, id="store"),
        # Stored in the file but never answered.
        pytest.param("hide", False, True, id="hide"),
        # Removed from the stored original, orientation kept.
        pytest.param("strip", False, False, id="strip"),
    ],
)
def test_gps_policies(tmp_path: Path, policy: str, shown: bool, stored_has_gps: bool) -> None:
    config = replace(
        ServiceConfig(api_tokens=("alice:alice-token-1",), data_dir=tmp_path / "data"),
        gps_policy=policy,
    )
    app = create_app(config, FakeDetector())
    app.test_client_class = BufferedClient
    data = photo("JPEG", exif_block())
    with app.test_client() as client:
        image = client.post(
            "/v1/images", headers=ALICE_AUTH, data={"image": (io.BytesIO(data), "gps.jpg")}
        ).get_json()["image"]
        assert (image["gps"] is not None) is shown
        if shown:
            assert image["gps"]["latitude"] == pytest.approx(48.85678, abs=1e-5)
        assert image["orientation"] == 6
        assert (image["width"], image["height"]) == (48, 64)  # the oriented frame
        stored = client.get(f"/v1/images/{image['id']}", headers=ALICE_AUTH).data
        assert (read_exif(stored).gps_latitude is not None) is stored_has_gps
        assert read_exif(stored).orientation == 6
        assert (stored == data) is (policy != "strip")
        # Derived images carry no EXIF at all.
        thumbnail = client.get(f"/v1/images/{image['id']}/thumbnail", headers=ALICE_AUTH).data
        assert not read_exif(thumbnail).present
        # The uploaded file's own sha256 still finds it, and a re-upload is a duplicate.
        import hashlib

        found = client.get(
            f"/v1/images?sha256={hashlib.sha256(data).hexdigest()}", headers=ALICE_AUTH
        ).get_json()["images"]
        assert [i["id"] for i in found] == [image["id"]]
        again = client.post(
            "/v1/images", headers=ALICE_AUTH, data={"image": (io.BytesIO(data), "gps.jpg")}
        )
        assert again.status_code == 200
        assert again.get_json()["duplicate"] is True
    app.extensions["image_repository"].repository.database.dispose()
