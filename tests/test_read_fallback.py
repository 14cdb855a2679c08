"""Reads fall back, counted, when the authoritative side of a row is empty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import writes
from appointments.events import PendingEvents
from appointments.stages import STAGE_POLICIES, Stage, fixed_stage
from tests.conftest import Api, World, set_stages

READ = """
query Read($id: ID!) {
  appointment(id: $id) {
    doctor { id }
    patient { id }
    clinicDoctor { id }
    clinicPatient { id }
  }
}
"""


async def write_in(sessions: async_sessionmaker[AsyncSession], world: World, stage: Stage) -> str:
    starts_at = datetime(2026, 12, 2, 10, tzinfo=UTC)
    async with sessions() as session, session.begin():
        appointment = await writes.create_appointment(
            session,
            fixed_stage(stage),
            writes.NewAppointment(
                clinic_id=world.clinic_a.id,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(minutes=20),
                doctor=writes.PersonReference(person_id=world.doctor.id),
                patient=writes.PersonReference(person_id=world.patient.id),
            ),
            PendingEvents(),
        )
    return str(appointment.id)


@pytest.mark.parametrize(
    ("written_in", "read_in"),
    [(Stage.COMPLETE, stage) for stage in Stage] + [(Stage.LEGACY, stage) for stage in Stage],
    ids=lambda stage: stage.value,
)
async def test_a_row_with_one_empty_side_reads_fully_in_every_stage(
    api: Api,
    world: World,
    flags_file: Any,
    sessions: async_sessionmaker[AsyncSession],
    written_in: Stage,
    read_in: Stage,
) -> None:
    appointment_id = await write_in(sessions, world, written_in)
    set_stages(flags_file, {world.clinic_a.id: read_in})

    body = await api.post(READ, {"id": appointment_id})

    assert body["data"]["appointment"] == {
        "doctor": {"id": str(world.doctor.id)},
        "patient": {"id": str(world.patient.id)},
        "clinicDoctor": {"id": str(world.clinic_doctor.id)},
        "clinicPatient": {"id": str(world.clinic_patient.id)},
    }
    authoritative_side_empty = STAGE_POLICIES[read_in].authoritative != (
        STAGE_POLICIES[written_in].authoritative
    )
    assert body["extensions"]["migration"]["readFallbacks"] == (
        2 if authoritative_side_empty else 0
    )
