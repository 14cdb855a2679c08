"""Phase 5: readiness gates, the contract revision, and serving after it."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import migrations
from appointments.backfill import BackfillOptions, run_backfill
from appointments.models import Appointment, ClinicDoctor
from appointments.stages import Stage
from server.cli import main
from tests.conftest import Api, World, open_api, set_stages
from tests.test_backfill import book

READ = """
query Read($clinic: ID!, $doctor: ID) {
  appointments(first: 100, filter: {clinicId: $clinic, doctorId: $doctor}) {
    edges { node { id doctor { id } clinicDoctor { id user { id } } patient { id }
                   clinicPatient { patient { id } } migration { consistent } } }
  }
}
"""
CREATE = """
mutation Create($input: CreateAppointmentInput!) {
  createAppointment(input: $input) {
    __typename
    ... on AppointmentSuccess { appointment { id doctor { id } clinicDoctor { id } } }
    ... on UserError { code message }
  }
}
"""
REASSIGN = """
mutation Reassign($input: ReassignDoctorInput!) {
  reassignDoctor(input: $input) {
    __typename
    ... on AppointmentSuccess { appointment { doctor { id } clinicDoctor { id } } }
  }
}
"""
REPORT = """
query Report($clinic: ID) {
  migrationReport(clinicId: $clinic) {
    clinic { id } stage servedStage nextStage readyForNextStage blockers total fullyLinked
    doctor { unlinked } patient { unlinked }
  }
}
"""


class TestReadinessGates:
    @pytest.fixture
    def app_settings(self) -> dict[str, Any]:
        return {"readiness_gates": True}

    async def test_a_clinic_flagged_live_with_unlinked_rows_is_served_shadow_until_fixed(
        self,
        api: Api,
        world: World,
        flags_file: Path,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        await book(sessions, world, Stage.DUAL_WRITE, 6)
        set_stages(flags_file, {world.clinic_a.id: Stage.LIVE})
        await api.services.refresh_readiness()

        gated = await api.post(READ, {"clinic": str(world.clinic_a.id)})
        report = await api.data(REPORT, {"clinic": str(world.clinic_a.id)})

        clinic = str(world.clinic_a.id)
        assert gated["extensions"]["migration"]["stages"] == {clinic: "shadow"}
        gate = gated["extensions"]["migration"]["gated"][clinic]
        assert (gate["requested"], gate["served"]) == ("live", "shadow")
        assert any("no clinic doctor link" in blocker for blocker in gate["blockers"])
        (row,) = report["migrationReport"]
        assert (row["stage"], row["servedStage"], row["readyForNextStage"]) == (
            "LIVE",
            "SHADOW",
            False,
        )

        await run_backfill(sessions, BackfillOptions(create_memberships=True))
        await api.services.refresh_readiness()
        served = await api.post(READ, {"clinic": clinic})

        assert served["extensions"]["migration"]["stages"] == {clinic: "live"}
        assert served["extensions"]["migration"]["gated"] == {}


async def test_the_contract_refuses_while_rows_are_unlinked_and_the_service_works_after_it(
    engine: AsyncEngine,
    database_url: str,
    world: World,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    booked = await book(sessions, world, Stage.DUAL_WRITE, 6)

    with pytest.raises(migrations.ContractRefusedError, match="lack a clinic doctor"):
        await migrations.upgrade(engine, migrations.CONTRACT_REVISION)
    assert await migrations.legacy_columns_present(engine) is True
    assert await migrations.current_heads(engine) == {migrations.SERVICE_HEAD}

    await run_backfill(sessions, BackfillOptions(create_memberships=True))
    await book(sessions, world, Stage.COMPLETE, 2, offset=20)
    await migrations.upgrade(engine, migrations.CONTRACT_REVISION)
    try:
        assert await migrations.legacy_columns_present(engine) is False
        await migrations.upgrade(engine)
        assert await migrations.current_heads(engine) == {
            migrations.SERVICE_HEAD,
            migrations.CONTRACT_REVISION,
        }
        set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})
        async with open_api(database_url, flags_file) as api:
            await serves_both_field_sets_after_the_contract(api, world, len(booked) + 2)
    finally:
        await migrations.revert_contract(engine)
        assert await migrations.current_heads(engine) == {migrations.SERVICE_HEAD}

    async with sessions() as session:
        rows = (
            await session.execute(
                select(Appointment, ClinicDoctor).join(
                    ClinicDoctor, ClinicDoctor.id == Appointment.clinic_doctor_id
                )
            )
        ).all()
    assert len(rows) == len(booked) + 3
    assert all(appointment.doctor_id == doctor.user_id for appointment, doctor in rows)


async def serves_both_field_sets_after_the_contract(api: Api, world: World, existing: int) -> None:
    clinic = str(world.clinic_a.id)
    body = await api.post(READ, {"clinic": clinic})
    assert body["extensions"]["migration"]["stages"] == {clinic: "complete"}
    nodes = [edge["node"] for edge in body["data"]["appointments"]["edges"]]
    assert len(nodes) == existing
    for node in nodes:
        assert node["doctor"] == node["clinicDoctor"]["user"]
        assert node["patient"] == node["clinicPatient"]["patient"]
        assert node["migration"] == {"consistent": True}

    created = await api.data(
        CREATE,
        {
            "input": {
                "clinicId": clinic,
                "startsAt": "2026-12-20T09:00:00Z",
                "endsAt": "2026-12-20T09:30:00Z",
                "doctorId": str(world.doctor.id),
                "patientId": str(world.patient.id),
            }
        },
    )
    appointment = created["createAppointment"]["appointment"]
    assert appointment["doctor"] == {"id": str(world.doctor.id)}
    assert appointment["clinicDoctor"] == {"id": str(world.clinic_doctor.id)}

    reassigned = await api.data(
        REASSIGN,
        {"input": {"appointmentId": appointment["id"], "doctorId": str(world.other_doctor.id)}},
    )
    assert reassigned["reassignDoctor"]["appointment"] == {
        "doctor": {"id": str(world.other_doctor.id)},
        "clinicDoctor": {"id": str(world.other_clinic_doctor.id)},
    }
    by_doctor = await api.data(READ, {"clinic": clinic, "doctor": str(world.other_doctor.id)})
    assert appointment["id"] in {edge["node"]["id"] for edge in by_doctor["appointments"]["edges"]}
    report = await api.data(REPORT, {"clinic": clinic})
    assert report["migrationReport"][0]["fullyLinked"] == existing + 1


def run_cli(
    monkeypatch: pytest.MonkeyPatch, database_url: str, flags_file: Path, *arguments: str
) -> int:
    monkeypatch.setenv("CLINIC_DATABASE_URL", database_url)
    monkeypatch.setenv("CLINIC_FLAGS_FILE", str(flags_file))
    monkeypatch.setenv("CLINIC_LOG_FORMAT", "text")
    return main(list(arguments))


@pytest.fixture
def keep_logging() -> Any:
    """The CLI configures logging for the process; put the test runner's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_the_cli_validates_backfills_and_refuses_to_contract(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    database_url: str,
    world: World,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    keep_logging: Any,
) -> None:
    await book(sessions, world, Stage.DUAL_WRITE, 6)
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    clinic = str(world.clinic_a.id)

    async def cli(*arguments: str) -> tuple[int, str]:
        """The command as a person runs it: its own process state, its own event loop."""
        capsys.readouterr()
        code = await asyncio.to_thread(run_cli, monkeypatch, database_url, flags_file, *arguments)
        return code, capsys.readouterr().out

    not_ready, report = await cli("migrate", "validate", "--clinic", clinic, "--json")
    refused, _ = await cli("migrate", "contract")
    backfilled, summary = await cli("migrate", "backfill", "--create-memberships", "--json")
    ready, ready_report = await cli("migrate", "validate", "--clinic", clinic)

    assert not_ready == 1
    (entry,) = json.loads(report)
    assert (entry["stage"], entry["next_stage"], entry["ready_for_next"]) == (
        "shadow",
        "live",
        False,
    )
    assert entry["doctor"]["unlinked"] == 2
    assert refused == 1
    assert backfilled == 0
    assert json.loads(summary)["linked"] == {"doctor": 2, "patient": 3}
    assert ready == 0
    assert "next live: ready" in ready_report


