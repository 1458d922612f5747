"""Engines, transactions and migrations of the repository's database.

SQLite (the default, a file under DATA_DIR) runs in WAL mode with a busy timeout and foreign
keys on, and every write transaction starts with `BEGIN IMMEDIATE`: a transaction that reads
and then writes would otherwise take the write lock only at its first write and fail at once
with "database is locked" when another worker holds it, busy timeout or not. Reads start a
deferred transaction and never wait for writers (WAL). PostgreSQL (`postgresql+psycopg://`)
needs nothing of this. Either way, a lock that stays busy past the timeout is a 503 with
Retry-After, a full disk a 507, an unreachable database a 503.

Engines are made per process, after gunicorn forks (the app factory calls `Database.open`):
a pooled connection must never cross a fork.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from errors import ApiError, InsufficientStorage, RepositoryBusy, ServiceUnavailable

logger = logging.getLogger("detection_service")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_FILE = "repository.sqlite3"
# A fixed key for PostgreSQL's advisory lock around migrations (any 64-bit number will do).
MIGRATION_LOCK_KEY = 0x5245504F  # "REPO"
RETRY_AFTER_S = 1


def database_url(data_dir: Path, configured: str | None) -> str:
    """The configured URL, else SQLite in DATA_DIR."""
    return configured or f"sqlite:///{data_dir / SQLITE_FILE}"


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, busy_timeout_ms: int) -> Engine:
    """An engine for this process. SQLite gets its pragmas on every new connection and the
    transaction mode chosen by `Database.write` / `Database.read`."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    # pre_ping: a connection the server closed (restart, idle timeout) is replaced, not failed.
    return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling is off: we issue BEGIN ourselves below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        # Durable at every checkpoint, and in WAL mode a crash never corrupts the database.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def translate_error(exc: DBAPIError) -> ApiError:
    """The answer for a database error that is not the caller's fault."""
    message = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    if "locked" in message or "busy" in message or sqlstate in {"55P03", "40P01", "40001"}:
        return RepositoryBusy(
            "the image repository is busy; try again shortly",
            detail=message[:300],
            retry_after_s=RETRY_AFTER_S,
        )
    if "disk is full" in message or "no space left" in message or sqlstate == "53100":
        return InsufficientStorage("the image repository's disk is full", detail=message[:300])
    if isinstance(exc, OperationalError):
        return ServiceUnavailable(
            "the image repository's database cannot be reached", detail=message[:300]
        )
    return ApiError("internal error; the request id is in X-Request-Id", detail=message[:300])


@dataclass(frozen=True)
class Database:
    """One process's engine and its two kinds of transaction."""

    engine: Engine

    @classmethod
    def open(cls, url: str, busy_timeout_ms: int) -> Database:
        return cls(make_engine(url, busy_timeout_ms))

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (deferred on SQLite: never waits for a writer)."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except DBAPIError as exc:
            raise translate_error(exc) from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A read-write transaction, committed when the block ends without an error. On
        SQLite it takes the write lock first (BEGIN IMMEDIATE), waiting up to the busy
        timeout; other work (files) done inside the block is thereby serialised too."""
        bind = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        try:
            with Session(bind, expire_on_commit=False) as session, session.begin():
                yield session
        except DBAPIError as exc:
            raise translate_error(exc) from exc

    def dispose(self) -> None:
        self.engine.dispose()


# --- Migrations


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """Alembic's configuration, in code (no alembic.ini): our scripts, and the connection
    to run on when given (env.py uses it)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the repository has no migrations")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migration_lock(engine: Engine, lock_dir: Path) -> Iterator[None]:
    """One migrator at a time: several instances may start at once."""
    if is_sqlite(engine):
        lock_dir.mkdir(parents=True, exist_ok=True)
        with (lock_dir / ".migrate.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()


def upgrade(engine: Engine, lock_dir: Path, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to `revision`; returns (before, after)."""
    with _migration_lock(engine, lock_dir):
        before = current_revision(engine)
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
        return before, current_revision(engine) or ""


def require_current_schema(engine: Engine) -> None:
    """Fail at start, with what to do, when the database is not at the code's revision."""
    try:
        current = current_revision(engine)
    except DBAPIError as exc:
        raise RuntimeError(f"the repository's database cannot be read: {exc.orig}") from None
    head = head_revision()
    if current != head:
        raise RuntimeError(
            f"the repository's database is at revision {current or '(empty)'}, the code needs "
            f"{head}: run `python -m repository migrate`"
        )
