"""Backfill (legacy to new links) and reverse backfill (new to legacy), batch by batch.

Each batch is one short transaction of set-based statements over a keyset
window of appointment ids: find the window, optionally create the missing
memberships, fill both sides with one UPDATE whose values are indexed look-ups
correlated to each row, and save the checkpoint.
No lock is held between batches, and every UPDATE re-checks its condition on
the row it changes (an empty target column, a matching person), so a write the
service makes meanwhile is never overwritten. A crashed run resumes from its
checkpoint; a second run finds nothing to do.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Uuid,
    and_,
    exists,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import (
    Appointment,
    BackfillCheckpoint,
    User,
    UserRole,
    UtcDateTime,
    utcnow,
)
from appointments.sides import DOCTOR, SIDES, Side
from appointments.validation import ClinicCounts, clinic_counts


class Direction(enum.StrEnum):
    FORWARD = "forward"
    REVERSE = "reverse"


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    direction: Direction = Direction.FORWARD
    clinic_id: uuid.UUID | None = None
    batch_size: int = 1000
    create_memberships: bool = False
    dry_run: bool = False
    restart: bool = False

    @property
    def scope(self) -> str:
        return "all" if self.clinic_id is None else str(self.clinic_id)


@dataclass(frozen=True, slots=True)
class Progress:
    done: int
    total: int
    batches: int


@dataclass
class BackfillSummary:
    direction: Direction
    scope: str
    dry_run: bool
    resumed: bool = False
    batches: int = 0
    linked: dict[str, int] = field(default_factory=lambda: {"doctor": 0, "patient": 0})
    created_memberships: dict[str, int] = field(default_factory=lambda: {"doctor": 0, "patient": 0})
    remaining: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction.value,
            "scope": self.scope,
            "dry_run": self.dry_run,
            "resumed": self.resumed,
            "batches": self.batches,
            "linked": self.linked,
            "created_memberships": self.created_memberships,
            "remaining": self.remaining,
        }


ProgressCallback = Callable[[Progress], None]


async def run_backfill(
    sessions: async_sessionmaker[AsyncSession],
    options: BackfillOptions,
    on_progress: ProgressCallback | None = None,
) -> BackfillSummary:
    if options.batch_size < 1:
        raise ValueError("batch size must be at least 1")
    summary = BackfillSummary(options.direction, options.scope, options.dry_run)
    if options.dry_run:
        await _preview(sessions, options, summary)
        return summary
    async with sessions() as session, session.begin():
        checkpoint = await _start(session, options)
        summary.resumed = checkpoint.batches > 0
        after = _position(checkpoint)
        total = await _count_work(session, options, after)
    _restore(summary, checkpoint)
    done = 0
    while True:
        async with sessions() as session, session.begin():
            window = await _next_window(session, options, after)
            if window is None:
                await _finish(session, options)
                break
            rows, upper = window
            await _run_batch(session, options, after, upper, summary)
            summary.batches += 1
            await _save(session, options, upper, summary)
        after = upper
        done += rows
        if on_progress is not None:
            on_progress(Progress(done, total, summary.batches))
    async with sessions() as session:
        summary.remaining = _remaining(
            await clinic_counts(session, _clinics(options)), options.direction
        )
    return summary


def _clinics(options: BackfillOptions) -> list[uuid.UUID] | None:
    return None if options.clinic_id is None else [options.clinic_id]


def _scope(options: BackfillOptions) -> ColumnElement[bool]:
    if options.clinic_id is None:
        return Appointment.id.is_not(None)
    return Appointment.clinic_id == options.clinic_id


def _needs_work(direction: Direction, side: Side) -> ColumnElement[bool]:
    legacy = getattr(Appointment, side.legacy_column)
    new = getattr(Appointment, side.new_column)
    if direction is Direction.FORWARD:
        return and_(new.is_(None), legacy.is_not(None))
    return and_(legacy.is_(None), new.is_not(None))


def _any_work(direction: Direction) -> ColumnElement[bool]:
    return or_(*(_needs_work(direction, side) for side in SIDES))


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the keyset order (created_at, id): the order rows were written in, so a
    batch touches neighbouring table pages rather than pages all over the table."""

    created_at: datetime
    id: uuid.UUID

    def before(self) -> ColumnElement[bool]:
        """Rows after this position (a row comparison, so the index serves it as a range)."""
        return tuple_(Appointment.created_at, Appointment.id) > tuple_(
            literal(self.created_at, UtcDateTime()), literal(self.id, Uuid())
        )

    def at_or_after(self) -> ColumnElement[bool]:
        """Rows up to and including this position."""
        return tuple_(Appointment.created_at, Appointment.id) <= tuple_(
            literal(self.created_at, UtcDateTime()), literal(self.id, Uuid())
        )


def _position(checkpoint: BackfillCheckpoint) -> Position | None:
    if checkpoint.last_appointment_id is None or checkpoint.last_created_at is None:
        return None
    return Position(checkpoint.last_created_at, checkpoint.last_appointment_id)


