"""Chaos run: concurrent writers, stage moves, killed connections and restarts, then an audit.

    .venv/bin/python -m bench.chaos [--writers 16] [--writes 60] [--kill-every 7]
        [--restart-every 0] [--restarts 2] [--restart-command "pg_ctlcluster ... restart"]

PostgreSQL only (it kills server backends). Creates and drops its own database
on CHAOS_POSTGRES_URL (default: the local server). The real ASGI app serves
many concurrent writers (creates, reschedules, reassignments, cancels), each
write under its own Idempotency-Key and retried with it until it is answered;
meanwhile a driver moves clinics one stage at a time, forward and back, in a
random walk over legacy .. complete, and a killer calls pg_terminate_backend on
the app's busy connections. With ``--restart-every N`` it also restarts, every N
finished attempts (at most ``--restarts`` times): by default only its scratch
database goes through what a restart does (it refuses connections, every
connection to it is terminated, and a second later it accepts them again),
which disturbs no one else; with ``--restart-command`` it runs that command
(a real restart of the server, and of every other database on it).
Afterwards it audits the database and reads every appointment through both field
sets. Prints the figures, with the longest time a write waited for an answer
once its first attempt failed, and after a restart, from the moment the server
accepted connections again; exits 1 if a write was lost or duplicated, a row is
inconsistent, or a row cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shlex
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import make_url, select

import migrations
from appointments import directory
from appointments.db import create_engine, create_session_factory
from appointments.models import Appointment, ClinicDoctor, ClinicPatient, UserRole
from appointments.stages import STAGE_ORDER, Stage
from flags.document import build_document, write_document
from server.app import create_app
from server.settings import Settings

DEFAULT_URL = os.environ.get(
    "CHAOS_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
RETRYABLE_CODES = {"IDEMPOTENCY_KEY_IN_USE"}
SUCCESS = "AppointmentSuccess"
RESULT = """
    __typename
    ... on UserError { code message }
    ... on AppointmentSuccess { appointment { id } }
