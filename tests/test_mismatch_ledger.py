"""Compared stages: reads serve the authoritative side and the ledger records every difference."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.ledger_sightings import SEEN_AGAIN
from appointments.models import (
    Appointment,
    MigrationMismatch,
    MismatchField,
    MismatchStatus,
    utcnow,
)
from appointments.stages import Stage
from server.auth import DEMO_ADMIN
from tests.conftest import READ_CLINIC as READ
from tests.conftest import (
    Api,
    Mess,
    World,
    consistent_links,
    insert_appointment,
    ledger_rows,
    nodes_by_id,
    set_stages,
)

MIGRATION = """
query Migration($id: ID!) {
  appointment(id: $id) {
    migration {
      stage authoritativeOrigin comparedStage consistent
      doctor {
        servedOrigin fellBack legacyPersonId newMembershipId newPersonId newClinicId consistent
      }
      patient { servedOrigin consistent newClinicId }
      differences { field legacyValue newValue }
    }
  }
}
"""

LEDGER = """
query Ledger($filter: MismatchFilterInput, $first: Int, $after: String) {
  migrationMismatches(filter: $filter, first: $first, after: $after) {
    edges {
      node {
        id field legacyValue newValue stage timesSeen status statusChangedBy statusComment
        appointment { id }
        clinic { id }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""

SET_STATUS = """
mutation Triage($input: SetMismatchStatusInput!) {
  setMismatchStatus(input: $input) {
    __typename
    ... on MismatchSuccess { mismatch { status statusComment statusChangedBy timesSeen } }
    ... on UserError { code field }
  }
}
"""


@pytest.mark.parametrize("stage", [Stage.SHADOW, Stage.LIVE], ids=["shadow", "live"])
async def test_reads_serve_the_authoritative_side_and_the_ledger_keeps_one_row_per_difference(
    api: Api,
    world: World,
    mess: Mess,
    flags_file: Any,
    sessions: async_sessionmaker[AsyncSession],
    stage: Stage,
) -> None:
    set_stages(flags_file, {world.clinic_a.id: stage})

    for _ in range(3):
        body = await api.post(READ, {"clinicId": str(world.clinic_a.id)})

    nodes = nodes_by_id(body["data"])
    wrong = nodes[str(mess.wrong_person)]
    if stage is Stage.SHADOW:
        assert wrong["doctor"] == {"id": str(world.doctor.id)}
        assert wrong["clinicDoctor"] == {"id": str(world.clinic_doctor.id)}
    else:
        assert wrong["doctor"] == {"id": str(world.other_doctor.id)}
        assert wrong["clinicDoctor"] == {"id": str(world.other_clinic_doctor.id)}
    assert body["extensions"]["migration"]["mismatches"] == 3
    # A difference seen again is counted in memory and added in batches.
    await SEEN_AGAIN.flush(api.services.sessions)
    rows = await ledger_rows(sessions)
    assert set(rows) == {
        (mess.wrong_person, "doctor"),
        (mess.missing_new, "doctor"),
        (mess.other_clinic, "patient_clinic"),
    }
    assert all(row.times_seen == 3 and row.status == "open" for row in rows.values())
    assert all(row.stage == stage.value for row in rows.values())
    wrong_row = rows[(mess.wrong_person, "doctor")]
    assert (wrong_row.legacy_value, wrong_row.new_value) == (world.doctor.id, world.other_doctor.id)
    missing_row = rows[(mess.missing_new, "doctor")]
    assert (missing_row.legacy_value, missing_row.new_value) == (world.doctor.id, None)
    clinic_row = rows[(mess.other_clinic, "patient_clinic")]
    assert (clinic_row.legacy_value, clinic_row.new_value) == (world.clinic_a.id, world.clinic_b.id)


async def test_fixing_the_data_marks_the_entry_fixed_and_breaking_it_again_reopens_it(
    api: Api, world: World, mess: Mess, flags_file: Any, sessions: async_sessionmaker[AsyncSession]
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    await api.data(READ, {"clinicId": str(world.clinic_a.id)})

    async with sessions() as session, session.begin():
        await session.execute(
            update(Appointment)
            .where(Appointment.id == mess.wrong_person)
            .values(clinic_doctor_id=world.clinic_doctor.id)
        )
    await api.data(READ, {"clinicId": str(world.clinic_a.id)})
    await SEEN_AGAIN.flush(api.services.sessions)

    fixed = (await ledger_rows(sessions))[(mess.wrong_person, "doctor")]
    assert (fixed.status, fixed.status_changed_by, fixed.times_seen) == ("fixed", "system", 1)
    still_open = (await ledger_rows(sessions))[(mess.missing_new, "doctor")]
    assert (still_open.status, still_open.times_seen) == ("open", 2)

    async with sessions() as session, session.begin():
        await session.execute(
            update(Appointment)
            .where(Appointment.id == mess.wrong_person)
            .values(clinic_doctor_id=world.other_clinic_doctor.id)
        )
    await api.data(READ, {"clinicId": str(world.clinic_a.id)})

    reopened = (await ledger_rows(sessions))[(mess.wrong_person, "doctor")]
    assert (reopened.status, reopened.times_seen) == ("open", 2)


# A statement that writes, including one inside a WITH; column names like updated_at
# do not match.
WRITE_STATEMENT = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


async def test_a_read_of_consistent_rows_writes_nothing(
    api: Api, world: World, mess: Mess, flags_file: Any, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(Appointment)
            .where(Appointment.id.in_([mess.wrong_person, mess.missing_new]))
            .values(clinic_doctor_id=world.clinic_doctor.id)
        )
        await session.execute(
            update(Appointment)
            .where(Appointment.id == mess.other_clinic)
            .values(clinic_patient_id=world.clinic_patient.id)
        )
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    await api.data(READ, {"clinicId": str(world.clinic_a.id)})
    writes_seen: list[str] = []

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if WRITE_STATEMENT.search(statement):
            writes_seen.append(statement)

    event.listen(api.services.engine.sync_engine, "before_cursor_execute", on_statement)
    try:
        await api.data(READ, {"clinicId": str(world.clinic_a.id)})
    finally:
        event.remove(api.services.engine.sync_engine, "before_cursor_execute", on_statement)

    assert writes_seen == []
    assert await ledger_rows(sessions) == {}


async def test_migration_field_compares_on_demand_outside_compared_stages_without_recording(
    api: Api, world: World, mess: Mess, flags_file: Any, sessions: async_sessionmaker[AsyncSession]
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})

    data = await api.data(MIGRATION, {"id": str(mess.wrong_person)})

    migration = data["appointment"]["migration"]
    assert migration["stage"] == "DUAL_WRITE"
    assert migration["authoritativeOrigin"] == "LEGACY"
    assert migration["comparedStage"] is False
    assert migration["consistent"] is False
    assert migration["doctor"] == {
        "servedOrigin": "LEGACY",
        "fellBack": False,
        "legacyPersonId": str(world.doctor.id),
        "newMembershipId": str(world.other_clinic_doctor.id),
        "newPersonId": str(world.other_doctor.id),
        "newClinicId": str(world.clinic_a.id),
        "consistent": False,
    }
    assert migration["patient"]["consistent"] is True
    assert migration["differences"] == [
        {
            "field": "DOCTOR",
            "legacyValue": str(world.doctor.id),
            "newValue": str(world.other_doctor.id),
        }
    ]
    assert await ledger_rows(sessions) == {}


async def test_migration_field_reports_a_membership_of_another_clinic(
    api: Api, world: World, mess: Mess, flags_file: Any
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.LIVE})

    data = await api.data(MIGRATION, {"id": str(mess.other_clinic)})

    migration = data["appointment"]["migration"]
    assert migration["comparedStage"] is True
    assert migration["patient"] == {
        "servedOrigin": "NEW",
        "consistent": False,
        "newClinicId": str(world.clinic_b.id),
    }
    assert migration["differences"] == [
        {
            "field": "PATIENT_CLINIC",
            "legacyValue": str(world.clinic_a.id),
            "newValue": str(world.clinic_b.id),
        }
    ]


async def test_the_ledger_query_filters_and_pages_and_triage_records_who_and_why(
    api: Api, world: World, mess: Mess, flags_file: Any
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    await api.data(READ, {"clinicId": str(world.clinic_a.id)})

    first_page = await api.data(
        LEDGER, {"filter": {"clinicId": str(world.clinic_a.id)}, "first": 2}
    )
    second_page = await api.data(
        LEDGER,
        {
            "filter": {"clinicId": str(world.clinic_a.id)},
            "first": 2,
            "after": first_page["migrationMismatches"]["pageInfo"]["endCursor"],
        },
    )
    doctors = await api.data(LEDGER, {"filter": {"field": "DOCTOR", "status": "OPEN"}})
    in_b = await api.data(LEDGER, {"filter": {"clinicId": str(world.clinic_b.id)}})

    seen = [
        edge["node"]["appointment"]["id"]
        for page in (first_page, second_page)
        for edge in page["migrationMismatches"]["edges"]
    ]
    assert first_page["migrationMismatches"]["pageInfo"]["hasNextPage"] is True
    assert second_page["migrationMismatches"]["pageInfo"]["hasNextPage"] is False
    assert sorted(seen) == sorted(
        str(a) for a in (mess.wrong_person, mess.missing_new, mess.other_clinic)
    )
    doctor_entries = [edge["node"] for edge in doctors["migrationMismatches"]["edges"]]
    assert {entry["appointment"]["id"] for entry in doctor_entries} == {
        str(mess.wrong_person),
        str(mess.missing_new),
    }
    assert in_b["migrationMismatches"]["edges"] == []

    entry_id = doctor_entries[0]["id"]
    triaged = await api.data(
        SET_STATUS, {"input": {"id": entry_id, "status": "IGNORED", "comment": "known bad import"}}
    )
    await api.data(READ, {"clinicId": str(world.clinic_a.id)})
    after_read = await api.data(LEDGER, {"filter": {"status": "IGNORED"}})

    assert triaged["setMismatchStatus"] == {
        "__typename": "MismatchSuccess",
        "mismatch": {
            "status": "IGNORED",
            "statusComment": "known bad import",
            "statusChangedBy": DEMO_ADMIN.user_id,
            "timesSeen": 1,
        },
    }
    ignored = [edge["node"] for edge in after_read["migrationMismatches"]["edges"]]
    assert [(entry["id"], entry["timesSeen"]) for entry in ignored] == [(entry_id, 2)]


async def test_triage_of_an_unknown_entry_is_a_typed_error(api: Api, world: World) -> None:
    data = await api.data(
        SET_STATUS, {"input": {"id": str(uuid.uuid4()), "status": "FIXED", "comment": None}}
    )

    assert data["setMismatchStatus"] == {
        "__typename": "NotFoundError",
        "code": "NOT_FOUND",
        "field": "id",
    }


async def test_an_entry_opened_elsewhere_is_fixed_at_the_next_consistent_read(
    api: Api, world: World, flags_file: Any, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The read statement itself finds the appointment's entries: one opened by another
    process is seen at once (this used to wait for a per-process cache's refresh)."""
    async with sessions() as session, session.begin():
        appointment_id = await insert_appointment(session, world, 9, **consistent_links(world))
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    read = {"clinicId": str(world.clinic_a.id)}
    await api.data(READ, read)
    now = utcnow()
    async with sessions() as session, session.begin():
        session.add(
            MigrationMismatch(
                appointment_id=appointment_id,
                clinic_id=world.clinic_a.id,
                field=MismatchField.DOCTOR.value,
                legacy_value=world.doctor.id,
                new_value=world.other_doctor.id,
                stage=Stage.SHADOW.value,
                first_seen_at=now,
                last_seen_at=now,
                times_seen=1,
                status=MismatchStatus.OPEN.value,
            )
        )

    await api.data(READ, read)
    fixed = (await ledger_rows(sessions))[(appointment_id, "doctor")]

    assert fixed.status == MismatchStatus.FIXED.value
    assert fixed.status_changed_by == "system"
