"""The contract and its revert, with the service running and from the command line.

Every test here contracts the session's database and reverts it at the end (the
engine fixture is shared by the whole run).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Connection, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import migrations
from appointments.backfill import BackfillOptions, run_backfill
from appointments.db import PSYCOPG_PREPARE_THRESHOLD, create_engine
from appointments.models import Appointment, MigrationMismatch, MismatchField, utcnow
from appointments.stages import Stage
from server.cli import main
from tests.conftest import World, open_api, set_stages
from tests.test_backfill import book
from tests.test_full_switch import CREATE, READ, REASSIGN, REPORT, run_cli

Cli = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    database_url: str,
    flags_file: Path,
) -> Iterator[Cli]:
    """``clinic ...`` as a person runs it: its own thread and event loop; (code, out, err).

    The command configures logging for the process; the test runner's is put back after.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    async def run(*arguments: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(run_cli, monkeypatch, database_url, flags_file, *arguments)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


async def revert_if_contracted(engine: AsyncEngine) -> None:
    if migrations.CONTRACT_REVISION in await migrations.current_heads(engine):
        await migrations.revert_contract(engine)


@pytest_asyncio.fixture
async def linked(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], world: World
) -> AsyncIterator[int]:
    """Appointments of clinic A, every one linked (the contract accepts them); reverted after.

    The ledger has an entry (a row written in ``complete`` has no legacy doctor), as
    it does once a clinic was compared: the contract and its revert keep it.
    """
    booked = await book(sessions, world, Stage.DUAL_WRITE, 6)
    await run_backfill(sessions, BackfillOptions(create_memberships=True))
    written_in_complete = await book(sessions, world, Stage.COMPLETE, 2, offset=20)
    async with sessions() as session, session.begin():
        now = utcnow()
        session.add(
            MigrationMismatch(
                appointment_id=written_in_complete[0],
                clinic_id=world.clinic_a.id,
                field=MismatchField.DOCTOR.value,
                legacy_value=None,
                new_value=world.doctor.id,
                stage=Stage.SHADOW.value,
                first_seen_at=now,
                last_seen_at=now,
                times_seen=1,
            )
        )
    try:
        yield len(booked) + len(written_in_complete)
    finally:
        await revert_if_contracted(engine)


@pytest_asyncio.fixture
async def contracted(engine: AsyncEngine, linked: int) -> int:
    await migrations.upgrade(engine, migrations.CONTRACT_REVISION)
    return linked


async def test_the_contract_and_its_revert_keep_the_ledger_and_its_references(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], contracted: int
) -> None:
    """SQLite recreates ``appointments`` both ways; ledger rows reference it (foreign keys)."""
    assert await migrations.legacy_columns_present(engine) is False

    await migrations.revert_contract(engine)

    async with sessions() as session:
        (entry,) = (await session.execute(select(MigrationMismatch))).scalars()
        assert await session.get(Appointment, entry.appointment_id) is not None
    async with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1
            assert (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all() == []


def booking(world: World, day: int) -> dict[str, Any]:
    return {
        "input": {
            "clinicId": str(world.clinic_a.id),
            "startsAt": f"2026-12-{day:02d}T09:00:00Z",
            "endsAt": f"2026-12-{day:02d}T09:30:00Z",
            "doctorId": str(world.doctor.id),
            "patientId": str(world.patient.id),
        }
    }


async def appointment_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Appointment)) or 0)


def assert_retryable(body: dict[str, Any]) -> None:
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "SCHEMA_CHANGED", error
    assert error["extensions"]["retryable"] is True
    assert "retry" in error["message"]


def assert_served_complete(body: dict[str, Any], clinic: str, count: int) -> None:
    assert "errors" not in body, body["errors"]
    assert body["extensions"]["migration"]["stages"] == {clinic: "complete"}
    nodes = [edge["node"] for edge in body["data"]["appointments"]["edges"]]
    assert len(nodes) == count
    for node in nodes:
        assert node["doctor"] == node["clinicDoctor"]["user"]
        assert node["patient"] == node["clinicPatient"]["patient"]


