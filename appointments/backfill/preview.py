"""A dry run's figures, and what a run leaves undone: from the validation report's counts
and the same SQL a run uses, over the whole scope at once, writing nothing."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import FromClause, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.backfill.options import BackfillOptions, BackfillSummary, Direction
from appointments.backfill.statements import (
    APPOINTMENTS,
    Scope,
    any_work,
    in_scope,
    linked_by_creating,
    missing_memberships,
    needs_work,
)
from appointments.membership_sql import membership_of, membership_table
from appointments.sides import SIDES
from appointments.validation import ClinicCounts, clinic_counts


def clinics(options: BackfillOptions) -> list[uuid.UUID] | None:
    return None if options.clinic_id is None else [options.clinic_id]


def remaining(
    counts: dict[uuid.UUID, ClinicCounts], direction: Direction
) -> dict[str, dict[str, int]]:
    """What still needs work, by side and reason, from the validation report's counts."""
    left: dict[str, dict[str, int]] = {}
    for side in SIDES:
        sides = [getattr(clinic, side.name) for clinic in counts.values()]
        if direction is Direction.FORWARD:
            left[side.name] = {
                "no_membership_in_clinic": sum(s.missing_membership for s in sides),
                "membership_exists_not_yet_linked": sum(s.linkable for s in sides),
            }
        else:
            left[side.name] = {"legacy_column_empty": sum(s.legacy_missing for s in sides)}
    return left


async def remaining_after(
    sessions: async_sessionmaker[AsyncSession], options: BackfillOptions
) -> dict[str, dict[str, int]]:
    """What still needs work after a run, as ``remaining`` counts it from the validation
    report, but reading only the rows that need work (after a run, few)."""
    rows = APPOINTMENTS
    columns: list[Any] = []
    joined: FromClause = rows
    for side in SIDES:
        waiting = needs_work(rows, options.direction, side)
        if options.direction is Direction.REVERSE:
            columns.append(func.count().filter(waiting))
            continue
        derived = membership_table(side).alias(f"derived_{side.name}")
        legacy = rows.c[side.legacy_column]
        joined = joined.outerjoin(derived, membership_of(side, derived, rows.c.clinic_id, legacy))
        columns += [
            func.count().filter(and_(waiting, derived.c.id.is_(None))),
            func.count().filter(and_(waiting, derived.c.id.is_not(None))),
        ]
    statement = (
        select(*columns)
        .select_from(joined)
        .where(in_scope(rows, options.clinic_id), any_work(rows, options.direction))
    )
    async with sessions() as session:
        counts = iter((await session.execute(statement)).one())
    if options.direction is Direction.REVERSE:
        return {side.name: {"legacy_column_empty": int(next(counts))} for side in SIDES}
    return {
        side.name: {
            "no_membership_in_clinic": int(next(counts)),
            "membership_exists_not_yet_linked": int(next(counts)),
        }
        for side in SIDES
    }


async def preview(
    sessions: async_sessionmaker[AsyncSession], options: BackfillOptions, summary: BackfillSummary
) -> None:
    """Fill ``summary`` with what a real run of ``options`` would do now.

    Forward, a run links the rows whose membership exists (``linkable``) and,
    creating memberships, the distinct missing (clinic, person) pairs and the rows
    those memberships link. Reverse, it fills every row whose legacy column is
    empty and whose new link is not.
    """
    by_creating = dict.fromkeys(summary.linked, 0)
    scope = Scope(options.clinic_id)
    async with sessions() as session:
        counts = await clinic_counts(session, clinics(options))
        if options.direction is Direction.FORWARD and options.create_memberships:
            for side in SIDES:
                pairs = missing_memberships(side, APPOINTMENTS.alias("pending"), scope).subquery()
                created = await session.scalar(select(func.count()).select_from(pairs))
                summary.created_memberships[side.name] = int(created or 0)
                linked = await session.scalar(linked_by_creating(side, scope))
                by_creating[side.name] = int(linked or 0)
    for side in SIDES:
        sides = [getattr(clinic, side.name) for clinic in counts.values()]
        if options.direction is Direction.FORWARD:
            summary.linked[side.name] = sum(s.linkable for s in sides) + by_creating[side.name]
        else:
            summary.linked[side.name] = sum(s.legacy_missing for s in sides)
    # What a real run would leave: every linkable row linked, the rows the created
    # memberships link no longer missing one (a dry run reports the run, not today).
    summary.remaining = remaining(counts, options.direction)
    for side in SIDES:
        left = summary.remaining[side.name]
        if options.direction is Direction.FORWARD:
            left["no_membership_in_clinic"] -= by_creating[side.name]
            left["membership_exists_not_yet_linked"] = 0
        else:
            left["legacy_column_empty"] -= summary.linked[side.name]
