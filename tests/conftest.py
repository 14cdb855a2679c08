"""Fixtures: every test runs against SQLite and against a real PostgreSQL.

PostgreSQL comes from ``TEST_POSTGRES_URL`` (default: the local server's ``test``
database); each run creates and drops its own database there. When it cannot
be reached the PostgreSQL half is skipped, unless ``CI`` is set: then it fails.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import httpx
import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import delete, event, make_url, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import migrations
from appointments import directory
from appointments.db import create_engine, create_session_factory
from appointments.models import (
    Appointment,
    BackfillCheckpoint,
    Base,
    Clinic,
    ClinicDoctor,
    ClinicHealthCounter,
    ClinicPatient,
    ClinicStaff,
    FieldUsageDaily,
    FieldUsageOperation,
    IdempotencyKey,
    MigrationMismatch,
    Patient,
    PersistedDocument,
    RolloutAudit,
    RolloutHold,
    RolloutStatus,
    ServiceInstance,
    StageActivity,
    User,
    UserRole,
)
from appointments.stages import Stage
from flags.document import build_document, write_document
from server.app import create_app
from server.auth import mint_token
from server.cli import main
from server.services import Services
from server.settings import Settings
from tests.replication import ClusterStartError, ReplicatedCluster, start_cluster, stop_cluster

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLES_CHILD_FIRST = (
    StageActivity,
    ServiceInstance,
    PersistedDocument,
    FieldUsageDaily,
    FieldUsageOperation,
    RolloutAudit,
    RolloutHold,
    RolloutStatus,
    ClinicHealthCounter,
    IdempotencyKey,
    BackfillCheckpoint,
    MigrationMismatch,
    Appointment,
    ClinicDoctor,
    ClinicPatient,
    ClinicStaff,
    Patient,
    User,
    Clinic,
)


def unavailable(reason: str) -> NoReturn:
    """A service a test needs is missing: fail under CI (it must run there), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def browser_skipped() -> bool:
    """``CLINIC_SKIP_BROWSER`` set outside CI: a developer chose to skip the browser tests."""
    return bool(os.environ.get("CLINIC_SKIP_BROWSER")) and not os.environ.get("CI")


def _postgres_database(base_url: str) -> Iterator[str]:
    url = make_url(base_url)
    admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"clinic_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        unavailable(f"PostgreSQL at {url.render_as_string()} is unreachable: {error}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "clinic.sqlite3"
        yield f"sqlite+aiosqlite:///{path}"
        return
    yield from _postgres_database(os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))