class TestAServiceRunningThroughTheContract:
    async def test_switches_to_the_contracted_layout_without_a_restart(
        self,
        database_url: str,
        world: World,
        flags_file: Path,
        sessions: async_sessionmaker[AsyncSession],
        linked: int,
        cli: Cli,
    ) -> None:
        """Reads and writes work after the contract; each request that was caught by it
        (one per service instance) is answered with a retryable error and wrote nothing."""
        clinic = str(world.clinic_a.id)
        set_stages(flags_file, {world.clinic_a.id: Stage.LIVE})
        async with (
            open_api(database_url, flags_file) as reader,
            open_api(database_url, flags_file) as writer,
        ):
            # Enough reads that psycopg has prepared the legacy statements server-side.
            for _ in range(PSYCOPG_PREPARE_THRESHOLD + 1):
                before = await reader.data(READ, {"clinic": clinic})
                await writer.data(READ, {"clinic": clinic})
            assert len(before["appointments"]["edges"]) == linked
            assert reader.services.legacy_columns is True

            code, out, _ = await cli("migrate", "contract")
            assert code == 0, out

            assert_retryable(await reader.post(READ, {"clinic": clinic}))
            assert reader.services.legacy_columns is False
            assert_served_complete(await reader.post(READ, {"clinic": clinic}), clinic, linked)
            created = await reader.data(CREATE, booking(world, 20))
            appointment = created["createAppointment"]["appointment"]
            assert appointment["clinicDoctor"] == {"id": str(world.clinic_doctor.id)}
            reassigned = await reader.data(
                REASSIGN,
                {
                    "input": {
                        "appointmentId": appointment["id"],
                        "doctorId": str(world.other_doctor.id),
                    }
                },
            )
            assert reassigned["reassignDoctor"]["appointment"]["clinicDoctor"] == {
                "id": str(world.other_clinic_doctor.id)
            }

            # The other instance's first request after the contract is a keyed write.
            keyed = {"Idempotency-Key": "booking-21"}
            payload = {"query": CREATE, "variables": booking(world, 21)}
            count = await appointment_count(sessions)
            first = await writer.client.post("/graphql", json=payload, headers=keyed)
            assert_retryable(first.json())
            assert await appointment_count(sessions) == count
            retried = await writer.client.post("/graphql", json=payload, headers=keyed)
            assert "errors" not in retried.json(), retried.json()
            assert await appointment_count(sessions) == count + 1
            assert_served_complete(await writer.post(READ, {"clinic": clinic}), clinic, count + 1)

    async def test_the_readiness_refresh_switches_before_any_request_fails(
        self,
        database_url: str,
        world: World,
        flags_file: Path,
        linked: int,
        cli: Cli,
    ) -> None:
        clinic = str(world.clinic_a.id)
        set_stages(flags_file, {world.clinic_a.id: Stage.LIVE})
        async with open_api(database_url, flags_file, readiness_gates=True) as api:
            await api.data(READ, {"clinic": clinic})
            code, out, _ = await cli("migrate", "contract")
            assert code == 0, out

            await api.services.refresh_readiness()

            assert api.services.legacy_columns is False
            assert_served_complete(await api.post(READ, {"clinic": clinic}), clinic, linked)

    async def test_the_dashboard_reads_again_on_the_contracted_layout(
        self, database_url: str, flags_file: Path, linked: int, cli: Cli
    ) -> None:
        async with open_api(database_url, flags_file) as api:
            before = await api.client.get("/migration")
            code, out, _ = await cli("migrate", "contract")
            assert code == 0, out

            after = await api.client.get("/migration")

        assert before.status_code == after.status_code == 200
        assert "legacy columns dropped" not in before.text
        assert "legacy columns dropped: every clinic is served complete" in after.text
        assert api.services.legacy_columns is False

    async def test_a_missing_column_while_the_legacy_columns_exist_is_an_internal_error(
        self, database_url: str, flags_file: Path, world: World
    ) -> None:
        """Only the contract's dropped columns switch the layout; any other is a fault."""
        async with open_api(database_url, flags_file) as api:
            await _alter(database_url, "ALTER TABLE patients DROP COLUMN date_of_birth")
            try:
                body = await api.post(PATIENTS)
            finally:
                await _alter(database_url, "ALTER TABLE patients ADD COLUMN date_of_birth DATE")
            (error,) = body["errors"]
            assert error["extensions"]["code"] == "INTERNAL_ERROR"
            assert api.services.legacy_columns is True
            assert "errors" not in await api.post(PATIENTS)


