"""Each of the six stages, on both databases: what a write stores and what a read serves."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.stages import STAGE_POLICIES, Stage
from tests.conftest import Api, World, set_stages, stored_appointment

APPOINTMENT_FIELDS = """
    id
    doctor { id }
    patient { id }
    clinicDoctor { id user { id } }
    clinicPatient { id patient { id } }
"""

CREATE = f"""
mutation Create($input: CreateAppointmentInput!) {{
  createAppointment(input: $input) {{
    __typename
    ... on AppointmentSuccess {{ appointment {{ {APPOINTMENT_FIELDS} }} }}
    ... on UserError {{ code field message }}
  }}
}}
"""

READ = f"query Read($id: ID!) {{ appointment(id: $id) {{ {APPOINTMENT_FIELDS} }} }}"

READ_ALL = f"""
query ReadAll($clinicId: ID!) {{
  appointments(first: 100, filter: {{clinicId: $clinicId}}) {{
    edges {{ node {{ {APPOINTMENT_FIELDS} }} }}
  }}
}}
"""


def create_input(world: World, style: str, doctor_id: Any = None) -> dict[str, Any]:
    times = {"startsAt": "2026-12-01T09:00:00+00:00", "endsAt": "2026-12-01T09:30:00+00:00"}
    base = {"clinicId": str(world.clinic_a.id), **times}
    if style == "legacy":
        return {
            **base,
            "doctorId": str(doctor_id or world.doctor.id),
            "patientId": str(world.patient.id),
        }
    return {
        **base,
        "clinicDoctorId": str(world.clinic_doctor.id),
        "clinicPatientId": str(world.clinic_patient.id),
    }


def assert_serves_both_field_sets(appointment: dict[str, Any], world: World) -> None:
    assert appointment["doctor"] == {"id": str(world.doctor.id)}
    assert appointment["patient"] == {"id": str(world.patient.id)}
    assert appointment["clinicDoctor"] == {
        "id": str(world.clinic_doctor.id),
        "user": {"id": str(world.doctor.id)},
    }
    assert appointment["clinicPatient"] == {
        "id": str(world.clinic_patient.id),
        "patient": {"id": str(world.patient.id)},
    }


WRITABLE = [
    (stage, style)
    for stage in Stage
    for style in ("legacy", "new")
    if style == "legacy" or STAGE_POLICIES[stage].accepts_new_input
]


@pytest.mark.parametrize(("stage", "style"), WRITABLE, ids=[f"{s.value}-{i}" for s, i in WRITABLE])
async def test_write_stores_what_the_stage_says_and_reads_serve_both_field_sets(
    api: Api,
    world: World,
    flags_file: Any,
    sessions: async_sessionmaker[AsyncSession],
    stage: Stage,
    style: str,
) -> None:
    set_stages(flags_file, {world.clinic_a.id: stage})
    policy = STAGE_POLICIES[stage]

    body = await api.post(CREATE, {"input": create_input(world, style)})

    result = body["data"]["createAppointment"]
    assert result["__typename"] == "AppointmentSuccess", result
    assert body["extensions"]["migration"]["stages"] == {str(world.clinic_a.id): stage.value}
    appointment = result["appointment"]
    assert_serves_both_field_sets(appointment, world)
    stored = await stored_appointment(sessions, appointment["id"])
    assert stored.doctor_id == (world.doctor.id if policy.writes_legacy else None)
    assert stored.patient_id == (world.patient.id if policy.writes_legacy else None)
    assert stored.clinic_doctor_id == (world.clinic_doctor.id if policy.writes_new else None)
    assert stored.clinic_patient_id == (world.clinic_patient.id if policy.writes_new else None)

    reread = await api.post(READ, {"id": appointment["id"]})

    assert_serves_both_field_sets(reread["data"]["appointment"], world)
    assert reread["extensions"]["migration"]["readFallbacks"] == 0


async def test_new_input_is_refused_while_the_clinic_is_legacy(
    api: Api, world: World, flags_file: Any
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.LEGACY})

    data = await api.data(CREATE, {"input": create_input(world, "new")})

    assert data["createAppointment"]["__typename"] == "StageForbidsInputError"
    assert data["createAppointment"]["code"] == "STAGE_FORBIDS_INPUT"


LEGACY_AUTHORITATIVE = [stage for stage in Stage if not STAGE_POLICIES[stage].new_authoritative]


@pytest.mark.parametrize("stage", LEGACY_AUTHORITATIVE, ids=[s.value for s in LEGACY_AUTHORITATIVE])
async def test_doctor_without_membership_is_written_unlinked_while_legacy_is_authoritative(
    api: Api,
    world: World,
    flags_file: Any,
    sessions: async_sessionmaker[AsyncSession],
    stage: Stage,
) -> None:
    set_stages(flags_file, {world.clinic_a.id: stage})
    doctor = world.doctor_without_membership

    body = await api.post(CREATE, {"input": create_input(world, "legacy", doctor.id)})

    appointment = body["data"]["createAppointment"]["appointment"]
    assert appointment["doctor"] == {"id": str(doctor.id)}
    assert appointment["clinicDoctor"] is None
    expected_unlinked = 1 if STAGE_POLICIES[stage].writes_new else 0
    assert body["extensions"]["migration"]["unlinkedWrites"] == expected_unlinked
    stored = await stored_appointment(sessions, appointment["id"])
    assert (stored.doctor_id, stored.clinic_doctor_id) == (doctor.id, None)


STAGE_WALK = [
    Stage.LEGACY,
    Stage.DUAL_WRITE,
    Stage.SHADOW,
    Stage.LIVE,
    Stage.RAMPDOWN,
    Stage.COMPLETE,
    Stage.RAMPDOWN,
    Stage.LIVE,
    Stage.SHADOW,
    Stage.DUAL_WRITE,
    Stage.LEGACY,
]


async def test_rows_written_anywhere_on_a_walk_forward_and_back_read_correctly_in_every_stage(
    api: Api, world: World, flags_file: Any
) -> None:
    for number, stage in enumerate(STAGE_WALK):
        set_stages(flags_file, {world.clinic_a.id: stage})
        style = "new" if number % 2 and STAGE_POLICIES[stage].accepts_new_input else "legacy"
        created = await api.data(CREATE, {"input": create_input(world, style)})
        assert created["createAppointment"]["__typename"] == "AppointmentSuccess"

    for stage in Stage:
        set_stages(flags_file, {world.clinic_a.id: stage})

        data = await api.data(READ_ALL, {"clinicId": str(world.clinic_a.id)})

        nodes = [edge["node"] for edge in data["appointments"]["edges"]]
        assert len(nodes) == len(STAGE_WALK)
        for node in nodes:
            assert_serves_both_field_sets(node, world)
