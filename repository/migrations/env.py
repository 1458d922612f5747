"""Alembic's environment for the repository: runs on the connection the caller passes in
`config.attributes["connection"]` (`repository.db.upgrade`, the tests), else on the database
the service's configuration names (DATA_DIR / REPO_DB_URL from the environment)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from config import load_config
from repository.db import database_url, make_engine
from repository.tables import Base

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite alters tables by copying them; batch mode does that for later migrations.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    # AUTH is irrelevant to a migration; the config only has to name the database.
    service = load_config({**os.environ, "AUTH_DISABLED": "1"})
    assert service.data_dir is not None  # load_config always names one
    engine = make_engine(database_url(service.data_dir, service.repo_db_url), 5000)
    with engine.connect() as own:
        run_on(own)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
