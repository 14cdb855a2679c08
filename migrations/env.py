"""Alembic environment.

From code (``migrations.upgrade``) a live connection is handed over in
``config.attributes``; from the ``alembic`` command line the database URL comes
from ``CLINIC_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from appointments.db import DEFAULT_DATABASE_URL, create_engine
from appointments.models import Base
from migrations import migration_connection

target_metadata = Base.metadata


def run_with_connection(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_environment() -> None:
    engine = create_engine(os.environ.get("CLINIC_DATABASE_URL", DEFAULT_DATABASE_URL))
    try:
        async with migration_connection(engine) as connection:
            await connection.run_sync(run_with_connection)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")

given_connection = context.config.attributes.get("connection")
if given_connection is not None:
    run_with_connection(given_connection)
else:
    asyncio.run(run_from_environment())
