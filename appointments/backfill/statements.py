"""The SQL of a backfill: which appointments need work, a batch's window, and the
set-based statements that create memberships and fill the links of a window.

A window is a range of the keyset order (created_at, id) of appointments, the
order rows were written in, so a batch reads and writes neighbouring pages. Its
statements join the window's rows to the membership tables (the planner picks
hash or nested-loop joins) rather than looking each row's membership up on its
own. Every UPDATE re-checks, on the row version it changes, that the target is
still empty and the source still the one its value was derived from, so a write
the service commits meanwhile is never overwritten.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    FromClause,
    Select,
    Table,
    Update,
    Uuid,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.backfill.options import Direction
from appointments.membership_sql import membership_of, membership_table, person_of
from appointments.models import Appointment, User, UserRole, UtcDateTime
from appointments.sides import DOCTOR, SIDES, Side

APPOINTMENTS = cast("Table", Appointment.__table__)
USERS = cast("Table", User.__table__)


def target_column(side: Side, direction: Direction) -> str:
    """The column a backfill fills: the new link, or (reverse) the legacy person."""
    return side.new_column if direction is Direction.FORWARD else side.legacy_column


def source_column(side: Side, direction: Direction) -> str:
    """The column a backfill fills from: the legacy person, or (reverse) the new link."""
    return side.legacy_column if direction is Direction.FORWARD else side.new_column


def needs_work(rows: FromClause, direction: Direction, side: Side) -> ColumnElement[bool]:
    """The side's target is empty and its source is not."""
    return and_(
        rows.c[target_column(side, direction)].is_(None),
        rows.c[source_column(side, direction)].is_not(None),
    )


def any_work(
    rows: FromClause, direction: Direction, sides: tuple[Side, ...] = SIDES
) -> ColumnElement[bool]:
    return or_(*(needs_work(rows, direction, side) for side in sides))


def in_scope(rows: FromClause, clinic_id: uuid.UUID | None) -> ColumnElement[bool]:
    return true() if clinic_id is None else rows.c.clinic_id == clinic_id


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the keyset order (created_at, id).

    Each comparison is the row comparison, which the (created_at, id) index serves
    as a range, and the same bound on created_at alone: PostgreSQL estimates a row
    comparison with a fixed guess (a quarter of a million rows of a million-row
    table, then plans a spilling hash join and compiles it with JIT), and created_at
    alone from its histogram.
    """

    created_at: datetime
    id: uuid.UUID

    def _value(self) -> ColumnElement[Any]:
        return tuple_(literal(self.created_at, UtcDateTime()), literal(self.id, Uuid()))

    def rows_after(self, rows: FromClause) -> ColumnElement[bool]:
        return and_(
            rows.c.created_at >= literal(self.created_at, UtcDateTime()),
            tuple_(rows.c.created_at, rows.c.id) > self._value(),
        )

    def rows_up_to(self, rows: FromClause) -> ColumnElement[bool]:
        return and_(
            rows.c.created_at <= literal(self.created_at, UtcDateTime()),
            tuple_(rows.c.created_at, rows.c.id) <= self._value(),
        )


class Rows(Protocol):
    """A set of appointments, as a condition on any alias of the appointments table."""

    def contains(self, rows: FromClause) -> ColumnElement[bool]: ...


@dataclass(frozen=True, slots=True)
class Scope:
    """Every appointment of the clinic, or of all clinics when ``clinic_id`` is None."""

    clinic_id: uuid.UUID | None

    def contains(self, rows: FromClause) -> ColumnElement[bool]:
        return in_scope(rows, self.clinic_id)


@dataclass(frozen=True, slots=True)
class Window:
    """One batch: the appointments in scope after ``after`` (from the start when None) up to
    and including ``upper``. A batch's statements all work on the same window."""

    clinic_id: uuid.UUID | None
    after: Position | None
    upper: Position

    def contains(self, rows: FromClause) -> ColumnElement[bool]:
        conditions = [in_scope(rows, self.clinic_id), self.upper.rows_up_to(rows)]
        if self.after is not None:
            conditions.append(self.after.rows_after(rows))
        return and_(*conditions)


