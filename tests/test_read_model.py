"""The read model answers every appointment selection as the ORM read path does.

Differential: the same requests against the app reading through the ORM path
and through the read model (``CLINIC_SQL_READS``), on the mismatch fixture, in
every stage, on both databases: the same responses, the same ledger rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.stages import Stage
from tests.conftest import Mess, World, ledger_rows, open_api, set_stages

PEOPLE = """
  doctor { __typename id name email role active }
  patient { id fullName dateOfBirth }
  clinicDoctor { id active createdAt clinic { id name } user { id name } }
  clinicPatient { id createdAt clinic { name createdAt } patient { fullName } }
"""
MIGRATION = """
  migration {
    stage authoritativeOrigin comparedStage consistent
    doctor {
      servedOrigin fellBack legacyPersonId newMembershipId newPersonId newClinicId consistent
    }
    patient { servedOrigin fellBack newClinicId consistent }
    differences { field legacyValue newValue }
  }
"""
RESCHEDULE = f"""mutation($id: ID!) {{ rescheduleAppointment(input: {{appointmentId: $id,
    startsAt: "2026-12-24T09:00:00Z", endsAt: "2026-12-24T09:30:00Z"}}) {{
    ... on AppointmentSuccess {{ appointment {{ id startsAt {PEOPLE} {MIGRATION} }} }}
    ... on UserError {{ code }} }} }}"""
SHAPES = {
    "hot list": """query($c: ID!) { appointments(first: 50, filter: {clinicId: $c}) {
        edges { cursor node { id startsAt endsAt status reason doctor { id name }
        patient { id fullName } clinicDoctor { id } clinicPatient { id } } }
        pageInfo { hasNextPage endCursor } } }""",
    "everything": f"""query($c: ID!) {{ appointments(first: 50, filter: {{clinicId: $c}}) {{
        __typename edges {{ __typename node {{ __typename id clinic {{ id name }} createdAt
        updatedAt {PEOPLE} {MIGRATION} }} }} }} }}""",
    "across clinics": f"""query {{ appointments(first: 2) {{ edges {{ node {{ id {PEOPLE} }} }}
        pageInfo {{ hasNextPage endCursor __typename }} }} }}""",
    "single": f"""query($id: ID!) {{ appointment(id: $id) {{ id status {PEOPLE} {MIGRATION} }}
        missing: appointment(id: "00000000-0000-0000-0000-000000000000") {{ id }} }}""",
    "aliases and fragments": """query($c: ID!, $skip: Boolean!) {
        appointments(first: 50, filter: {clinicId: $c}) { edges { node {
          ...Times  who: doctor { name } doc: doctor { id }
          registration: clinicPatient @skip(if: $skip) { id }
          ... on Appointment { status } } } } }
        fragment Times on Appointment { startsAt ends: endsAt }""",
}


async def _answers(
    database_url: str, flags_file: Path, world: World, mess: Mess, sql_reads: bool, writes: bool
) -> dict[str, Any]:
    """The shapes' answers; with ``writes``, the payloads of writes that leave the same
    state however often they run (the same new time each run)."""
    answers: dict[str, Any] = {}
    async with open_api(database_url, flags_file, sql_reads=sql_reads) as api:
        if not writes:
            for name, query in SHAPES.items():
                variables = {
                    "c": str(world.clinic_a.id),
                    "skip": False,
                    "id": str(mess.other_clinic),
                }
                answers[name] = await api.post(query, variables)
            return answers
        for appointment in (mess.wrong_person, mess.missing_new, mess.consistent):
            answers[f"payload {appointment}"] = await api.post(RESCHEDULE, {"id": str(appointment)})
    return answers


@pytest.mark.parametrize("stage", list(Stage))
async def test_the_read_model_answers_as_the_orm_path_does(
    database_url: str,
    flags_file: Path,
    world: World,
    mess: Mess,
    stage: Stage,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    set_stages(flags_file, {world.clinic_a.id: stage, world.clinic_b.id: stage})
    orm = await _answers(database_url, flags_file, world, mess, sql_reads=False, writes=False)
    ledger_after_orm = await ledger_rows(sessions)
    sql = await _answers(database_url, flags_file, world, mess, sql_reads=True, writes=False)
    ledger_after_sql = await ledger_rows(sessions)
    await _answers(database_url, flags_file, world, mess, sql_reads=False, writes=True)
    orm |= await _answers(database_url, flags_file, world, mess, sql_reads=False, writes=True)
    sql |= await _answers(database_url, flags_file, world, mess, sql_reads=True, writes=True)

    assert sql.keys() == orm.keys()
    for name in sql:
        assert sql[name] == orm[name], name
    assert ledger_after_sql.keys() == ledger_after_orm.keys()
