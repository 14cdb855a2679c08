"""The id of every clinic, kept per process: a list across clinics sends each one's stage,
and a write checks that its clinic exists, without a statement.

A clinic is never deleted, so an id once seen stays true. The ids are read once, on
first use; a clinic created since (by this process or another) is not among them
until a page shows a row of it (``ReadModel._serve`` adds it) or a write finds it in
the database (``exists`` looks there for an id it does not know, and adds it).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.models import Clinic


class ClinicDirectory:
    """Every clinic's id, read once per process (see the module's docstring)."""

    def __init__(self) -> None:
        self._ids: frozenset[uuid.UUID] | None = None

    async def ids(self, session: Callable[[], Awaitable[AsyncSession]]) -> frozenset[uuid.UUID]:
        """Every clinic's id; read through the ``session`` it opens only the first time."""
        if self._ids is None:
            self._ids = frozenset((await (await session()).scalars(select(Clinic.id))).all())
        return self._ids

    async def exists(self, session: AsyncSession, clinic_id: uuid.UUID) -> bool:
        """Whether the clinic exists: from the ids once they are read, else from the
        database (through ``session``), which a clinic created since is then added from."""

        async def opened() -> AsyncSession:
            return session

        if clinic_id in await self.ids(opened):
            return True
        if await session.get(Clinic, clinic_id) is None:
            return False
        self.add({clinic_id})
        return True

    def add(self, clinic_ids: set[uuid.UUID]) -> None:
        if self._ids is not None:
            self._ids = self._ids | clinic_ids


clinic_directory = ClinicDirectory()