async def count_work(
    session: AsyncSession, direction: Direction, clinic_id: uuid.UUID | None, after: Position | None
) -> int:
    """Appointments in scope after ``after`` that need work."""
    statement = select(func.count()).where(
        in_scope(APPOINTMENTS, clinic_id), any_work(APPOINTMENTS, direction)
    )
    if after is not None:
        statement = statement.where(after.rows_after(APPOINTMENTS))
    return int(await session.scalar(statement) or 0)


async def next_window(
    session: AsyncSession,
    direction: Direction,
    clinic_id: uuid.UUID | None,
    after: Position | None,
    size: int,
) -> tuple[int, Window] | None:
    """The window of the next ``size`` appointments needing work, and how many need it;
    None when none is left. Reads only; the batch's statements re-check every row."""
    candidates = (
        select(APPOINTMENTS.c.created_at, APPOINTMENTS.c.id)
        .where(in_scope(APPOINTMENTS, clinic_id), any_work(APPOINTMENTS, direction))
        .order_by(APPOINTMENTS.c.created_at, APPOINTMENTS.c.id)
        .limit(size)
    )
    if after is not None:
        candidates = candidates.where(after.rows_after(APPOINTMENTS))
    found = candidates.subquery()
    last = await session.execute(
        select(func.count().over(), found.c.created_at, found.c.id)
        .order_by(found.c.created_at.desc(), found.c.id.desc())
        .limit(1)
    )
    row = last.first()
    if row is None:
        return None
    return int(row[0]), Window(clinic_id, after, Position(row[1], row[2]))


def _fills(direction: Direction, sides: tuple[Side, ...], window: Window) -> Any:
    """The window's appointments needing work, each with, per side, the value that fills
    its target (NULL when there is none) and the source it was derived from.

    Forward the value is the membership of (the row's clinic, its legacy person);
    reverse it is the person of the membership the row links. A side already
    filled joins nothing, so its value is NULL.
    """
    pending = APPOINTMENTS.alias("pending")
    columns: list[Any] = [pending.c.id, pending.c.clinic_id]
    joined: FromClause = pending
    for side in sides:
        membership = membership_table(side).alias(f"{side.name}_membership")
        source = pending.c[source_column(side, direction)]
        if direction is Direction.FORWARD:
            found = membership_of(side, membership, pending.c.clinic_id, source)
            value: ColumnElement[Any] = membership.c.id
        else:
            found = membership.c.id == source
            value = person_of(side, membership)
        empty = pending.c[target_column(side, direction)].is_(None)
        joined = joined.outerjoin(membership, and_(empty, found))
        columns += [source.label(f"{side.name}_source"), value.label(f"{side.name}_value")]
    return (
        select(*columns)
        .select_from(joined)
        .where(window.contains(pending), any_work(pending, direction, sides))
        .subquery("fills")
    )


def link_statement(
    direction: Direction, sides: tuple[Side, ...], window: Window, now: datetime
) -> tuple[Update, list[ColumnElement[bool]]]:
    """One UPDATE filling ``sides`` of the window's rows from ``_fills``, and per side a
    condition for its RETURNING: true where the row now holds the value derived for it.

    A side is filled only where, on the row as it is when the UPDATE changes it,
    the target is still empty and the source is still the one the value was
    derived from (forward: the same clinic too); otherwise it keeps its value.
    Rows where no side is filled are not written.
    """
    fills = _fills(direction, sides, window)
    table = APPOINTMENTS

    def fillable(side: Side) -> ColumnElement[bool]:
        return and_(
            table.c[target_column(side, direction)].is_(None),
            table.c[source_column(side, direction)] == fills.c[f"{side.name}_source"],
            fills.c[f"{side.name}_value"].is_not(None),
        )

    # The clinic is re-checked where the value is chosen rather than in WHERE: there
    # PostgreSQL would take it as a second join condition on the row's id and plan for
    # a fiftieth of the rows. A row whose clinic changed is written with its links as
    # they are.
    same_clinic = table.c.clinic_id == fills.c.clinic_id
    values: dict[str, Any] = {
        target_column(side, direction): case(
            (
                and_(fillable(side), same_clinic)
                if direction is Direction.FORWARD
                else fillable(side),
                fills.c[f"{side.name}_value"],
            ),
            else_=table.c[target_column(side, direction)],
        )
        for side in sides
    }
    statement = (
        update(table)
        .where(table.c.id == fills.c.id, window.contains(table), or_(*map(fillable, sides)))
        .values(values | {"updated_at": now})
    )
    filled = [
        (table.c[target_column(side, direction)] == fills.c[f"{side.name}_value"]).label(side.name)
        for side in sides
    ]
    return statement, filled


