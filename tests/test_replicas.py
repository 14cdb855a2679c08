"""Beyond one machine: queries on a streaming standby, writes on the primary, reads after a
client's own write, and readiness that knows which of the two it was pointed at.

Runs on the session's own primary and standby (tests/replication.py), never the shared
server; the module's tests share one schema and start the app three times.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import migrations
from appointments.db import create_engine
from appointments.models import ClinicHealthCounter, User, UserRole
from appointments.replicas import READ_AFTER_HEADER, ReplicaSet, parse_lsn
from appointments.stages import Stage
from server.auth import mint_token
from server.settings import Settings
from tests.conftest import (
    CALLERS_SECRET,
    READ_CLINIC,
    Api,
    Mess,
    StatementCounter,
    World,
    add_user,
    ledger_rows,
    open_api,
    set_stages,
)
from tests.replication import ReplicatedCluster, free_port
from tests.test_appointment_mutations import CREATE_APPOINTMENT, appointment_input

READ_APPOINTMENT = "query Read($id: ID!) { appointment(id: $id) { id status } }"


@pytest.fixture(scope="module")
def database_url(replicated: ReplicatedCluster) -> str:
    return replicated.primary_url


@pytest_asyncio.fixture(scope="module")
async def engine(database_url: str, replicated: ReplicatedCluster) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrations.upgrade(engine)
    await asyncio.to_thread(replicated.wait_replayed)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def replayed(
    replicated: ReplicatedCluster, sessions: async_sessionmaker[AsyncSession], world: World
) -> AsyncIterator[ReplicatedCluster]:
    """The world written on the primary and replayed on the standby; replay resumed after."""
    await asyncio.to_thread(replicated.wait_replayed)
    yield replicated
    await asyncio.to_thread(replicated.resume_replay)


@pytest_asyncio.fixture
async def routed(
    replayed: ReplicatedCluster, flags_file: Path, world: World
) -> AsyncIterator[tuple[Api, StatementCounter]]:
    """The app on the primary with the standby as its replica; and its statements on it."""
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    async with open_api(
        replayed.primary_url,
        flags_file,
        database_replica_urls=(replayed.standby_url,),
        replica_max_lag_seconds=3600.0,
    ) as api:
        assert api.services.replicas is not None
        on_replica = StatementCounter()
        engine = api.services.replicas.replicas[0].engine
        event.listen(engine.sync_engine, "before_cursor_execute", on_replica)
        yield api, on_replica


async def test_an_instance_on_a_standby_is_not_ready_and_its_mutations_say_read_only(
    replayed: ReplicatedCluster, flags_file: Path, world: World
) -> None:
    set_stages(flags_file, {})
    async with open_api(replayed.standby_url, flags_file) as api:
        ready = await api.client.get("/readyz")
        body = await api.post(CREATE_APPOINTMENT, {"input": appointment_input(world)})

    assert ready.status_code == 503
    assert ready.json()["role"] == "standby"
    assert ready.json()["database"] == "read-only"
    assert "read-only standby: writes cannot succeed" in ready.json()["reason"]
    assert body["data"] is None or body["data"]["result"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "DATABASE_READ_ONLY"
    assert error["extensions"]["retryable"] is True
    assert "read-only" in error["message"]


async def test_reads_go_to_the_replica_and_what_they_write_reaches_the_primary(
    routed: tuple[Api, StatementCounter],
    sessions: async_sessionmaker[AsyncSession],
    world: World,
    mess: Mess,
    replayed: ReplicatedCluster,
) -> None:
    api, on_replica = routed
    await asyncio.to_thread(replayed.wait_replayed)
    assert api.services.replicas is not None
    await api.services.replicas.refresh()
    on_primary_before = api.statements.count

    data = await api.data(READ_CLINIC, {"clinicId": str(world.clinic_a.id)})
    await api.services.flush_reads()

    assert len(data["appointments"]["edges"]) == 4
    assert on_replica.count >= 1, "the query was served by the replica"
    ledger = await ledger_rows(sessions)
    assert {appointment for appointment, _ in ledger} == {
        mess.wrong_person,
        mess.missing_new,
        mess.other_clinic,
    }, "the ledger rows of reads on the replica are on the primary"
    async with sessions() as session:
        counted = await session.scalar(select(func.count()).select_from(ClinicHealthCounter))
    assert counted, "the health counters of reads on the replica are on the primary"
    assert api.statements.count > on_primary_before


async def test_a_client_reads_its_own_write_while_the_replica_is_paused(
    routed: tuple[Api, StatementCounter], world: World, replayed: ReplicatedCluster
) -> None:
    api, _ = routed
    await asyncio.to_thread(replayed.pause_replay)
    assert api.services.replicas is not None
    await api.services.replicas.refresh()

    created = await api.client.post(
        "/graphql",
        json={"query": CREATE_APPOINTMENT, "variables": {"input": appointment_input(world)}},
    )
    body = created.json()
    appointment_id = body["data"]["result"]["appointment"]["id"]
    position = created.headers[READ_AFTER_HEADER]
    without = await api.post(READ_APPOINTMENT, {"id": appointment_id})
    with_position = await read(api, appointment_id, position)

    assert body["extensions"]["readAfter"] == position
    parse_lsn(position)
    assert without["data"]["appointment"] is None, "the paused replica has not replayed it"
    assert with_position["data"]["appointment"]["id"] == appointment_id, "read on the primary"

    await asyncio.to_thread(replayed.resume_replay)
    await asyncio.to_thread(replayed.wait_replayed, position)
    await api.services.replicas.refresh()
    on_replica_now = await api.post(READ_APPOINTMENT, {"id": appointment_id})
    assert on_replica_now["data"]["appointment"]["id"] == appointment_id


async def test_readiness_reports_each_replica_and_a_lagging_one_serves_nothing(
    routed: tuple[Api, StatementCounter], world: World, replayed: ReplicatedCluster
) -> None:
    api, _ = routed
    caught_up = await api.client.get("/readyz")
    await asyncio.to_thread(replayed.pause_replay)
    created = await api.client.post(
        "/graphql",
        json={"query": CREATE_APPOINTMENT, "variables": {"input": appointment_input(world)}},
    )
    await asyncio.to_thread(replayed.wait_received, created.headers[READ_AFTER_HEADER])
    assert api.services.replicas is not None
    strict = ReplicaSet([api.services.replicas.replicas[0].engine], max_lag_seconds=0.0)
    await strict.refresh()
    away = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/clinic")
    unreachable = ReplicaSet([away], max_lag_seconds=3600.0)
    await unreachable.refresh()
    await away.dispose()

    assert caught_up.status_code == 200
    assert caught_up.json()["role"] == "primary"
    assert caught_up.json()["replicas"] == [
        {
            "name": "replica 1",
            "state": "ok",
            "lagSeconds": 0.0,
            "replayed": caught_up.json()["replicas"][0]["replayed"],
        }
    ]
    [lagging] = strict.describe()
    assert lagging["state"] == "lagging"
    assert lagging["lagSeconds"] > 0
    assert strict.choose(None) is None, "reads go to the primary"
    assert unreachable.describe()[0]["state"] == "unreachable"
    assert unreachable.choose(None) is None


async def read(api: Api, appointment_id: str, position: str) -> dict[str, Any]:
    response = await api.client.post(
        "/graphql",
        json={"query": READ_APPOINTMENT, "variables": {"id": appointment_id}},
        headers={READ_AFTER_HEADER: position},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_user_added_moments_ago_is_known_though_the_replica_has_not_replayed_it(
    replayed: ReplicatedCluster, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    set_stages(flags_file, {})
    async with open_api(
        replayed.primary_url,
        flags_file,
        database_replica_urls=(replayed.standby_url,),
        replica_max_lag_seconds=3600.0,
        production=True,
        jwt_secret=CALLERS_SECRET,
    ) as api:
        assert api.services.replicas is not None
        await api.services.replicas.refresh()
        await asyncio.to_thread(replayed.pause_replay)
        admin = await add_user(sessions, UserRole.ADMIN)
        token = mint_token(Settings(jwt_secret=CALLERS_SECRET), admin, UserRole.ADMIN, hours=1)
        response = await api.client.post(
            "/graphql",
            json={"query": "{ clinics(first: 1) { edges { node { id } } } }"},
            headers={"Authorization": f"Bearer {token}"},
        )

    assert response.status_code == 200, response.text
    assert "errors" not in response.json()


async def test_a_token_user_changed_on_the_primary_is_never_kept_from_a_lagging_replica(
    replayed: ReplicatedCluster,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    world: World,
) -> None:
    """The process hears the deactivation at once, while the paused replica still has the
    user active: what it keeps next comes from the primary."""
    set_stages(flags_file, {})
    token = mint_token(Settings(jwt_secret=CALLERS_SECRET), world.staff.id, UserRole.STAFF, hours=1)
    query = {"query": "{ clinics(first: 1) { edges { node { id } } } }"}
    headers = {"Authorization": f"Bearer {token}"}
    async with open_api(
        replayed.primary_url,
        flags_file,
        database_replica_urls=(replayed.standby_url,),
        replica_max_lag_seconds=3600.0,
        production=True,
        jwt_secret=CALLERS_SECRET,
    ) as api:
        viewers = api.services.viewers
        await viewers.wait_listening(True)
        assert (await api.client.post("/graphql", json=query, headers=headers)).status_code == 200
        assert len(viewers) == 1
        await asyncio.to_thread(replayed.pause_replay)
        heard = asyncio.create_task(viewers.next_change())
        async with sessions() as session, session.begin():
            await session.execute(
                update(User).where(User.id == world.staff.id).values(active=False)
            )
        await asyncio.wait_for(heard, 30)

        refused = await api.client.post("/graphql", json=query, headers=headers)
        again = await api.client.post("/graphql", json=query, headers=headers)

    assert (refused.status_code, again.status_code) == (401, 401)