ROUND_TRIP = [
    Stage.DUAL_WRITE,
    Stage.SHADOW,
    Stage.LIVE,
    Stage.RAMPDOWN,
    Stage.COMPLETE,
    Stage.RAMPDOWN,
]


async def test_a_round_trip_to_complete_and_back_leaves_every_row_readable_both_ways(
    api: Api, world: World, flags_file: Path
) -> None:
    clinic = str(world.clinic_a.id)
    doctors = [(world.doctor, world.other_doctor), (world.other_doctor, world.doctor)]
    for number, stage in enumerate(ROUND_TRIP):
        set_stages(flags_file, {world.clinic_a.id: stage})
        first, second = doctors[number % 2]
        created = await api.data(
            CREATE,
            {
                "input": {
                    "clinicId": clinic,
                    "startsAt": f"2026-12-{number + 1:02d}T09:00:00Z",
                    "endsAt": f"2026-12-{number + 1:02d}T09:30:00Z",
                    "doctorId": str(first.id),
                    "patientId": str(world.patient.id),
                }
            },
        )
        appointment_id = created["createAppointment"]["appointment"]["id"]
        await api.data(
            REASSIGN, {"input": {"appointmentId": appointment_id, "doctorId": str(second.id)}}
        )

    body = await api.post(READ, {"clinic": clinic})

    assert body["extensions"]["migration"]["stages"] == {clinic: "rampdown"}
    nodes = [edge["node"] for edge in body["data"]["appointments"]["edges"]]
    assert len(nodes) == len(ROUND_TRIP)
    for number, node in enumerate(sorted(nodes, key=lambda node: node["id"])):
        assert node["doctor"] is not None, number
        assert node["clinicDoctor"]["user"] == node["doctor"]
        assert node["clinicPatient"]["patient"] == node["patient"] == {"id": str(world.patient.id)}
