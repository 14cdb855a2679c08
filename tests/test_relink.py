"""relinkAppointment over HTTP: a QA repair that rewrites the derived side from the
authoritative one, with a write's checks, in one transaction, recorded in the ledger."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import Appointment, AppointmentStatus, MismatchStatus
from appointments.stages import Stage
from tests.conftest import (
    READ_CLINIC,
    Clinics,
    Mess,
    ledger_rows,
    set_stages,
    stored_appointment,
    table_snapshot,
)

RELINK = """
mutation Relink($id: ID!, $comment: String) {
  relinkAppointment(appointmentId: $id, comment: $comment) {
    __typename
    ... on AppointmentSuccess {
      appointment { id doctor { id } clinicDoctor { id } migration { consistent } }
    }
    ... on UserError { code field message }
  }
}
"""


def stage(flags_file: Path, clinics: Clinics, chosen: Stage) -> None:
    set_stages(flags_file, {clinics.world.clinic_a.id: chosen})


async def relink(clinics: Clinics, role: str, appointment: uuid.UUID, **extra: Any) -> Any:
    body = await clinics.callers[role].data(RELINK, id=str(appointment), **extra)
    return body["relinkAppointment"]


async def test_in_shadow_the_new_side_is_rewritten_from_the_legacy_one_and_the_entry_fixed(
    clinics: Clinics, mess: Mess, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = clinics.world
    stage(flags_file, clinics, Stage.SHADOW)
    await clinics.callers["qa"].data(READ_CLINIC, clinicId=str(world.clinic_a.id))
    entry = (await ledger_rows(sessions))[(mess.wrong_person, "doctor")]
    assert entry.status == MismatchStatus.OPEN.value

    answer = await relink(clinics, "qa", mess.wrong_person, comment="doctor confirmed by phone")

    assert answer["__typename"] == "AppointmentSuccess"
    assert answer["appointment"]["clinicDoctor"] == {"id": str(world.clinic_doctor.id)}
    assert answer["appointment"]["migration"]["consistent"] is True
    row = await stored_appointment(sessions, str(mess.wrong_person))
    assert (row.doctor_id, row.clinic_doctor_id) == (world.doctor.id, world.clinic_doctor.id)
    fixed = (await ledger_rows(sessions))[(mess.wrong_person, "doctor")]
    assert fixed.status == MismatchStatus.FIXED.value
    assert fixed.status_changed_by != "system"
    assert uuid.UUID(fixed.status_changed_by or "")
    assert fixed.status_comment == (
        "relinked from the legacy side in stage shadow: doctor confirmed by phone"
    )


async def test_in_live_the_legacy_side_is_rewritten_from_the_membership(
    clinics: Clinics, mess: Mess, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = clinics.world
    stage(flags_file, clinics, Stage.LIVE)

    answer = await relink(clinics, "admin", mess.wrong_person)

    assert answer["appointment"]["doctor"] == {"id": str(world.other_doctor.id)}
    row = await stored_appointment(sessions, str(mess.wrong_person))
    assert (row.doctor_id, row.clinic_doctor_id) == (
        world.other_doctor.id,
        world.other_clinic_doctor.id,
    )


async def test_any_status_is_relinked_and_an_empty_authoritative_side_falls_back(
    clinics: Clinics, mess: Mess, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = clinics.world
    stage(flags_file, clinics, Stage.LIVE)
    async with sessions() as session, session.begin():
        row = await session.get(Appointment, mess.missing_new)
        assert row is not None
        row.status = AppointmentStatus.COMPLETED.value

    answer = await relink(clinics, "qa", mess.missing_new)

    assert answer["__typename"] == "AppointmentSuccess"
    relinked = await stored_appointment(sessions, str(mess.missing_new))
    assert relinked.clinic_doctor_id == world.clinic_doctor.id
    assert relinked.status == AppointmentStatus.COMPLETED.value


async def test_a_write_check_that_fails_changes_nothing(
    clinics: Clinics, mess: Mess, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    stage(flags_file, clinics, Stage.LIVE)
    before = await table_snapshot(sessions)

    answer = await relink(clinics, "qa", mess.other_clinic)

    assert (answer["__typename"], answer["code"]) == ("MembershipError", "CROSS_CLINIC_REFERENCE")
    assert answer["field"] == "clinicPatientId"
    assert await table_snapshot(sessions) == before


async def test_staff_and_doctors_may_not_relink_and_other_clinics_do_not_exist(
    clinics: Clinics, mess: Mess, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    stage(flags_file, clinics, Stage.SHADOW)
    before = await table_snapshot(sessions)

    staff = await relink(clinics, "staff", mess.wrong_person)
    doctor = await relink(clinics, "doctor", clinics.in_a)
    other_clinic = await relink(clinics, "staff", clinics.in_b)
    unknown = await relink(clinics, "staff", uuid.uuid4())

    assert (staff["__typename"], staff["code"]) == ("ForbiddenError", "FORBIDDEN")
    assert (doctor["__typename"], doctor["code"]) == ("ForbiddenError", "FORBIDDEN")
    assert other_clinic == unknown
    assert other_clinic["code"] == "NOT_FOUND"
    assert await table_snapshot(sessions) == before
