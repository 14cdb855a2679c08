"""Running the read model for one request: pages, single appointments, payloads.

Each read learns the stages of the clinics it serves, compiles the selection for
that stage set and runs it: one statement. A list without a clinic filter sends
the stage of every clinic it may show as parameters (its statement serves every
stage, the row's clinic choosing); an appointment read by id whose clinic the
process does not know costs one more statement to learn it. Authorization is part of the
statement: lists are limited to the viewer's clinics, and a membership of a
clinic the viewer cannot see is never served.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Dialect

from appointments.access import Access
from appointments.bounded_cache import BoundedCache
from appointments.clinic_directory import clinic_directory
from appointments.db import Reader
from appointments.events import MigrationEventLog
from appointments.layout import Layout
from appointments.ledger import MismatchRecorder
from appointments.models import Appointment
from appointments.queries import (
    AppointmentFilter,
)
from appointments.read_model import bookkeeping, rows
from appointments.read_model.compiler import CompiledRead, compile_read
from appointments.read_model.driver import DriverStatement
from appointments.read_model.formats import JsonSql
from appointments.read_model.served import stage_parameters
from appointments.read_model.sources import Selection
from appointments.stages import Stage


class Stages(Protocol):
    """The request's stage of each clinic (``flags.stages.StageResolver``)."""

    def __call__(self, clinic_id: uuid.UUID) -> Stage:
        """The clinic's stage, reported as served to the response."""
        ...

    def peek(self, clinic_id: uuid.UUID) -> Stage:
        """The clinic's stage, not reported (it may have no row in the response)."""
        ...

    def peek_all(self, clinic_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Stage]:
        """``peek`` of each clinic, evaluated as one batch."""
        ...


COMPILED_READS = 512
"""Distinct read shapes (selection, stage set, rows) whose statements are kept."""
COMPILED_READS_SQL = 300_000
"""Characters of SQL the kept statements may hold in all. A statement's compiled state
(its SQLAlchemy tree, cache key and compiled form) takes 40 to 80 bytes per character
of its SQL: 12 to 24 MB per process, whatever the selections requests send."""
STAGED_CLINICS = 500
"""Clinics whose stages a list across clinics sends as parameters; beyond that (a
deployment this large), a first statement learns which clinics the page is in."""
SERVED_ACROSS_CLINICS = {Layout.EXPANDED: tuple(Stage), Layout.CONTRACTED: (Stage.COMPLETE,)}
"""The stages a list across clinics is compiled for, by whether the legacy columns
exist: every stage, or the one stage a contracted database serves."""
KNOWN_CLINICS = 50_000
"""Appointments whose clinic the process remembers (see ``KnownClinics``)."""


class KnownClinics:
    """The clinic of the appointments this process read lately.

    An appointment's clinic is set when it is booked and never changes, so what is
    remembered stays true: a read of an appointment by id whose clinic is known (it
    was on a page the process served, or read before) needs no statement to learn
    it. The oldest entries are forgotten beyond ``capacity``.
    """

    def __init__(self, capacity: int = KNOWN_CLINICS) -> None:
        self._capacity = capacity
        self._clinics: dict[uuid.UUID, uuid.UUID] = {}

    def get(self, appointment_id: uuid.UUID) -> uuid.UUID | None:
        return self._clinics.get(appointment_id)

    def forget(self, appointment_id: uuid.UUID) -> None:
        self._clinics.pop(appointment_id, None)

    def remember(self, appointment_id: uuid.UUID, clinic_id: uuid.UUID) -> None:
        clinics = self._clinics
        if appointment_id not in clinics:
            clinics[appointment_id] = clinic_id
            if len(clinics) > self._capacity:
                del clinics[next(iter(clinics))]


known_clinics = KnownClinics()