"""
CREATE = (
    "mutation($input: CreateAppointmentInput!) "
    f"{{ createAppointment(input: $input) {{ {RESULT} }} }}"
)
RESCHEDULE = (
    "mutation($input: RescheduleAppointmentInput!) "
    f"{{ rescheduleAppointment(input: $input) {{ {RESULT} }} }}"
)
REASSIGN_DOCTOR = (
    f"mutation($input: ReassignDoctorInput!) {{ reassignDoctor(input: $input) {{ {RESULT} }} }}"
)
REASSIGN_PATIENT = (
    f"mutation($input: ReassignPatientInput!) {{ reassignPatient(input: $input) {{ {RESULT} }} }}"
)
CANCEL = f"mutation($id: ID!) {{ cancelAppointment(appointmentId: $id) {{ {RESULT} }} }}"
READ = """
query($clinicId: ID!, $after: String) {
  appointments(first: 100, after: $after, filter: {clinicId: $clinicId}) {
    pageInfo { hasNextPage endCursor }
    edges { node {
      id startsAt status
      doctor { id } patient { id }
      clinicDoctor { user { id } clinic { id } }
      clinicPatient { patient { id } clinic { id } }
    } }
  }
}
"""


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    database_url: str = DEFAULT_URL
    writers: int = 16
    writes_per_writer: int = 60
    clinics: int = 3
    kill_every: int = 7
    stage_every: int = 5
    restart_every: int = 0
    restarts: int = 2
    restart_command: str | None = None
    outage_seconds: float = 1.0
    max_wait_seconds: float = 180.0
    seed: int = 20261125


@dataclass
class ChaosReport:
    attempted: int = 0
    acknowledged: int = 0
    retried: int = 0
    failed_cleanly: int = 0
    unresolved: int = 0
    kills: int = 0
    restarts: int = 0
    longest_outage: float = 0.0
    longest_retry_delay: float = 0.0
    longest_delay_after_restart: float = 0.0
    restart_windows: list[tuple[float, float]] = field(default_factory=list)
    stage_moves: int = 0
    lost: int = 0
    duplicated: int = 0
    inconsistent: int = 0
    unreadable: int = 0
    appointments: int = 0
    clean_failures: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def note_answer(self, blocked_since: float, answered_at: float) -> None:
        """A write whose first failed attempt was at ``blocked_since`` is answered: how long it
        waited, and how long after the end of each restart it was held up by."""
        self.longest_retry_delay = max(self.longest_retry_delay, answered_at - blocked_since)
        for _started, ended in self.restart_windows:
            if blocked_since <= ended <= answered_at:
                after = answered_at - ended
                self.longest_delay_after_restart = max(self.longest_delay_after_restart, after)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.inconsistent or self.unreadable)

    def lines(self) -> list[str]:
        failures = ", ".join(f"{code} {n}" for code, n in sorted(self.clean_failures.items()))
        return [
            f"writes attempted     {self.attempted}",
            f"acknowledged         {self.acknowledged}",
            f"retried (attempts)   {self.retried}",
            f"failed cleanly       {self.failed_cleanly}" + (f" ({failures})" if failures else ""),
            f"unresolved           {self.unresolved}",
            f"connections killed   {self.kills}",
            f"restarts             {self.restarts}"
            + (f" (longest outage {self.longest_outage:.2f} s)" if self.restarts else ""),
            f"longest retry delay  {self.longest_retry_delay:.2f} s",
            f"  after a restart    {self.longest_delay_after_restart:.2f} s",
            f"stage moves          {self.stage_moves}",
            f"appointments         {self.appointments}",
            f"lost                 {self.lost}",
            f"duplicated           {self.duplicated}",
            f"inconsistent         {self.inconsistent}",
            f"unreadable           {self.unreadable}",
        ]


@dataclass
class Expected:
    """What the acknowledged writes say an appointment must look like."""

    clinic: uuid.UUID
    starts_at: datetime
    doctor: uuid.UUID
    patient: uuid.UUID
    status: str = "scheduled"
    certain: bool = True


@dataclass(frozen=True, slots=True)
class People:
    doctors: dict[uuid.UUID, list[uuid.UUID]]
    patients: dict[uuid.UUID, list[uuid.UUID]]


@dataclass
class Pacer:
    """Counts finished attempts and wakes the stage driver and the killer every so many."""

    done: int = 0
    finished: bool = False
    condition: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def tick(self) -> None:
        async with self.condition:
            self.done += 1
            self.condition.notify_all()

    async def finish(self) -> None:
        async with self.condition:
            self.finished = True
            self.condition.notify_all()

    async def wait_past(self, count: int) -> bool:
        """Wait until ``count`` attempts have finished; False once the writers are done."""
        async with self.condition:
            await self.condition.wait_for(lambda: self.done >= count or self.finished)
            return not self.finished


async def run_chaos(options: ChaosOptions) -> ChaosReport:
    report = ChaosReport()
    async with _scratch_database(options.database_url) as url, _flags_dir() as flags_file:
        people, clinic_ids = await _seed(url, options.clinics)
        rng = random.Random(options.seed)
        stages = dict.fromkeys(clinic_ids, Stage.LEGACY)
        _write_stages(flags_file, stages)
        settings = Settings(
            database_url=url, auto_migrate=False, flags_file=flags_file, log_level="CRITICAL"
        )
        app = create_app(settings)
        expected: dict[uuid.UUID, Expected] = {}
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://chaos") as client:
                pacer = Pacer()
                writers = [
                    _writer(n, client, options, people, clinic_ids, expected, report, pacer)
                    for n in range(options.writers)
                ]
                await asyncio.gather(
                    _run_writers(writers, pacer),
                    _move_stages(flags_file, stages, options, rng, report, pacer),
                    _kill_connections(url, options, rng, report, pacer),
                    _restart(url, options, report, pacer),
                )
                await _audit(client, url, clinic_ids, expected, report)
    return report


async def _run_writers(writers: list[Any], pacer: Pacer) -> None:
    try:
        await asyncio.gather(*writers)
    finally:
        await pacer.finish()


async def _writer(
    number: int,
    client: httpx.AsyncClient,
    options: ChaosOptions,
    people: People,
    clinic_ids: list[uuid.UUID],
    expected: dict[uuid.UUID, Expected],
    report: ChaosReport,
    pacer: Pacer,
) -> None:
    rng = random.Random(options.seed * 1000 + number)
    mine: list[uuid.UUID] = []
    base = datetime(2027, 1, 4, 8, tzinfo=UTC) + timedelta(days=number * 400)
    for step in range(options.writes_per_writer):
        key = f"chaos-{number}-{step}"
        when = base + timedelta(hours=step)
        open_ones = [a for a in mine if expected[a].status == "scheduled" and expected[a].certain]
        choice = rng.random()
        if not open_ones or choice < 0.3:
            clinic = rng.choice(clinic_ids)
            doctor, patient = (
                rng.choice(people.doctors[clinic]),
                rng.choice(people.patients[clinic]),
            )
            payload = {
                "clinicId": str(clinic),
                "startsAt": when.isoformat(),
                "endsAt": (when + timedelta(minutes=30)).isoformat(),
                "doctorId": str(doctor),
                "patientId": str(patient),
                "reason": key,
            }
            result = await _send(client, key, CREATE, {"input": payload}, options, report, pacer)
            if result is not None:
                created = uuid.UUID(result["appointment"]["id"])
                mine.append(created)
                expected[created] = Expected(clinic, when, doctor, patient)
            continue
        target = rng.choice(open_ones)
        state = expected[target]
        if choice < 0.55:
            variables: dict[str, Any] = {
                "input": {
                    "appointmentId": str(target),
                    "startsAt": when.isoformat(),
                    "endsAt": (when + timedelta(minutes=45)).isoformat(),
                }
            }
            query = RESCHEDULE
        elif choice < 0.75:
            doctor = rng.choice(people.doctors[state.clinic])
            variables = {"input": {"appointmentId": str(target), "doctorId": str(doctor)}}
            query = REASSIGN_DOCTOR
        elif choice < 0.93:
            patient = rng.choice(people.patients[state.clinic])
            variables = {"input": {"appointmentId": str(target), "patientId": str(patient)}}
            query = REASSIGN_PATIENT
        else:
            variables = {"id": str(target)}
            query = CANCEL
        result = await _send(client, key, query, variables, options, report, pacer)
        if result is None:
            state.certain = False
        elif result["__typename"] == SUCCESS:
            if query is RESCHEDULE:
                state.starts_at = when
            elif query is REASSIGN_DOCTOR:
                state.doctor = doctor
            elif query is REASSIGN_PATIENT:
                state.patient = patient
            else:
                state.status = "cancelled"


async def _send(
    client: httpx.AsyncClient,
    key: str,
    query: str,
    variables: dict[str, Any],
    options: ChaosOptions,
    report: ChaosReport,
    pacer: Pacer,
) -> dict[str, Any] | None:
    """Send one write until it is answered: the success payload, or None if never answered.

    A typed error other than "still running" is a clean failure, returned as is. Failed
    attempts are retried with a backoff growing to half a second, for ``max_wait_seconds``.
    """
    report.attempted += 1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.max_wait_seconds
    blocked_since: float | None = None
    attempt = 0
    while loop.time() < deadline:
        if attempt:
            report.retried += 1
            await asyncio.sleep(min(0.05 * attempt, 0.5))
        attempt += 1
        try:
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Idempotency-Key": key},
            )
            body = response.json()
        except (httpx.HTTPError, ValueError):
            body = {}
        finally:
            await pacer.tick()
        result = next(iter((body.get("data") or {}).values()), None)
        if result is None or result.get("code") in RETRYABLE_CODES:
            # Not answered (the database is away), or the first attempt's claim is still held.
            blocked_since = loop.time() if blocked_since is None else blocked_since
            continue
        if blocked_since is not None:
            report.note_answer(blocked_since, loop.time())
        if result["__typename"] == SUCCESS:
            report.acknowledged += 1
            payload: dict[str, Any] = result
            return payload
        report.failed_cleanly += 1
        report.clean_failures[result.get("code", "?")] += 1
        return None if query is CREATE else result
    report.unresolved += 1
    return None


async def _move_stages(
    flags_file: Path,
    stages: dict[uuid.UUID, Stage],
    options: ChaosOptions,
    rng: random.Random,
    report: ChaosReport,
    pacer: Pacer,
) -> None:
    moment = options.stage_every
    while await pacer.wait_past(moment):
        clinic = rng.choice(list(stages))
        position = STAGE_ORDER.index(stages[clinic])
        step = rng.choice((-1, 1)) if 0 < position < len(STAGE_ORDER) - 1 else 0
        if position == 0:
            step = 1
        elif position == len(STAGE_ORDER) - 1:
            step = -1
        stages[clinic] = STAGE_ORDER[position + step]
        _write_stages(flags_file, stages)
        report.stage_moves += 1
        moment += options.stage_every


async def _kill_connections(
    url: str, options: ChaosOptions, rng: random.Random, report: ChaosReport, pacer: Pacer
) -> None:
    if options.kill_every <= 0:
        return
    moment = options.kill_every
    while await pacer.wait_past(moment):
        moment += options.kill_every
        try:
            async with await _admin(options) as admin:
                victims = await _backends(admin, url, busy_only=True)
                if victims:
                    await _terminate(admin, [rng.choice(victims)])
                    report.kills += 1
        except psycopg.OperationalError:
            continue  # the server is restarting


async def _restart(url: str, options: ChaosOptions, report: ChaosReport, pacer: Pacer) -> None:
    """Every ``restart_every`` attempts, up to ``restarts`` times, restart; the window it
    records ends when the scratch database accepts connections again.

    With ``restart_command`` that command restarts the server. Without, only the scratch
    database goes through what a restart does: it refuses new connections, every
    connection to it is terminated, and it accepts connections again ``outage_seconds`` later.
    """
    if options.restart_every <= 0:
        return
    loop = asyncio.get_running_loop()
    moment = options.restart_every
    while report.restarts < options.restarts and await pacer.wait_past(moment):
        moment += options.restart_every
        started = loop.time()
        if options.restart_command:
            process = await asyncio.create_subprocess_exec(
                *shlex.split(options.restart_command),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            if await process.wait() != 0:
                # pg_ctlcluster gives up when the stop outlasts its wait (60 s), which happens
                # when clients keep connecting during the shutdown; the server is then down.
                raise RuntimeError(
                    f"{options.restart_command!r} failed; the server may be down: start it"
                )
        else:
            await _outage(url, options)
        await _until_accepting(url)
        ended = loop.time()
        report.restarts += 1
        report.longest_outage = max(report.longest_outage, ended - started)
        report.restart_windows.append((started, ended))


async def _outage(url: str, options: ChaosOptions) -> None:
    database = make_url(url).database
    async with await _admin(options) as admin:
        await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
        try:
            await _terminate(admin, await _backends(admin, url, busy_only=False))
            await asyncio.sleep(options.outage_seconds)
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')


async def _admin(options: ChaosOptions) -> psycopg.AsyncConnection[Any]:
    """A connection to the server's own database (never the scratch one, which may refuse)."""
    return await psycopg.AsyncConnection.connect(
        _admin_dsn(options.database_url), autocommit=True, connect_timeout=2
    )


