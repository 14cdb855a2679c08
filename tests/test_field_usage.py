"""Deprecated field usage per client: counted per operation, buffered, flushed to the daily
table, shown by /metrics, `clinic usage` and the dashboard, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.db import create_engine, create_session_factory
from appointments.field_usage import (
    MAX_OPERATIONS_PER_CLIENT,
    MAX_VERSIONS_PER_CLIENT,
    OTHER_OPERATION,
    Operation,
    Tally,
    UsageRecorder,
    write_counts,
)
from appointments.models import FieldUsageDaily, FieldUsageOperation
from appointments.persisted_documents import sha256_of
from appointments.stages import Stage
from schema.deprecated_fields import deprecated_fields
from schema.schema import schema
from server.settings import Settings, SettingsError
from tests.conftest import Api, World, consistent_links, insert_appointment, open_api, set_stages
from tests.test_dashboard import dashboard
from tests.test_observability import metric

DOCTOR, PATIENT = "Appointment.doctor", "Appointment.patient"
LISTED = frozenset({"web", "ios", "android", "admin-console", "<script>"})


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"usage_clients": LISTED}


LEGACY_READ = """
query Legacy($clinicId: ID!) {
  appointments(first: 10, filter: {clinicId: $clinicId}) { edges { node { id doctor { name } } } }
}
"""
NEW_READ = """
query New($clinicId: ID!) {
  appointments(first: 10, filter: {clinicId: $clinicId}) {
    edges { node { id clinicDoctor { user { name } } clinicPatient { patient { fullName } } } }
  }
}
"""


async def send(
    api: Api,
    query: str,
    variables: dict[str, Any] | None = None,
    client: str | None = None,
    version: str | None = None,
    operation_name: str | None = None,
) -> dict[str, Any]:
    headers = {}
    if client is not None:
        headers["apollographql-client-name"] = client
    if version is not None:
        headers["apollographql-client-version"] = version
    body: dict[str, Any] = {"query": query, "variables": variables or {}}
    if operation_name is not None:
        body["operationName"] = operation_name
    response = await api.client.post("/graphql", json=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert "errors" not in answer, answer["errors"]
    return answer


async def stored(sessions: async_sessionmaker[AsyncSession]) -> dict[tuple[str, str, str], int]:
    """(client, version, field) -> operations, every day added up."""
    async with sessions() as session:
        rows = (await session.scalars(select(FieldUsageDaily))).all()
    found: dict[tuple[str, str, str], int] = {}
    for row in rows:
        key = (row.client_name, row.client_version, row.field)
        found[key] = found.get(key, 0) + row.operations
    return found


async def flushed(api: Api, sessions: async_sessionmaker[AsyncSession]) -> dict[Any, int]:
    await api.services.usage.flush(api.services.sessions)
    return await stored(sessions)


@pytest.fixture
async def clinic(world: World, sessions: async_sessionmaker[AsyncSession], flags_file: Path) -> str:
    """Clinic A in dual_write with three appointments (a list answers several rows)."""
    async with sessions() as session, session.begin():
        for hour in (9, 10, 11):
            await insert_appointment(session, world, hour, **consistent_links(world))
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})
    return str(world.clinic_a.id)


def test_the_deprecated_fields_come_from_the_schema() -> None:
    assert deprecated_fields(schema._schema) == {
        DOCTOR: "Use clinicDoctor.user",
        PATIENT: "Use clinicPatient.patient",
    }


async def test_two_named_clients_and_one_without_headers_are_counted_apart(
    api: Api, clinic: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    before = {
        name: await metric(
            api, "clinic_deprecated_field_operations_total", client=name, field=DOCTOR
        )
        for name in ("web", "ios", "unknown")
    }

    read = await send(api, LEGACY_READ, {"clinicId": clinic}, "web", "1.4.0")
    await send(api, LEGACY_READ, {"clinicId": clinic}, "web", "1.4.0")
    await send(api, LEGACY_READ, {"clinicId": clinic}, "web", "1.5.0")
    await send(api, LEGACY_READ, {"clinicId": clinic}, "ios")
    await send(api, LEGACY_READ, {"clinicId": clinic})
    await send(api, NEW_READ, {"clinicId": clinic}, "web", "1.4.0")

    assert len(read["data"]["appointments"]["edges"]) == 3
    assert await flushed(api, sessions) == {
        ("web", "1.4.0", DOCTOR): 2,
        ("web", "1.5.0", DOCTOR): 1,
        ("ios", "unknown", DOCTOR): 1,
        ("unknown", "unknown", DOCTOR): 1,
    }
    for name, added in (("web", 3), ("ios", 1), ("unknown", 1)):
        assert await metric(
            api, "clinic_deprecated_field_operations_total", client=name, field=DOCTOR
        ) == (before[name] + added)


async def test_fragments_inline_fragments_aliases_and_mutations_are_found(
    api: Api, clinic: str, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    fragments = """
    query Fragments($clinicId: ID!) {
      appointments(first: 10, filter: {clinicId: $clinicId}) {
        edges { node { ...Who } }
      }
    }
    fragment Who on Appointment { id ... on Appointment { who: patient { fullName } } }
    query Other { clinics { edges { node { id } } } }
    """
    aliased = """
    query Aliased($clinicId: ID!) {
      appointments(first: 10, filter: {clinicId: $clinicId}) {
        edges { node { first: doctor { id } second: doctor { name } } }
      }
    }
    """
    booking = """
    mutation Book($input: CreateAppointmentInput!) {
      createAppointment(input: $input) {
        ... on AppointmentSuccess { appointment { doctor { name } clinicDoctor { id } } }
      }
    }
    """
    await send(api, fragments, {"clinicId": clinic}, "web", operation_name="Fragments")
    await send(api, fragments, {}, "web", operation_name="Other")
    await send(api, aliased, {"clinicId": clinic}, "ios")
    booked = await send(
        api,
        booking,
        {
            "input": {
                "clinicId": clinic,
                "startsAt": "2030-12-02T09:00:00Z",
                "endsAt": "2030-12-02T09:30:00Z",
                "doctorId": str(world.doctor.id),
                "patientId": str(world.patient.id),
            }
        },
        "admin-console",
    )

    assert booked["data"]["createAppointment"]["appointment"]["doctor"]["name"] == "Doctor 0"
    assert await flushed(api, sessions) == {
        ("web", "unknown", PATIENT): 1,
        ("ios", "unknown", DOCTOR): 1,
        ("admin-console", "unknown", DOCTOR): 1,
    }


async def test_a_field_left_out_by_a_literal_condition_is_not_counted_one_on_a_variable_is(
    api: Api, clinic: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conditional = """
    query Conditional($clinicId: ID!, $withPatient: Boolean!) {
      appointments(first: 10, filter: {clinicId: $clinicId}) {
        edges { node { id doctor @include(if: false) { id }
                       patient @include(if: $withPatient) { id } } }
      }
    }
    """
    await send(api, conditional, {"clinicId": clinic, "withPatient": False}, "web")

    assert await flushed(api, sessions) == {("web", "unknown", PATIENT): 1}


async def test_requests_run_no_sql_for_usage_and_a_flush_adds_to_the_stored_counts(
    api: Api, clinic: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    statements: list[str] = []

    def seen(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(api.services.engine.sync_engine, "before_cursor_execute", seen)
    try:
        for _ in range(3):
            await send(api, LEGACY_READ, {"clinicId": clinic}, "web")
        during_requests = [s for s in statements if "field_usage_daily" in s]
        first = await flushed(api, sessions)
        await send(api, LEGACY_READ, {"clinicId": clinic}, "web")
        second = await flushed(api, sessions)
        nothing_pending = await api.services.usage.flush(api.services.sessions)
    finally:
        event.remove(api.services.engine.sync_engine, "before_cursor_execute", seen)

    assert during_requests == []
    assert first == {("web", "unknown", DOCTOR): 3}
    assert second == {("web", "unknown", DOCTOR): 4}
    assert nothing_pending == 0
    async with sessions() as session:
        row = (await session.scalars(select(FieldUsageDaily))).one()
    assert row.day == datetime.now(UTC).date()
    assert row.first_seen_at < row.last_seen_at <= datetime.now(UTC)


async def test_a_failed_flush_keeps_the_counts_for_the_next_one(
    api: Api, clinic: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await send(api, LEGACY_READ, {"clinicId": clinic}, "web")
    tableless = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}")
    try:
        with pytest.raises(Exception, match="field_usage_daily"):
            await api.services.usage.flush(create_session_factory(tableless))
    finally:
        await tableless.dispose()
    await send(api, LEGACY_READ, {"clinicId": clinic}, "web")

    assert await flushed(api, sessions) == {("web", "unknown", DOCTOR): 2}
    assert await stored_operations(sessions) == {
        ("web", "Legacy", sha256_of(LEGACY_READ), DOCTOR): 2
    }


async def test_stopping_the_service_writes_what_it_counted(
    database_url: str, flags_file: Path, clinic: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with open_api(database_url, flags_file, usage_clients=LISTED) as api:
        await send(api, LEGACY_READ, {"clinicId": clinic}, "web", "2.0")
        assert await stored(sessions) == {}

    assert await stored(sessions) == {("web", "2.0", DOCTOR): 1}


class TestListedClients:
    @pytest.fixture
    def app_settings(self) -> dict[str, Any]:
        return {"usage_clients": frozenset({"web", "ios"})}

    async def test_only_the_clients_the_operator_lists_are_counted_by_name(
        self, api: Api, clinic: str, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        before = await metric(
            api, "clinic_deprecated_field_operations_total", client="unknown", field=DOCTOR
        )
        variables = {"clinicId": clinic}
        await send(api, LEGACY_READ, variables)
        await send(api, LEGACY_READ, variables, "web", "1.0")
        await send(api, LEGACY_READ, variables, "ios", "3.1")
        await send(api, LEGACY_READ, variables, "android", "9.9")
        await send(api, LEGACY_READ, variables, "x" * 65)
        await send(api, LEGACY_READ, variables, "web\tapp")
        await send(api, LEGACY_READ, variables, "web", "1.0")

        assert await flushed(api, sessions) == {
            ("unknown", "unknown", DOCTOR): 3,
            ("web", "1.0", DOCTOR): 2,
            ("ios", "3.1", DOCTOR): 1,
            ("unknown", "other", DOCTOR): 1,
        }
        assert await metric(
            api, "clinic_deprecated_field_operations_total", client="unknown", field=DOCTOR
        ) == (before + 4)
        assert await metric(
            api, "clinic_deprecated_field_operations_total", client="android", field=DOCTOR
        ) == (0)

    async def test_made_up_names_cannot_push_a_listed_client_out(
        self, api: Api, clinic: str, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        for number in range(60):
            await send(api, LEGACY_READ, {"clinicId": clinic}, f"squatter-{number}")
        await send(api, LEGACY_READ, {"clinicId": clinic}, "web", "2.0")

        counts = await flushed(api, sessions)

        assert counts == {("unknown", "unknown", DOCTOR): 60, ("web", "2.0", DOCTOR): 1}

    async def test_versions_beyond_the_limit_of_their_client_fold_into_other(
        self, api: Api, clinic: str, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        for number in range(MAX_VERSIONS_PER_CLIENT + 2):
            await send(api, LEGACY_READ, {"clinicId": clinic}, "web", f"1.{number}")

        counts = await flushed(api, sessions)

        assert counts[("web", "other", DOCTOR)] == 2
        assert sorted(version for _, version, _ in counts) == sorted(
            ["other", *(f"1.{number}" for number in range(MAX_VERSIONS_PER_CLIENT))]
        )


def test_the_listed_clients_come_from_the_environment() -> None:
    settings = Settings.from_environment({"CLINIC_USAGE_CLIENTS": " web, ios-app ,,"})

    assert settings.usage_clients == {"web", "ios-app"}
    assert Settings.from_environment({}).usage_clients == frozenset()
    for bad in ("caf\u00e9", "other", "unknown", "x" * 65):
        with pytest.raises(SettingsError):
            Settings.from_environment({"CLINIC_USAGE_CLIENTS": f"web,{bad}"})


async def test_clinic_usage_lists_clients_per_field_and_says_when_none_read_one(
    api: Api, clinic: str, sessions: async_sessionmaker[AsyncSession], clinic_command: Any
) -> None:
    today = datetime.now(UTC).date()
    long_ago = datetime.combine(today - timedelta(days=40), datetime.min.time(), UTC).timestamp()
    async with sessions() as session, session.begin():
        await write_counts(
            session,
            {
                (today - timedelta(days=40), "old-app", "0.1", PATIENT): Tally(
                    5, long_ago, long_ago + 60
                )
            },
        )
    await send(api, LEGACY_READ, {"clinicId": clinic}, "web", "1.4.0")
    await send(api, LEGACY_READ, {"clinicId": clinic}, "web", "1.5.0")
    await send(api, LEGACY_READ, {"clinicId": clinic}, "ios", "3.1")
    await api.services.usage.flush(api.services.sessions)

    status, out, _ = await clinic_command("usage")
    json_status, json_out, _ = await clinic_command("usage", "--json")
    wide_status, wide_out, _ = await clinic_command("usage", "--days", "60", "--json")
    refused = await clinic_command("usage", "--days", "0")

    assert (status, json_status, wide_status) == (0, 0, 0)
    lines = out.splitlines()
    since = (today - timedelta(days=29)).isoformat()
    assert lines[0] == (
        f"Deprecated field usage over the last 30 days ({since} to {today.isoformat()}, UTC)"
    )
    doctor = lines.index("Appointment.doctor: Use clinicDoctor.user")
    legacy = f"Legacy sha256:{sha256_of(LEGACY_READ)[:12]}"
    assert lines[doctor + 2].split()[:2] == ["ios", "1"]
    assert lines[doctor + 2].endswith(" 3.1")
    assert lines[doctor + 3].split()[:4] == [*legacy.split(), "1", "last"]
    assert lines[doctor + 4].split()[:2] == ["web", "2"]
    assert lines[doctor + 4].endswith(" 1.4.0, 1.5.0")
    assert lines[doctor + 5].split()[:3] == [*legacy.split(), "2"]
    patient = lines.index("Appointment.patient: Use clinicPatient.patient")
    assert lines[patient + 1] == "  no client has read Appointment.patient in the last 30 days"

    report = json.loads(json_out)
    assert (report["days"], report["since"], report["until"]) == (30, since, today.isoformat())
    by_field = {field["field"]: field for field in report["fields"]}
    assert list(by_field) == [DOCTOR, PATIENT]
    assert by_field[PATIENT] == {
        "field": PATIENT,
        "deprecationReason": "Use clinicPatient.patient",
        "operations": 0,
        "clients": [],
    }
    web = next(c for c in by_field[DOCTOR]["clients"] if c["clientName"] == "web")
    assert (web["operations"], web["versions"]) == (2, ["1.4.0", "1.5.0"])
    assert web["daily"] == [{"day": today.isoformat(), "operations": 2}]
    assert [
        (document["operationName"], document["documentHash"], document["operations"])
        for document in web["documents"]
    ] == [("Legacy", sha256_of(LEGACY_READ), 2)]
    assert by_field[DOCTOR]["operations"] == 3

    wide = {field["field"]: field for field in json.loads(wide_out)["fields"]}
    assert [c["clientName"] for c in wide[PATIENT]["clients"]] == ["old-app"]
    assert (
        wide[PATIENT]["clients"][0]["firstSeenAt"]
        == datetime.fromtimestamp(long_ago, UTC).isoformat()
    )
    assert refused[0] == 1
    assert "days must be at least 1" in refused[2]


async def test_the_dashboard_panel_shows_who_still_reads_each_field(
    api: Api, clinic: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    moment = datetime.combine(yesterday, datetime.min.time(), UTC).timestamp() + 3600
    async with sessions() as session, session.begin():
        await write_counts(session, {(yesterday, "web", "1.3.0", DOCTOR): Tally(4, moment, moment)})
    await send(api, LEGACY_READ, {"clinicId": clinic}, "web", "1.4.0")
    await send(api, LEGACY_READ, {"clinicId": clinic}, "<script>", "1")

    usage = (await dashboard(api))["usage"]

    assert usage.headers == [
        "Field",
        "Client",
        "Versions",
        "Operations",
        "Today",
        "Last 7 days",
        "Last 30 days",
        "Last seen",
    ]
    rows = {(row.attrs["data-field"], row.attrs["data-client"]): row for row in usage.rows}
    assert set(rows) == {(DOCTOR, "web"), (DOCTOR, "<script>"), (PATIENT, "")}
    web = rows[(DOCTOR, "web")]
    assert usage.column(web, "Field").text == f"{DOCTOR} Use clinicDoctor.user"
    assert usage.column(web, "Versions").text == "1.3.0, 1.4.0"
    assert usage.column(web, "Operations").text == (
        f"Legacy sha256:{sha256_of(LEGACY_READ)[:12]} (1)"
    )
    assert [usage.column(web, h).text for h in ("Today", "Last 7 days", "Last 30 days")] == [
        "1",
        "5",
        "5",
    ]
    assert usage.column(web, "Last seen").text.startswith(
        f"{datetime.now(UTC).date().isoformat()} "
    )
    assert "script" not in usage.column(rows[(DOCTOR, "<script>")], "Client").tags
    none = rows[(PATIENT, "")]
    assert usage.column(none, "Client").text == (
        "no client has read Appointment.patient in the last 30 days"
    )
    assert usage.column(none, "Last 30 days").text == "0"


async def stored_operations(
    sessions: async_sessionmaker[AsyncSession],
) -> dict[tuple[str, str, str, str], int]:
    """(client, operation name, document hash, field) -> operations, every day added up."""
    async with sessions() as session:
        rows = (await session.scalars(select(FieldUsageOperation))).all()
    found: dict[tuple[str, str, str, str], int] = {}
    for row in rows:
        key = (row.client_name, row.operation_name, row.document_hash, row.field)
        found[key] = found.get(key, 0) + row.operations
    return found


ANONYMOUS_READ = """
query ($clinicId: ID!) {
  appointments(first: 10, filter: {clinicId: $clinicId}) { edges { node { patient { fullName } } } }
}
"""
TWO_OPERATIONS = LEGACY_READ + NEW_READ


async def test_each_operation_is_counted_by_name_and_document_hash(
    api: Api, clinic: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await send(api, LEGACY_READ, {"clinicId": clinic}, "web", "1.4.0")
    await send(api, LEGACY_READ, {"clinicId": clinic}, "web", "1.5.0")
    await send(api, ANONYMOUS_READ, {"clinicId": clinic}, "web", "1.5.0")
    await send(api, TWO_OPERATIONS, {"clinicId": clinic}, "ios", operation_name="Legacy")
    await send(api, TWO_OPERATIONS, {"clinicId": clinic}, "ios", operation_name="New")
    await send(api, NEW_READ, {"clinicId": clinic}, "web", "1.5.0")

    await api.services.usage.flush(api.services.sessions)

    assert await stored_operations(sessions) == {
        ("web", "Legacy", sha256_of(LEGACY_READ), DOCTOR): 2,
        ("web", "", sha256_of(ANONYMOUS_READ), PATIENT): 1,
        ("ios", "Legacy", sha256_of(TWO_OPERATIONS), DOCTOR): 1,
    }
    assert await stored(sessions) == {
        ("web", "1.4.0", DOCTOR): 1,
        ("web", "1.5.0", DOCTOR): 1,
        ("web", "1.5.0", PATIENT): 1,
        ("ios", "unknown", DOCTOR): 1,
    }


async def test_operations_beyond_the_limit_of_their_client_fold_into_other(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    recorder = UsageRecorder(["web"])
    for number in range(MAX_OPERATIONS_PER_CLIENT + 2):
        recorder.record("web", "1", [DOCTOR], Operation(f"Op{number}", f"{number:064x}"))
    recorder.record("web", "1", [DOCTOR], Operation("Op0", f"{0:064x}"))
    recorder.record("ios", "1", [DOCTOR], Operation("X" * 300, f"{1:064x}"))

    await recorder.flush(sessions)

    found = await stored_operations(sessions)
    assert len(found) == MAX_OPERATIONS_PER_CLIENT + 2
    assert found[("web", "Op0", f"{0:064x}", DOCTOR)] == 2
    assert found[("web", OTHER_OPERATION.name, "", DOCTOR)] == 2
    assert found[("unknown", "X" * 128, f"{1:064x}", DOCTOR)] == 1
