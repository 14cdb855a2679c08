"""Idempotency keys: a retry replays the first result, never writes twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import delete, func, make_url, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import directory, idempotency, snapshots
from appointments.errors import DomainError, ErrorCode
from appointments.events import MigrationEventLog, PendingEvents
from appointments.idempotency import IdempotentRequest
from appointments.models import (
    Appointment,
    IdempotencyKey,
    IdempotencyState,
    Patient,
    utcnow,
)
from appointments.stages import Stage
from tests.conftest import Api, World, set_stages, table_snapshot

CREATE = """
mutation($input: CreateAppointmentInput!) {
  createAppointment(input: $input) {
    __typename
    ... on UserError { code message field }
    ... on AppointmentSuccess { appointment { id startsAt } }
  }
}
"""
RESCHEDULE = """
mutation($id: ID!) {
  rescheduleAppointment(input: {appointmentId: $id, startsAt: "2026-12-22T10:00:00Z",
      endsAt: "2026-12-22T10:30:00Z"}) { __typename }
}
"""


def booking(world: World, hour: int = 9, **overrides: Any) -> dict[str, Any]:
    return {
        "clinicId": str(world.clinic_a.id),
        "startsAt": f"2026-12-20T{hour:02}:00:00Z",
        "endsAt": f"2026-12-20T{hour:02}:30:00Z",
        "doctorId": str(world.doctor.id),
        "patientId": str(world.patient.id),
        **overrides,
    }


async def create(api: Api, key: str | None, value: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    headers = {} if key is None else {"Idempotency-Key": key}
    response = await api.client.post(
        "/graphql", json={"query": CREATE, "variables": {"input": value}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]["createAppointment"]
    return result, response.headers.get("Idempotent-Replayed") == "true"


async def appointment_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(Appointment)) or 0


@pytest.fixture(autouse=True)
def dual_write(flags_file: Any, world: World) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})


async def test_a_retry_with_the_same_key_replays_the_first_result(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    first, first_replayed = await create(api, "booking-1", booking(world))
    appointment_id = first["appointment"]["id"]
    assert (await api.data(RESCHEDULE, {"id": appointment_id}))["rescheduleAppointment"]
    again, again_replayed = await create(api, "booking-1", booking(world))

    assert first["__typename"] == "AppointmentSuccess"
    assert (first_replayed, again_replayed) == (False, True)
    assert again == first, "the replay gives the appointment as the first request wrote it"
    assert await appointment_count(sessions) == 1


async def test_the_same_key_with_other_input_is_refused_and_writes_nothing(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await create(api, "booking-2", booking(world))
    before = await table_snapshot(sessions)

    reused, _ = await create(api, "booking-2", booking(world, hour=11))

    assert reused["__typename"] == "IdempotencyKeyError"
    assert reused["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert reused["field"] == "Idempotency-Key"
    assert await table_snapshot(sessions) == before


async def test_a_retry_while_the_first_attempt_runs_gets_a_conflict(
    database_url: str, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    stuck = StuckWrite()
    first = asyncio.create_task(run_once(sessions, stuck))
    await stuck.inside.wait()

    try:
        with pytest.raises(DomainError) as refused:
            await run_once(sessions, create_patient)
    finally:
        stuck.go.set()
    done = await first
    again = await run_once(sessions, create_patient)

    assert refused.value.code is ErrorCode.IDEMPOTENCY_KEY_IN_USE
    assert (done.replayed, again.replayed) == (False, True)
    assert again.row.id == done.row.id
    assert await patients_named(sessions, RETRIED) == 1
    assert await advisory_locks_held(database_url, sessions) == 0


async def test_an_abandoned_claim_is_taken_over_at_once_on_postgresql_only(
    api: Api, database_url: str, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A ``running`` claim left behind (on PostgreSQL only an earlier version commits one):
    PostgreSQL sees no transaction holding the key and runs the retry; SQLite cannot tell
    (several processes may share its file) and refuses it until the claim timeout."""
    value = booking(world)
    await create(api, "booking-8", value)
    await pretend_in_flight(sessions, claimed_at=utcnow())

    retried, replayed = await create(api, "booking-8", value)

    if database_url.startswith("postgresql"):
        assert retried["__typename"] == "AppointmentSuccess"
        assert replayed is False
        assert await appointment_count(sessions) == 1
    else:
        assert retried["code"] == "IDEMPOTENCY_KEY_IN_USE"
        assert await appointment_count(sessions) == 0