async def link_window(
    session: AsyncSession, direction: Direction, window: Window, now: datetime
) -> dict[str, int]:
    """Fill both sides of the window's rows; how many of each side were filled.

    PostgreSQL: one UPDATE for both sides, each row written once, counted from its
    RETURNING (a side counts when its value is the one derived for it). SQLite
    cannot read the UPDATE's FROM in RETURNING, so there each side is its own
    UPDATE, counted by its row count; its writers take turns on the whole file,
    so the batch's statements are as good as one.
    """
    if session.get_bind().dialect.name == "postgresql":
        statement, filled = link_statement(direction, SIDES, window, now)
        linked = statement.returning(*filled).cte("linked")
        counts = select(*(func.count().filter(linked.c[side.name]) for side in SIDES))
        row = (await session.execute(counts)).one()
        return {side.name: int(count) for side, count in zip(SIDES, row, strict=True)}
    by_side = {}
    for side in SIDES:
        statement, _filled = link_statement(direction, (side,), window, now)
        result = cast("CursorResult[Any]", await session.execute(statement))
        by_side[side.name] = result.rowcount
    return by_side


def missing_memberships(side: Side, rows: FromClause, among: Rows) -> Select[Any]:
    """The distinct (clinic, legacy person) pairs of the appointments ``among`` (read from
    ``rows``, an alias of the appointments table) whose new link is empty and who have no
    membership in the clinic; doctor side, only users whose role is doctor (only they
    can be made clinic doctors)."""
    existing = membership_table(side).alias("existing")
    legacy = rows.c[side.legacy_column]
    statement = select(rows.c.clinic_id.label("clinic_id"), legacy.label("person_id")).where(
        among.contains(rows),
        rows.c[side.new_column].is_(None),
        legacy.is_not(None),
        ~exists().where(membership_of(side, existing, rows.c.clinic_id, legacy)),
    )
    if side is DOCTOR:
        statement = statement.join(
            USERS, and_(USERS.c.id == legacy, USERS.c.role == UserRole.DOCTOR.value)
        )
    return statement.group_by(rows.c.clinic_id, legacy)


def linked_by_creating(side: Side, among: Rows) -> Select[Any]:
    """How many appointments ``among`` only the memberships a run creates would link:
    those unlinked whose (clinic, legacy person) is a pair ``missing_memberships`` gives."""
    rows = APPOINTMENTS.alias("unlinked")
    pairs = missing_memberships(side, APPOINTMENTS.alias("others"), among)
    return select(func.count()).where(
        among.contains(rows),
        rows.c[side.new_column].is_(None),
        tuple_(rows.c.clinic_id, rows.c[side.legacy_column]).in_(pairs),
    )


async def create_memberships(
    session: AsyncSession, side: Side, window: Window, now: datetime
) -> int:
    """Create the memberships the window's unlinked rows lack, in one INSERT ... SELECT;
    how many it created. One created meanwhile by someone else is left as it is."""
    pending = APPOINTMENTS.alias("pending")
    pairs = missing_memberships(side, pending, window).subquery("pairs")
    table = cast("Table", side.membership_model.__table__)
    names = ["id", "clinic_id", side.person_column, "created_at"]
    columns: list[Any] = [
        func.gen_random_uuid(type_=Uuid()),
        pairs.c.clinic_id,
        pairs.c.person_id,
        literal(now, UtcDateTime()),
    ]
    if side is DOCTOR:
        names.append("active")
        columns.append(true())
    # SQLite reads "ON CONFLICT" after a SELECT without WHERE as a join constraint.
    rows = select(*columns).where(true())
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .from_select(names, rows)
        .on_conflict_do_nothing(index_elements=["clinic_id", side.person_column])
        .returning(table.c.id)
    )
    return len((await session.execute(statement)).all())
