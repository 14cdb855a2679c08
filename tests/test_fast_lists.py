"""The joined list read (schema.fast_lists, appointments.listing) against the ORM read path.

Two apps over the same database and flags file, one with ``fast_list_reads`` off,
get the same requests in every stage, over rows that exercise every read rule:
consistent rows, rows linked on one side only, rows whose sides disagree (another
person, a membership of another clinic), doctors and patients with no membership,
rows of a second clinic in another stage. Each request runs on a fresh ledger in
each app, and must give

- the same response body, byte for byte (data, errors, the migration extensions
  with their fallback and mismatch counts),
- the same mismatch ledger rows, the same read and comparison metrics, and the
  same migration event log lines.

The selections cover aliases, merged fields, named and inline fragments, ``@skip``
and ``@include`` (literal and from variables), ``__typename`` at every level,
cursors and page info, pagination, filters, two lists in one request, and errors.
Selections the joined read does not answer (``clinic``, ``migration``, a
membership's clinic, ``@defer`` is refused by the schema) must take the ORM path:
the same statements are sent for them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import listing, metrics
from appointments.db import SerializedSession
from appointments.events import MigrationEventLog
from appointments.models import Appointment, MigrationMismatch
from appointments.queries import AppointmentFilter
from appointments.reads import LinkResolver, fixed_stage
from appointments.sides import DOCTOR, PATIENT
from appointments.stages import Stage
from bench.executor import HOT_QUERY
from schema.dataloaders import Loaders
from tests.conftest import (
    Api,
    Mess,
    World,
    consistent_links,
    insert_appointment,
    ledger_rows,
    open_api,
    set_stages,
)
from tests.test_fast_executor import seed_more
from tests.test_statement_count import seed_appointments

ALL_FIELDS = """
query All($clinicId: ID, $first: Int, $after: String) {
  appointments(first: $first, after: $after, filter: {clinicId: $clinicId}) {
    __typename
    pageInfo { __typename hasNextPage endCursor }
    edges {
      __typename cursor
      node {
        __typename id startsAt endsAt status reason createdAt updatedAt
        doctor { __typename id name email role }
        patient { __typename id fullName dateOfBirth }
        clinicDoctor { __typename id active createdAt user { __typename id name email role } }
        clinicPatient { __typename id createdAt patient { __typename id fullName dateOfBirth } }
      }
    }
  }
}
"""

FRAGMENTS = """
fragment Person on User { name id }
fragment Who on Appointment {
  doctor { ...Person }
  clinicDoctor { user { ...Person email } ...on ClinicDoctor { active } }
}
fragment Page on AppointmentConnection { pageInfo { endCursor } }
query Fragments($clinicId: ID) {
  appointments(first: 20, filter: {clinicId: $clinicId}) {
    ...Page
    edges {
      node {
        ...Who
        ... { status }
        ...on Appointment { patient { fullName } id }
        ...Who
      }
    }
    ...Page
  }
}
"""

ALIASES = """
query Aliases($clinicId: ID) {
  page: appointments(first: 15, filter: {clinicId: $clinicId}) {
    rows: edges {
      at: cursor
      appointment: node {
        key: id
        doctor { name }
        doctor { email }
        who: doctor { id }
        member: clinicPatient { since: createdAt person: patient { born: dateOfBirth } }
        clinicPatient { id }
        start: startsAt
        startsAt
      }
    }
  }
}
"""

DIRECTIVES = """
query Directives($clinicId: ID, $yes: Boolean!, $no: Boolean!) {
  appointments(first: 25, filter: {clinicId: $clinicId}) {
    pageInfo @include(if: $no) { hasNextPage }
    edges {
      cursor @skip(if: $yes)
      node {
        id
        doctor @include(if: $yes) { name @skip(if: $no) email @skip(if: true) }
        patient @skip(if: $yes) { fullName }
        ... @include(if: $no) { status }
        ...Extra @skip(if: $no)
        ...Extra @skip(if: $yes)
        clinicDoctor @include(if: false) { id }
      }
    }
  }
}
fragment Extra on Appointment { reason clinicPatient { patient { id } } }
"""

# Every link field left out by a directive: neither path serves or compares a link.
LINKS_SKIPPED = """
query LinksSkipped($clinicId: ID, $yes: Boolean!) {
  appointments(first: 20, filter: {clinicId: $clinicId}) {
    edges {
      node {
        id
        doctor @skip(if: $yes) { id }
        ... @include(if: false) { clinicDoctor { id } }
        ...Links @skip(if: true)
      }
    }
  }
}
fragment Links on Appointment { patient { id } clinicPatient { patient { id } } }
"""

FILTERED = """
query Filtered($filter: AppointmentFilterInput!) {
  appointments(first: 50, filter: $filter) {
    edges { node { id status doctor { id } clinicDoctor { id } patient { id } } }
  }
}
"""

TWO_LISTS = """
query Two($clinicId: ID, $id: ID!) {
  one: appointment(id: $id) { id doctor { name } clinicPatient { id } }
  first: appointments(first: 10, filter: {clinicId: $clinicId}) {
    edges { node { id doctor { name } clinicDoctor { user { id } } } }
  }
  again: appointments(first: 30, filter: {clinicId: $clinicId}) {
    edges { node { id patient { fullName } clinicPatient { patient { id } } } }
  }
}
"""

# The joined read does not answer these: they take the ORM read path.
NOT_JOINED = [
    "query($clinicId: ID) { appointments(first: 20, filter: {clinicId: $clinicId}) {"
    " edges { node { id clinic { name } doctor { name } } } } }",
    "query($clinicId: ID) { appointments(first: 20, filter: {clinicId: $clinicId}) {"
    " edges { node { id migration { consistent stage } clinicDoctor { id } } } } }",
    "query($clinicId: ID) { appointments(first: 20, filter: {clinicId: $clinicId}) {"
    " edges { node { clinicDoctor { clinic { id } user { name } } } } } }",
]

ERRORS = [
    (
        "query($clinicId: ID) { appointments(first: 101, filter: {clinicId: $clinicId}) {"
        " edges { node { id doctor { name } } } } }"
    ),
    (
        'query($clinicId: ID) { appointments(after: "nope", filter: {clinicId: $clinicId}) {'
        " edges { node { id doctor { name } } } } }"
    ),
]

READ_METRICS = (metrics.READS, metrics.COMPARISONS, metrics.MISMATCHES)


def metric_values() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for metric in READ_METRICS:
        for family in metric.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def delta(
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if value != before.get(key, 0.0)
    }


@dataclass
class Outcome:
    status: int
    body: bytes
    statements: int
    ledger: list[tuple[Any, ...]]
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    events: list[tuple[str, str, str]]


@dataclass
class Pair:
    orm: Api
    joined: Api
    world: World
    mess: Mess
    sessions: async_sessionmaker[AsyncSession]
    flags_file: Path
    caplog: pytest.LogCaptureFixture

    async def run(self, api: Api, query: str, variables: dict[str, Any]) -> Outcome:
        async with self.sessions() as session, session.begin():
            await session.execute(delete(MigrationMismatch))
        self.caplog.clear()
        before_metrics = metric_values()
        before_statements = api.statements.count
        response = await api.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"X-Request-ID": "fast-lists-differential"},
        )
        statements = api.statements.count - before_statements
        ledger = sorted(
            (
                str(row.appointment_id),
                row.field,
                str(row.legacy_value),
                str(row.new_value),
                row.stage,
                row.times_seen,
                row.status,
            )
            for row in (await ledger_rows(self.sessions)).values()
        )
        events = [
            (
                record.getMessage(),
                str(getattr(record, "appointment_id", "")),
                str(getattr(record, "field", getattr(record, "side", ""))),
            )
            for record in self.caplog.records
            if record.name == "appointments.migration"
        ]
        return Outcome(
            response.status_code,
            response.content,
            statements,
            ledger,
            delta(before_metrics, metric_values()),
            events,
        )

    async def compare(self, query: str, variables: dict[str, Any]) -> tuple[Outcome, Outcome]:
        orm = await self.run(self.orm, query, variables)
        joined = await self.run(self.joined, query, variables)
        assert joined.status == orm.status
        assert joined.body.decode() == orm.body.decode()
        assert joined.ledger == orm.ledger
        assert joined.metrics == orm.metrics
        assert joined.events == orm.events
        return orm, joined


@pytest_asyncio.fixture
async def pair(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    world: World,
    mess: Mess,
    flags_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Pair]:
    await seed_appointments(sessions, world, 30)
    await seed_more(sessions, world, 12)
    caplog.set_level(logging.INFO, logger="appointments.migration")
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    async with (
        open_api(database_url, flags_file, fast_list_reads=False, sql_reads=False) as orm,
        open_api(database_url, flags_file, sql_reads=False) as joined,
    ):
        yield Pair(orm, joined, world, mess, sessions, flags_file, caplog)


def _other(stage: Stage) -> Stage:
    stages = list(Stage)
    return stages[(stages.index(stage) + 3) % len(stages)]


@pytest.mark.parametrize("stage", list(Stage), ids=[stage.value for stage in Stage])
async def test_joined_lists_answer_as_the_orm_read_path_in_every_stage(
    pair: Pair, stage: Stage
) -> None:
    world = pair.world
    set_stages(pair.flags_file, {world.clinic_a.id: stage, world.clinic_b.id: _other(stage)})
    clinic_a = str(world.clinic_a.id)
    each_clinic: dict[str, Any] = {"clinicId": clinic_a}
    every_clinic: dict[str, Any] = {"clinicId": None}

    orm, joined = await pair.compare(HOT_QUERY, each_clinic)
    assert len(orm.body) > 5_000
    assert joined.statements < orm.statements
    if stage in (Stage.SHADOW, Stage.LIVE):
        assert orm.ledger, "the mess rows disagree: a compared stage records them"
        assert orm.events, "and logs each difference"

    first_page, _ = await pair.compare(ALL_FIELDS, {"clinicId": clinic_a, "first": 7})
    end_cursor = json.loads(first_page.body)["data"]["appointments"]["pageInfo"]["endCursor"]
    await pair.compare(ALL_FIELDS, {"clinicId": clinic_a, "first": 40, "after": end_cursor})
    await pair.compare(ALL_FIELDS, {"clinicId": None, "first": 100})
    await pair.compare(ALL_FIELDS, {"clinicId": clinic_a, "first": 0})
    await pair.compare(FRAGMENTS, every_clinic)
    await pair.compare(ALIASES, each_clinic)
    for yes in (True, False):
        await pair.compare(DIRECTIVES, {"clinicId": clinic_a, "yes": yes, "no": not yes})
    orm, joined = await pair.compare(LINKS_SKIPPED, {"clinicId": clinic_a, "yes": True})
    assert orm.metrics == {}
    assert orm.ledger == []
    assert orm.events == []
    orm, joined = await pair.compare(LINKS_SKIPPED, {"clinicId": clinic_a, "yes": False})
    assert orm.metrics, "the doctor shown is served (and counted) by both paths"
    for condition in (
        {"doctorId": str(world.doctor.id)},
        {"patientId": str(world.other_patient.id)},
        {"clinicDoctorId": str(world.other_clinic_doctor.id)},
        {"clinicPatientId": str(pair.mess.clinic_patient_in_b)},
        {"clinicId": clinic_a, "status": "CANCELLED"},
    ):
        await pair.compare(FILTERED, {"filter": condition})
    await pair.compare(TWO_LISTS, {"clinicId": clinic_a, "id": str(pair.mess.wrong_person)})
    for query in NOT_JOINED:
        orm, joined = await pair.compare(query, each_clinic)
        assert joined.statements == orm.statements
    for query in ERRORS:
        orm, _ = await pair.compare(query, each_clinic)
        assert b'"errors"' in orm.body


async def test_the_joined_read_sends_one_statement_whatever_the_selection(pair: Pair) -> None:
    # A stage that records nothing in the ledger: only the reads are counted.
    set_stages(pair.flags_file, {pair.world.clinic_a.id: Stage.RAMPDOWN})
    variables = {"clinicId": str(pair.world.clinic_a.id)}
    only_ids = "query($clinicId: ID) { appointments(filter: {clinicId: $clinicId}) {" + (
        " edges { node { id } } } }"
    )
    ids_orm, ids_joined = await pair.compare(only_ids, variables)
    hot_orm, hot_joined = await pair.compare(HOT_QUERY, variables)

    assert hot_joined.statements == ids_joined.statements == 1
    assert hot_orm.statements > ids_orm.statements


async def test_a_link_served_before_another_transaction_changed_its_row_keeps_its_person(
    sessions: async_sessionmaker[AsyncSession], world: World, database_url: str
) -> None:
    """Two reads of one request (say ``appointment(id)``, then a list) with a write
    committed by another transaction between them: PostgreSQL's next statement reads
    the changed row, and the list still shows the link as the request first served it."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite read transaction keeps one snapshot: no write lands in between")
    async with sessions() as session, session.begin():
        appointment_id = await insert_appointment(session, world, 9, **consistent_links(world))
    db = SerializedSession(sessions)
    links = LinkResolver(fixed_stage(Stage.LEGACY), Loaders(db), MigrationEventLog())
    try:
        row = await db.run(lambda session: session.get(Appointment, appointment_id))
        assert row is not None
        await links.prefetch([row], (DOCTOR, PATIENT))
        first = links.ready(DOCTOR, row)
        assert first is not None
        assert first.person_id == world.doctor.id

        async with sessions() as other, other.begin():
            await other.execute(
                update(Appointment)
                .where(Appointment.id == appointment_id)
                .values(
                    doctor_id=world.other_doctor.id,
                    clinic_doctor_id=world.other_clinic_doctor.id,
                )
            )

        page = await db.run(
            lambda session: listing.list_appointments_joined(
                session, links, AppointmentFilter(clinic_id=world.clinic_a.id), 10, None
            )
        )
    finally:
        await db.close()

    listed = next(item for item in page.rows if item.id == appointment_id)
    assert listed.record.doctor_id == world.other_doctor.id, "the list read the changed row"
    assert listed.doctor is not None
    assert listed.doctor.link is first
    assert listed.doctor.person == listing.UserRecord(
        world.doctor.id, world.doctor.name, world.doctor.email, world.doctor.role
    )
