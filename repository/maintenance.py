"""The repository's upkeep, for `python -m repository gc|check`: temp files, trash and
originals no row names go (`gc`); rows whose file is missing, too short or wrong are reported
(`check`)."""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass, field

from sqlalchemy import delete, select

from repository.db import Database
from repository.rows import insert_for, now
from repository.storage import LocalStore, Trashed
from repository.tables import Blob, Image


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


def gc(
    database: Database, store: LocalStore, temp_age_s: float = 3600.0, derived: bool = False
) -> GcReport:
    """Remove temp files older than `temp_age_s`, trash (restoring a file a row still
    names), originals no row names, and with `derived` the whole derived cache."""
    report = GcReport()
    for path in store.temp_files(temp_age_s):
        path.unlink(missing_ok=True)
        report.temp_files += 1
    for path in store.trash_files():
        sha = path.name.split(".", 1)[0]
        with database.write() as session:
            blob = session.execute(
                select(Blob).where(Blob.sha256 == sha).with_for_update()
            ).scalar_one_or_none()
            if blob is not None and not store.exists(blob.storage_key):
                store.restore(Trashed(blob.storage_key, path))
                report.trash_restored += 1
                continue
        path.unlink(missing_ok=True)
        report.trash_purged += 1
    with database.read() as session:
        named = set(session.scalars(select(Blob.storage_key)))
    for key in store.original_keys():
        if key not in named and _remove_orphan(database, store, key):
            report.orphans += 1
    if derived:
        shutil.rmtree(store.root / "derived", ignore_errors=True)
        (store.root / "derived").mkdir(exist_ok=True)
        report.derived_removed = True
    return report


def _remove_orphan(database: Database, store: LocalStore, key: str) -> bool:
    """Remove a file no row names, holding a placeholder blob row meanwhile, so that an
    upload of the same bytes waits for us instead of linking to a file we unlink."""
    path = store.path(key)
    sha = path.name.split(".", 1)[0]
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        return False
    with database.write() as session:
        held = session.execute(
            insert_for(session)(Blob)
            .values(sha256=sha, size_bytes=0, mime_type="gc", storage_key=key, created_at=now())
            .on_conflict_do_nothing()
            .returning(Blob.sha256)
        ).scalar()
        if held is None:
            return False
        path.unlink(missing_ok=True)
        session.execute(delete(Blob).where(Blob.sha256 == sha))
    return True


def check(database: Database, store: LocalStore, verify_hash: bool = False) -> CheckReport:
    """Rows whose file is missing (or of the wrong size or hash), blobs no image uses,
    and how many files no row names."""
    report = CheckReport()
    with database.read() as session:
        blobs = session.scalars(select(Blob)).all()
        users: dict[str, list[str]] = {}
        for image_id, sha in session.execute(select(Image.id, Image.blob_sha256)):
            users.setdefault(sha, []).append(image_id)
    report.blobs = len(blobs)
    report.images = sum(len(v) for v in users.values())
    for blob in blobs:
        path = store.path(blob.storage_key)
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
    report.orphan_files = sum(1 for key in store.original_keys() if key not in named)
    return report
