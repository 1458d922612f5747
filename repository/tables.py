"""The repository's schema as SQLAlchemy 2.x typed models; one schema for SQLite and
PostgreSQL. The migrations in `migrations/versions` create exactly this (a test runs
`alembic check` against it).

- `blobs`: one row per stored file, named by the sha256 of its bytes (content-addressed;
  shared by every owner who uploaded the same bytes).
- `images`: one row per owner and blob (`UNIQUE(owner, blob_sha256)`: the same bytes are
  stored once per owner), with the upload's name, the decoded pixels' sha256, the oriented
  size and the EXIF fields.
- `detection_runs` / `detections`: the stored detection of an image (one run per image,
  replaced by a re-run), boxes normalised to the oriented frame.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names fixed by convention, so that migrations name them the same on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SHA256_HEX = 64
OWNER_CHARS = 64
IMAGE_ID_CHARS = 32
NAME_CHARS = 255
EXIF_TEXT_CHARS = 128
REASON_CHARS = 200


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on both databases: stored as naive UTC (SQLite has no time zones,
    and naive UTC strings sort in time order), handed back aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        result: datetime = value
        return result.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Blob(Base):
    """A stored file. `storage_key` is relative to the store (DATA_DIR), never absolute."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(SHA256_HEX), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mime_type: Mapped[str] = mapped_column(String(32))
    storage_key: Mapped[str] = mapped_column(String(NAME_CHARS), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Image(Base):
    """An owner's image: what the API calls an image, with an opaque random id."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("owner", "blob_sha256", name="uq_images_owner_blob"),
        # Newest first, then by id: the keyset order of every list.
        Index("ix_images_owner_uploaded", "owner", "uploaded_at", "id"),
        Index("ix_images_owner_pixels", "owner", "pixel_sha256"),
        Index("ix_images_owner_source", "owner", "source_sha256"),
        Index("ix_images_owner_taken", "owner", "taken_at"),
    )

    id: Mapped[str] = mapped_column(String(IMAGE_ID_CHARS), primary_key=True)
    owner: Mapped[str] = mapped_column(String(OWNER_CHARS))
    blob_sha256: Mapped[str] = mapped_column(
        ForeignKey("blobs.sha256", ondelete="RESTRICT"), index=True
    )
    # The sha256 of the bytes as received: differs from the blob's only under GPS_POLICY=strip.
    source_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    pixel_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    original_name: Mapped[str | None] = mapped_column(String(NAME_CHARS))
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The oriented frame: what the decoder hands out, what the boxes are normalised to.
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # EXIF: every field may be missing. `taken_at` is UTC when the camera wrote an offset,
    # else the camera's local time read as UTC; `taken_at_offset_min` is that offset.
    taken_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    taken_at_offset_min: Mapped[int | None] = mapped_column(Integer)
    camera_make: Mapped[str | None] = mapped_column(String(EXIF_TEXT_CHARS))
    camera_model: Mapped[str | None] = mapped_column(String(EXIF_TEXT_CHARS))
    lens: Mapped[str | None] = mapped_column(String(EXIF_TEXT_CHARS))
    iso: Mapped[int | None] = mapped_column(Integer)
    f_number: Mapped[float | None] = mapped_column(Float)
    exposure_s: Mapped[float | None] = mapped_column(Float)
    focal_length_mm: Mapped[float | None] = mapped_column(Float)
    orientation: Mapped[int | None] = mapped_column(Integer)
    gps_latitude: Mapped[float | None] = mapped_column(Float)
    gps_longitude: Mapped[float | None] = mapped_column(Float)
    gps_altitude_m: Mapped[float | None] = mapped_column(Float)
    # Why the EXIF fields are empty or partial (malformed, too large, ...); None when read.
    exif_error: Mapped[str | None] = mapped_column(String(REASON_CHARS))


class DetectionRun(Base):
    """The stored detection of one image: which model (and its sha256), with which
    parameters, on which frame. One per image: a re-run replaces it."""

    __tablename__ = "detection_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), unique=True)
    model: Mapped[str] = mapped_column(String(OWNER_CHARS))
    model_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    # The DetectionParams as JSON text (same on both databases).
    params: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    image_width: Mapped[int] = mapped_column(Integer)
    image_height: Mapped[int] = mapped_column(Integer)


class Detection(Base):
    """One box of a run, corners as fractions of the oriented frame. `owner` and `image_id`
    are copied from the run's image so that label queries use one index."""

    __tablename__ = "detections"
    __table_args__ = (Index("ix_detections_owner_label", "owner", "label", "score", "image_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("detection_runs.id", ondelete="CASCADE"), index=True
    )
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(OWNER_CHARS))
    label: Mapped[str] = mapped_column(String(OWNER_CHARS))
    class_id: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
