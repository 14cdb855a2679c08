"""Property-based differential test: the service's reads against the reference model.

Hypothesis draws data (consistent rows, one side only, disagreeing sides, links
into another clinic, inactive memberships; or a contracted schema, without legacy
columns), a stage per clinic, a viewer (an admin, or staff of clinic A only) and a
read: any part of the appointment's fields, nested objects included, written with
aliases (a field may be asked twice), inline or named fragments and
``@skip``/``@include``. The list
the service answers, the ledger entries the read leaves and the changes of the
migration metrics must be the reference model's (``tests.read_oracle``), on both
databases.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import migrations
from appointments.models import (
    Appointment,
    Clinic,
    ClinicDoctor,
    ClinicPatient,
    ClinicStaff,
    MigrationMismatch,
    Patient,
    User,
    UserRole,
)
from appointments.stages import Stage
from server.auth import mint_token
from server.settings import Settings
from tests import read_oracle
from tests.conftest import TABLES_CHILD_FIRST, Api, open_api, set_stages
from tests.test_contract import revert_if_contracted

SECRET = "read-oracle-secret-0123456789-012345"
# What the reference model answers, as a tree of fields; a request selects a drawn part.
FIELDS: dict[str, Any] = {
    "id": None,
    "startsAt": None,
    "doctor": {"id": None, "name": None},
    "patient": {"id": None, "fullName": None, "dateOfBirth": None},
    "clinicDoctor": {
        "id": None,
        "active": None,
        "clinic": {"name": None},
        "user": {"id": None, "name": None},
    },
    "clinicPatient": {
        "id": None,
        "clinic": {"name": None},
        "patient": {"id": None, "fullName": None, "dateOfBirth": None},
    },
    "migration": {
        "stage": None,
        "authoritativeOrigin": None,
        "consistent": None,
        "doctor": {"servedOrigin": None, "fellBack": None, "newClinicId": None},
        "differences": {"field": None, "legacyValue": None, "newValue": None},
    },
}


# A drawn selection: response key -> (field name, its drawn selection or None for a leaf).
Drawn = dict[str, tuple[str, Any]]


ALIASES = 15
"""The service refuses operations with more aliases (schema.operations)."""


@st.composite
def selections(
    draw: st.DrawFn, fields: dict[str, Any] = FIELDS, aliases: list[int] | None = None
) -> Drawn:
    """A non-empty part of ``fields``, each object with a non-empty part of its own; a
    field may be asked under an alias, or twice (as itself and under an alias), as long
    as the operation stays within the service's alias limit."""
    left = [ALIASES] if aliases is None else aliases
    names = draw(st.sets(st.sampled_from(sorted(fields)), min_size=1))
    chosen: Drawn = {}
    for name in sorted(names):
        options = [(name,), (f"{name}Alias",), (name, f"{name}Alias")] if left[0] > 0 else [(name,)]
        keys = draw(st.sampled_from(options))
        left[0] -= sum(key != name for key in keys)
        for key in keys:
            children = fields[name]
            chosen[key] = (name, None if children is None else draw(selections(children, left)))
    return chosen


STYLES = ("plain", "inline fragments", "named fragment")
SKIP, INCLUDE = "@skip(if: $yes)", "@include(if: $yes)"


def query_text(selection: Drawn, style: str, directives: dict[str, str] | None = None) -> str:
    """The selection as a client writes it: objects' fields inside inline fragments in
    the "inline fragments" style; ``directives`` by response key."""
    parts = []
    for key, (name, children) in selection.items():
        text = name if key == name else f"{key}: {name}"
        text += f" {(directives or {}).get(key, '')}"
        if children is not None:
            inner = query_text(children, style)
            text += (
                f" {{ ... {{ {inner} }} }}" if style == "inline fragments" else f" {{ {inner} }}"
            )
        parts.append(text)
    return " ".join(parts)


def list_query(selection: Drawn, style: str, directives: dict[str, str], arguments: str) -> str:
    """The list query; in the "named fragment" style the node's later fields come from a
    fragment spread beside the earlier ones."""
    keys = list(selection)
    split = len(keys) // 2 if style == "named fragment" else len(keys)
    direct = {key: selection[key] for key in keys[:split]}
    spread = {key: selection[key] for key in keys[split:]}
    node = query_text(direct, style, directives)
    fragment = ""
    if spread:
        node += " ...Node"
        fragment = f" fragment Node on Appointment {{ {query_text(spread, style, directives)} }}"
    variables = "($yes: Boolean!)" if any(directives.values()) else ""
    return (
        f"query Read{variables} {{ appointments({arguments}) "
        f"{{ edges {{ node {{ {node} }} }} }} }}{fragment}"
    )


def project(value: Any, selection: Drawn) -> Any:
    """The part of the reference model's answer that ``selection`` asks for."""
    if value is None:
        return None
    if isinstance(value, list):
        return [project(item, selection) for item in value]
    return {
        key: value[name] if children is None else project(value[name], children)
        for key, (name, children) in selection.items()
    }


