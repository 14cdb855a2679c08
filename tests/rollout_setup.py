"""Clinics for the rollout tests: clean ones, one whose sides disagree, one not linked yet."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import directory
from appointments.models import (
    Appointment,
    RolloutAudit,
    RolloutHold,
    RolloutState,
    UserRole,
)
from appointments.rollout.plan import Plan, parse_plan

READ = """
query Read($clinicId: ID!) {
  appointments(first: 100, filter: {clinicId: $clinicId}) {
    edges { node { id doctor { id } clinicDoctor { id } patient { id } clinicPatient { id } } }
  }
}
"""


@dataclass
class RolloutClinics:
    clean_one: uuid.UUID
    clean_two: uuid.UUID
    mismatched: uuid.UUID
    unlinked: uuid.UUID

    @property
    def all(self) -> list[uuid.UUID]:
        return [self.clean_one, self.clean_two, self.mismatched, self.unlinked]


async def _clinic(session: AsyncSession, name: str, kind: str) -> uuid.UUID:
    """A clinic with one appointment: consistent, with a clinic doctor of another person
    (``mismatched``), or with no clinic doctor link yet (``unlinked``)."""
    clinic = await directory.create_clinic(session, name)
    tag = uuid.uuid4().hex[:8]
    doctor = await directory.create_user(
        session, f"Doctor {tag}", f"d{tag}@example.org", UserRole.DOCTOR
    )
    other = await directory.create_user(
        session, f"Other {tag}", f"o{tag}@example.org", UserRole.DOCTOR
    )
    patient = await directory.create_patient(session, f"Patient {tag}", date(1980, 1, 1))
    clinic_doctor = await directory.add_clinic_doctor(session, clinic.id, doctor.id)
    other_clinic_doctor = await directory.add_clinic_doctor(session, clinic.id, other.id)
    clinic_patient = await directory.add_clinic_patient(session, clinic.id, patient.id)
    links: dict[str, Any] = {
        "doctor_id": doctor.id,
        "clinic_doctor_id": clinic_doctor.id,
        "patient_id": patient.id,
        "clinic_patient_id": clinic_patient.id,
    }
    if kind == "mismatched":
        links["clinic_doctor_id"] = other_clinic_doctor.id
    elif kind == "unlinked":
        links["clinic_doctor_id"] = None
    starts_at = datetime(2026, 12, 10, 9, tzinfo=UTC)
    session.add(
        Appointment(
            id=uuid.uuid4(),
            clinic_id=clinic.id,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(minutes=30),
            status="scheduled",
            **links,
        )
    )
    await session.flush()
    return clinic.id


async def rollout_clinics(sessions: async_sessionmaker[AsyncSession]) -> RolloutClinics:
    async with sessions() as session, session.begin():
        return RolloutClinics(
            clean_one=await _clinic(session, "Clean One", "clean"),
            clean_two=await _clinic(session, "Clean Two", "clean"),
            mismatched=await _clinic(session, "Mismatched", "mismatched"),
            unlinked=await _clinic(session, "Unlinked", "unlinked"),
        )


def plan_text(clinics: RolloutClinics, extra: str = "", soak: str = 'default = "0s"') -> str:
    """Clean One alone first, then every other clinic; every soak zero unless told."""
    return f"""
target = "complete"
max_moves_per_hour = 100

[soak]
{soak}

[guards]
max_mismatches = 0
max_read_fallbacks = 0
max_write_failures = 0
{extra}
[[cohort]]
name = "pilot"
clinics = ["{clinics.clean_one}"]

[[cohort]]
name = "rest"
percentage = 100
"""


def rollout_plan(clinics: RolloutClinics, **options: str) -> Plan:
    return parse_plan(plan_text(clinics, **options))


async def audit_rows(
    sessions: async_sessionmaker[AsyncSession], clinic_id: uuid.UUID | None = None
) -> list[RolloutAudit]:
    async with sessions() as session:
        statement = select(RolloutAudit).order_by(RolloutAudit.id)
        if clinic_id is not None:
            statement = statement.where(RolloutAudit.clinic_id == clinic_id)
        return list(await session.scalars(statement))


async def moves(
    sessions: async_sessionmaker[AsyncSession], clinic_id: uuid.UUID
) -> list[tuple[str, str | None, str | None]]:
    """The clinic's applied promotions and step backs: (action, from, to), in order."""
    return [
        (row.action, row.from_stage, row.to_stage)
        for row in await audit_rows(sessions, clinic_id)
        if row.action in ("promote", "step_back") and row.state == RolloutState.APPLIED.value
    ]


async def held(sessions: async_sessionmaker[AsyncSession]) -> set[uuid.UUID]:
    async with sessions() as session:
        return set(await session.scalars(select(RolloutHold.clinic_id)))


FORWARD = [
    ("promote", "legacy", "dual_write"),
    ("promote", "dual_write", "shadow"),
    ("promote", "shadow", "live"),
    ("promote", "live", "rampdown"),
    ("promote", "rampdown", "complete"),
]