async def test_a_write_whose_backend_was_terminated_does_not_hold_up_its_retry(
    database_url: str, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """What a PostgreSQL restart does to a write in flight: its backend ends mid-transaction.
    The retry runs at once (it used to wait for the 60 s claim timeout), and writes once."""
    if not database_url.startswith("postgresql"):
        pytest.skip("terminating a backend is PostgreSQL's")
    stuck = StuckWrite()
    first = asyncio.create_task(run_once(sessions, stuck))
    await stuck.inside.wait()
    async with await psycopg.AsyncConnection.connect(
        admin_dsn(database_url), autocommit=True
    ) as admin:
        cursor = await admin.execute("SELECT pg_terminate_backend(%s, 10000)", (stuck.backend,))
        terminated = await cursor.fetchone()
    async with sessions() as session:
        left_behind = (await session.execute(select(IdempotencyKey))).scalars().all()
    loop = asyncio.get_running_loop()
    retry_started = loop.time()

    try:
        retried = await run_once(sessions, create_patient)
        retry_took = loop.time() - retry_started
    finally:
        stuck.go.set()
        (first_outcome,) = await asyncio.gather(first, return_exceptions=True)
    async with sessions() as session:
        key = (await session.execute(select(IdempotencyKey))).scalar_one()

    assert terminated == (True,)
    assert left_behind == [], "the key is held by the write's transaction, not a stored claim"
    assert isinstance(first_outcome, DBAPIError), "the first attempt's connection was cut"
    assert retried.replayed is False
    assert retry_took < 5, "taken over at once, not after the 60 s claim timeout"
    stored = snapshots.restore(key.result or "")
    assert key.state == IdempotencyState.DONE.value
    assert isinstance(stored, Patient)
    assert stored.id == retried.row.id
    assert await patients_named(sessions, RETRIED) == 1
    assert await advisory_locks_held(database_url, sessions) == 0


RETRIED = "Retried Patient"
REQUEST = IdempotentRequest.build("tester", "in-flight", "createPatient", {"name": RETRIED})


async def create_patient(session: AsyncSession, _pending: PendingEvents) -> Patient:
    return await directory.create_patient(session, RETRIED, None)


@dataclass
class StuckWrite:
    """A write that stops inside its transaction until let go; notes its PostgreSQL backend."""

    inside: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    backend: int | None = None

    async def __call__(self, session: AsyncSession, pending: PendingEvents) -> Patient:
        if session.get_bind().dialect.name == "postgresql":
            self.backend = await session.scalar(select(func.pg_backend_pid()))
        self.inside.set()
        await self.go.wait()
        return await create_patient(session, pending)


async def run_once(
    sessions: async_sessionmaker[AsyncSession],
    operation: Callable[[AsyncSession, PendingEvents], Awaitable[Patient]],
) -> idempotency.Outcome[Patient]:
    async def anyone(_session: AsyncSession, _row: Patient) -> None:
        return None

    return await idempotency.run_once(
        sessions, MigrationEventLog(), REQUEST, operation, idempotency.IdempotencyPolicy(), anyone
    )


async def patients_named(sessions: async_sessionmaker[AsyncSession], name: str) -> int:
    async with sessions() as session:
        statement = select(func.count()).select_from(Patient).where(Patient.full_name == name)
        return await session.scalar(statement) or 0


async def advisory_locks_held(database_url: str, sessions: async_sessionmaker[AsyncSession]) -> int:
    """Advisory locks held in this database (PostgreSQL); none may outlive a request."""
    if not database_url.startswith("postgresql"):
        return 0
    async with sessions() as session:
        statement = text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return int(await session.scalar(statement) or 0)


def admin_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def pretend_in_flight(sessions: async_sessionmaker[AsyncSession], claimed_at: Any) -> None:
    """Turn the one stored key back into a running claim whose write has not committed."""
    async with sessions() as session, session.begin():
        row = (await session.execute(select(IdempotencyKey))).scalar_one()
        row.state = IdempotencyState.RUNNING.value
        row.claim = uuid.uuid4()
        row.claimed_at = claimed_at
        row.result = None
        await session.execute(delete(Appointment))


async def test_concurrent_retries_write_once(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    results = await asyncio.gather(*(create(api, "booking-4", booking(world)) for _ in range(6)))

    successes = {r["appointment"]["id"] for r, _ in results if "appointment" in r}
    others = {r["code"] for r, _ in results if "appointment" not in r}
    assert len(successes) == 1
    assert others <= {"IDEMPOTENCY_KEY_IN_USE"}
    assert await appointment_count(sessions) == 1


async def test_a_claim_abandoned_by_a_crashed_attempt_is_taken_over_after_the_timeout(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    value = booking(world)
    await create(api, "booking-5", value)
    await pretend_in_flight(sessions, claimed_at=utcnow() - timedelta(minutes=5))

    retried, replayed = await create(api, "booking-5", value)

    assert retried["__typename"] == "AppointmentSuccess"
    assert replayed is False
    assert await appointment_count(sessions) == 1


async def test_a_failed_write_releases_its_key_so_a_retry_runs_again(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    value = booking(world, clinicDoctorId=str(world.clinic_doctor_of_b.id))
    value.pop("doctorId")

    failed, _ = await create(api, "booking-6", value)
    async with sessions() as session:
        keys = (await session.execute(select(IdempotencyKey))).scalars().all()

    assert failed["code"] == "CROSS_CLINIC_REFERENCE"
    assert keys == []
    again, replayed = await create(api, "booking-6", value)
    assert again["code"] == "CROSS_CLINIC_REFERENCE"
    assert replayed is False


async def test_keys_are_per_viewer_and_expire_after_the_retention(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await create(api, "booking-7", booking(world))
    async with sessions() as session, session.begin():
        row = (await session.execute(select(IdempotencyKey))).scalar_one()
        row.created_at = utcnow() - timedelta(hours=25)

    reused_after_expiry, replayed = await create(api, "booking-7", booking(world, hour=12))
    purged = await idempotency.purge(sessions, idempotency.IdempotencyPolicy())
    async with sessions() as session, session.begin():
        row = (await session.execute(select(IdempotencyKey))).scalar_one()
        row.created_at = utcnow() - timedelta(hours=25)
    purged_later = await idempotency.purge(sessions, idempotency.IdempotencyPolicy())

    assert reused_after_expiry["__typename"] == "AppointmentSuccess"
    assert replayed is False
    assert (purged, purged_later) == (0, 1)
    assert await appointment_count(sessions) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there"])
async def test_a_malformed_key_is_invalid_input(api: Api, world: World, key: str) -> None:
    response = await api.client.post(
        "/graphql",
        json={"query": CREATE, "variables": {"input": booking(world)}},
        headers={b"Idempotency-Key": key.encode()},
    )

    result = response.json()["data"]["createAppointment"]
    assert result["code"] == "INVALID_INPUT"
    assert result["field"] == "Idempotency-Key"
