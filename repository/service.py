"""The repository's operations, each one transaction: upload, list, get, delete, detect,
labels, and the maintenance of `gc` and `check`. Plain functions of plain values (no Flask);
the HTTP views in `routes.py` call them, and so does the command line (`__main__.py`).

Order of work, so that "a row names a file that exists" always holds:

- upload: header check, EXIF (header only), one decode, thumbnail and detection, all before
  any lock; the file is staged in tmp/ while hashed; then one write transaction upserts the
  blob row (which locks it), links the file into place, inserts the image with
  `ON CONFLICT (owner, blob) DO NOTHING` and re-selects on a conflict (a duplicate).
- delete: one write transaction locks the blob row first (the order uploads use, so the two
  never deadlock), deletes the image, and when no other image uses the blob deletes its row
  and moves the file aside; the file is unlinked after the commit, moved back on a rollback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
from sqlalchemy import CursorResult, Select, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from config import ServiceConfig
from detection_types import (
    DetectionParams,
    DetectionResult,
    Detections,
    ImageArray,
    ImageDecodeError,
)
from errors import (
    ApiError,
    ImageNotFound,
    ImageTooLarge,
    InvalidParameter,
    UndecodableImage,
    UnsupportedImageFormat,
)
from image_header import ImageFormat, ImageHeaderError, read_image_header
from image_io import decode_image
from registry import ModelRegistry
from repository import pages, renditions
from repository.db import Database, database_url, upgrade
from repository.exif import ExifInfo, as_utc, read_exif, strip_gps
from repository.renditions import RenditionSpec, StoredBox
from repository.storage import LocalStore, Staged, Trashed
from repository.tables import Blob, Detection, DetectionRun, Image

logger = logging.getLogger("detection_service")

# What the repository stores: the photo formats browsers show and whose EXIF it can rewrite.
ACCEPTED_FORMATS: Final[Mapping[ImageFormat, tuple[str, str]]] = {
    ImageFormat.JPEG: ("image/jpeg", "jpg"),
    ImageFormat.PNG: ("image/png", "png"),
    ImageFormat.WEBP: ("image/webp", "webp"),
}
ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{22}$")
MAX_PAGE_SIZE: Final = 1000
DEFAULT_PAGE_SIZE: Final = 50
MAX_NAME_CHARS: Final = 255
MAX_LABEL_FILTERS: Final = 16
UPSERT_RETRIES: Final = 3


def new_image_id() -> str:
    """128 random bits, URL-safe: ids say nothing and cannot be guessed."""
    return secrets.token_urlsafe(16)


def pixel_sha256(image: ImageArray) -> str:
    """The sha256 of the decoded pixels (with their shape): the same picture in another file."""
    digest = hashlib.sha256(f"{image.shape[0]}x{image.shape[1]}x{image.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _clean_name(name: str | None) -> str | None:
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return cleaned[:MAX_NAME_CHARS] or None


# --- Values handed to and from the views


@dataclass(frozen=True)
class UploadSource:
    data: bytes
    filename: str | None


@dataclass(frozen=True)
class DetectOptions:
    """Whether and how to detect on upload (or on a re-run)."""

    detect: bool
    model: str
    params: DetectionParams


@dataclass(frozen=True)
class LabelSummary:
    name: str
    count: int
    max_score: float


@dataclass(frozen=True)
class ImageRecord:
    image: Image
    blob: Blob
    labels: tuple[LabelSummary, ...]


@dataclass(frozen=True)
class Uploaded:
    record: ImageRecord
    duplicate: bool


@dataclass(frozen=True)
class RunRecord:
    run: DetectionRun
    boxes: tuple[StoredBox, ...]


@dataclass(frozen=True)
class Original:
    path: Path
    sha256: str
    mime_type: str
    size: int
    name: str | None


@dataclass(frozen=True)
class Rendition:
    data: bytes | None  # None: serve `path` (a cached file)
    path: Path | None
    mime_type: str
    etag: str


@dataclass(frozen=True)
class ListQuery:
    labels: tuple[str, ...] = ()
    min_score: float = 0.0
    min_count: int = 1
    uploaded_after: datetime | None = None
    uploaded_before: datetime | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    camera_model: str | None = None
    name_prefix: str | None = None
    sha256: str | None = None
    pixel_sha256: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str | None = field(default=None, compare=False)

    def digest(self) -> str:
        """What a page token is bound to: the filters, not the page size or position."""
        fields = {k: v for k, v in asdict(self).items() if k not in {"page_size", "page_token"}}
        text = json.dumps(fields, default=str, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Page:
    records: tuple[ImageRecord, ...]
    next_token: str | None


@dataclass
class GcReport:
    temp_files: int = 0
    trash_purged: int = 0
    trash_restored: int = 0
    orphans: int = 0
    derived_removed: bool = False


@dataclass
class CheckReport:
    blobs: int = 0
    images: int = 0
    missing: list[tuple[str, list[str]]] = field(default_factory=list)  # key, image ids
    wrong_size: list[str] = field(default_factory=list)
    wrong_hash: list[str] = field(default_factory=list)
    unreferenced_blobs: list[str] = field(default_factory=list)
    orphan_files: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.wrong_size or self.wrong_hash)


# --- Parsing list filters


def _datetime_filter(values: Mapping[str, str], name: str) -> datetime | None:
    raw = values.get(name)
    if raw is None or raw == "":
        return None
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(
            f"{name} must be an ISO 8601 date or date-time, got {raw[:40]!r}"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _hex_filter(values: Mapping[str, str], name: str) -> str | None:
    raw = values.get(name)
    if raw is None:
        return None
    text = raw.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise InvalidParameter(f"{name} must be 64 hexadecimal digits")
    return text


def _number_filter(
    values: Mapping[str, str], name: str, low: float, high: float, integer: bool
) -> float | None:
    raw = values.get(name)
    if raw is None or raw == "":
        return None
    try:
        number = float(raw.strip())
    except ValueError:
        raise InvalidParameter(f"{name} must be a number, got {raw[:20]!r}") from None
    if not low <= number <= high or (integer and not number.is_integer()):
        kind = "an integer" if integer else "a number"
        raise InvalidParameter(
            f"{name} must be {kind} between {low:g} and {high:g}, got {raw[:20]!r}"
        )
    return number


def parse_list_query(values: Mapping[str, str], labels: Sequence[str]) -> ListQuery:
    """The filters of `GET /v1/images` (`labels`: every `label` parameter given)."""
    wanted = tuple(dict.fromkeys(label.strip().lower() for label in labels if label.strip()))
    if len(wanted) > MAX_LABEL_FILTERS:
        raise InvalidParameter(f"at most {MAX_LABEL_FILTERS} label filters, got {len(wanted)}")
    page_size = _number_filter(values, "page_size", 1, MAX_PAGE_SIZE, True)
    min_score = _number_filter(values, "min_score", 0, 1, False)
    min_count = _number_filter(values, "min_count", 1, 10_000, True)
    camera = (values.get("camera_model") or "").strip() or None
    prefix = values.get("name_prefix") or None
    return ListQuery(
        labels=wanted,
        min_score=min_score if min_score is not None else 0.0,
        min_count=int(min_count) if min_count is not None else 1,
        uploaded_after=_datetime_filter(values, "uploaded_after"),
        uploaded_before=_datetime_filter(values, "uploaded_before"),
        taken_after=_datetime_filter(values, "taken_after"),
        taken_before=_datetime_filter(values, "taken_before"),
        camera_model=camera[:128] if camera else None,
        name_prefix=prefix[:MAX_NAME_CHARS] if prefix else None,
        sha256=_hex_filter(values, "sha256"),
        pixel_sha256=_hex_filter(values, "pixel_sha256"),
        page_size=int(page_size) if page_size is not None else DEFAULT_PAGE_SIZE,
        page_token=values.get("page_token") or None,
    )


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# --- The repository


@dataclass(frozen=True)
class Repository:
    """One worker's repository: its database engine, its store, the models to detect with."""

    database: Database
    store: LocalStore
    # The models to detect with; None for maintenance (gc, check) that needs none.
    registry: ModelRegistry | None
    gps_policy: str
    max_pixels: int
    page_key: bytes

    @classmethod
    def open(
        cls,
        config: ServiceConfig,
        registry: ModelRegistry | None,
        database: Database | None = None,
    ) -> Repository:
        """Build it from the configuration (after the fork: the engine is this process's),
        migrating the schema first when it is behind (idempotent, one process at a time)."""
        if config.data_dir is None:
            raise ValueError("the configuration names no DATA_DIR")
        if database is None:
            url = database_url(config.data_dir, config.repo_db_url)
            database = Database.open(url, config.repo_busy_timeout_ms)
        upgrade(database.engine, config.data_dir)
        return cls(
            database=database,
            store=LocalStore(config.data_dir),
            registry=registry,
            gps_policy=config.gps_policy,
            max_pixels=config.max_image_pixels,
            page_key=pages.page_token_key(config.repo_page_token_key, config.data_dir),
        )

    # --- upload

    def upload(
        self, owner: str, sources: Sequence[UploadSource], options: DetectOptions
    ) -> list[Uploaded | ApiError]:
        """Store each file; a file's own problem takes its place in the list."""
        outcomes: list[Uploaded | ApiError] = []
        for source in sources:
            try:
                outcomes.append(self.upload_one(owner, source, options))
            except ApiError as exc:
                outcomes.append(exc)
        return outcomes

    def upload_one(self, owner: str, source: UploadSource, options: DetectOptions) -> Uploaded:
        data = source.data
        try:
            header = read_image_header(data)
        except ImageHeaderError as exc:
            raise UnsupportedImageFormat(
                f"not an image the repository stores ({exc}); send JPEG, PNG or WebP"
            ) from None
        accepted = ACCEPTED_FORMATS.get(header.format)
        if accepted is None:
            raise UnsupportedImageFormat(
                f"{header.format.display_name} is not stored by the repository: send JPEG, "
                "PNG or WebP"
            )
        if header.pixels > self.max_pixels:
            raise ImageTooLarge(
                f"the image is {header.width}x{header.height} = {header.pixels} pixels; the "
                f"limit is {self.max_pixels}"
            )
        source_sha = hashlib.sha256(data).hexdigest()
        existing = self._existing(owner, source_sha)
        if existing is not None:
            return Uploaded(existing, duplicate=True)
        exif = read_exif(data)
        if self.gps_policy == "strip":
            if exif.present:
                data = strip_gps(data, header.format)
            exif = exif.without_gps()
        try:
            pixels = decode_image(data)
        except ImageDecodeError as exc:
            raise UndecodableImage(f"the image cannot be decoded: {exc}") from None
        result = self._detect(pixels, options) if options.detect else None
        thumbnail_spec = RenditionSpec(
            renditions.DEFAULT_THUMBNAIL, renditions.DEFAULT_THUMBNAIL, "contain", "jpeg"
        )
        thumbnail = renditions.make(pixels, thumbnail_spec)
        staged = self.store.stage(data)
        try:
            uploaded = self._insert(
                owner, source, staged, accepted, source_sha, pixels, exif, options, result
            )
        finally:
            self.store.discard(staged)
        self._cache_derived(staged.sha256, thumbnail_spec.variant(""), thumbnail)
        return uploaded

    def _existing(self, owner: str, source_sha: str) -> ImageRecord | None:
        """A fast path for re-uploads (no decode, no detection); the insert below decides."""
        with self.database.read() as session:
            row = session.execute(
                select(Image, Blob)
                .join(Blob, Blob.sha256 == Image.blob_sha256)
                .where(Image.owner == owner, Image.source_sha256 == source_sha)
                .limit(1)
            ).first()
            if row is None:
                return None
            return self._records(session, [(row[0], row[1])])[0]

    def _insert(
        self,
        owner: str,
        source: UploadSource,
        staged: Staged,
        accepted: tuple[str, str],
        source_sha: str,
        pixels: ImageArray,
        exif: ExifInfo,
        options: DetectOptions,
        result: DetectionResult | None,
    ) -> Uploaded:
        mime_type, extension = accepted
        key = self.store.original_key(staged.sha256, extension)
        now = _now()
        taken_at, offset = as_utc(exif.taken_at)
        height, width = pixels.shape[:2]
        image_id = new_image_id()
        with self.database.write() as session:
            self._lock_blob(session, staged.sha256, staged.size, mime_type, key, now)
            # The blob row is ours until the commit: no delete can move this file meanwhile.
            self.store.place(staged, key)
            statement = _insert_for(session)(Image).values(
                id=image_id,
                owner=owner,
                blob_sha256=staged.sha256,
                source_sha256=source_sha,
                pixel_sha256=pixel_sha256(pixels),
                original_name=_clean_name(source.filename),
                uploaded_at=now,
                width=width,
                height=height,
                taken_at=taken_at,
                taken_at_offset_min=offset,
                camera_make=exif.camera_make,
                camera_model=exif.camera_model,
                lens=exif.lens,
                iso=exif.iso,
                f_number=exif.f_number,
                exposure_s=exif.exposure_s,
                focal_length_mm=exif.focal_length_mm,
                orientation=exif.orientation,
                gps_latitude=exif.gps_latitude,
                gps_longitude=exif.gps_longitude,
                gps_altitude_m=exif.gps_altitude_m,
                exif_error=exif.error,
            )
            inserted = session.execute(
                statement.on_conflict_do_nothing(index_elements=["owner", "blob_sha256"]).returning(
                    Image.id
                )
            ).scalar()
            if inserted is None:
                row = session.execute(
                    select(Image, Blob)
                    .join(Blob, Blob.sha256 == Image.blob_sha256)
                    .where(Image.owner == owner, Image.blob_sha256 == staged.sha256)
                ).one()
                return Uploaded(self._records(session, [(row[0], row[1])])[0], duplicate=True)
            if result is not None:
                self._store_run(session, image_id, owner, options, result)
            image = session.get_one(Image, image_id)
            blob = session.get_one(Blob, staged.sha256)
            return Uploaded(self._records(session, [(image, blob)])[0], duplicate=False)

    @staticmethod
    def _lock_blob(
        session: Session, sha: str, size: int, mime_type: str, key: str, now: datetime
    ) -> None:
        """Insert the blob row or, when it exists, lock it (an upsert that touches it)."""
        statement = _insert_for(session)(Blob).values(
            sha256=sha, size_bytes=size, mime_type=mime_type, storage_key=key, created_at=now
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["sha256"], set_={"size_bytes": statement.excluded.size_bytes}
            )
        )

    def _models(self) -> ModelRegistry:
        if self.registry is None:
            raise RuntimeError("this repository was opened without models")
        return self.registry

    def _detect(self, pixels: ImageArray, options: DetectOptions) -> DetectionResult:
        return self._models().detector(options.model).detect(pixels, options.params)

    def _store_run(
        self,
        session: Session,
        image_id: str,
        owner: str,
        options: DetectOptions,
        result: DetectionResult,
    ) -> None:
        info = self._models().detector(options.model).info
        run = DetectionRun(
            image_id=image_id,
            model=options.model,
            model_sha256=info.sha256,
            params=json.dumps(_params_json(options.params), sort_keys=True),
            created_at=_now(),
            image_width=result.image_width,
            image_height=result.image_height,
        )
        session.add(run)
        session.flush()
        rows = _detection_rows(result, info.class_names, run.id, image_id, owner)
        if rows:
            session.execute(insert(Detection), rows)

    def _cache_derived(self, sha: str, variant: str, data: bytes) -> None:
        try:
            self.store.write_derived(sha, variant, data)
        except OSError as exc:
            logger.warning("derived image not cached (%s): %s", variant, exc.strerror)

    # --- reading

    def _records(self, session: Session, rows: Sequence[tuple[Image, Blob]]) -> list[ImageRecord]:
        ids = [image.id for image, _ in rows]
        labels: dict[str, list[LabelSummary]] = {image_id: [] for image_id in ids}
        if ids:
            summary = session.execute(
                select(
                    Detection.image_id,
                    Detection.label,
                    func.count(Detection.id),
                    func.max(Detection.score),
                )
                .where(Detection.image_id.in_(ids))
                .group_by(Detection.image_id, Detection.label)
                .order_by(Detection.image_id, func.count(Detection.id).desc(), Detection.label)
            )
            for image_id, label, count, max_score in summary:
                labels[image_id].append(LabelSummary(label, int(count), float(max_score)))
        return [ImageRecord(image, blob, tuple(labels[image.id])) for image, blob in rows]

    def _owned(self, session: Session, owner: str, image_id: str) -> tuple[Image, Blob]:
        if not ID_PATTERN.match(image_id):
            raise ImageNotFound(f"no image {image_id[:40]!r}")
        row = session.execute(
            select(Image, Blob)
            .join(Blob, Blob.sha256 == Image.blob_sha256)
            .where(Image.id == image_id, Image.owner == owner)
        ).first()
        if row is None:
            # Another owner's image is answered exactly like one that does not exist.
            raise ImageNotFound(f"no image {image_id!r}")
        return row[0], row[1]

    def get(self, owner: str, image_id: str) -> ImageRecord:
        with self.database.read() as session:
            return self._records(session, [self._owned(session, owner, image_id)])[0]

    def original(self, owner: str, image_id: str) -> Original:
        with self.database.read() as session:
            image, blob = self._owned(session, owner, image_id)
        path = self.store.path(blob.storage_key)
        if not path.is_file():
            # Being deleted right now (moved aside before the commit), or lost: `check` says.
            logger.warning("image %s: file %s is missing", image_id, blob.storage_key)
            raise ImageNotFound(f"no image {image_id!r}")
        return Original(path, blob.sha256, blob.mime_type, blob.size_bytes, image.original_name)

    def list_images(self, owner: str, query: ListQuery) -> Page:
        statement = self._filtered(owner, query)
        digest = query.digest()
        if query.page_token is not None:
            position = pages.decode(self.page_key, query.page_token, digest)
            statement = statement.where(
                (Image.uploaded_at < position.uploaded_at)
                | ((Image.uploaded_at == position.uploaded_at) & (Image.id < position.image_id))
            )
        statement = statement.order_by(Image.uploaded_at.desc(), Image.id.desc()).limit(
            query.page_size + 1
        )
        with self.database.read() as session:
            rows: list[tuple[Image, Blob]] = [
                (image, blob) for image, blob in session.execute(statement)
            ]
            records = self._records(session, rows[: query.page_size])
        next_token = None
        if len(rows) > query.page_size:
            last = records[-1].image
            next_token = pages.encode(
                self.page_key, pages.Position(last.uploaded_at, last.id), digest
            )
        return Page(tuple(records), next_token)

    @staticmethod
    def _filtered(owner: str, query: ListQuery) -> Select[Image, Blob]:
        statement = (
            select(Image, Blob)
            .join(Blob, Blob.sha256 == Image.blob_sha256)
            .where(Image.owner == owner)
        )
        for label in query.labels:
            matching = (
                select(Detection.image_id)
                .where(
                    Detection.owner == owner,
                    Detection.label == label,
                    Detection.score >= query.min_score,
                )
                .group_by(Detection.image_id)
                .having(func.count(Detection.id) >= query.min_count)
            )
            statement = statement.where(Image.id.in_(matching))
        if query.uploaded_after is not None:
            statement = statement.where(Image.uploaded_at > query.uploaded_after)
        if query.uploaded_before is not None:
            statement = statement.where(Image.uploaded_at < query.uploaded_before)
        if query.taken_after is not None:
            statement = statement.where(Image.taken_at > query.taken_after)
        if query.taken_before is not None:
            statement = statement.where(Image.taken_at < query.taken_before)
        if query.camera_model is not None:
            statement = statement.where(
                func.lower(Image.camera_model) == query.camera_model.lower()
            )
        if query.name_prefix is not None:
            statement = statement.where(
                Image.original_name.like(_like_prefix(query.name_prefix), escape="\\")
            )
        if query.sha256 is not None:
            statement = statement.where(
                (Image.blob_sha256 == query.sha256) | (Image.source_sha256 == query.sha256)
            )
        if query.pixel_sha256 is not None:
            statement = statement.where(Image.pixel_sha256 == query.pixel_sha256)
        return statement

    def labels(self, owner: str, min_score: float) -> list[tuple[str, int, int]]:
        """(label, images, detections) for every label of the owner's stored detections."""
        with self.database.read() as session:
            rows = session.execute(
                select(
                    Detection.label,
                    func.count(func.distinct(Detection.image_id)),
                    func.count(Detection.id),
                )
                .where(Detection.owner == owner, Detection.score >= min_score)
                .group_by(Detection.label)
                .order_by(Detection.label)
            )
            return [(label, int(images), int(count)) for label, images, count in rows]

    def size(self) -> tuple[int, int, int]:
        """(images of all owners, stored files, their bytes): the repository's size metric."""
        with self.database.read() as session:
            images = session.execute(select(func.count()).select_from(Image)).scalar_one()
            blobs, stored = session.execute(
                select(func.count(), func.coalesce(func.sum(Blob.size_bytes), 0)).select_from(Blob)
            ).one()
        return int(images), int(blobs), int(stored)

    # --- detections

    def runs(self, owner: str, image_id: str) -> list[RunRecord]:
        with self.database.read() as session:
            self._owned(session, owner, image_id)
            return self._runs(session, image_id)

    @staticmethod
    def _runs(session: Session, image_id: str) -> list[RunRecord]:
        runs = session.scalars(select(DetectionRun).where(DetectionRun.image_id == image_id)).all()
        records = []
        for run in runs:
            boxes = session.scalars(
                select(Detection)
                .where(Detection.run_id == run.id)
                .order_by(Detection.score.desc(), Detection.id)
            ).all()
            records.append(
                RunRecord(
                    run,
                    tuple(
                        StoredBox(b.label, b.class_id, b.score, b.x1, b.y1, b.x2, b.y2)
                        for b in boxes
                    ),
                )
            )
        return records

    def _decoded(self, blob: Blob, image_id: str) -> ImageArray:
        try:
            data = self.store.path(blob.storage_key).read_bytes()
        except FileNotFoundError:
            raise ImageNotFound(f"no image {image_id!r}") from None
        try:
            return decode_image(data)
        except ImageDecodeError as exc:
            raise UndecodableImage(f"the stored image cannot be decoded: {exc}") from None

    def redetect(self, owner: str, image_id: str, options: DetectOptions) -> list[RunRecord]:
        """Detect again (with the same or another model) and replace the stored run."""
        with self.database.read() as session:
            _, blob = self._owned(session, owner, image_id)
        pixels = self._decoded(blob, image_id)
        result = self._detect(pixels, options)
        with self.database.write() as session:
            if session.get(Image, image_id) is None:
                raise ImageNotFound(f"no image {image_id!r}")
            session.execute(delete(DetectionRun).where(DetectionRun.image_id == image_id))
            self._store_run(session, image_id, owner, options, result)
            session.flush()
            return self._runs(session, image_id)

    # --- renditions

    def rendition(self, owner: str, image_id: str, spec: RenditionSpec) -> Rendition:
        """A thumbnail or render: from the cache when it is there, else made and cached."""
        with self.database.read() as session:
            _, blob = self._owned(session, owner, image_id)
            runs = self._runs(session, image_id) if spec.annotate else []
        marker = str(runs[0].run.id) if runs else "none"
        variant = spec.variant(marker)
        tag = renditions.etag(blob.sha256, variant)
        mime_type = renditions.MIME_TYPES[spec.fmt]
        cached = self.store.derived_path(blob.sha256, variant)
        if spec.cacheable and cached.is_file():
            return Rendition(None, cached, mime_type, tag)
        pixels = self._decoded(blob, image_id)
        boxes = runs[0].boxes if runs else ()
        data = renditions.make(pixels, spec, boxes)
        if spec.cacheable:
            self._cache_derived(blob.sha256, variant, data)
        return Rendition(data, None, mime_type, tag)

    # --- delete

    def delete(self, owner: str, image_id: str) -> None:
        """Delete the image; its file goes when no other image uses it."""
        with self.database.read() as session:
            _, blob = self._owned(session, owner, image_id)
        trashed: Trashed | None = None
        try:
            with self.database.write() as session:
                # Lock order: the blob row first, as uploads take it.
                locked = session.execute(
                    select(Blob).where(Blob.sha256 == blob.sha256).with_for_update()
                ).scalar_one_or_none()
                gone = cast(
                    CursorResult[Any],
                    session.execute(
                        delete(Image).where(Image.id == image_id, Image.owner == owner)
                    ),
                ).rowcount
                if not gone:
                    raise ImageNotFound(f"no image {image_id!r}")
                if locked is not None:
                    users = session.scalar(
                        select(func.count())
                        .select_from(Image)
                        .where(Image.blob_sha256 == locked.sha256)
                    )
                    if not users:
                        session.delete(locked)
                        session.flush()
                        trashed = self.store.move_aside(locked.storage_key)
        except BaseException:
            if trashed is not None:
                self.store.restore(trashed)
            raise
        if trashed is not None:
            self.store.purge(trashed)
            self.store.remove_derived(trashed.key.rsplit("/", 1)[-1].split(".", 1)[0])

    # --- maintenance

    def gc(self, temp_age_s: float = 3600.0, derived: bool = False) -> GcReport:
        """Remove temp files older than `temp_age_s`, trash (restoring a file a row still
        names), originals no row names, and with `derived` the whole derived cache."""
        report = GcReport()
        for path in self.store.temp_files(temp_age_s):
            path.unlink(missing_ok=True)
            report.temp_files += 1
        for path in self.store.trash_files():
            sha = path.name.split(".", 1)[0]
            with self.database.write() as session:
                blob = session.execute(
                    select(Blob).where(Blob.sha256 == sha).with_for_update()
                ).scalar_one_or_none()
                if blob is not None and not self.store.exists(blob.storage_key):
                    self.store.restore(Trashed(blob.storage_key, path))
                    report.trash_restored += 1
                    continue
            path.unlink(missing_ok=True)
            report.trash_purged += 1
        with self.database.read() as session:
            named = set(session.scalars(select(Blob.storage_key)))
        for key in self.store.original_keys():
            if key not in named and self._remove_orphan(key):
                report.orphans += 1
        if derived:
            import shutil

            shutil.rmtree(self.store.root / "derived", ignore_errors=True)
            (self.store.root / "derived").mkdir(exist_ok=True)
            report.derived_removed = True
        return report

    def _remove_orphan(self, key: str) -> bool:
        """Remove a file no row names, holding a placeholder blob row meanwhile, so that an
        upload of the same bytes waits for us instead of linking to a file we unlink."""
        path = self.store.path(key)
        sha = path.name.split(".", 1)[0]
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            return False
        with self.database.write() as session:
            held = session.execute(
                _insert_for(session)(Blob)
                .values(
                    sha256=sha, size_bytes=0, mime_type="gc", storage_key=key, created_at=_now()
                )
                .on_conflict_do_nothing()
                .returning(Blob.sha256)
            ).scalar()
            if held is None:
                return False
            path.unlink(missing_ok=True)
            session.execute(delete(Blob).where(Blob.sha256 == sha))
        return True

    def check(self, verify_hash: bool = False) -> CheckReport:
        """Rows whose file is missing (or of the wrong size or hash), blobs no image uses,
        and how many files no row names."""
        report = CheckReport()
        with self.database.read() as session:
            blobs = session.scalars(select(Blob)).all()
            users: dict[str, list[str]] = {}
            for image_id, sha in session.execute(select(Image.id, Image.blob_sha256)):
                users.setdefault(sha, []).append(image_id)
        report.blobs = len(blobs)
        report.images = sum(len(v) for v in users.values())
        for blob in blobs:
            path = self.store.path(blob.storage_key)
            if not path.is_file():
                report.missing.append((blob.storage_key, users.get(blob.sha256, [])))
                continue
            if path.stat().st_size != blob.size_bytes:
                report.wrong_size.append(blob.storage_key)
            elif verify_hash:
                with path.open("rb") as handle:
                    if hashlib.file_digest(handle, "sha256").hexdigest() != blob.sha256:
                        report.wrong_hash.append(blob.storage_key)
            if blob.sha256 not in users:
                report.unreferenced_blobs.append(blob.sha256)
        named = {blob.storage_key for blob in blobs}
        report.orphan_files = sum(1 for key in self.store.original_keys() if key not in named)
        return report

    def image_ids(self, owner: str | None, missing_only: bool) -> list[tuple[str, str]]:
        """(owner, id) of stored images, for `python -m repository detect`."""
        statement = select(Image.owner, Image.id).order_by(Image.uploaded_at)
        if owner is not None:
            statement = statement.where(Image.owner == owner)
        if missing_only:
            statement = statement.where(~Image.id.in_(select(DetectionRun.image_id)))
        with self.database.read() as session:
            return [(row[0], row[1]) for row in session.execute(statement)]


