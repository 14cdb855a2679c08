"""The token's user kept in memory per process, forgotten when PostgreSQL says it changed.

Two real server processes share one database; a user deactivated, or a membership
changed, by other processes (the CLI, psql) is refused or sees its new clinics on the
very next request to each. While a process's listener is down it checks every token
with a statement, and what it kept before a reconnection is never used after it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import directory
from appointments.access import NOBODY, Access, StoredViewer, viewer_access
from appointments.db import SerializedSession
from appointments.models import User, UserRole
from appointments.stages import Stage
from appointments.user_changes import APPLICATION_NAME
from appointments.viewer_cache import ViewerCache
from server.auth import mint_token
from server.settings import Settings
from tests.conftest import Api, World, consistent_links, insert_appointment, open_api, set_stages
from tests.test_serve import free_port, wait_for_line

SECRET = "viewer-cache-secret-0123456789-0123456"
METRICS_TOKEN = "viewer-cache-metrics"
UVICORN = [sys.executable, "-m", "uvicorn", "server.app:create_app", "--factory"]
LIST = (
    "query L($c: ID!) { appointments(first: 5, filter: {clinicId: $c}) { edges { node { id } } } }"
)


@pytest.fixture
def postgresql(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no notifications: every token is checked with a statement")
    return database_url


def libpq(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


@contextmanager
def server_process(database_url: str, flags_file: Path, directory: Path) -> Iterator[str]:
    """One uvicorn process (one worker) in production mode; its URL once it listens for
    changes of users."""
    port = free_port()
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_", "PROMETHEUS_"))
    } | {
        "CLINIC_DATABASE_URL": database_url,
        "CLINIC_AUTO_MIGRATE": "false",
        "CLINIC_FLAGS_FILE": str(flags_file),
        "CLINIC_PRODUCTION": "true",
        "CLINIC_JWT_SECRET": SECRET,
        "CLINIC_METRICS_TOKEN": METRICS_TOKEN,
        "CLINIC_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [*UVICORN, "--port", str(port), "--no-access-log"],
        cwd=directory,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(process.stderr, "listening for changes of users")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=30)


def cache_hits(client: httpx.Client) -> float:
    exposition = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "clinic_viewer_cache_lookups_total" and sample.labels["outcome"] == "hit"
    )


async def test_changes_by_other_processes_reach_every_worker_on_the_next_request(
    postgresql: str,
    flags_file: Path,
    world: World,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    async with sessions() as session, session.begin():
        await directory.add_clinic_staff(session, world.clinic_a.id, world.staff.id)
        in_a = await insert_appointment(session, world, 9, **consistent_links(world))
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})
    token = mint_token(Settings(jwt_secret=SECRET), world.staff.id, UserRole.STAFF, hours=1)
    body = {"query": LIST, "variables": {"c": str(world.clinic_a.id)}}
    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                httpx.Client(
                    base_url=stack.enter_context(server_process(postgresql, flags_file, tmp_path)),
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
            )
            for _ in range(2)
        ]

        def listed(worker: httpx.Client) -> list[str]:
            response = worker.post("/graphql", json=body)
            assert response.status_code == 200, response.text
            return [edge["node"]["id"] for edge in response.json()["data"]["appointments"]["edges"]]

        for worker in workers:
            assert listed(worker) == [str(in_a)]
            hits = cache_hits(worker)
            assert listed(worker) == [str(in_a)]
            assert cache_hits(worker) == hits + 1, "the second request's user came from memory"

        psql = ["psql", libpq(postgresql), "-v", "ON_ERROR_STOP=1", "-q", "-c"]
        removed = f"DELETE FROM clinic_staff WHERE user_id = '{world.staff.id}'"
        await asyncio.to_thread(subprocess.run, [*psql, removed], check=True)
        assert [listed(worker) for worker in workers] == [[], []]

        clinic = str(Path(sys.executable).with_name("clinic"))
        await asyncio.to_thread(
            subprocess.run,
            [clinic, "user", "deactivate", world.staff.email],
            check=True,
            capture_output=True,
            env=os.environ | {"CLINIC_DATABASE_URL": postgresql},
        )
        refused = [worker.post("/graphql", json=body) for worker in workers]
        assert [response.status_code for response in refused] == [401, 401]
        assert {response.json()["errors"][0]["extensions"]["code"] for response in refused} == {
            "UNAUTHENTICATED"
        }


@pytest.fixture
async def staff_api(
    postgresql: str, flags_file: Path, world: World, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Api, dict[str, str]]]:
    check_seconds = getattr(request, "param", 3600)
    token = mint_token(Settings(jwt_secret=SECRET), world.staff.id, UserRole.STAFF, hours=1)
    async with open_api(
        postgresql,
        flags_file,
        production=True,
        jwt_secret=SECRET,
        viewer_listener_check_seconds=check_seconds,
    ) as api:
        await api.services.viewers.wait_listening(True)
        yield api, {"Authorization": f"Bearer {token}"}


def terminate_listener(database_url: str) -> None:
    with psycopg.connect(libpq(database_url), autocommit=True) as connection:
        terminated = connection.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (APPLICATION_NAME,),
        ).fetchall()
    assert terminated == [(True,)]


async def statements_of(api: Api, headers: dict[str, str]) -> tuple[int, int]:
    before = api.statements.count
    response = await api.client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    return response.status_code, api.statements.count - before


async def test_while_the_listener_is_down_every_token_is_checked_with_a_statement(
    staff_api: tuple[Api, dict[str, str]],
    postgresql: str,
    world: World,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    api, headers = staff_api
    await statements_of(api, headers)
    assert await statements_of(api, headers) == (200, 0)

    terminate_listener(postgresql)
    await api.services.viewers.wait_listening(False)

    assert await statements_of(api, headers) == (200, 1)
    async with sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == world.staff.id).values(active=False))
    assert await statements_of(api, headers) == (401, 1)


@pytest.mark.parametrize("staff_api", [1], indirect=True)
async def test_what_was_kept_before_the_listener_reconnected_is_not_used(
    staff_api: tuple[Api, dict[str, str]], postgresql: str
) -> None:
    api, headers = staff_api
    viewers = api.services.viewers
    await statements_of(api, headers)
    assert len(viewers) == 1

    terminate_listener(postgresql)
    await viewers.wait_listening(False)
    await viewers.wait_listening(True)

    assert len(viewers) == 0
    assert await statements_of(api, headers) == (200, 1)
    assert await statements_of(api, headers) == (200, 0)


class ChangedWhileLoading(SerializedSession):
    """A request session during whose statement a change of every user is heard."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], cache: ViewerCache) -> None:
        super().__init__(sessions)
        self.cache = cache

    async def run(self, operation: Any) -> Any:
        answer = await super().run(operation)
        self.cache.forget("*")
        return answer