@dataclass(frozen=True, slots=True)
class ServedRow:
    """One appointment as the response shows it: its JSON, and what its cursor needs."""

    id: uuid.UUID
    clinic_id: uuid.UUID
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
        stage_for: Stages,
        events: MigrationEventLog,
        recorder: MismatchRecorder,
        sample_ratio: float,
    ) -> None:
        self._stage_for = stage_for
        self._events = events
        self._recorder = recorder
        self._sampled = bookkeeping.sampler(sample_ratio)

    async def page(
        self,
        reader: Reader,
        selection: Selection,
        access: Access,
        where: AppointmentFilter,
        first: int | None,
        after: str | None,
    ) -> ServedPage:
        source, size = rows.page(where, first, after, access.visible_clinics)
        if where.clinic_id is not None:
            if not access.sees(where.clinic_id):
                return ServedPage([], False)  # nothing to read, and no stage to reveal
            stages = {where.clinic_id: self._stage_for(where.clinic_id)}
            served = await self._serve(reader, selection, access, source, stages, size)
            return ServedPage(served[:size], len(served) > size)
        visible = access.visible_clinics
        if visible is None:
            clinics = await clinic_directory.ids(reader.session)
        else:
            clinics = visible
        if len(clinics) > STAGED_CLINICS:
            located = select(rows.from_clause(source.key, reader.layout).c.clinic_id)
            session = await reader.session()
            clinics = frozenset((await session.scalars(located, source.parameters)).all())
        stages = self._stage_for.peek_all(clinics)
        served = await self._serve(reader, selection, access, source, stages, size, True)
        for clinic in {row.clinic_id for row in served[:size]}:
            self._stage_for(clinic)  # reported: the response shows rows of it
        return ServedPage(served[:size], len(served) > size)

    async def one(
        self,
        reader: Reader,
        selection: Selection,
        access: Access,
        appointment_id: uuid.UUID,
        clinic_id: uuid.UUID | None = None,
    ) -> str | None:
        """The appointment's JSON, or None when it does not exist or is not the viewer's.

        ``clinic_id``, when given, must be the appointment's (a payload's row)."""
        if clinic_id is None:
            remembered = known_clinics.get(appointment_id)
            if remembered is not None:
                found = await self._one_in(reader, selection, access, appointment_id, remembered)
                if found is not None:
                    return found
                # Nothing remembered is taken on trust: learn the clinic again.
                known_clinics.forget(appointment_id)
            clinics = await _clinic_of(reader.connection.dialect).run(
                reader.connection, {"appointment_id": appointment_id}
            )
            if not clinics:
                return None
            clinic_id = clinics[0][0]
        return await self._one_in(reader, selection, access, appointment_id, clinic_id)

    async def _one_in(
        self,
        reader: Reader,
        selection: Selection,
        access: Access,
        appointment_id: uuid.UUID,
        clinic_id: uuid.UUID,
    ) -> str | None:
        if not access.sees(clinic_id):
            return None
        stages = {clinic_id: self._stage_for(clinic_id)}
        source = rows.by_id(appointment_id, clinic_id)
        served = await self._serve(reader, selection, access, source, stages)
        return served[0].node if served else None

    async def snapshot(
        self, reader: Reader, selection: Selection, access: Access, row: Appointment
    ) -> str | None:
        """A stored appointment (an idempotent replay's) served as it was stored: its own
        columns from the snapshot, what it links to as the database has it now."""
        source = rows.snapshot(row, reader.layout)
        stages = {row.clinic_id: self._stage_for(row.clinic_id)}
        served = await self._serve(reader, selection, access, source, stages)
        return served[0].node if served else None

    async def _serve(
        self,
        reader: Reader,
        selection: Selection,
        access: Access,
        source: rows.RowSource,
        stages: dict[uuid.UUID, Stage],
        shown: int | None = None,
        across_clinics: bool = False,
    ) -> list[ServedRow]:
        """The rows' JSON; the first ``shown`` (all by default) are the ones the response
        shows, and only they are counted, compared and recorded (a page reads one more
        row to learn whether another page follows).

        ``stages`` holds the stage of every clinic the rows may be in. ``across_clinics``
        (a list without a clinic filter): the statement serves every stage, each row's
        chosen from the parameters, so its text is the same whatever stages the clinics
        are in; a row of a clinic missing from ``stages`` (created since the process
        learned the clinics) has its clinic's stage learned and the statement run again.
        """
        if not stages and not across_clinics:
            return []
        postgres = reader.connection.dialect.name == "postgresql"
        layout = reader.layout
        served_stages = (
            SERVED_ACROSS_CLINICS[layout] if across_clinics else tuple(sorted(set(stages.values())))
        )
        key = (
            "postgresql" if postgres else "sqlite",
            selection,
            served_stages,
            layout,
            access.clinics is None,
            source.key,
        )
        shape = _shape(key)
        compiled = shape.read
        started = time.perf_counter()
        result = await self._run(reader, shape, key, access, source, stages, served_stages)
        at = compiled.row
        missing = {row[at.clinic_id] for row in result} - stages.keys()
        if missing:
            clinic_directory.add(missing)
            stages = {**stages, **self._stage_for.peek_all(missing)}
            result = await self._run(reader, shape, key, access, source, stages, served_stages)
        bookkeeping.report(
            result if shown is None else result[:shown],
            compiled,
            stages,
            self._events,
            self._recorder,
            self._sampled,
            time.perf_counter() - started,
        )
        for row in result:
            known_clinics.remember(row[at.id], row[at.clinic_id])
        return [
            ServedRow(row[at.id], row[at.clinic_id], row[at.starts_at], row[at.node])
            for row in result
        ]

    async def _run(
        self,
        reader: Reader,
        shape: Shape,
        key: ShapeKey,
        access: Access,
        source: rows.RowSource,
        stages: dict[uuid.UUID, Stage],
        served_stages: tuple[Stage, ...],
    ) -> Sequence[Any]:
        parameters = {**source.parameters, **stage_parameters(stages, served_stages)}
        if access.clinics is not None:
            parameters["viewer_clinics"] = sorted(access.clinics)
        connection = reader.connection
        driver = shape.driver
        if driver is None:
            driver = shape.driver = DriverStatement.of(shape.read.statement, connection.dialect)
            shapes.reweigh(key, len(driver.sql))
            _collect_dropped_shapes()
        return await driver.run(connection, parameters)


