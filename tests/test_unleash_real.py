"""Against a real Unleash server (npm unleash-server 8, installed by scripts/install-unleash).

A product owner moves clinics through Unleash's Admin API; the service follows
within its refresh interval; an Unleash outage changes nothing for requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.stages import Stage
from flags.source import LocalFileFlagSource
from flags.unleash_admin import Description, UnleashAdmin
from flags.unleash_source import UnleashServerFlagSource
from server.cli import main
from tests.conftest import (
    DEFAULT_POSTGRES_URL,
    Api,
    World,
    open_api,
    stored_appointment,
    unavailable,
)
from tests.test_serve import free_port, wait_for_line

pytestmark = pytest.mark.unleash

ROOT = Path(__file__).resolve().parent.parent
SERVER_JS = ROOT / ".unleash" / "node_modules" / "unleash-server" / "dist" / "server.js"
ADMIN_TOKEN = "*:*.admin-test-secret"
CLIENT_TOKEN = "default:development.client-test-secret"
REFRESH_SECONDS = 1
STARTUP_SECONDS = 90


@dataclass
class UnleashServer:
    url: str
    process: subprocess.Popen[str]

    def admin(self) -> UnleashAdmin:
        return UnleashAdmin(self.url, ADMIN_TOKEN)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.communicate(timeout=30)


@pytest.fixture
def unleash_server() -> Iterator[UnleashServer]:
    """A fresh Unleash server on its own PostgreSQL database and a free loopback port."""
    yield from started_unleash_server()


def started_unleash_server() -> Iterator[UnleashServer]:
    """Start an Unleash server, yield it, stop it and drop its database."""
    if not SERVER_JS.exists():
        unavailable("unleash-server is not installed: run scripts/install-unleash")
    base = make_url(os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    database = f"unleash_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{database}"')
    except psycopg.OperationalError as error:
        unavailable(f"PostgreSQL for Unleash is unreachable: {error}")
    port = free_port()
    unleash_database = base.set(drivername="postgres", database=database)
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": unleash_database.render_as_string(hide_password=False),
        "DATABASE_SSL": "false",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "INIT_ADMIN_API_TOKENS": ADMIN_TOKEN,
        "INIT_BACKEND_API_TOKENS": CLIENT_TOKEN,
        "LOG_LEVEL": "info",
    }
    process = subprocess.Popen(
        ["node", str(SERVER_JS)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = UnleashServer(f"http://127.0.0.1:{port}", process)
    try:
        _wait_for_start(process)
        yield server
    finally:
        server.stop()
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _wait_for_start(process: subprocess.Popen[str]) -> None:
    wait_for_line(process.stdout, "Unleash has started", seconds=STARTUP_SECONDS)
    # Keep reading its log, or a full pipe would stall the server.
    threading.Thread(target=_drain, args=(process,), daemon=True).start()


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for _line in process.stdout:
        pass


@asynccontextmanager
async def service(
    database_url: str, flags_file: Path, server: UnleashServer, cache: Path
) -> AsyncIterator[Api]:
    """Our service, taking its stages from the Unleash server (client token, 1 s refresh)."""
    async with open_api(
        database_url,
        flags_file,
        unleash_url=f"{server.url}/api",
        unleash_api_token=CLIENT_TOKEN,
        unleash_refresh_interval=REFRESH_SECONDS,
        unleash_cache_dir=cache,
    ) as api:
        yield api


def source_of(api: Api) -> UnleashServerFlagSource:
    source = api.services.flags
    assert isinstance(source, UnleashServerFlagSource)
    return source


async def next_fetch(api: Api) -> None:
    """Wait for a poll that started after now (the one under way may predate a change)."""
    source = source_of(api)
    for _ in range(2):
        assert await asyncio.to_thread(source.wait_for_fetch, 10 * REFRESH_SECONDS)


CREATE = """
mutation Create($input: CreateAppointmentInput!) {
  createAppointment(input: $input) {
    __typename
    ... on AppointmentSuccess { appointment { id doctor { id } clinicDoctor { id } } }
  }
}
"""
STAGE = "query($c: ID!) { migrationReport(clinicId: $c) { servedStage } }"


async def book(api: Api, world: World) -> dict[str, Any]:
    body = await api.post(
        CREATE,
        {
            "input": {
                "clinicId": str(world.clinic_a.id),
                "startsAt": "2026-12-01T09:00:00Z",
                "endsAt": "2026-12-01T09:30:00Z",
                "doctorId": str(world.doctor.id),
                "patientId": str(world.patient.id),
            }
        },
    )
    assert body["data"]["createAppointment"]["__typename"] == "AppointmentSuccess"
    return body


async def served_stage(api: Api, world: World) -> str:
    body = await api.post(STAGE, {"c": str(world.clinic_a.id)})
    stage: str = body["extensions"]["migration"]["stages"][str(world.clinic_a.id)]
    return stage


async def test_stages_set_through_the_admin_api_drive_writes_and_reads_within_the_refresh(
    unleash_server: UnleashServer,
    database_url: str,
    world: World,
    flags_file: Path,
    tmp_path: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    admin = unleash_server.admin()
    try:
        admin.apply(Description({str(world.clinic_a.id): Stage.LIVE}, ((Stage.SHADOW, 50),)))
        async with service(database_url, flags_file, unleash_server, tmp_path / "cache") as api:
            await next_fetch(api)
            live = await book(api, world)
            assert await served_stage(api, world) == "live"
            assert live["extensions"]["migration"]["stages"] == {str(world.clinic_a.id): "live"}

            admin.apply(Description({str(world.clinic_a.id): Stage.COMPLETE}))
            changed = time.monotonic()
            while await served_stage(api, world) != "complete":
                assert time.monotonic() - changed <= REFRESH_SECONDS + 1, "not within refresh + 1 s"
                await asyncio.to_thread(source_of(api).wait_for_fetch, REFRESH_SECONDS + 1)
            assert time.monotonic() - changed <= REFRESH_SECONDS + 1
            complete = await book(api, world)
    finally:
        admin.close()

    live_row = await stored_appointment(
        sessions, live["data"]["createAppointment"]["appointment"]["id"]
    )
    complete_row = await stored_appointment(
        sessions, complete["data"]["createAppointment"]["appointment"]["id"]
    )
    assert (live_row.doctor_id, live_row.clinic_doctor_id) == (
        world.doctor.id,
        world.clinic_doctor.id,
    )
    assert (complete_row.doctor_id, complete_row.clinic_doctor_id) == (None, world.clinic_doctor.id)


async def test_a_percentage_rollout_is_sticky_per_clinic(
    unleash_server: UnleashServer, tmp_path: Path
) -> None:
    admin = unleash_server.admin()
    admin.apply(Description({}, ((Stage.SHADOW, 50),)))
    admin.close()
    source = UnleashServerFlagSource(
        f"{unleash_server.url}/api", CLIENT_TOKEN, "clinic-tests", REFRESH_SECONDS, tmp_path
    )
    try:
        assert source.wait_for_fetch(10)
        generator = random.Random(7)
        clinics = [str(uuid.UUID(int=generator.getrandbits(128))) for _ in range(1000)]
        first = [source.variant({"properties": {"clinicId": c}}) for c in clinics]
        again = [
            source.variant({"userId": "someone", "properties": {"clinicId": c}}) for c in clinics
        ]
    finally:
        source.close()

    assert first == again
    assert set(first) == {"shadow", None}
    assert 400 <= first.count("shadow") <= 600


async def test_export_writes_the_servers_flag_as_a_flags_file_that_evaluates_alike(
    unleash_server: UnleashServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clinic = str(uuid.uuid4())
    description = tmp_path / "description.json"
    description.write_text(
        json.dumps(
            {"clinics": {clinic: "rampdown"}, "rollouts": [{"stage": "shadow", "percentage": 30}]}
        )
    )
    exported = tmp_path / "exported.json"
    # An operator setting up the flag has the admin token, not the service's client token.
    monkeypatch.setenv("UNLEASH_URL", f"{unleash_server.url}/api")
    monkeypatch.delenv("UNLEASH_API_TOKEN", raising=False)
    monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("CLINIC_LOG_FORMAT", "text")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        applied = await asyncio.to_thread(main, ["flags", "unleash-apply", str(description)])
        exported_code = await asyncio.to_thread(
            main, ["flags", "unleash-export", "--output", str(exported)]
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

    assert (applied, exported_code) == (0, 0)
    local = LocalFileFlagSource(exported, "clinic-tests")
    assert local.variant({"properties": {"clinicId": clinic}}) == "rampdown"
    strategies = json.loads(exported.read_text())["features"][0]["strategies"]
    assert [s["variants"][0]["name"] for s in strategies] == ["rampdown", "shadow"]
    assert strategies[1]["parameters"]["rollout"] == "30"


async def test_an_unleash_outage_changes_nothing_for_requests(
    unleash_server: UnleashServer,
    database_url: str,
    world: World,
    flags_file: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin = unleash_server.admin()
    admin.apply(Description({str(world.clinic_a.id): Stage.LIVE}))
    admin.close()
    cache = tmp_path / "cache"
    caplog.set_level(logging.WARNING)
    async with service(database_url, flags_file, unleash_server, cache) as api:
        await next_fetch(api)
        assert await served_stage(api, world) == "live"

        unleash_server.stop()
        assert await asyncio.to_thread(source_of(api).wait_for_failures, 3, 30)

        assert await served_stage(api, world) == "live"
        ready = (await api.client.get("/readyz")).json()["flags"]
        assert (ready["loaded"], ready["reachable"]) == (True, False)
        assert ready["outage_since"] is not None
        metrics = (await api.client.get("/metrics")).text
        assert "clinic_flag_source_reachable 0.0" in metrics
    outage_lines = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage_lines) == 1
    assert not [r for r in caplog.records if r.name.startswith("UnleashClient")]

    async with service(database_url, flags_file, unleash_server, cache) as restarted:
        assert await served_stage(restarted, world) == "live"

    async with service(database_url, flags_file, unleash_server, tmp_path / "empty") as fresh:
        assert await served_stage(fresh, world) == "dual_write"
        readyz = await fresh.client.get("/readyz")
        assert readyz.status_code == 503, "no flag data: not ready"
        ready = readyz.json()["flags"]
        assert ready["loaded"] is False
        assert "default stage" in ready["problem"]
        assert "clinic_flag_source_loaded 0.0" in (await fresh.client.get("/metrics")).text
