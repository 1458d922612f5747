"""The repository's operations, each one transaction: upload, list, get, delete, detect,
labels (and, through `maintenance.py`, `gc` and `check`). Plain methods of plain values (no
Flask; the values are in `records.py`, the list filters in `queries.py`, the row values in
`rows.py`); the HTTP views in `routes.py` call them, and so does the command line.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import CursorResult, delete, func, insert, select
from sqlalchemy.orm import Session

from config import ServiceConfig
from detection_types import DetectionResult, ImageArray, ImageDecodeError
from errors import (
    ApiError,
    ImageNotFound,
    ImageTooLarge,
    UndecodableImage,
    UnsupportedImageFormat,
)
from image_header import ImageFormat, ImageHeaderError, read_image_header
from image_io import decode_image
from registry import ModelRegistry, ModelSlot
from repository import maintenance, pages, renditions
from repository.db import Database, database_url, upgrade
from repository.exif import ExifInfo, as_utc, read_exif, strip_gps
from repository.queries import filtered
from repository.records import (
    DetectOptions,
    ImageRecord,
    LabelSummary,
    ListQuery,
    Original,
    Page,
    Rendition,
    RunRecord,
    Uploaded,
    UploadSource,
)
from repository.renditions import RenditionSpec, StoredBox
from repository.rows import (
    clean_name,
    detection_rows,
    insert_for,
    new_image_id,
    now,
    params_json,
    pixel_sha256,
)
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


@dataclass(frozen=True)
class Repository:
    """One worker's repository: its database engine, its store, the models to detect with."""

    database: Database
    store: LocalStore
    # The models to detect with (a worker's ModelSlot: loaded, or a 503 with the reason);
    # None for maintenance (gc, check) that needs none.
    registry: ModelRegistry | ModelSlot | None
    gps_policy: str
    max_pixels: int
    page_key: bytes

    @classmethod
    def open(
        cls,
        config: ServiceConfig,
        registry: ModelRegistry | ModelSlot | None,
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
        uploaded_at = now()
        taken_at, offset = as_utc(exif.taken_at)
        height, width = pixels.shape[:2]
        image_id = new_image_id()
        with self.database.write() as session:
            self._lock_blob(session, staged.sha256, staged.size, mime_type, key, uploaded_at)
            # The blob row is ours until the commit: no delete can move this file meanwhile.
            self.store.place(staged, key)
            statement = insert_for(session)(Image).values(
                id=image_id,
                owner=owner,
                blob_sha256=staged.sha256,
                source_sha256=source_sha,
                pixel_sha256=pixel_sha256(pixels),
                original_name=clean_name(source.filename),
                uploaded_at=uploaded_at,
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
        session: Session, sha: str, size: int, mime_type: str, key: str, at: datetime
    ) -> None:
        """Insert the blob row or, when it exists, lock it (an upsert that touches it)."""
        statement = insert_for(session)(Blob).values(
            sha256=sha, size_bytes=size, mime_type=mime_type, storage_key=key, created_at=at
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["sha256"], set_={"size_bytes": statement.excluded.size_bytes}
            )
        )

    def models(self) -> ModelRegistry:
        """The models to detect with (an upload's or a re-run's `model` names one of them)."""
        if self.registry is None:
            raise RuntimeError("this repository was opened without models")
        if isinstance(self.registry, ModelSlot):
            return self.registry.get()
        return self.registry

    def _detect(self, pixels: ImageArray, options: DetectOptions) -> DetectionResult:
        return self.models().detector(options.model).detect(pixels, options.params)

    def _store_run(
        self,
        session: Session,
        image_id: str,
        owner: str,
        options: DetectOptions,
        result: DetectionResult,
    ) -> None:
        info = self.models().detector(options.model).info
        run = DetectionRun(
            image_id=image_id,
            model=options.model,
            model_sha256=info.sha256,
            params=json.dumps(params_json(options.params), sort_keys=True),
            created_at=now(),
            image_width=result.image_width,
            image_height=result.image_height,
        )
        session.add(run)
        session.flush()
        rows = detection_rows(result, info.class_names, run.id, image_id, owner)
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
        statement = filtered(owner, query)
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

    def gc(self, temp_age_s: float = 3600.0, derived: bool = False) -> maintenance.GcReport:
        """See `maintenance.gc`."""
        return maintenance.gc(self.database, self.store, temp_age_s, derived)

    def check(self, verify_hash: bool = False) -> maintenance.CheckReport:
        """See `maintenance.check`."""
        return maintenance.check(self.database, self.store, verify_hash)

    def image_ids(self, owner: str | None, missing_only: bool) -> list[tuple[str, str]]:
        """(owner, id) of stored images, for `python -m repository detect`."""
        statement = select(Image.owner, Image.id).order_by(Image.uploaded_at)
        if owner is not None:
            statement = statement.where(Image.owner == owner)
        if missing_only:
            statement = statement.where(~Image.id.in_(select(DetectionRun.image_id)))
        with self.database.read() as session:
            return [(row[0], row[1]) for row in session.execute(statement)]