_CLINIC_OF = select(Appointment.clinic_id).where(Appointment.id == bindparam("appointment_id"))
_clinic_of_by_dialect: dict[str, DriverStatement] = {}


def _clinic_of(dialect: Dialect) -> DriverStatement:
    """The statement that learns an appointment's clinic, for ``dialect``."""
    found = _clinic_of_by_dialect.get(dialect.name)
    if found is None:
        found = _clinic_of_by_dialect[dialect.name] = DriverStatement.of(_CLINIC_OF, dialect)
    return found


@dataclass(slots=True)
class Shape:
    """One shape's statement and its SQL for the driver (filled on first use)."""

    read: CompiledRead
    driver: DriverStatement | None = None


ShapeKey = tuple[str, Selection, tuple[Stage, ...], Layout, bool, rows.RowKey]
shapes: BoundedCache[ShapeKey, Shape] = BoundedCache(COMPILED_READS, COMPILED_READS_SQL)
"""The statements of the read shapes served lately (building one costs far more than
running it); weighed by their SQL once it is compiled."""


def _collect_dropped_shapes() -> None:
    """A full garbage collection once the cache has turned over.

    A statement's objects form reference cycles and are old by the time they are
    dropped, so only a full collection frees them, and with the service's collector
    threshold (``CLINIC_GC_THRESHOLD``) that is rare: a stream of new selections
    grew a worker by hundreds of megabytes of dropped statements. Traffic whose shapes
    fit in the cache never pays for this.
    """
    if shapes.evicted_weight >= shapes.max_weight:
        shapes.evicted_weight = 0
        gc.collect()


def _shape(key: ShapeKey) -> Shape:
    shape = shapes.get(key)
    if shape is None:
        dialect, selection, stages, layout, sees_every_clinic, row_key = key
        read = compile_read(
            JsonSql(dialect),
            selection,
            rows.from_clause(row_key, layout),
            stages,
            layout,
            sees_every_clinic,
        )
        shape = Shape(read)
        # Weighed as the bound allows until its SQL is known (first use).
        shapes.put(key, shape, 0)
    return shape