def _insert_for(session: Session) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL alike)."""
    dialect = session.get_bind().dialect.name
    return sqlite.insert if dialect == "sqlite" else postgresql.insert


def _params_json(params: DetectionParams) -> dict[str, Any]:
    return {
        "score_th": params.score_threshold,
        "nms_iou": params.nms_iou_threshold,
        "min_height": params.min_height_fraction,
        "min_width": params.min_width_fraction,
        "maxResults": params.max_results,
        "classes": sorted(params.class_ids) if params.class_ids is not None else None,
        "agnostic_nms": params.class_agnostic,
    }


def _detection_rows(
    result: DetectionResult,
    class_names: Sequence[str],
    run_id: int,
    image_id: str,
    owner: str,
) -> list[dict[str, Any]]:
    width, height = result.image_width, result.image_height
    detections = result.detections
    rows = []
    for (x1, y1, x2, y2), score, class_id in zip(
        detections.xyxy.tolist(),
        detections.scores.tolist(),
        detections.class_ids.tolist(),
        strict=True,
    ):
        name = class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)
        rows.append(
            {
                "run_id": run_id,
                "image_id": image_id,
                "owner": owner,
                "label": name.lower()[:64],
                "class_id": int(class_id),
                "score": float(score),
                "x1": x1 / width,
                "y1": y1 / height,
                "x2": x2 / width,
                "y2": y2 / height,
            }
        )
    return rows


def stored_result(record: RunRecord) -> tuple[DetectionResult, list[str]]:
    """A stored run as a DetectionResult in pixels of its frame, with class names that cover
    its class ids (for `dialects.google.object_annotations`)."""
    run = record.run
    width, height = run.image_width, run.image_height
    names: dict[int, str] = {box.class_id: box.label for box in record.boxes}
    class_names = [names.get(i, str(i)) for i in range(max(names, default=-1) + 1)]
    if not record.boxes:
        detections = Detections.empty()
    else:
        detections = Detections(
            xyxy=np.array(
                [[b.x1 * width, b.y1 * height, b.x2 * width, b.y2 * height] for b in record.boxes],
                dtype=np.float32,
            ),
            scores=np.array([b.score for b in record.boxes], dtype=np.float32),
            class_ids=np.array([b.class_id for b in record.boxes], dtype=np.int64),
        )
    return DetectionResult(detections, width, height, {}), class_names


def iter_blocks(values: Iterable[str], size: int) -> Iterable[list[str]]:
    block: list[str] = []
    for value in values:
        block.append(value)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block
