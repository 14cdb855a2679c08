"""The validation report and readiness: how far each clinic's data is from the new model.

Every count is computed in SQL over the whole table (one grouped query), never
by loading rows. The same checks as the shadow comparison: a row is
inconsistent when its stored membership names another person than the legacy
column, or belongs to another clinic than the appointment.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, case, func, null, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.db import layout_of
from appointments.layout import Layout
from appointments.membership_sql import membership_of, membership_table, person_of
from appointments.models import Appointment, Clinic, MigrationMismatch, MismatchStatus
from appointments.sides import SIDES, Side
from appointments.stages import STAGE_ORDER, STAGE_POLICIES, Stage, StageLookup, next_stage


@dataclass(frozen=True, slots=True)
class SideCounts:
    """One side (doctor or patient) of a clinic's appointments."""

    linked: int
    linkable: int
    missing_membership: int
    legacy_missing: int
    inconsistent: int

    @property
    def unlinked(self) -> int:
        return self.linkable + self.missing_membership

    def backfilled(self) -> SideCounts:
        """These counts once a backfill (no memberships created) has linked what it can."""
        return replace(self, linked=self.linked + self.linkable, linkable=0)


@dataclass(frozen=True, slots=True)
class ClinicReport:
    clinic_id: uuid.UUID
    clinic_name: str
    total: int
    fully_linked: int
    doctor: SideCounts
    patient: SideCounts
    open_mismatches: int
    stage: Stage
    next_stage: Stage | None
    blockers: tuple[str, ...] = field(default=())

    @property
    def inconsistent(self) -> int:
        return self.doctor.inconsistent + self.patient.inconsistent

    @property
    def ready_for_next(self) -> bool:
        return not self.blockers

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["clinic_id"] = str(self.clinic_id)
        data["stage"] = self.stage.value
        data["next_stage"] = None if self.next_stage is None else self.next_stage.value
        data["blockers"] = list(self.blockers)
        data["ready_for_next"] = self.ready_for_next
        data["inconsistent"] = self.inconsistent
        for side in ("doctor", "patient"):
            data[side]["unlinked"] = getattr(self, side).unlinked
        return data


def blockers_for(stage: Stage, doctor: SideCounts, patient: SideCounts) -> tuple[str, ...]:
    """Why a clinic cannot be served ``stage`` yet; empty when it can.

    Stages where legacy is authoritative are always safe. Once the new model is
    authoritative, every appointment needs both new links, and they must agree
    with the legacy ones.
    """
    if not STAGE_POLICIES[stage].new_authoritative:
        return ()
    reasons: list[str] = []
    for name, counts in (("doctor", doctor), ("patient", patient)):
        if counts.unlinked:
            reasons.append(f"{counts.unlinked} appointments have no clinic {name} link")
        if counts.inconsistent:
            reasons.append(
                f"{counts.inconsistent} appointments have a clinic {name} that disagrees"
            )
    return tuple(reasons)


def promotion_blockers(stage: Stage, doctor: SideCounts, patient: SideCounts) -> tuple[str, ...]:
    """Why a clinic should not be promoted into ``stage`` yet: what ``blockers_for`` says,
    and for a compared stage, rows booked before ``dual_write`` that could be linked but
    are not (each would be recorded as a mismatch from the first read: a breach that is
    no defect)."""
    reasons = list(blockers_for(stage, doctor, patient))
    if STAGE_POLICIES[stage].compared and not STAGE_POLICIES[stage].new_authoritative:
        linkable = max(doctor.linkable, patient.linkable)
        if linkable:
            reasons.append(
                f"{linkable} appointments were booked before dual_write and not backfilled"
                " (their people have clinic memberships, the links are missing): run the"
                " backfill, or set backfill = true in the plan"
            )
    return tuple(reasons)


def linkable_rows(doctor: SideCounts, patient: SideCounts) -> int:
    """Appointments the backfill would link (without creating memberships)."""
    return max(doctor.linkable, patient.linkable)


def highest_ready_stage(requested: Stage, doctor: SideCounts, patient: SideCounts) -> Stage:
    """The requested stage, or the latest stage before it that the data allows."""
    for stage in reversed(STAGE_ORDER[: STAGE_ORDER.index(requested) + 1]):
        if not blockers_for(stage, doctor, patient):
            return stage
    return Stage.LEGACY


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _side_columns(side: Side, legacy: Any, stored: FromClause, derived: FromClause) -> list[Any]:
    """One side's counts: ``stored`` is the membership the new column links, ``derived``
    the membership of (appointment's clinic, legacy person); both outer-joined."""
    stored_id = getattr(Appointment, side.new_column)
    prefix = side.name
    return [
        _count(stored_id.is_not(None)).label(f"{prefix}_linked"),
        _count(and_(stored_id.is_(None), derived.c.id.is_not(None))).label(f"{prefix}_linkable"),
        _count(and_(stored_id.is_(None), legacy.is_not(None), derived.c.id.is_(None))).label(
            f"{prefix}_missing_membership"
        ),
        _count(and_(legacy.is_(None), stored_id.is_not(None))).label(f"{prefix}_legacy_missing"),
        _count(
            and_(
                stored.c.id.is_not(None),
                or_(
                    stored.c.clinic_id != Appointment.clinic_id,
                    and_(legacy.is_not(None), person_of(side, stored) != legacy),
                ),
            )
        ).label(f"{prefix}_inconsistent"),
    ]


