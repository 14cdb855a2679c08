"""The database's appointment layout: one fact, held by the sessions (``db.layout_of``);
whether the legacy columns are there, and how a statement fails once the contract has
dropped them. The service, the CLI, the GraphQL layer and the Alembic package ask here."""

from __future__ import annotations

from enum import Enum

from sqlalchemy import Connection, inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine


class Layout(Enum):
    """Which person columns the appointments table has.

    ``EXPANDED``: the legacy ``doctor_id`` and ``patient_id`` beside the membership links,
    until the contract revision drops them; ``CONTRACTED``: the links only.
    """

    EXPANDED = "expanded"
    CONTRACTED = "contracted"

    @classmethod
    def of(cls, legacy_columns_present: bool) -> Layout:
        return cls.EXPANDED if legacy_columns_present else cls.CONTRACTED

    @property
    def legacy_columns(self) -> bool:
        return self is Layout.EXPANDED


UNDEFINED_COLUMN = "42703"
SQLITE_MISSING_COLUMN = ("no such column", "has no column named")


async def legacy_columns_present(engine: AsyncEngine) -> bool:
    """False once the contract revision has dropped ``appointments.doctor_id``/``patient_id``."""

    def read(connection: Connection) -> bool:
        columns = {column["name"] for column in inspect(connection).get_columns("appointments")}
        return "doctor_id" in columns

    async with engine.connect() as connection:
        return await connection.run_sync(read)


def is_missing_column(error: BaseException | None) -> bool:
    """Whether ``error`` is the database refusing a statement naming a column it lacks.

    PostgreSQL's UndefinedColumn (SQLSTATE 42703), SQLite's "no such column" (reads,
    updates) or "has no column named" (inserts): what a statement written for the
    legacy columns fails with once the contract dropped them. Which column is not
    told apart here; ``legacy_columns_present`` says whether the contract ran.
    """
    if not isinstance(error, DBAPIError):
        return False
    if getattr(error.orig, "sqlstate", None) == UNDEFINED_COLUMN:
        return True
    message = str(error.orig)
    return any(text in message for text in SQLITE_MISSING_COLUMN)
