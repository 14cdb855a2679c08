"""Running the read model for one request: pages, single appointments, payloads.

Each read learns the stages of the clinics it serves, compiles the selection for
that stage set and runs it: one statement when the clinic is known from the
arguments (a list filtered by clinic, a payload), one more to learn a page's
clinics (or an appointment's) when it is not. Authorization is part of the
statement: lists are limited to the viewer's clinics, and a membership of a
clinic the viewer cannot see is never served.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.access import Access
from appointments.events import MigrationEventLog
from appointments.ledger import MismatchRecorder
from appointments.models import Appointment
from appointments.queries import (
    APPOINTMENT_ORDER,
    AppointmentFilter,
    appointments_matching,
    page_statement,
)
from appointments.read_model import bookkeeping
from appointments.read_model.compiler import compile_read
from appointments.read_model.formats import JsonSql
from appointments.read_model.served import stage_parameters
from appointments.sides import SIDES
from appointments.stages import Stage
from schema.selection import Selection

StageLookup = Callable[[uuid.UUID], Stage]


@dataclass(frozen=True, slots=True)
class ServedRow:
    """One appointment as the response shows it: its JSON, and what its cursor needs."""

    id: uuid.UUID
    starts_at: Any
    node: str


@dataclass(frozen=True, slots=True)
class ServedPage:
    rows: list[ServedRow]
    has_next_page: bool


class ReadModel:
    """The request's appointment reads (one per request, like its session)."""

    def __init__(
        self,
        stage_for: StageLookup,
        events: MigrationEventLog,
        recorder: MismatchRecorder,
        sample_ratio: float,
        legacy_columns: bool,
    ) -> None:
        self._stage_for = stage_for
        self._events = events
        self._recorder = recorder
        self._sampled = bookkeeping.sampler(sample_ratio)
        self._legacy_columns = legacy_columns

    async def page(
        self,
        session: AsyncSession,
        selection: Selection,
        access: Access,
        where: AppointmentFilter,
        first: int | None,
        after: str | None,
    ) -> ServedPage:
        matching = appointments_matching(where, self._legacy_columns, access.visible_clinics)
        statement, size = page_statement(matching, APPOINTMENT_ORDER, first, after)
        statement = statement.with_only_columns(*self._columns())
        if where.clinic_id is not None:
            if not access.sees(where.clinic_id):
                return ServedPage([], False)  # nothing to read, and no stage to reveal
            stages = {where.clinic_id: self._stage_for(where.clinic_id)}
            rows = await self._serve(session, selection, access, statement.subquery(), stages)
        else:
            located = statement.with_only_columns(Appointment.id, Appointment.clinic_id)
            found = (await session.execute(located)).all()
            ids = [row.id for row in found[:size]]
            stages = {
                clinic: self._stage_for(clinic)
                for clinic in {row.clinic_id for row in found[:size]}
            }
            rows = await self._serve(
                session,
                selection,
                access,
                select(*self._columns()).where(Appointment.id.in_(ids)).subquery() if ids else None,
                stages,
            )
            return ServedPage(rows, len(found) > size)
        return ServedPage(rows[:size], len(rows) > size)

    async def one(
        self,
        session: AsyncSession,
        selection: Selection,
        access: Access,
        appointment_id: uuid.UUID,
        clinic_id: uuid.UUID | None = None,
    ) -> str | None:
        """The appointment's JSON, or None when it does not exist or is not the viewer's."""
        if clinic_id is None:
            clinic_id = await session.scalar(
                select(Appointment.clinic_id).where(Appointment.id == appointment_id)
            )
            if clinic_id is None:
                return None
        if not access.sees(clinic_id):
            return None
        rows = select(*self._columns()).where(Appointment.id == appointment_id).subquery()
        served = await self._serve(
            session, selection, access, rows, {clinic_id: self._stage_for(clinic_id)}
        )
        return served[0].node if served else None

    async def snapshot(
        self, session: AsyncSession, selection: Selection, access: Access, row: Appointment
    ) -> str | None:
        """A stored appointment (an idempotent replay's) served as it was stored: its own
        columns from the snapshot, what it links to as the database has it now."""
        values = [
            literal(getattr(row, column.key), column.type).label(column.key)
            for column in self._columns()
        ]
        served = await self._serve(
            session,
            selection,
            access,
            select(*values).subquery(),
            {row.clinic_id: self._stage_for(row.clinic_id)},
        )
        return served[0].node if served else None

    def _columns(self) -> list[Any]:
        """The appointment columns the database has (no legacy ones once contracted)."""
        legacy = {side.legacy_column for side in SIDES}
        return [
            column
            for column in Appointment.__table__.c
            if self._legacy_columns or column.key not in legacy
        ]

    async def _serve(
        self,
        session: AsyncSession,
        selection: Selection,
        access: Access,
        rows: Any,
        stages: dict[uuid.UUID, Stage],
    ) -> list[ServedRow]:
        if rows is None or not stages:
            return []
        bind = session.bind
        dialect = (
            "postgresql" if bind is not None and bind.dialect.name == "postgresql" else "sqlite"
        )
        compiled = compile_read(
            JsonSql(dialect),
            selection,
            rows,
            sorted(set(stages.values())),
            self._legacy_columns,
            access.clinics is None,
        )
        parameters: dict[str, Any] = stage_parameters(stages)
        if access.clinics is not None:
            parameters["viewer_clinics"] = sorted(access.clinics)
        started = time.perf_counter()
        statement: Select[Any] = compiled.statement
        result = (await session.execute(statement, parameters)).all()
        bookkeeping.report(
            result,
            compiled.sides,
            stages,
            self._events,
            self._recorder,
            self._sampled,
            time.perf_counter() - started,
        )
        return [ServedRow(row[0], row[2], row[3]) for row in result]