async def _backends(admin: psycopg.AsyncConnection[Any], url: str, busy_only: bool) -> list[int]:
    """The app's connections to the scratch database (only those in a request if asked)."""
    cursor = await admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        " AND (NOT %s OR state IN ('active', 'idle in transaction'))",
        (make_url(url).database, busy_only),
    )
    return [row[0] for row in await cursor.fetchall()]


async def _terminate(admin: psycopg.AsyncConnection[Any], pids: list[int]) -> None:
    """Terminate backends and wait (up to 5 s each) until they are gone."""
    for pid in pids:
        await admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


async def _until_accepting(url: str) -> None:
    for _ in range(1200):
        try:
            async with await psycopg.AsyncConnection.connect(_admin_dsn(url), connect_timeout=2):
                return
        except psycopg.OperationalError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the database did not accept connections within a minute")


async def _audit(
    client: httpx.AsyncClient,
    url: str,
    clinic_ids: list[uuid.UUID],
    expected: dict[uuid.UUID, Expected],
    report: ChaosReport,
) -> None:
    engine = create_engine(url)
    try:
        sessions = create_session_factory(engine)
        async with sessions() as session:
            rows = (await session.execute(select(Appointment))).scalars().all()
            doctors = {m.id: m for m in (await session.execute(select(ClinicDoctor))).scalars()}
            patients = {m.id: m for m in (await session.execute(select(ClinicPatient))).scalars()}
    finally:
        await engine.dispose()
    report.appointments = len(rows)
    by_id = {row.id: row for row in rows}
    reasons = Counter(row.reason for row in rows)
    report.duplicated = sum(count - 1 for count in reasons.values() if count > 1)
    for row in rows:
        doctor = _person(row.doctor_id, row.clinic_doctor_id, doctors, row.clinic_id, "user_id")
        patient = _person(
            row.patient_id, row.clinic_patient_id, patients, row.clinic_id, "patient_id"
        )
        if doctor is None or patient is None:
            report.inconsistent += 1
            report.problems.append(f"inconsistent links: {row.id}")
    for appointment_id, state in expected.items():
        if appointment_id not in by_id:
            report.lost += 1
            report.problems.append(f"acknowledged create missing: {appointment_id}")
            continue
        if not state.certain:
            continue
        row = by_id[appointment_id]
        doctor = row.doctor_id or doctors[row.clinic_doctor_id].user_id  # type: ignore[index]
        patient = row.patient_id or patients[row.clinic_patient_id].patient_id  # type: ignore[index]
        found = (row.starts_at, doctor, patient, row.status)
        wanted = (state.starts_at, state.doctor, state.patient, state.status)
        if found != wanted:
            report.lost += 1
            report.problems.append(
                f"acknowledged change missing: {appointment_id} {found} != {wanted}"
            )
    await _read_everything(client, clinic_ids, report)