async def _count_work(
    session: AsyncSession, options: BackfillOptions, after: Position | None
) -> int:
    statement = select(func.count()).where(_scope(options), _any_work(options.direction))
    if after is not None:
        statement = statement.where(after.before())
    return int(await session.scalar(statement) or 0)


async def _next_window(
    session: AsyncSession, options: BackfillOptions, after: Position | None
) -> tuple[int, Position] | None:
    """The next ``batch_size`` appointments needing work: their count and the last position."""
    candidates = (
        select(Appointment.created_at, Appointment.id)
        .where(_scope(options), _any_work(options.direction))
        .order_by(Appointment.created_at, Appointment.id)
        .limit(options.batch_size)
    )
    if after is not None:
        candidates = candidates.where(after.before())
    window = candidates.subquery()
    last = await session.execute(
        select(func.count().over(), window.c.created_at, window.c.id)
        .order_by(window.c.created_at.desc(), window.c.id.desc())
        .limit(1)
    )
    row = last.first()
    return None if row is None else (int(row[0]), Position(row[1], row[2]))


async def _run_batch(
    session: AsyncSession,
    options: BackfillOptions,
    after: Position | None,
    upper: Position,
    summary: BackfillSummary,
) -> None:
    in_window = and_(_scope(options), upper.at_or_after())
    if after is not None:
        in_window = and_(in_window, after.before())
    now = utcnow()
    if options.direction is Direction.FORWARD and options.create_memberships:
        for side in SIDES:
            created = await _create_memberships(session, side, in_window, now)
            summary.created_memberships[side.name] += created
    fillers = {side: _filler(side, options.direction) for side in SIDES}
    fillable = {
        side: and_(_target(side, options.direction).is_(None), fillers[side].is_not(None))
        for side in SIDES
    }
    # Counting what still needs work before and after costs no look-ups, unlike
    # counting what can be filled.
    waiting = select(
        *(func.count().filter(_needs_work(options.direction, side)) for side in SIDES)
    ).where(in_window)
    before = (await session.execute(waiting)).one()
    # One UPDATE for both sides: each row is rewritten once, and each value is an
    # indexed look-up correlated to the row, re-evaluated on the row it changes.
    await session.execute(
        update(Appointment)
        .where(in_window, or_(*fillable.values()))
        .values(
            {
                _target(side, options.direction).key: func.coalesce(
                    _target(side, options.direction), fillers[side]
                )
                for side in SIDES
            }
            | {"updated_at": now}
        )
        .execution_options(synchronize_session=False)
    )
    after_update = (await session.execute(waiting)).one()
    for side, waited, still in zip(SIDES, before, after_update, strict=True):
        summary.linked[side.name] += int(waited) - int(still)


def _target(side: Side, direction: Direction) -> Any:
    """The column a backfill fills: the new link, or (reverse) the legacy person."""
    column = side.new_column if direction is Direction.FORWARD else side.legacy_column
    return getattr(Appointment, column)


def _filler(side: Side, direction: Direction) -> Any:
    """The value for the target, looked up for the row being updated (NULL when none)."""
    membership = side.membership_model
    if direction is Direction.FORWARD:
        return (
            select(membership.id)
            .where(
                membership.clinic_id == Appointment.clinic_id,
                getattr(membership, side.person_column) == getattr(Appointment, side.legacy_column),
            )
            .scalar_subquery()
        )
    return (
        select(getattr(membership, side.person_column))
        .where(membership.id == getattr(Appointment, side.new_column))
        .scalar_subquery()
    )


def _missing_memberships(side: Side, in_window: ColumnElement[bool]) -> Any:
    """Distinct (clinic, person) pairs of the window that have no membership yet."""
    membership = side.membership_model
    legacy = getattr(Appointment, side.legacy_column)
    statement = (
        select(Appointment.clinic_id, legacy)
        .distinct()
        .where(
            in_window,
            getattr(Appointment, side.new_column).is_(None),
            legacy.is_not(None),
            ~exists().where(
                membership.clinic_id == Appointment.clinic_id,
                getattr(membership, side.person_column) == legacy,
            ),
        )
    )
    if side is DOCTOR:
        # Only users who are doctors can be made clinic doctors.
        statement = statement.join(User, User.id == legacy).where(
            User.role == UserRole.DOCTOR.value
        )
    return statement


def _linked_by_creating(side: Side, in_window: ColumnElement[bool]) -> Any:
    """How many appointments of the window only the memberships a run creates would link:
    those still unlinked whose (clinic, person) is a pair ``_missing_memberships`` gives."""
    legacy = getattr(Appointment, side.legacy_column)
    pairs = _missing_memberships(side, in_window).correlate(None)
    return select(func.count()).where(
        in_window,
        getattr(Appointment, side.new_column).is_(None),
        tuple_(Appointment.clinic_id, legacy).in_(pairs),
    )


