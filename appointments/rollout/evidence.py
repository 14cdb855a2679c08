"""What the rollout's guards read, all from the database, per clinic and window.

A clinic's window starts when it entered its current stage (its latest applied
stage change in the audit trail) or when it was last released, whichever is
later. Evidence that cannot be obtained is named in ``missing``; a clinic with
missing evidence is held where it is, never moved forward.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import health
from appointments.models import MigrationMismatch, MismatchStatus
from appointments.stages import Stage, next_stage
from appointments.validation import (
    blockers_for,
    clinic_counts,
    linkable_rows,
    promotion_blockers,
)

logger = logging.getLogger("appointments.rollout")


@dataclass(frozen=True, slots=True)
class Evidence:
    """One clinic's evidence over its window; None where it could not be obtained."""

    since: datetime
    mismatches: int | None = None
    read_fallbacks: int | None = None
    write_failures: int | None = None
    current_blockers: tuple[str, ...] | None = None
    next_blockers: tuple[str, ...] | None = None
    linkable: int = 0
    """Appointments a backfill would link, when linking them is all the next stage's
    readiness lacks (else 0)."""
    missing: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "window_start": self.since.isoformat(),
            "mismatches": self.mismatches,
            "read_fallbacks": self.read_fallbacks,
            "write_failures": self.write_failures,
            "readiness_current": _listed(self.current_blockers),
            "readiness_next": _listed(self.next_blockers),
            "linkable": self.linkable,
            "missing": list(self.missing),
        }


def _listed(blockers: tuple[str, ...] | None) -> list[str] | None:
    return None if blockers is None else list(blockers)


async def _mismatches(
    session: AsyncSession, since: Mapping[uuid.UUID, datetime]
) -> dict[uuid.UUID, int]:
    """Ledger entries opened or seen in each clinic's window (triaged ``ignored`` ones aside:
    QA accepted them)."""
    counts = dict.fromkeys(since, 0)
    rows = await session.execute(
        select(MigrationMismatch.clinic_id, MigrationMismatch.last_seen_at)
        .where(MigrationMismatch.clinic_id.in_(list(since)))
        .where(MigrationMismatch.status != MismatchStatus.IGNORED.value)
        .where(MigrationMismatch.last_seen_at >= min(since.values()))
    )
    for clinic_id, last_seen_at in rows:
        if last_seen_at >= since[clinic_id]:
            counts[clinic_id] += 1
    return counts


async def gather(
    sessions: async_sessionmaker[AsyncSession],
    clinics: Mapping[uuid.UUID, tuple[Stage, datetime]],
) -> dict[uuid.UUID, Evidence]:
    """Evidence of each clinic (its stage and window start given), in three reads; each
    read that fails leaves its evidence missing for every clinic."""
    if not clinics:
        return {}
    since = {clinic_id: start for clinic_id, (_, start) in clinics.items()}
    missing: list[str] = []
    mismatches: dict[uuid.UUID, int] = {}
    health_counts: dict[uuid.UUID, tuple[int, int]] = {}
    blockers: dict[uuid.UUID, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    linkable: dict[uuid.UUID, int] = {}
    try:
        async with sessions() as session:
            mismatches = await _mismatches(session, since)
    except Exception as error:
        missing.append(f"mismatch ledger unreadable: {_short(error)}")
    try:
        async with sessions() as session:
            health_counts = await health.counts_since(session, since)
    except Exception as error:
        missing.append(f"health counters unreadable: {_short(error)}")
    try:
        async with sessions() as session:
            counts = await clinic_counts(session, list(clinics))
        for clinic_id, (stage, _) in clinics.items():
            found = counts.get(clinic_id)
            if found is None:
                blockers[clinic_id] = ((), ())
                continue
            following = next_stage(stage)
            current = blockers_for(stage, found.doctor, found.patient)
            upcoming = (
                ()
                if following is None
                else promotion_blockers(following, found.doctor, found.patient)
            )
            blockers[clinic_id] = (current, upcoming)
            if (
                following is not None
                and upcoming
                and not promotion_blockers(
                    following, found.doctor.backfilled(), found.patient.backfilled()
                )
            ):
                linkable[clinic_id] = linkable_rows(found.doctor, found.patient)
    except Exception as error:
        missing.append(f"validation report unobtainable: {_short(error)}")
    if missing:
        logger.warning("rollout evidence missing", extra={"problems": missing})
    evidence = {}
    for clinic_id, start in since.items():
        counted = health_counts.get(clinic_id)
        readiness = blockers.get(clinic_id)
        evidence[clinic_id] = Evidence(
            since=start,
            mismatches=mismatches.get(clinic_id),
            read_fallbacks=None if counted is None else counted[0],
            write_failures=None if counted is None else counted[1],
            current_blockers=None if readiness is None else readiness[0],
            next_blockers=None if readiness is None else readiness[1],
            linkable=linkable.get(clinic_id, 0),
            missing=tuple(missing),
        )
    return evidence


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