def _person(
    legacy: uuid.UUID | None,
    membership_id: uuid.UUID | None,
    memberships: dict[uuid.UUID, Any],
    clinic: uuid.UUID,
    person_attribute: str,
) -> uuid.UUID | None:
    """The one person both links name, or None when they disagree or name no one."""
    if membership_id is None:
        return legacy
    membership = memberships[membership_id]
    person: uuid.UUID = getattr(membership, person_attribute)
    if membership.clinic_id != clinic or (legacy is not None and legacy != person):
        return None
    return person


async def _read_everything(
    client: httpx.AsyncClient, clinic_ids: list[uuid.UUID], report: ChaosReport
) -> None:
    for clinic in clinic_ids:
        after: str | None = None
        while True:
            response = await client.post(
                "/graphql",
                json={"query": READ, "variables": {"clinicId": str(clinic), "after": after}},
            )
            body = response.json()
            if "errors" in body:
                report.unreadable += 1
                report.problems.append(f"read errors: {body['errors'][:1]}")
                break
            page = body["data"]["appointments"]
            for edge in page["edges"]:
                node = edge["node"]
                if not _both_field_sets_agree(node, str(clinic)):
                    report.unreadable += 1
                    report.problems.append(f"field sets disagree: {node}")
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]


def _both_field_sets_agree(node: dict[str, Any], clinic: str) -> bool:
    doctor, patient = node["doctor"], node["patient"]
    clinic_doctor, clinic_patient = node["clinicDoctor"], node["clinicPatient"]
    if None in (doctor, patient, clinic_doctor, clinic_patient):
        return False
    return bool(
        clinic_doctor["user"]["id"] == doctor["id"]
        and clinic_patient["patient"]["id"] == patient["id"]
        and clinic_doctor["clinic"]["id"] == clinic_patient["clinic"]["id"] == clinic
    )