async def _create_memberships(
    session: AsyncSession, side: Side, in_window: ColumnElement[bool], now: Any
) -> int:
    pairs = (await session.execute(_missing_memberships(side, in_window))).all()
    if not pairs:
        return 0
    rows: list[dict[str, Any]] = [
        {"id": uuid.uuid4(), "clinic_id": clinic, side.person_column: person, "created_at": now}
        for clinic, person in pairs
    ]
    if side is DOCTOR:
        for row in rows:
            row["active"] = True
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(side.membership_model)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["clinic_id", side.person_column])
        .returning(side.membership_model.id)
    )
    return len((await session.execute(statement)).all())


async def _start(session: AsyncSession, options: BackfillOptions) -> BackfillCheckpoint:
    checkpoint = await session.get(
        BackfillCheckpoint, (options.direction.value, options.scope), with_for_update=True
    )
    now = utcnow()
    if checkpoint is not None and checkpoint.finished_at is None and not options.restart:
        return checkpoint
    if checkpoint is None:
        checkpoint = BackfillCheckpoint(direction=options.direction.value, scope=options.scope)
        session.add(checkpoint)
    checkpoint.last_appointment_id = None
    checkpoint.last_created_at = None
    checkpoint.batches = 0
    checkpoint.linked_doctors = checkpoint.linked_patients = 0
    checkpoint.created_doctor_memberships = checkpoint.created_patient_memberships = 0
    checkpoint.started_at = checkpoint.updated_at = now
    checkpoint.finished_at = None
    await session.flush()
    return checkpoint


def _restore(summary: BackfillSummary, checkpoint: BackfillCheckpoint) -> None:
    summary.batches = checkpoint.batches
    summary.linked = {"doctor": checkpoint.linked_doctors, "patient": checkpoint.linked_patients}
    summary.created_memberships = {
        "doctor": checkpoint.created_doctor_memberships,
        "patient": checkpoint.created_patient_memberships,
    }


async def _save(
    session: AsyncSession, options: BackfillOptions, upper: Position, summary: BackfillSummary
) -> None:
    await session.execute(
        update(BackfillCheckpoint)
        .where(
            BackfillCheckpoint.direction == options.direction.value,
            BackfillCheckpoint.scope == options.scope,
        )
        .values(
            last_appointment_id=upper.id,
            last_created_at=upper.created_at,
            batches=summary.batches,
            linked_doctors=summary.linked["doctor"],
            linked_patients=summary.linked["patient"],
            created_doctor_memberships=summary.created_memberships["doctor"],
            created_patient_memberships=summary.created_memberships["patient"],
            updated_at=utcnow(),
        )
    )


async def _finish(session: AsyncSession, options: BackfillOptions) -> None:
    await session.execute(
        update(BackfillCheckpoint)
        .where(
            BackfillCheckpoint.direction == options.direction.value,
            BackfillCheckpoint.scope == options.scope,
        )
        .values(finished_at=utcnow(), updated_at=utcnow())
    )


def _remaining(
    counts: dict[uuid.UUID, ClinicCounts], direction: Direction
) -> dict[str, dict[str, int]]:
    """What is still not linked after the run, by side and reason."""
    remaining: dict[str, dict[str, int]] = {}
    for side in SIDES:
        sides = [getattr(clinic, side.name) for clinic in counts.values()]
        if direction is Direction.FORWARD:
            remaining[side.name] = {
                "no_membership_in_clinic": sum(s.missing_membership for s in sides),
                "membership_exists_not_yet_linked": sum(s.linkable for s in sides),
            }
        else:
            remaining[side.name] = {"legacy_column_empty": sum(s.legacy_missing for s in sides)}
    return remaining


async def _preview(
    sessions: async_sessionmaker[AsyncSession], options: BackfillOptions, summary: BackfillSummary
) -> None:
    """A dry run: what a real run would link and create, from the same SQL, writing nothing.

    Forward, a run links the rows whose membership exists (``linkable``) and, creating
    memberships, the rows those it creates link.
    """
    by_creating = dict.fromkeys(summary.linked, 0)
    async with sessions() as session:
        counts = await clinic_counts(session, _clinics(options))
        if options.direction is Direction.FORWARD and options.create_memberships:
            for side in SIDES:
                pairs = _missing_memberships(side, _scope(options)).subquery()
                created = await session.scalar(select(func.count()).select_from(pairs))
                summary.created_memberships[side.name] = int(created or 0)
                linked = await session.scalar(_linked_by_creating(side, _scope(options)))
                by_creating[side.name] = int(linked or 0)
    for side in SIDES:
        sides = [getattr(clinic, side.name) for clinic in counts.values()]
        if options.direction is Direction.FORWARD:
            summary.linked[side.name] = sum(s.linkable for s in sides) + by_creating[side.name]
        else:
            summary.linked[side.name] = sum(s.legacy_missing for s in sides)
    summary.remaining = _remaining(counts, options.direction)
