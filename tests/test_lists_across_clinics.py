"""A list without a clinic filter (an admin's view) over clinics in every stage: one
statement, whose text does not depend on the stages, answering as each clinic's own
list does."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import directory
from appointments.models import Appointment
from appointments.read_model import runner
from appointments.stages import Stage
from tests.conftest import Api, World, set_stages
from tests.test_statement_count import kinds, statements_of

FIELDS = """
        id startsAt status
        clinic { name }
        doctor { name }
        patient { fullName }
        clinicDoctor { active user { name } clinic { name } }
        clinicPatient { patient { fullName } }
        migration {
          stage authoritativeOrigin comparedStage consistent
          doctor { servedOrigin fellBack legacyPersonId newMembershipId newClinicId consistent }
          patient { servedOrigin consistent newClinicId }
          differences { field legacyValue newValue }
        }
"""
ACROSS = "query Across { appointments(first: 100) { edges { node {" + FIELDS + "} } } }"
ONE_CLINIC = (
    "query One($clinicId: ID!) { appointments(first: 100, filter: {clinicId: $clinicId}) {"
    " edges { node {" + FIELDS + "} } } }"
)


async def seed(sessions: async_sessionmaker[AsyncSession], world: World) -> list[uuid.UUID]:
    """Six clinics (world's two and four more), each with appointments linked in several
    ways: consistent, a membership of another clinic, legacy only, new only, people
    without memberships."""
    async with sessions() as session, session.begin():
        more = [await directory.create_clinic(session, f"Clinic {n}") for n in range(4)]
        clinics = [world.clinic_a.id, world.clinic_b.id, *(clinic.id for clinic in more)]
        links: list[dict[str, Any]] = [
            {
                "doctor_id": world.doctor.id,
                "clinic_doctor_id": world.clinic_doctor.id,
                "patient_id": world.patient.id,
                "clinic_patient_id": world.clinic_patient.id,
            },
            {
                "doctor_id": world.doctor_of_b.id,
                "clinic_doctor_id": world.clinic_doctor_of_b.id,
                "patient_id": world.patient.id,
            },
            {"doctor_id": world.other_doctor.id, "patient_id": world.other_patient.id},
            {
                "clinic_doctor_id": world.other_clinic_doctor.id,
                "clinic_patient_id": world.other_clinic_patient.id,
            },
            {
                "doctor_id": world.doctor_without_membership.id,
                "patient_id": world.patient_without_membership.id,
            },
        ]
        start = datetime(2026, 12, 10, 8, tzinfo=UTC)
        for number in range(60):
            starts_at = start + timedelta(minutes=17 * number)
            session.add(
                Appointment(
                    id=uuid.uuid4(),
                    clinic_id=clinics[number % len(clinics)],
                    starts_at=starts_at,
                    ends_at=starts_at + timedelta(minutes=15),
                    status="scheduled",
                    **links[number % len(links)],
                )
            )
    return clinics


def reads(sent: list[str]) -> list[str]:
    """The statements but the clinics' health counters (added to when a side fell back)."""
    return [
        statement for statement in sent if not statement.startswith("INSERT INTO clinic_health")
    ]


async def test_a_list_across_clinics_in_every_stage_is_one_statement_answering_as_each_clinic(
    api: Api, world: World, flags_file: Any, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clinics = await seed(sessions, world)
    set_stages(flags_file, dict(zip(clinics, Stage, strict=True)))
    await api.data(ACROSS, {})  # first sightings of differences are written, clinics learnt

    sent = await statements_of(api, ACROSS, {})
    across = await api.data(ACROSS, {})

    assert kinds(reads(sent)) == ["SELECT"]
    nodes = [edge["node"] for edge in across["appointments"]["edges"]]
    assert len(nodes) == 60
    assert {node["migration"]["stage"] for node in nodes} == {stage.name for stage in Stage}
    for clinic in clinics:
        own = await api.data(ONE_CLINIC, {"clinicId": str(clinic)})
        own_nodes = [edge["node"] for edge in own["appointments"]["edges"]]
        assert own_nodes == [node for node in nodes if node["id"] in {n["id"] for n in own_nodes}]
        assert len(own_nodes) == 10


async def test_the_statement_of_a_list_across_clinics_does_not_depend_on_their_stages(
    api: Api, world: World, flags_file: Any, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clinics = await seed(sessions, world)
    texts = []
    for stages in (
        dict.fromkeys(clinics, Stage.LEGACY),
        dict(zip(clinics, Stage, strict=True)),
        dict(zip(clinics, reversed(Stage), strict=True)),
    ):
        set_stages(flags_file, stages)
        await api.data(ACROSS, {})
        texts.append(reads(await statements_of(api, ACROSS, {})))

    assert all(len(sent) == 1 for sent in texts)
    assert texts[0] == texts[1] == texts[2]


async def test_a_clinic_created_after_the_clinics_were_read_is_served_in_its_stage(
    api: Api, world: World, flags_file: Any, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clinics = await seed(sessions, world)
    set_stages(flags_file, dict.fromkeys(clinics, Stage.LEGACY))
    await api.data(ACROSS, {})  # the process has read the clinics
    async with sessions() as session, session.begin():
        late = await directory.create_clinic(session, "Late clinic")
        starts_at = datetime(2026, 12, 10, 7, tzinfo=UTC)  # first on the page
        session.add(
            Appointment(
                id=uuid.uuid4(),
                clinic_id=late.id,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(minutes=15),
                status="scheduled",
                doctor_id=world.doctor_without_membership.id,
                patient_id=world.patient_without_membership.id,
            )
        )
    set_stages(flags_file, {**dict.fromkeys(clinics, Stage.LEGACY), late.id: Stage.COMPLETE})

    first = reads(await statements_of(api, ACROSS, {}))
    again = reads(await statements_of(api, ACROSS, {}))
    answer = await api.data(ACROSS, {})

    assert kinds(first) == ["SELECT", "SELECT"]
    assert kinds(again) == ["SELECT"]
    node = answer["appointments"]["edges"][0]["node"]
    assert node["clinic"]["name"] == "Late clinic"
    assert node["migration"]["stage"] == Stage.COMPLETE.name


async def test_beyond_the_clinics_staged_as_parameters_the_page_learns_its_clinics_first(
    api: Api,
    world: World,
    flags_file: Any,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clinics = await seed(sessions, world)
    set_stages(flags_file, dict(zip(clinics, Stage, strict=True)))
    expected = await api.data(ACROSS, {})
    monkeypatch.setattr(runner, "STAGED_CLINICS", 2)

    sent = reads(await statements_of(api, ACROSS, {}))
    answer = await api.data(ACROSS, {})

    assert kinds(sent) == ["SELECT", "SELECT"]
    assert answer == expected


async def test_the_response_reports_the_stages_of_the_clinics_it_shows_only(
    api: Api, world: World, flags_file: Any, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clinics = await seed(sessions, world)
    stages = dict(zip(clinics, Stage, strict=True))
    set_stages(flags_file, stages)
    first_three = ACROSS.replace("first: 100", "first: 3")

    body = await api.post(first_three, {})

    nodes = [edge["node"] for edge in body["data"]["appointments"]["edges"]]
    shown = {uuid.UUID(clinic) for clinic in body["extensions"]["migration"]["stages"]}
    assert len(nodes) == 3
    assert shown == set(clinics[:3])
    assert body["extensions"]["migration"]["stages"] == {
        str(clinic): stages[clinic].value for clinic in clinics[:3]
    }


async def test_a_list_across_clinics_stats_the_flags_file_once_and_sees_it_change(
    api: Api,
    world: World,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clinics = await seed(sessions, world)
    set_stages(flags_file, dict.fromkeys(clinics, Stage.LEGACY))
    await api.data(ACROSS, {})  # the process has read the clinics
    stat = os.stat
    stats: list[object] = []

    def counting_stat(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if target == flags_file:
            stats.append(target)
        return stat(target, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)

    before = await api.data(ACROSS, {})
    assert len(stats) == 1
    set_stages(flags_file, dict.fromkeys(clinics, Stage.SHADOW))
    after = await api.data(ACROSS, {})

    assert len(stats) == 2
    assert {edge["node"]["migration"]["stage"] for edge in before["appointments"]["edges"]} == {
        Stage.LEGACY.name
    }
    assert {edge["node"]["migration"]["stage"] for edge in after["appointments"]["edges"]} == {
        Stage.SHADOW.name
    }