METRICS = {
    "clinic_appointment_reads_total": ("reads", "stage", "side", "origin", "outcome"),
    "clinic_read_fallbacks_total": ("fallbacks", "stage", "side"),
    "clinic_comparisons_total": ("comparisons", "stage", "outcome"),
    "clinic_mismatches_total": ("mismatches", "stage", "field"),
}


async def migration_metrics(api: Api) -> Counter[tuple[str, ...]]:
    """The migration counters /metrics shows, keyed as ``read_oracle.metric_changes``."""
    response = await api.client.get("/metrics", headers={"Authorization": f"Bearer {SECRET}"})
    found: Counter[tuple[str, ...]] = Counter()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            shape = METRICS.get(sample.name)
            if shape is not None:
                key = (shape[0], *(sample.labels[label] for label in shape[1:]))
                found[key] += int(sample.value)
    return found


CLINICS = (uuid.UUID(int=1), uuid.UUID(int=2))
PEOPLE = 3


@pytest_asyncio.fixture
async def oracle_api(
    database_url: str, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Api]:
    async with open_api(
        database_url, flags_file, production=True, jwt_secret=SECRET, metrics_token=SECRET
    ) as api:
        yield api


@st.composite
def data_sets(
    draw: st.DrawFn, contracted: bool = False
) -> tuple[read_oracle.Data, dict[uuid.UUID, Stage], str]:
    """Data, a flag stage per clinic and a viewer. A contracted schema has no legacy
    columns, and every row names both memberships (the contract requires it)."""
    people = {
        side: {
            uuid.UUID(int=100 * (k + 1) + n): read_oracle.Person(
                uuid.UUID(int=100 * (k + 1) + n),
                f"{side} {n}",
                date(1980, 1, n + 1) if side == "patient" else None,
            )
            for n in range(PEOPLE)
        }
        for k, side in enumerate(("doctor", "patient"))
    }
    memberships: dict[str, dict[uuid.UUID, read_oracle.Membership]] = {"doctor": {}, "patient": {}}
    for k, side in enumerate(("doctor", "patient")):
        for c, clinic in enumerate(CLINICS):
            for person in people[side]:
                if draw(st.booleans()) or (contracted and person == min(people[side])):
                    membership_id = uuid.UUID(int=1000 * (k + 1) + 10 * c + person.int % 100)
                    memberships[side][membership_id] = read_oracle.Membership(
                        membership_id, clinic, person, active=draw(st.booleans())
                    )
    rows = []
    for n in range(draw(st.integers(1, 6))):
        clinic = draw(st.sampled_from(CLINICS))
        legacy: dict[str, uuid.UUID | None] = {}
        new: dict[str, uuid.UUID | None] = {}
        for side in ("doctor", "patient"):
            choices = sorted(memberships[side])
            if contracted:
                legacy[side], new[side] = None, draw(st.sampled_from(choices))
                continue
            legacy[side] = draw(st.none() | st.sampled_from(sorted(people[side])))
            new[side] = draw(st.none() | st.sampled_from(choices)) if choices else None
            if legacy[side] is None and new[side] is None:
                legacy[side] = sorted(people[side])[0]
        starts = datetime(2027, 1, 4, 8, tzinfo=UTC) + timedelta(minutes=30 * n)
        rows.append(read_oracle.Row(uuid.UUID(int=50_000 + n), clinic, starts, legacy, new))
    data = read_oracle.Data(
        {CLINICS[0]: "Clinic A", CLINICS[1]: "Clinic B"},
        people,
        memberships,
        rows,
        legacy_columns=not contracted,
    )
    stages = {clinic: draw(st.sampled_from(list(Stage))) for clinic in CLINICS}
    return data, stages, draw(st.sampled_from(["admin", "staff"]))


async def store(
    sessions: async_sessionmaker[AsyncSession], data: read_oracle.Data
) -> dict[str, uuid.UUID]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    viewers = {"admin": uuid.UUID(int=9001), "staff": uuid.UUID(int=9002)}
    async with sessions() as session, session.begin():
        for model in TABLES_CHILD_FIRST:
            await session.execute(delete(model))
        for clinic, name in data.clinics.items():
            session.add(Clinic(id=clinic, name=name, created_at=now))
        for user_id, person in data.people["doctor"].items():
            session.add(User(id=user_id, name=person.name, email=f"{user_id}@x.org", role="doctor"))
        for role, user_id in viewers.items():
            session.add(
                User(id=user_id, name=role, email=f"{role}@x.org", role=UserRole(role).value)
            )
        for patient_id, person in data.people["patient"].items():
            session.add(Patient(id=patient_id, full_name=person.name, date_of_birth=person.born))
        await session.flush()
        session.add(
            ClinicStaff(
                id=uuid.uuid4(), clinic_id=CLINICS[0], user_id=viewers["staff"], created_at=now
            )
        )
        for membership in data.memberships["doctor"].values():
            session.add(
                ClinicDoctor(
                    id=membership.id,
                    clinic_id=membership.clinic_id,
                    user_id=membership.person_id,
                    active=membership.active,
                    created_at=now,
                )
            )
        for membership in data.memberships["patient"].values():
            session.add(
                ClinicPatient(
                    id=membership.id,
                    clinic_id=membership.clinic_id,
                    patient_id=membership.person_id,
                    created_at=now,
                )
            )
        await session.flush()
        for row in data.rows:
            await session.execute(
                insert(Appointment).values(
                    id=row.id,
                    clinic_id=row.clinic_id,
                    starts_at=row.starts_at,
                    ends_at=row.starts_at + timedelta(minutes=30),
                    status="scheduled",
                    **(
                        {"doctor_id": row.legacy["doctor"], "patient_id": row.legacy["patient"]}
                        if data.legacy_columns
                        else {}
                    ),
                    clinic_doctor_id=row.new["doctor"],
                    clinic_patient_id=row.new["patient"],
                    created_at=now,
                    updated_at=now,
                )
            )
    return viewers