async def _seed(url: str, clinics: int) -> tuple[People, list[uuid.UUID]]:
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine)
        sessions = create_session_factory(engine)
        doctors: dict[uuid.UUID, list[uuid.UUID]] = {}
        patients: dict[uuid.UUID, list[uuid.UUID]] = {}
        async with sessions() as session, session.begin():
            for n in range(clinics):
                clinic = await directory.create_clinic(session, f"Chaos clinic {n}")
                doctors[clinic.id], patients[clinic.id] = [], []
                for k in range(3):
                    user = await directory.create_user(
                        session, f"Doctor {n}-{k}", f"doctor{n}-{k}@chaos.test", UserRole.DOCTOR
                    )
                    await directory.add_clinic_doctor(session, clinic.id, user.id)
                    doctors[clinic.id].append(user.id)
                for k in range(5):
                    patient = await directory.create_patient(session, f"Patient {n}-{k}", None)
                    await directory.add_clinic_patient(session, clinic.id, patient.id)
                    patients[clinic.id].append(patient.id)
        return People(doctors, patients), list(doctors)
    finally:
        await engine.dispose()


def _write_stages(flags_file: Path, stages: dict[uuid.UUID, Stage]) -> None:
    write_document(flags_file, build_document({str(k): v for k, v in stages.items()}, []))