async def _alter(database_url: str, statement: str) -> None:
    """On an engine of its own: a pooled connection of the shared one may hold a snapshot."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


PATIENTS = "{ patients(first: 5) { edges { node { id dateOfBirth } } } }"


@pytest.mark.parametrize(
    "arguments",
    [
        ("backfill",),
        ("backfill", "--create-memberships", "--dry-run"),
        ("reverse-backfill",),
        ("reverse-backfill", "--dry-run", "--json"),
    ],
    ids=["backfill", "backfill-dry-run", "reverse-backfill", "reverse-backfill-dry-run"],
)
async def test_backfills_on_a_contracted_database_say_why_in_one_line(
    contracted: int, cli: Cli, arguments: tuple[str, ...]
) -> None:
    code, out, err = await cli("migrate", *arguments)

    assert code == 3
    assert out == ""
    assert err.count("\n") == 1, err
    assert "legacy columns were dropped by the contract" in err
    assert "Traceback" not in err


async def test_validate_agrees_with_the_migration_report_on_a_contracted_database(
    database_url: str,
    world: World,
    flags_file: Path,
    contracted: int,
    cli: Cli,
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW, world.clinic_b.id: Stage.LIVE})

    code, out, _ = await cli("migrate", "validate", "--json")
    asked, text, _ = await cli(
        "migrate",
        "validate",
        "--clinic",
        str(world.clinic_a.id),
        "--clinic",
        str(world.clinic_b.id),
    )
    async with open_api(database_url, flags_file) as api:
        report = await api.data(REPORT)

    assert (code, asked) == (0, 0)
    from_cli = {entry["clinic_id"]: entry for entry in json.loads(out)}
    from_api = {row["clinic"]["id"]: row for row in report["migrationReport"]}
    assert from_cli.keys() == from_api.keys() == {str(world.clinic_a.id), str(world.clinic_b.id)}
    for clinic, row in from_api.items():
        entry = from_cli[clinic]
        assert row["stage"] == row["servedStage"] == "COMPLETE"
        assert entry["stage"] == "complete"
        assert entry["next_stage"] is row["nextStage"] is None
        assert entry["ready_for_next"] is row["readyForNextStage"] is True
        assert entry["blockers"] == row["blockers"] == []
        assert (entry["total"], entry["fully_linked"]) == (row["total"], row["fullyLinked"])
        for side in ("doctor", "patient"):
            assert entry[side]["unlinked"] == row[side]["unlinked"] == 0
    assert from_cli[str(world.clinic_a.id)]["total"] == contracted
    assert "stage complete" in text
    assert "stage shadow" not in text
    assert "legacy empty" not in text
    assert "legacy columns dropped" in text


async def test_revert_contract_restores_the_legacy_columns_and_keeps_the_service_branch(
    engine: AsyncEngine,
    database_url: str,
    world: World,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    contracted: int,
    cli: Cli,
) -> None:
    clinic = str(world.clinic_a.id)
    set_stages(flags_file, {world.clinic_a.id: Stage.LEGACY})
    async with open_api(database_url, flags_file) as running:
        assert running.services.legacy_columns is False

        code, out, err = await cli("migrate", "revert-contract")

        assert code == 0, err
        assert "legacy columns restored" in out
        assert await migrations.current_heads(engine) == {migrations.SERVICE_HEAD}
        assert await migrations.legacy_columns_present(engine) is True
        assert {"clinic_staff", "idempotency_keys"} <= await _tables(engine)
        async with sessions() as session:
            assert await session.scalar(select(func.count()).select_from(MigrationMismatch)) == 1
        # The service still running on the contracted layout writes no legacy columns.
        await running.data(CREATE, booking(world, 22))

    again, out_again, _ = await cli("migrate", "revert-contract")
    assert again == 0
    assert "nothing to revert" in out_again
    assert await migrations.current_heads(engine) == {migrations.SERVICE_HEAD}

    code, summary, _ = await cli("migrate", "reverse-backfill", "--json")
    assert code == 0
    assert json.loads(summary)["linked"] == {"doctor": 1, "patient": 1}
    async with sessions() as session:
        empty = await session.scalar(
            select(func.count())
            .select_from(Appointment)
            .where(Appointment.doctor_id.is_(None) | Appointment.patient_id.is_(None))
        )
    assert empty == 0

    async with open_api(database_url, flags_file) as restarted:
        assert restarted.services.legacy_columns is True
        body = await restarted.post(READ, {"clinic": clinic})
    assert body["extensions"]["migration"]["stages"] == {clinic: "legacy"}
    nodes = [edge["node"] for edge in body["data"]["appointments"]["edges"]]
    assert len(nodes) == contracted + 1
    assert all(node["doctor"] == node["clinicDoctor"]["user"] for node in nodes)


async def test_revert_contract_on_a_database_never_contracted_changes_nothing(
    engine: AsyncEngine, linked: int, cli: Cli
) -> None:
    code, out, err = await cli("migrate", "revert-contract")

    assert code == 0, err
    assert "nothing to revert" in out
    assert await migrations.current_heads(engine) == {migrations.SERVICE_HEAD}
    assert {"clinic_staff", "idempotency_keys"} <= await _tables(engine)


def test_the_cli_documents_revert_contract(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as listed:
        main(["migrate", "--help"])
    listing = capsys.readouterr().out
    with pytest.raises(SystemExit) as described:
        main(["migrate", "revert-contract", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())

    assert listed.value.code == described.value.code == 0
    assert "revert-contract" in listing
    assert "contract@-1" in help_text
    assert "exit status" in help_text


async def _tables(engine: AsyncEngine) -> set[str]:
    def read(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    async with engine.connect() as connection:
        return await connection.run_sync(read)