@dataclass(frozen=True)
class Read:
    """A drawn list read: its selection, how it is written, and what it asks for."""

    selection: Drawn
    style: str
    directives: dict[str, str]
    first: int
    of_clinic_a: bool

    def shown_selection(self) -> Drawn:
        return {k: v for k, v in self.selection.items() if self.directives.get(k) != SKIP}


@st.composite
def reads(draw: st.DrawFn) -> Read:
    selection = draw(selections())
    directives = {
        key: draw(st.sampled_from(["", SKIP, INCLUDE])) for key in selection if len(selection) > 1
    }
    return Read(
        selection,
        draw(st.sampled_from(STYLES)),
        directives,
        draw(st.integers(1, 7)),
        draw(st.booleans()),
    )


async def check_read(
    api: Api,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    drawn: Any,
    read: Read,
    served_stage: Stage | None = None,
) -> None:
    """Store the data, serve the flag stages and make the read: its answer, the ledger
    entries and the metric changes must be the reference model's. ``served_stage``: the
    stage every clinic is served in whatever its flag (a contracted schema's)."""
    data, flag_stages, viewer = drawn
    viewers = await store(sessions, data)
    set_stages(flags_file, flag_stages)
    stages = {clinic: served_stage or stage for clinic, stage in flag_stages.items()}
    token = mint_token(Settings(jwt_secret=SECRET), viewers[viewer], UserRole(viewer), hours=1)

    arguments = (
        f'first: {read.first}, filter: {{clinicId: "{CLINICS[0]}"}}'
        if read.of_clinic_a
        else f"first: {read.first}"
    )
    query = list_query(read.selection, read.style, read.directives, arguments)
    before = await migration_metrics(api)
    response = await api.client.post(
        "/graphql",
        json={"query": query, "variables": {"yes": True}},
        headers={"Authorization": f"Bearer {token}"},
    )
    changes = await migration_metrics(api) - before
    body = response.json()

    def sees(clinic: uuid.UUID) -> bool:
        return viewer == "admin" or clinic == CLINICS[0]

    shown_rows = sorted(
        (
            row
            for row in data.rows
            if sees(row.clinic_id) and (row.clinic_id == CLINICS[0] or not read.of_clinic_a)
        ),
        key=lambda row: (row.starts_at, row.id),
    )[: read.first]
    shown = read.shown_selection()
    expected = [
        project(read_oracle.appointment_json(data, row, stages[row.clinic_id], sees), shown)
        for row in shown_rows
    ]
    assert "errors" not in body, body["errors"]
    assert [edge["node"] for edge in body["data"]["appointments"]["edges"]] == expected
    async with sessions() as session:
        entries = {
            (row.appointment_id, row.field)
            for row in (await session.execute(select(MigrationMismatch))).scalars()
        }
    # Comparisons are made (and counted, and recorded) only by reads that show a link or
    # the migration state.
    shows_links = any(name not in ("id", "startsAt") for name, _ in shown.values())
    compared = shown_rows if shows_links else []
    assert entries == read_oracle.ledger(data, stages, {row.id for row in compared})
    assert changes == read_oracle.metric_changes(data, stages, compared, sees)


EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@EXAMPLES
@given(drawn=data_sets(), read=reads())
async def test_reads_answer_as_the_reference_model(
    oracle_api: Api,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    drawn: Any,
    read: Read,
) -> None:
    await check_read(oracle_api, sessions, flags_file, drawn, read)


@pytest_asyncio.fixture
async def contracted_api(
    engine: AsyncEngine,
    database_url: str,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Api]:
    """The service on a contracted schema (emptied first, so the contract accepts it);
    the contract is reverted after."""
    async with sessions() as session, session.begin():
        for model in TABLES_CHILD_FIRST:
            await session.execute(delete(model))
    await migrations.upgrade(engine, migrations.CONTRACT_REVISION)
    try:
        async with open_api(
            database_url, flags_file, production=True, jwt_secret=SECRET, metrics_token=SECRET
        ) as api:
            yield api
    finally:
        await revert_if_contracted(engine)


@settings(EXAMPLES, max_examples=15)
@given(drawn=data_sets(contracted=True), read=reads())
async def test_reads_on_a_contracted_schema_answer_as_the_reference_model(
    contracted_api: Api,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    drawn: Any,
    read: Read,
) -> None:
    await check_read(contracted_api, sessions, flags_file, drawn, read, Stage.COMPLETE)