async def test_an_answer_loaded_across_a_change_is_not_kept(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    cache = ViewerCache(10)
    await cache.connected(None)
    changed = ChangedWhileLoading(sessions, cache)
    try:
        access = await cache.access(changed, str(world.staff.id), UserRole.STAFF.value)
    finally:
        await changed.close()

    assert access is not NOBODY
    assert access.clinics == frozenset()
    assert len(cache) == 0


async def test_the_cache_keeps_at_most_its_capacity(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    cache = ViewerCache(2)
    await cache.connected(None)
    db = SerializedSession(sessions)
    users = [world.doctor.id, world.other_doctor.id, world.staff.id]
    try:
        for user in users:
            role = UserRole.STAFF if user == world.staff.id else UserRole.DOCTOR
            await cache.access(db, str(user), role.value)
    finally:
        await db.close()

    assert len(cache) == 2
    await cache.disconnected()
    assert len(cache) == 0
    assert not cache.trusted()


def test_a_stored_viewer_of_another_role_refuses_the_token() -> None:
    stored = StoredViewer(UserRole.DOCTOR, frozenset({uuid.uuid4()}))
    assert viewer_access(uuid.uuid4(), UserRole.STAFF, stored) is NOBODY
    assert viewer_access(uuid.uuid4(), UserRole.DOCTOR, None) is NOBODY


async def test_a_change_this_process_commits_is_forgotten_when_its_commit_returns(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    """No notification needed for the process's own writes: not even a listener here."""
    cache = ViewerCache(10)
    await cache.connected(None)

    async def staff_access() -> Access:
        db = SerializedSession(sessions)
        try:
            return await cache.access(db, str(world.staff.id), UserRole.STAFF.value)
        finally:
            await db.close()

    assert (await staff_access()).clinics == frozenset()
    async with sessions() as session, session.begin():
        await directory.add_clinic_staff(session, world.clinic_a.id, world.staff.id)
    assert len(cache) == 0
    assert (await staff_access()).clinics == frozenset({world.clinic_a.id})

    async with sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == world.staff.id).values(active=False))
    assert len(cache) == 0
    assert await staff_access() is NOBODY

    async with sessions() as session:
        await session.execute(update(User).where(User.id == world.staff.id).values(active=True))
        await session.rollback()
    assert len(cache) == 1, "a change rolled back forgets nothing"