@pytest.fixture(scope="session")
def replicated() -> Iterator[ReplicatedCluster]:
    """A PostgreSQL primary and a streaming standby of the session's own (tests/replication.py),
    shared by every test that asks; fails under CI when they cannot be started."""
    try:
        cluster = start_cluster()
    except ClusterStartError as error:
        unavailable(f"a PostgreSQL primary and standby could not be started: {error}")
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest_asyncio.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrations.upgrade(engine)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def sessions(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A clean database for each test."""
    factory = create_session_factory(engine)
    async with factory() as session, session.begin():
        for model in TABLES_CHILD_FIRST:
            await session.execute(delete(model))
    yield factory


@pytest.fixture
def flags_file(tmp_path: Path) -> Path:
    return tmp_path / "flags.json"


def set_stages(
    flags_file: Path,
    stages: dict[uuid.UUID, Stage],
    rollouts: list[tuple[Stage, int]] | None = None,
) -> None:
    write_document(
        flags_file, build_document({str(k): v for k, v in stages.items()}, rollouts or [])
    )


@dataclass
class StatementCounter:
    count: int = 0

    def __call__(self, *_args: Any) -> None:
        self.count += 1


@dataclass
class Api:
    """The real ASGI app, spoken to over HTTP (in process) as the frontend would."""

    client: httpx.AsyncClient
    services: Services
    statements: StatementCounter

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = await self.post(query, variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture
def app_settings() -> dict[str, Any]:
    """Settings for the app under test beyond the database and flags file; override per module."""
    return {}


@asynccontextmanager
async def open_api(database_url: str, flags_file: Path, **settings: Any) -> AsyncIterator[Api]:
    """A fresh instance of the app (its own engine, flag source and startup checks)."""
    app = create_app(
        Settings(database_url=database_url, auto_migrate=False, flags_file=flags_file, **settings)
    )
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        counter = StatementCounter()
        event.listen(services.engine.sync_engine, "before_cursor_execute", counter)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(client, services, counter)


@pytest_asyncio.fixture
async def api(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    app_settings: dict[str, Any],
) -> AsyncIterator[Api]:
    async with open_api(database_url, flags_file, **app_settings) as opened:
        yield opened


@dataclass
class World:
    """Two clinics, with members, and people missing a membership in clinic A."""

    clinic_a: Clinic
    clinic_b: Clinic
    doctor: User
    clinic_doctor: ClinicDoctor
    other_doctor: User
    other_clinic_doctor: ClinicDoctor
    doctor_of_b: User
    clinic_doctor_of_b: ClinicDoctor
    doctor_without_membership: User
    patient: Patient
    clinic_patient: ClinicPatient
    other_patient: Patient
    other_clinic_patient: ClinicPatient
    patient_without_membership: Patient
    staff: User


@pytest_asyncio.fixture
async def world(sessions: async_sessionmaker[AsyncSession]) -> World:
    async with sessions() as session, session.begin():
        clinic_a = await directory.create_clinic(session, "Clinic A")
        clinic_b = await directory.create_clinic(session, "Clinic B")
        doctors = [
            await directory.create_user(
                session, f"Doctor {n}", f"doctor{n}@example.org", UserRole.DOCTOR
            )
            for n in range(4)
        ]
        staff = await directory.create_user(session, "Staff", "staff@example.org", UserRole.STAFF)
        patients = [
            await directory.create_patient(session, f"Patient {n}", date(1980, 1, n + 1))
            for n in range(3)
        ]
        return World(
            clinic_a=clinic_a,
            clinic_b=clinic_b,
            doctor=doctors[0],
            clinic_doctor=await directory.add_clinic_doctor(session, clinic_a.id, doctors[0].id),
            other_doctor=doctors[1],
            other_clinic_doctor=await directory.add_clinic_doctor(
                session, clinic_a.id, doctors[1].id
            ),
            doctor_of_b=doctors[2],
            clinic_doctor_of_b=await directory.add_clinic_doctor(
                session, clinic_b.id, doctors[2].id
            ),
            doctor_without_membership=doctors[3],
            patient=patients[0],
            clinic_patient=await directory.add_clinic_patient(session, clinic_a.id, patients[0].id),
            other_patient=patients[1],
            other_clinic_patient=await directory.add_clinic_patient(
                session, clinic_a.id, patients[1].id
            ),
            patient_without_membership=patients[2],
            staff=staff,
        )


async def add_user(sessions: async_sessionmaker[AsyncSession], role: UserRole) -> uuid.UUID:
    """A stored user with ``role`` (a token's subject must be one), in no clinic."""
    async with sessions() as session, session.begin():
        user = await directory.create_user(
            session, f"{role.value} user", f"{role.value}-{uuid.uuid4().hex}@example.org", role
        )
    return user.id


async def table_snapshot(
    sessions: async_sessionmaker[AsyncSession],
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to assert that a rejected write changed nothing (but the
    per-clinic health counters, which count refused writes by design, and what processes
    record of themselves: recent activity and heartbeats)."""
    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    async with sessions() as session:
        for model in TABLES_CHILD_FIRST:
            if model in (ClinicHealthCounter, StageActivity, ServiceInstance):
                continue
            table = Base.metadata.tables[model.__tablename__]
            rows = (await session.execute(select(table).order_by(*table.primary_key.columns))).all()
            snapshot[table.name] = [tuple(row) for row in rows]
    return snapshot


async def stored_appointment(
    sessions: async_sessionmaker[AsyncSession], appointment_id: str
) -> Appointment:
    async with sessions() as session:
        row = await session.get(Appointment, uuid.UUID(appointment_id))
        assert row is not None
        return row


READ_CLINIC = """
query Read($clinicId: ID!) {
  appointments(first: 100, filter: {clinicId: $clinicId}) {
    edges { node { id doctor { id } clinicDoctor { id } patient { id } clinicPatient { id } } }
  }
}
"""


@dataclass
class Mess:
    """Appointments in clinic A whose two sides disagree, each in one way."""

    wrong_person: uuid.UUID
    missing_new: uuid.UUID
    other_clinic: uuid.UUID
    consistent: uuid.UUID
    clinic_patient_in_b: uuid.UUID


async def insert_appointment(
    session: AsyncSession, world: World, hour: int, **links: Any
) -> uuid.UUID:
    appointment_id = uuid.uuid4()
    starts_at = datetime(2026, 12, 10, hour, tzinfo=UTC)
    session.add(
        Appointment(
            id=appointment_id,
            clinic_id=world.clinic_a.id,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(minutes=30),
            status="scheduled",
            **links,
        )
    )
    await session.flush()
    return appointment_id


def consistent_links(world: World) -> dict[str, uuid.UUID]:
    """Both sides of both links of an appointment of clinic A, agreeing."""
    return {
        "doctor_id": world.doctor.id,
        "clinic_doctor_id": world.clinic_doctor.id,
        "patient_id": world.patient.id,
        "clinic_patient_id": world.clinic_patient.id,
    }


@pytest.fixture
async def mess(sessions: async_sessionmaker[AsyncSession], world: World) -> Mess:
    async with sessions() as session, session.begin():
        in_b = await directory.add_clinic_patient(session, world.clinic_b.id, world.patient.id)
        links = consistent_links(world)
        return Mess(
            wrong_person=await insert_appointment(
                session,
                world,
                9,
                **(links | {"clinic_doctor_id": world.other_clinic_doctor.id}),
            ),
            missing_new=await insert_appointment(
                session, world, 10, **(links | {"clinic_doctor_id": None})
            ),
            other_clinic=await insert_appointment(
                session, world, 11, **(links | {"clinic_patient_id": in_b.id})
            ),
            consistent=await insert_appointment(session, world, 12, **links),
            clinic_patient_in_b=in_b.id,
        )


async def ledger_rows(
    sessions: async_sessionmaker[AsyncSession],
) -> dict[tuple[uuid.UUID, str], MigrationMismatch]:
    async with sessions() as session:
        rows = (await session.execute(select(MigrationMismatch))).scalars().all()
    return {(row.appointment_id, row.field): row for row in rows}


def nodes_by_id(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {edge["node"]["id"]: edge["node"] for edge in data["appointments"]["edges"]}


CALLERS_SECRET = "authorization-secret-0123456789-0123"


@dataclass
class Caller:
    api: Api
    token: str

    async def post(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.api.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self.post(query, **variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


@dataclass
class Clinics:
    """Clinic A with the callers' memberships; clinic B, which only admin and qa may see."""

    world: World
    in_a: uuid.UUID
    colleague_in_a: uuid.UUID
    in_b: uuid.UUID
    patient_of_b: uuid.UUID
    callers: dict[str, Caller]


@pytest_asyncio.fixture
async def clinics(
    database_url: str,
    flags_file: Path,
    world: World,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Clinics]:
    async with sessions() as session, session.begin():
        await directory.add_clinic_staff(session, world.clinic_a.id, world.staff.id)
        patient_of_b = await directory.create_patient(session, "Patient of B", None)
        await directory.add_clinic_patient(session, world.clinic_b.id, patient_of_b.id)
        doctor_links = {"doctor_id": world.doctor.id, "clinic_doctor_id": world.clinic_doctor.id}
        colleague_links = {
            "doctor_id": world.other_doctor.id,
            "clinic_doctor_id": world.other_clinic_doctor.id,
        }
        patient_links = {
            "patient_id": world.patient.id,
            "clinic_patient_id": world.clinic_patient.id,
        }
        in_a = await insert_appointment(session, world, 9, **doctor_links, **patient_links)
        colleague_in_a = await insert_appointment(
            session, world, 10, **colleague_links, **patient_links
        )
        in_b = await insert_appointment(
            session,
            world,
            11,
            doctor_id=world.doctor_of_b.id,
            clinic_doctor_id=world.clinic_doctor_of_b.id,
            patient_id=patient_of_b.id,
        )
        moved = await session.get(Appointment, in_b)
        assert moved is not None
        moved.clinic_id = world.clinic_b.id
    set_stages(
        flags_file, {world.clinic_a.id: Stage.DUAL_WRITE, world.clinic_b.id: Stage.DUAL_WRITE}
    )
    settings = Settings(jwt_secret=CALLERS_SECRET)
    users = {
        "admin": (await add_user(sessions, UserRole.ADMIN), UserRole.ADMIN),
        "qa": (await add_user(sessions, UserRole.QA), UserRole.QA),
        "staff": (world.staff.id, UserRole.STAFF),
        "doctor": (world.doctor.id, UserRole.DOCTOR),
    }
    async with open_api(
        database_url, flags_file, production=True, jwt_secret=CALLERS_SECRET
    ) as api:
        yield Clinics(
            world=world,
            in_a=in_a,
            colleague_in_a=colleague_in_a,
            in_b=in_b,
            patient_of_b=patient_of_b.id,
            callers={
                name: Caller(api, mint_token(settings, user_id, role, hours=1))
                for name, (user_id, role) in users.items()
            },
        )


@pytest.fixture
def clinic_command(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Any]:
    """Runs `clinic ARGS...` on the test database; answers (exit status, stdout, stderr)."""
    monkeypatch.setenv("CLINIC_DATABASE_URL", database_url)
    monkeypatch.setenv("CLINIC_LOG_FORMAT", "text")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    async def run(*arguments: str) -> tuple[int, str, str]:
        status = await asyncio.to_thread(main, list(arguments))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)
