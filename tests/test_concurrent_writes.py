"""Concurrent updates of one appointment never leave its two sides naming different people."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import ClinicDoctor
from appointments.stages import Stage
from tests.conftest import Api, World, set_stages, stored_appointment
from tests.test_backfill import book

REASSIGN = """
mutation Reassign($input: ReassignDoctorInput!) {
  reassignDoctor(input: $input) { __typename }
}
"""


@pytest.mark.parametrize(
    "stage", [Stage.DUAL_WRITE, Stage.LIVE, Stage.LEGACY], ids=lambda s: s.value
)
async def test_concurrent_reassignments_leave_both_sides_naming_one_doctor(
    api: Api,
    world: World,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    stage: Stage,
) -> None:
    (appointment_id,) = await book(sessions, world, Stage.DUAL_WRITE, 1)
    set_stages(flags_file, {world.clinic_a.id: stage})
    doctors = [world.doctor, world.other_doctor] * 6

    answers = await asyncio.gather(
        *(
            api.data(
                REASSIGN,
                {"input": {"appointmentId": str(appointment_id), "doctorId": str(doctor.id)}},
            )
            for doctor in doctors
        )
    )

    assert all(a["reassignDoctor"]["__typename"] == "AppointmentSuccess" for a in answers)
    stored = await stored_appointment(sessions, str(appointment_id))
    async with sessions() as session:
        membership = (
            None
            if stored.clinic_doctor_id is None
            else await session.get(ClinicDoctor, stored.clinic_doctor_id)
        )
    if stage is Stage.LEGACY:
        assert stored.clinic_doctor_id is None
        assert stored.doctor_id in {world.doctor.id, world.other_doctor.id}
    else:
        assert membership is not None
        assert stored.doctor_id == membership.user_id
