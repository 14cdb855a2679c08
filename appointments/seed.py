"""Demo data: clinics in every stage, and the realistic mess a migration meets.

Deterministic (every id from ``demo_id``, and a seeded random generator), so the
demo flags file can name the demo clinics, the guides' examples can name any demo
row, and a re-run is recognised and skipped. Only the moments depend on the day of
seeding: appointments lie around it.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments import writes
from appointments.events import PendingEvents
from appointments.models import (
    AppointmentStatus,
    Clinic,
    ClinicDoctor,
    ClinicPatient,
    ClinicStaff,
    Patient,
    User,
    UserRole,
)
from appointments.stages import Stage, fixed_stage
from appointments.write_meter import not_traffic

DEMO_NAMESPACE = uuid.UUID("6f1c1f0e-3c1a-4d4c-9a8e-2f6f7c0d5b10")

DEMO_CLINICS: tuple[tuple[str, Stage], ...] = (
    ("Northside Family Practice", Stage.LEGACY),
    ("Harbor Health Center", Stage.DUAL_WRITE),
    ("Riverside Clinic", Stage.SHADOW),
    ("Hillcrest Medical", Stage.LIVE),
    ("Lakeview Care", Stage.RAMPDOWN),
    ("Summit Health", Stage.COMPLETE),
)
DEMO_ROLLOUT = (Stage.SHADOW, 25)
DEMO_STAFF_CLINICS = 3
"""The demo staff user acts for the first three clinics; the demo doctor works in the first."""

FIRST_NAMES = ("Ana", "Ben", "Chloe", "David", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas")
LAST_NAMES = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Novak", "Haddad", "Kim")


def demo_id(kind: str, number: int) -> uuid.UUID:
    return uuid.uuid5(DEMO_NAMESPACE, f"{kind}-{number}")


DEMO_USERS = {
    UserRole.ADMIN: demo_id("user", 0),
    UserRole.STAFF: demo_id("user", 1),
    UserRole.QA: demo_id("user", 2),
    UserRole.DOCTOR: demo_id("doctor", 0),
}


def demo_clinic_stages() -> dict[str, Stage]:
    return {str(demo_id("clinic", n)): stage for n, (_, stage) in enumerate(DEMO_CLINICS)}


@dataclass(frozen=True, slots=True)
class SeedSummary:
    clinics: int
    doctors: int
    patients: int
    appointments: int
    unlinked: int
    skipped: bool = False


async def seed_demo(
    session: AsyncSession,
    events: PendingEvents,
    appointments_per_clinic: int = 50,
    now: datetime | None = None,
) -> SeedSummary:
    """Insert the demo data set unless it is there already."""
    if await session.get(Clinic, demo_id("clinic", 0)) is not None:
        count = await session.scalar(select(func.count()).select_from(Clinic))
        return SeedSummary(count or 0, 0, 0, 0, 0, skipped=True)
    generator = random.Random(20261125)
    start = (now or datetime.now(UTC)).replace(hour=8, minute=0, second=0, microsecond=0)
    clinics = [
        Clinic(id=demo_id("clinic", n), name=name) for n, (name, _) in enumerate(DEMO_CLINICS)
    ]
    doctors = [
        User(
            id=demo_id("doctor", n),
            name=f"Dr. {FIRST_NAMES[n % 10]} {LAST_NAMES[n % 8]}",
            email=f"doctor{n}@demo.clinic",
            role=UserRole.DOCTOR.value,
        )
        for n in range(12)
    ]
    staff = [
        User(id=demo_id("user", n), name=name, email=f"{role.value}@demo.clinic", role=role.value)
        for n, (name, role) in enumerate(
            (
                ("Avery Admin", UserRole.ADMIN),
                ("Sam Staff", UserRole.STAFF),
                ("Quinn QA", UserRole.QA),
            )
        )
    ]
    patients = [
        Patient(
            id=demo_id("patient", n),
            full_name=f"{FIRST_NAMES[(n * 7) % 10]} {LAST_NAMES[(n * 3) % 8]} {n}",
            date_of_birth=date(1940, 1, 1) + timedelta(days=generator.randrange(0, 29000)),
        )
        for n in range(90)
    ]
    session.add_all([*clinics, *doctors, *staff, *patients])
    await session.flush()

    doctors_by_clinic: dict[uuid.UUID, list[User]] = {}
    patients_by_clinic: dict[uuid.UUID, list[Patient]] = {}
    for n, clinic in enumerate(clinics):
        clinic_doctors = [doctors[(2 * n + k) % len(doctors)] for k in range(3)]
        clinic_patients = patients[n * 15 : n * 15 + 15]
        doctors_by_clinic[clinic.id] = clinic_doctors
        patients_by_clinic[clinic.id] = clinic_patients
        # The last doctor and the last three patients of each clinic have no
        # membership yet: their appointments are the unlinked rows a backfill meets.
        session.add_all(_memberships(n, clinic.id, clinic_doctors[:-1], clinic_patients[:-3]))
    session.add_all(
        ClinicStaff(
            id=demo_id("clinic-staff", n), clinic_id=clinic.id, user_id=DEMO_USERS[UserRole.STAFF]
        )
        for n, clinic in enumerate(clinics[:DEMO_STAFF_CLINICS])
    )
    await session.flush()

    unlinked = 0
    total = 0
    for n, clinic in enumerate(clinics):
        clinic_stage = DEMO_CLINICS[n][1]
        for k in range(appointments_per_clinic):
            # Rows from before the switch were written in dual_write; recent ones
            # in the clinic's current stage when that stage can write them.
            history_stage = Stage.DUAL_WRITE if k < appointments_per_clinic // 2 else clinic_stage
            doctor = generator.choice(doctors_by_clinic[clinic.id])
            patient = generator.choice(patients_by_clinic[clinic.id])
            linked = (
                doctor is not doctors_by_clinic[clinic.id][-1]
                and patient not in (patients_by_clinic[clinic.id][-3:])
            )
            if not linked and history_stage in (Stage.LIVE, Stage.RAMPDOWN, Stage.COMPLETE):
                history_stage = Stage.DUAL_WRITE
            starts_at = start + timedelta(
                days=generator.randrange(-20, 30), hours=generator.randrange(0, 9)
            )
            # The demo's history, not traffic: the dashboard's activity starts at zero.
            with not_traffic():
                appointment = await writes.create_appointment(
                    session,
                    fixed_stage(history_stage),
                    writes.NewAppointment(
                        clinic_id=clinic.id,
                        starts_at=starts_at,
                        ends_at=starts_at + timedelta(minutes=generator.choice((15, 30, 45))),
                        doctor=writes.PersonReference(person_id=doctor.id),
                        patient=writes.PersonReference(person_id=patient.id),
                        reason=generator.choice(("Check-up", "Follow-up", "Vaccination", None)),
                        appointment_id=demo_id("appointment", n * appointments_per_clinic + k),
                    ),
                    events,
                )
            total += 1
            unlinked += 0 if linked else 1
            if starts_at < start - timedelta(days=1):
                appointment.status = AppointmentStatus.COMPLETED.value
            elif generator.random() < 0.1:
                appointment.status = AppointmentStatus.CANCELLED.value
    await session.flush()
    return SeedSummary(len(clinics), len(doctors), len(patients), total, unlinked)


def _memberships(
    number: int, clinic_id: uuid.UUID, doctors: Iterable[User], patients: Iterable[Patient]
) -> list[ClinicDoctor | ClinicPatient]:
    """The clinic's memberships, with ids from ``demo_id`` (clinic number, then position)."""
    rows: list[ClinicDoctor | ClinicPatient] = [
        ClinicDoctor(
            id=demo_id(f"clinic{number}-doctor", k), clinic_id=clinic_id, user_id=d.id, active=True
        )
        for k, d in enumerate(doctors)
    ]
    rows += [
        ClinicPatient(
            id=demo_id(f"clinic{number}-patient", k), clinic_id=clinic_id, patient_id=p.id
        )
        for k, p in enumerate(patients)
    ]
    return rows
