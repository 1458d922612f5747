"""The repository's files: content-addressed originals and a cache of derived images, all
under one root (DATA_DIR), named in the database by keys relative to it.

    originals/ab/cd/<sha256>.<ext>   the uploaded files, named by the sha256 of their bytes
    derived/ab/<sha256>/<variant>    thumbnails and renders: a cache, may be wiped any time
    tmp/                             uploads being written (same filesystem, so link works)
    trash/                           originals moved aside by a delete until its commit

An upload is written to tmp/ while it is hashed, fsynced, then hard-linked to its final name
(an existing final file has the same bytes and is kept); the database row comes second. A
final file is never removed by the request that failed to commit it: another row may use it.
`LocalStore` is the one implementation; an object store would offer the same methods.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from errors import InsufficientStorage

CHUNK: Final = 1 << 20
ORIGINALS: Final = "originals"
DERIVED: Final = "derived"
TMP: Final = "tmp"
TRASH: Final = "trash"
_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def full_disk_error(error: OSError) -> InsufficientStorage | None:
    """The 507 for an OSError that means the disk (or quota, or file size limit) is full."""
    if error.errno in _FULL_ERRNOS:
        return InsufficientStorage(
            "the image repository's disk is full", detail=f"{error.strerror}: {error.filename}"
        )
    return None


def write_all(fd: int, data: memoryview, digest: hashlib._Hash | None = None) -> None:
    """Write every byte to `fd`, hashing each chunk as it goes; a full disk is a 507."""
    try:
        for start in range(0, len(data), CHUNK):
            chunk = data[start : start + CHUNK]
            if digest is not None:
                digest.update(chunk)
            written = 0
            while written < len(chunk):
                written += os.write(fd, chunk[written:])
        os.fsync(fd)
    except OSError as exc:
        raise (full_disk_error(exc) or exc) from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Staged:
    """An upload written to tmp/ and hashed, not yet in place."""

    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class Trashed:
    """An original moved aside by a delete: purged after the commit, restored on a rollback."""

    key: str
    path: Path


class LocalStore:
    """Files under `root` on a local (or shared, POSIX) filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for name in (ORIGINALS, DERIVED, TMP, TRASH):
            (root / name).mkdir(parents=True, exist_ok=True)

    # --- keys

    @staticmethod
    def original_key(sha256: str, extension: str) -> str:
        return f"{ORIGINALS}/{sha256[:2]}/{sha256[2:4]}/{sha256}.{extension}"

    def path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"not a relative storage key: {key!r}")
        return self.root / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    # --- writing originals

    def stage(self, data: bytes | memoryview) -> Staged:
        """Write `data` to a new file in tmp/, hashing it on the way, and fsync it."""
        path = self.root / TMP / f"{secrets.token_hex(12)}.part"
        digest = hashlib.sha256()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise (full_disk_error(exc) or exc) from exc
        try:
            write_all(fd, memoryview(data), digest)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return Staged(path, digest.hexdigest(), len(data))

    def place(self, staged: Staged, key: str) -> bool:
        """Link the staged file to `key`; True when it was not there yet. An existing file
        of that name has the same bytes (the name is their hash) and is kept as it is."""
        final = self.path(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.link(staged.path, final)
        except FileExistsError:
            return False
        except OSError as exc:
            raise (full_disk_error(exc) or exc) from exc
        _fsync_dir(final.parent)
        return True

    @staticmethod
    def discard(staged: Staged) -> None:
        staged.path.unlink(missing_ok=True)

    # --- deleting originals

    def move_aside(self, key: str) -> Trashed | None:
        """Rename the original into trash/ (None when it is already gone)."""
        trash = self.root / TRASH / f"{Path(key).name}.{secrets.token_hex(6)}"
        try:
            os.rename(self.path(key), trash)
        except FileNotFoundError:
            return None
        return Trashed(key, trash)

    def restore(self, trashed: Trashed) -> None:
        final = self.path(trashed.key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(trashed.path, final)

    @staticmethod
    def purge(trashed: Trashed) -> None:
        trashed.path.unlink(missing_ok=True)

    # --- what gc and check walk over

    def original_keys(self) -> Iterator[str]:
        base = self.root / ORIGINALS
        for path in sorted(base.glob("*/*/*")):
            if path.is_file():
                yield path.relative_to(self.root).as_posix()

    def temp_files(self, older_than_s: float) -> list[Path]:
        cutoff = time.time() - older_than_s
        return [p for p in (self.root / TMP).iterdir() if p.stat().st_mtime <= cutoff]

    def trash_files(self) -> list[Path]:
        return sorted((self.root / TRASH).iterdir())

    # --- the derived cache

    def derived_path(self, sha256: str, variant: str) -> Path:
        return self.root / DERIVED / sha256[:2] / sha256 / variant

    def write_derived(self, sha256: str, variant: str, data: bytes) -> Path:
        """Write a derived file atomically (temp file, then rename); a full disk is not an
        error here, the caller serves the bytes it has."""
        final = self.derived_path(sha256, variant)
        temp = final.with_name(f".{final.name}.{secrets.token_hex(6)}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(data)
            os.replace(temp, final)
        except OSError:
            temp.unlink(missing_ok=True)
            raise
        return final

    def derived_size(self) -> int:
        return sum(p.stat().st_size for p in (self.root / DERIVED).rglob("*") if p.is_file())

    def remove_derived(self, sha256: str) -> None:
        folder = self.root / DERIVED / sha256[:2] / sha256
        if folder.is_dir():
            for path in folder.iterdir():
                path.unlink(missing_ok=True)
            folder.rmdir()