def _admin_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def _scratch_database(base_url: str) -> AsyncIterator[str]:
    url = make_url(base_url)
    name = f"clinic_chaos_{uuid.uuid4().hex[:12]}"
    admin = _admin_dsn(base_url)
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as connection:
        await connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as connection:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def _flags_dir() -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="clinic-chaos-") as directory:
        yield Path(directory) / "flags.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = ChaosOptions()
    parser.add_argument("--database-url", default=defaults.database_url)
    parser.add_argument("--writers", type=int, default=defaults.writers)
    parser.add_argument("--writes", type=int, default=defaults.writes_per_writer)
    parser.add_argument("--clinics", type=int, default=defaults.clinics)
    parser.add_argument("--kill-every", type=int, default=defaults.kill_every)
    parser.add_argument("--stage-every", type=int, default=defaults.stage_every)
    parser.add_argument("--restart-every", type=int, default=defaults.restart_every)
    parser.add_argument("--restarts", type=int, default=defaults.restarts)
    parser.add_argument("--restart-command", default=defaults.restart_command)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    arguments = parser.parse_args(argv)
    # Killed connections make every failed attempt log a traceback; the figures say enough.
    logging.basicConfig(level=logging.CRITICAL)
    report = asyncio.run(
        run_chaos(
            ChaosOptions(
                database_url=arguments.database_url,
                writers=arguments.writers,
                writes_per_writer=arguments.writes,
                clinics=arguments.clinics,
                kill_every=arguments.kill_every,
                stage_every=arguments.stage_every,
                restart_every=arguments.restart_every,
                restarts=arguments.restarts,
                restart_command=arguments.restart_command,
                seed=arguments.seed,
            )
        )
    )
    print("\n".join(report.lines()))
    for problem in report.problems[:20]:
        print(f"  {problem}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
