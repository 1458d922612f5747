"""Fixtures of the image repository's tests: a real PostgreSQL for the session (started with
scripts/postgres.sh, never skipped under CI=true), a fresh database per test on SQLite and on
PostgreSQL (`db_url`, parametrised), and the app -> client chain with a repository on it.

Registered as a plugin by tests/conftest.py, so every test module can ask for these.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from config import ServiceConfig
from serve_http import create_app
from tests.helpers import REPO_ROOT, FakeDetector

ALICE, BOB = "alice-token-1", "bob-token-2"
ALICE_AUTH = {"X-Api-Token": ALICE}
BOB_AUTH = {"X-Api-Token": BOB}
REPO_TOKENS = (f"alice:{ALICE}", f"bob:{BOB}")
DATABASES = ("sqlite", "postgresql")
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL of our own for the whole session, on a Unix socket; its URL (database
    `repository`). In a folder under /tmp that the postgres user can reach."""
    folder = tempfile.mkdtemp(prefix="repo-pg-", dir="/tmp")
    os.chmod(folder, 0o755)  # noqa: S103 - the postgres user must reach the socket inside
    script = str(REPO_ROOT / "scripts" / "postgres.sh")
    started = subprocess.run(
        [script, "start", folder],
        env={**os.environ, "PG_FAST": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        message = f"scripts/postgres.sh start failed: {started.stderr.strip()[-800:]}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = started.stdout.strip().splitlines()[-1].removeprefix("REPO_DB_URL=")
    try:
        yield url
    finally:
        subprocess.run([script, "stop", folder], capture_output=True, timeout=120, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _admin_url(url: str) -> str:
    """The psycopg (libpq) form of a SQLAlchemy URL, on the `postgres` database."""
    return url.replace("postgresql+psycopg://", "postgresql://").replace(
        "/repository?", "/postgres?"
    )


def fresh_postgres_database(server_url: str) -> tuple[str, str]:
    """(SQLAlchemy URL, name) of a new empty database on the session's server."""
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_url(server_url), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server_url.replace("/repository?", f"/{name}?"), name


def drop_postgres_database(server_url: str, name: str) -> None:
    with psycopg.connect(_admin_url(server_url), autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# For a test of SQLite's own behaviour (its database-wide write lock): it runs on SQLite only,
# instead of being parametrised over PostgreSQL too and skipping there.
sqlite_only = pytest.mark.parametrize(
    "db_url", [pytest.param("sqlite", id="sqlite")], indirect=True
)


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: SQLite, the default (a file under DATA_DIR); else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    server: str = request.getfixturevalue("postgres_server")
    url, name = fresh_postgres_database(server)
    try:
        yield url
    finally:
        drop_postgres_database(server, name)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def repo_config(data_dir: Path, db_url: str | None) -> ServiceConfig:
    return ServiceConfig(
        api_tokens=REPO_TOKENS,
        max_body_bytes=4 * 1024 * 1024,
        data_dir=data_dir,
        repo_db_url=db_url,
        repo_busy_timeout_ms=300,
    )


@pytest.fixture
def repo_app(repo_config: ServiceConfig) -> Iterator[Flask]:
    app = create_app(repo_config, FakeDetector())
    yield app
    repository = app.extensions["image_repository"].repository
    if repository is not None:
        repository.database.dispose()


class BufferedClient(FlaskClient):
    """Reads every answer whole and closes it, as a real client does: a file the original
    route streams is then closed within the test, not left to the garbage collector."""

    def open(self, *args: Any, buffered: bool = True, **kwargs: Any) -> Any:
        return super().open(*args, buffered=buffered, **kwargs)


@pytest.fixture
def repo_client(repo_app: Flask) -> Iterator[FlaskClient]:
    repo_app.test_client_class = BufferedClient
    with repo_app.test_client() as client:
        yield client


def with_policy(config: ServiceConfig, policy: str) -> ServiceConfig:
    return replace(config, gps_policy=policy)