def _counts_statement(clinic_ids: Sequence[uuid.UUID] | None, layout: Layout) -> Any:
    """The grouped counts; after the contract revision the legacy columns read as NULL."""
    fully_linked = and_(
        Appointment.clinic_doctor_id.is_not(None), Appointment.clinic_patient_id.is_not(None)
    )
    columns: list[Any] = [
        Appointment.clinic_id,
        func.count().label("total"),
        _count(fully_linked).label("fully_linked"),
    ]
    joined: FromClause = Appointment.__table__
    for side in SIDES:
        legacy: Any = getattr(Appointment, side.legacy_column) if layout.legacy_columns else null()
        stored = membership_table(side).alias(f"stored_{side.name}")
        derived = membership_table(side).alias(f"derived_{side.name}")
        columns += _side_columns(side, legacy, stored, derived)
        joined = joined.outerjoin(
            stored, stored.c.id == getattr(Appointment, side.new_column)
        ).outerjoin(derived, membership_of(side, derived, Appointment.clinic_id, legacy))
    statement = select(*columns).select_from(joined).group_by(Appointment.clinic_id)
    if clinic_ids is not None:
        statement = statement.where(Appointment.clinic_id.in_(clinic_ids))
    return statement


def _side(row: Any, prefix: str) -> SideCounts:
    return SideCounts(
        linked=int(row[f"{prefix}_linked"]),
        linkable=int(row[f"{prefix}_linkable"]),
        missing_membership=int(row[f"{prefix}_missing_membership"]),
        legacy_missing=int(row[f"{prefix}_legacy_missing"]),
        inconsistent=int(row[f"{prefix}_inconsistent"]),
    )


EMPTY_SIDE = SideCounts(0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class ClinicCounts:
    total: int
    fully_linked: int
    doctor: SideCounts
    patient: SideCounts


EMPTY_COUNTS = ClinicCounts(0, 0, EMPTY_SIDE, EMPTY_SIDE)


async def clinic_counts(
    session: AsyncSession,
    clinic_ids: Sequence[uuid.UUID] | None = None,
) -> dict[uuid.UUID, ClinicCounts]:
    """Per clinic: appointments total, fully linked, and doctor and patient counts."""
    statement = _counts_statement(clinic_ids, layout_of(session))
    rows = (await session.execute(statement)).mappings()
    return {
        row["clinic_id"]: ClinicCounts(
            int(row["total"]), int(row["fully_linked"]), _side(row, "doctor"), _side(row, "patient")
        )
        for row in rows
    }


async def clinic_reports(
    session: AsyncSession,
    stage_for: StageLookup,
    clinic_ids: Sequence[uuid.UUID] | None = None,
) -> list[ClinicReport]:
    """The validation report of the given clinics (all when None), by clinic name."""
    clinics_statement = select(Clinic.id, Clinic.name).order_by(Clinic.name, Clinic.id)
    if clinic_ids is not None:
        clinics_statement = clinics_statement.where(Clinic.id.in_(clinic_ids))
    clinics = (await session.execute(clinics_statement)).all()
    counts = await clinic_counts(session, clinic_ids)
    open_statement = (
        select(MigrationMismatch.clinic_id, func.count())
        .where(MigrationMismatch.status == MismatchStatus.OPEN.value)
        .group_by(MigrationMismatch.clinic_id)
    )
    open_mismatches = {
        clinic: int(n) for clinic, n in (await session.execute(open_statement)).all()
    }
    reports = []
    for clinic_id, name in clinics:
        clinic = counts.get(clinic_id, EMPTY_COUNTS)
        doctor, patient = clinic.doctor, clinic.patient
        stage = stage_for(clinic_id)
        following = next_stage(stage)
        reports.append(
            ClinicReport(
                clinic_id=clinic_id,
                clinic_name=name,
                total=clinic.total,
                fully_linked=clinic.fully_linked,
                doctor=doctor,
                patient=patient,
                open_mismatches=open_mismatches.get(clinic_id, 0),
                stage=stage,
                next_stage=following,
                blockers=()
                if following is None
                else promotion_blockers(following, doctor, patient),
            )
        )
    return reports


class ReadinessGate:
    """Keeps clinics from being served a stage their data is not ready for.

    Holds the per-clinic counts of the last refresh (one grouped query over the
    table, run in the background every few seconds), so that deciding a
    request's stage costs no query. Until the first refresh succeeds, no clinic
    is served a stage where the new model is authoritative.
    """

    def __init__(self) -> None:
        self._counts: dict[uuid.UUID, ClinicCounts] | None = None

    async def refresh(self, session: AsyncSession) -> None:
        self._counts = await clinic_counts(session)

    def serve(self, clinic_id: uuid.UUID, requested: Stage) -> tuple[Stage, tuple[str, ...]]:
        """The stage to serve for ``requested``, and why it is lower when it is."""
        if self._counts is None:
            served = highest_ready_stage(requested, UNKNOWN_SIDE, UNKNOWN_SIDE)
            return served, () if served is requested else ("readiness is not known yet",)
        counts = self._counts.get(clinic_id, EMPTY_COUNTS)
        served = highest_ready_stage(requested, counts.doctor, counts.patient)
        if served is requested:
            return served, ()
        return served, blockers_for(requested, counts.doctor, counts.patient)


UNKNOWN_SIDE = SideCounts(
    linked=0, linkable=0, missing_membership=1, legacy_missing=0, inconsistent=0
)
