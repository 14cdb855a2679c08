"""Benchmark: the GraphQL service under wrk, per migration stage, against PostGraphile.

    .venv/bin/python -m bench.graphql            # full: 1,000,000 appointments, 3 x 10 s rounds
    .venv/bin/python -m bench.graphql --quick    # 20,000 appointments, 2 x 3 s rounds
    .venv/bin/python -m bench.graphql --quick --via-pgbouncer

(``scripts/bench`` runs it with the bench extra installed.) What it does:

1. Creates its own database on BENCH_POSTGRES_URL (default: the local server):
   ``clinic_bench`` (``clinic_bench_quick`` with ``--quick``), migrated with our
   migrations and seeded with set-based SQL (``bench.backfill.seed``: clinics,
   doctors, patients, memberships, appointments; then the same ``UPDATE ... FROM``
   as the backfill links every appointment's new side, so both sides are
   consistent and every stage reads real data), then ANALYZE. The volume is
   recorded as the database's comment; a rerun at the same volume reuses it
   (``--reseed`` forces a new one). Rows the benchmark inserts are deleted at
   start and end.
2. In process (the ASGI app through httpx, no server): SQL statements per list
   request for 10 and 100 rows in every stage (a ``before_cursor_execute``
   counter), the time spent in ``StageResolver`` (flag evaluation) against the
   request time, and a per-phase breakdown of the 100-row list in ``shadow``
   (``--pyinstrument`` also writes a pyinstrument profile to ``var/bench/``).
3. Starts the service as in production: uvicorn, 2 workers, ``--loop uvloop
   --http httptools``, ``CLINIC_PRODUCTION=true``, a JWT secret made for this
   run and an admin token minted with ``mint_token``, the flags file in a temp
   directory; waits for /readyz. Starts PostGraphile v4 (installed into
   ``.postgraphile/`` by ``scripts/install-postgraphile``) on the same database,
   2 cluster workers, verifying the token too; checks that both return the
   same 100 appointment ids for the list before measuring.
4. For each round, for each stage (legacy, dual_write, shadow, live, complete,
   the order shifted by one stage each round; set in the flags file and awaited
   through the response's ``extensions.migration.stages``): wrk on (a) the first
   100 appointments of a clinic with both field sets (the hot list), (b)
   ``appointment(id)`` over those ids, (c) ``createAppointment`` with a distinct
   start time per request (legacy ids, new ids in ``complete``). In ``shadow``,
   every shape of ``bench.shapes`` (the hot list, the list with clinic names, a
   day view, ``appointment(id)`` plain and with rich leaves, a mutation with a
   rich payload), each followed at once by PostGraphile's equivalent, so A and B
   alternate. Every response is checked in the wrk script; ``bad`` counts the
   wrong ones. Figures are medians over the rounds.
5. Prints the figures, the ratios and their targets: per shape against
   PostGraphile, time per row against the hot list, statements for 10 and 100
   rows. It asserts nothing and exits 0 (2 when something could not run at all).

``--via-pgbouncer`` puts PgBouncer (Debian ``pgbouncer``) in transaction
pooling mode between the service and PostgreSQL, with
``CLINIC_DATABASE_PREPARE_THRESHOLD=off`` unless ``--prepare-threshold`` says
otherwise. ``wrk`` and ``pgbouncer`` are installed with apt-get when missing
(as root; otherwise the command to run is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, make_url

from appointments.db import PSYCOPG_PREPARE_THRESHOLD
from appointments.models import UserRole
from appointments.stages import Stage
from bench.backfill import (
    SINGLE_UPDATE,
    bench_admin,
    create_database,
    drop_database,
    dsn,
    migrate,
    seed,
)
from bench.shapes import CREATE, LIST, PG_LIST, SHAPES, Shape
from flags.document import build_document, write_document
from flags.stages import StageResolver
from server.app import create_app
from server.auth import mint_token
from server.settings import Settings

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent
STAGES = (Stage.LEGACY, Stage.DUAL_WRITE, Stage.SHADOW, Stage.LIVE, Stage.COMPLETE)
BENCH_REASON = "bench.graphql"
T = TypeVar("T")

METRICS_TOKEN = secrets.token_urlsafe(24)
"""What the service started here asks of a scrape of /metrics (production mode)."""

# --- wrk -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int = 0
    non_2xx: int = 0
    bad: int = 0


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """The figures of a ``wrk --latency`` run (plus our script's ``bad responses`` line)."""

    def latency(percentile: str) -> float:
        match = re.search(rf"^\s*{percentile}%\s+(\S+)\s*$", output, re.MULTILINE)
        if match is None:
            raise ValueError(f"no {percentile}% latency in wrk output (was --latency given?)")
        return _duration_ms(match.group(1))

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    if rate is None or total is None:
        raise ValueError("no Requests/sec in wrk output")
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    bad = re.search(r"^bad responses: (\d+)", output, re.MULTILINE)
    return WrkResult(
        requests_per_second=float(rate.group(1)),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        requests=int(total.group(1)),
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        bad=int(bad.group(1)) if bad else 0,
    )


def _lua_string(text: str) -> str:
    level = "=" * 4
    if f"]{level}]" in text:
        raise ValueError("text contains the Lua long-bracket terminator")
    return f"[{level}[{text}]{level}]"


LUA_TEMPLATE = """-- Generated by bench/graphql.py; POSTs GraphQL and checks every response.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {authorization}
local path = {path}
local expect = {expect}
local bodies = {{ {bodies} }}
local create_parts = {create_parts}
local create_slots = {create_slots}
local base = {base}
local stride = {stride}
local threads = {{}}
tid = 0
counter = 0
bad = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local function moment(seconds)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", seconds)
end

function request()
  counter = counter + 1
  if create_parts then
    -- A start time no other request of this run uses: one minute apart per thread; the
    -- id (for PostGraphile, which takes it from the client) is made of it.
    local starts = base + (tid * stride + counter) * 60
    local values = {{
      starts = moment(starts),
      ends = moment(starts + 1800),
      id = string.format("%08x-%04x-4000-8000-%012x", tid, starts % 65536,
        math.floor(starts / 65536)),
    }}
    local body = create_parts[1]
    for i, slot in ipairs(create_slots) do
      body = body .. values[slot] .. create_parts[i + 1]
    end
    return wrk.format(nil, path, nil, body)
  end
  return wrk.format(nil, path, nil, bodies[(counter % #bodies) + 1])
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, expect, 1, true)
      or string.find(body, '"errors"', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("bad")
  end
  io.write(string.format("bad responses: %d\\n", total))
end
"""

STARTS, ENDS, NEW_ID = "@@STARTS@@", "@@ENDS@@", "@@ID@@"
_SLOTS = {STARTS: "starts", ENDS: "ends", NEW_ID: "id"}
_SLOT = re.compile("|".join(re.escape(marker) for marker in _SLOTS))


def _split_template(template: str) -> tuple[list[str], list[str]]:
    """The template's text between its slots, and the slots' names in order."""
    parts: list[str] = []
    slots: list[str] = []
    position = 0
    for match in _SLOT.finditer(template):
        parts.append(template[position : match.start()])
        slots.append(_SLOTS[match.group()])
        position = match.end()
    parts.append(template[position:])
    return parts, slots


@dataclass(frozen=True, slots=True)
class Scenario:
    """One wrk target: fixed bodies (rotated), or a create template with start/end slots."""

    name: str
    url: str
    expect: str
    bodies: tuple[str, ...] = ()
    create_template: str | None = None

    def lua(self, token: str, base_epoch: int, stride: int) -> str:
        parts, slots = "nil", "{}"
        if self.create_template is not None:
            texts, names = _split_template(self.create_template)
            parts = "{ " + ", ".join(_lua_string(text) for text in texts) + " }"
            slots = "{ " + ", ".join(f'"{name}"' for name in names) + " }"
        return LUA_TEMPLATE.format(
            authorization=_lua_string(f"Bearer {token}"),
            path=_lua_string(httpx.URL(self.url).raw_path.decode()),
            expect=_lua_string(self.expect),
            bodies=", ".join(_lua_string(body) for body in self.bodies) or '""',
            create_parts=parts,
            create_slots=slots,
            base=base_epoch,
            stride=stride,
        )


@dataclass
class WrkRunner:
    directory: Path
    token: str
    threads: int
    connections: int
    runs: int = 0

    def run(self, scenario: Scenario, seconds: float) -> WrkResult:
        self.runs += 1
        # Every run gets its own stretch of start times: threads x 100,000 minutes from 2030.
        stride = 100_000
        base = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp()) + (
            self.runs * self.threads * stride * 60
        )
        script = self.directory / f"{scenario.name.replace(' ', '-')}.lua"
        script.write_text(scenario.lua(self.token, base, stride), encoding="utf-8")
        command = [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            scenario.url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return parse_wrk(done.stdout)


# --- tools: apt, free ports, processes ----------------------------------------------------


def ensure_debian_package(command: str, package: str) -> bool:
    """True when ``command`` is available, installing Debian ``package`` if we are root."""
    if shutil.which(command) or Path(f"/usr/sbin/{command}").exists():
        return True
    install = ["apt-get", "install", "-y", "-q", package]
    if os.geteuid() != 0:
        print(f"{command} is missing; install it with: sudo {' '.join(install)}")
        return False
    print(f"installing {package}: {' '.join(install)}", flush=True)
    if subprocess.run(install, check=False).returncode != 0:  # noqa: S603
        subprocess.run(["apt-get", "update", "-q"], check=False)  # noqa: S607
        subprocess.run(install, check=True)  # noqa: S603
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(
        cls, name: str, command: list[str], log: Path, env: dict[str, str] | None = None
    ) -> Process:
        with log.open("wb") as output:
            popen = subprocess.Popen(  # noqa: S603
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )
        return cls(name, popen, log)

    def check_running(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM to the process group we started (its workers too), then SIGKILL."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def wait_until(
    what: str, ready: Callable[[], bool], process: Process | None = None, timeout: float = 120
) -> None:
    """Poll ``ready`` until it says so (a dead ``process`` or the timeout ends the wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            process.check_running()
        with contextlib.suppress(httpx.HTTPError, OSError):
            if ready():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s")


# --- the database ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Volume:
    clinics: int
    doctors: int
    patients: int
    appointments: int

    def marker(self) -> str:
        return (
            f"clinic-bench clinics={self.clinics} doctors={self.doctors}"
            f" patients={self.patients} appointments={self.appointments}"
        )


FULL_VOLUME = Volume(clinics=50, doctors=2000, patients=100_000, appointments=1_000_000)
QUICK_VOLUME = Volume(clinics=50, doctors=200, patients=5_000, appointments=20_000)
QUICK_DATABASE = "clinic_bench_quick"


def prepare_database(base_url: str, name: str, volume: Volume, reseed: bool) -> str:
    """The URL of database ``name``: reused when seeded at ``volume``, otherwise (re)made."""
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(dsn(base_url), autocommit=True) as connection:
        row = connection.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
    if row is not None and row[0] == volume.marker() and not reseed:
        print(f"database {name}: reused ({volume.marker()})", flush=True)
        migrate(url)
        return url
    if row is not None:
        drop_database(base_url, name)
    create_database(base_url, name)
    migrate(url)
    print(f"database {name}: seeding {volume.appointments:,} appointments ...", flush=True)
    seconds = seed(url, volume.clinics, volume.doctors, volume.patients, volume.appointments)
    started = time.perf_counter()
    with psycopg.connect(dsn(url), autocommit=True) as connection:
        # The backfill's own set-based statement links the new side of every appointment.
        connection.execute(SINGLE_UPDATE.encode())
        connection.execute("VACUUM (FULL, ANALYZE) appointments")
        connection.execute(f"COMMENT ON DATABASE \"{name}\" IS '{volume.marker()}'".encode())
    seconds += time.perf_counter() - started
    print(f"database {name}: seeded and linked in {seconds:.0f} s", flush=True)
    return url


@dataclass(frozen=True, slots=True)
class Fixture:
    """What the requests name: a clinic, its first page of ids, and one booked pair."""

    clinic_id: str
    ids: tuple[str, ...]
    other_clinics: tuple[str, ...]
    """Every other clinic, put in mixed stages (the list across clinics)."""
    doctor_id: str
    patient_id: str
    clinic_doctor_id: str
    clinic_patient_id: str
    day_from: str = ""
    day_before: str = ""
    day_rows: int = 0


def load_fixture(url: str) -> Fixture:
    with psycopg.connect(dsn(url)) as connection:
        clinics = connection.execute("SELECT id FROM clinics ORDER BY name").fetchall()
        assert clinics, "the bench database has no clinic"
        clinic = clinics[0]
        ids = connection.execute(
            "SELECT id FROM appointments WHERE clinic_id = %s ORDER BY starts_at, id LIMIT 100",
            (clinic[0],),
        ).fetchall()
        pair = connection.execute(
            "SELECT doctor_id, patient_id, clinic_doctor_id, clinic_patient_id FROM appointments"
            " WHERE clinic_id = %s AND clinic_doctor_id IS NOT NULL"
            " AND clinic_patient_id IS NOT NULL ORDER BY starts_at LIMIT 1",
            (clinic[0],),
        ).fetchone()
        assert pair is not None, "the bench clinic has no linked appointment"
        # The day view: the calendar day (UTC) of the clinic's 1,000th appointment.
        day = connection.execute(
            "SELECT date_trunc('day', starts_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
            " FROM appointments WHERE clinic_id = %s ORDER BY starts_at, id OFFSET 999 LIMIT 1",
            (clinic[0],),
        ).fetchone()
        if day is None:
            day = connection.execute(
                "SELECT date_trunc('day', min(starts_at) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
                " FROM appointments WHERE clinic_id = %s",
                (clinic[0],),
            ).fetchone()
        assert day is not None
        day_from, day_before = day[0], day[0] + timedelta(days=1)
        counted = connection.execute(
            "SELECT count(*) FROM appointments WHERE clinic_id = %s"
            " AND starts_at >= %s AND starts_at < %s",
            (clinic[0], day_from, day_before),
        ).fetchone()
    doctor_id, patient_id, clinic_doctor_id, clinic_patient_id = (str(v) for v in pair)
    return Fixture(
        str(clinic[0]),
        tuple(str(row[0]) for row in ids),
        tuple(str(row[0]) for row in clinics[1:]),
        doctor_id,
        patient_id,
        clinic_doctor_id,
        clinic_patient_id,
        day_from=day_from.isoformat(),
        day_before=day_before.isoformat(),
        day_rows=min(100, counted[0] if counted else 0),
    )


def delete_bench_rows(url: str) -> int:
    with psycopg.connect(dsn(url), autocommit=True) as connection:
        return connection.execute(
            "DELETE FROM appointments WHERE reason = %s", (BENCH_REASON,)
        ).rowcount


# --- requests --------------------------------------------------------------------------


def body(query: str, variables: dict[str, Any]) -> str:
    return json.dumps({"query": query, "variables": variables})


def create_input(fixture: Fixture, stage: Stage) -> dict[str, Any]:
    """Legacy ids until ``complete`` (a frontend not migrated yet), new ids in ``complete``."""
    ids: dict[str, str] = (
        {"clinicDoctorId": fixture.clinic_doctor_id, "clinicPatientId": fixture.clinic_patient_id}
        if stage is Stage.COMPLETE
        else {"doctorId": fixture.doctor_id, "patientId": fixture.patient_id}
    )
    return {
        "clinicId": fixture.clinic_id,
        "startsAt": STARTS,
        "endsAt": ENDS,
        "reason": BENCH_REASON,
        **ids,
    }


def shape_variables(shape: Shape, fixture: Fixture, first: int = 100) -> list[dict[str, Any]]:
    """The variables of a read shape's requests (wrk rotates them)."""
    if shape.kind == "list":
        return [{"clinicId": fixture.clinic_id, "first": first}]
    if shape.kind == "across":
        return [{"first": first}]
    if shape.kind == "day":
        window = {"from": fixture.day_from, "before": fixture.day_before}
        return [{"clinicId": fixture.clinic_id, **window, "first": first}]
    if shape.kind == "typename":
        return [{}]
    return [{"id": id_} for id_ in fixture.ids]


def shape_bodies(shape: Shape, fixture: Fixture, theirs: bool) -> tuple[str, ...]:
    query = shape.theirs if theirs else shape.ours
    return tuple(body(query, variables) for variables in shape_variables(shape, fixture))


def pg_create_input(fixture: Fixture) -> dict[str, Any]:
    """What our dual write stores, as PostGraphile's create takes it (every column)."""
    return {
        "appointment": {
            "id": NEW_ID,
            "clinicId": fixture.clinic_id,
            "startsAt": STARTS,
            "endsAt": ENDS,
            "status": "scheduled",
            "reason": BENCH_REASON,
            "doctorId": fixture.doctor_id,
            "patientId": fixture.patient_id,
            "clinicDoctorId": fixture.clinic_doctor_id,
            "clinicPatientId": fixture.clinic_patient_id,
            "createdAt": STARTS,
            "updatedAt": STARTS,
        }
    }


def shape_scenario(base: str, shape: Shape, fixture: Fixture, theirs: bool) -> Scenario:
    name = f"pg-{shape.name}" if theirs else shape.name
    url = f"{base}/graphql"
    if shape.kind == "payload":
        query = shape.theirs if theirs else shape.ours
        made = pg_create_input(fixture) if theirs else create_input(fixture, Stage.SHADOW)
        variables = {"input": made}
        return Scenario(name, url, "startsAt", create_template=body(query, variables))
    expect = '"Query"' if shape.kind == "typename" else "startsAt"
    return Scenario(name, url, expect, bodies=shape_bodies(shape, fixture, theirs))


def our_scenarios(base: str, fixture: Fixture, stage: Stage) -> list[Scenario]:
    """In every stage: the hot list, appointment(id) and createAppointment."""
    reads = [shape for shape in SHAPES if shape.name in ("list", "single")]
    return [
        *(shape_scenario(base, shape, fixture, theirs=False) for shape in reads),
        Scenario(
            "create",
            f"{base}/graphql",
            "AppointmentSuccess",
            create_template=body(CREATE, {"input": create_input(fixture, stage)}),
        ),
    ]


def post(url: str, payload: str, token: str) -> dict[str, Any]:
    """One request on a new connection (so successive calls reach different workers)."""
    response = httpx.post(
        url,
        content=payload,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def check_scenario(scenario: Scenario, token: str) -> None:
    """One request of the scenario, checked as the wrk script checks them."""
    payload = scenario.bodies[0] if scenario.bodies else scenario.create_template
    assert payload is not None
    if scenario.create_template is not None:
        payload = (
            payload.replace(STARTS, "2029-06-01T08:00:00Z")
            .replace(ENDS, "2029-06-01T08:30:00Z")
            .replace(NEW_ID, str(uuid.uuid4()))
        )
    answer = post(scenario.url, payload, token)
    text = json.dumps(answer)
    if "errors" in answer or scenario.expect not in text:
        raise RuntimeError(f"{scenario.name}: unexpected answer {text[:500]}")


def set_stage(flags_file: Path, clinic_id: str, stage: Stage, others: Sequence[str] = ()) -> None:
    """``clinic_id`` in ``stage``, ``others`` in every stage in turn (the list across
    clinics reads them; no other shape does)."""
    stages = list(Stage)
    mixed = {clinic: stages[n % len(stages)] for n, clinic in enumerate(others)}
    write_document(flags_file, build_document({**mixed, clinic_id: stage}))


def served_stage(answer: dict[str, Any], clinic_id: str) -> str | None:
    stages: dict[str, str] = answer.get("extensions", {}).get("migration", {}).get("stages", {})
    return stages.get(clinic_id)


def switch_stage(
    flags_file: Path, base: str, token: str, fixture: Fixture, stage: Stage, confirmations: int = 6
) -> None:
    """Write the stage and wait until the service reports it (on fresh connections, so on
    either worker) ``confirmations`` times in a row."""
    set_stage(flags_file, fixture.clinic_id, stage, fixture.other_clinics)
    probe = body(LIST, {"clinicId": fixture.clinic_id, "first": 1})
    seen = 0

    def confirmed() -> bool:
        nonlocal seen
        if served_stage(post(f"{base}/graphql", probe, token), fixture.clinic_id) == stage.value:
            seen += 1
        else:
            seen = 0
        return seen >= confirmations

    wait_until(f"stage {stage.value}", confirmed, timeout=30)


# --- in process: statements, flags, phases ---------------------------------------------


@dataclass
class Timings:
    """Accumulated seconds and counts per phase, for requests run one at a time."""

    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        self.counts[phase] = self.counts.get(phase, 0) + 1

    def reset(self) -> None:
        self.seconds.clear()
        self.counts.clear()


@dataclass(frozen=True, slots=True)
class StageFigures:
    statements_10: int
    statements_100: int
    request_ms: float
    flag_ms: float
    flag_evaluations: float
    create_statements: int
    create_ms: float


@dataclass
class InProcessFigures:
    stages: dict[Stage, StageFigures] = field(default_factory=dict)
    # SQL statements of each list shape in shadow, for 10 and for 100 rows asked.
    shape_statements: dict[str, tuple[int, int]] = field(default_factory=dict)
    phases_ms: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    profile: Path | None = None


def _timed_async(timings: Timings, phase: str, function: Callable[..., Any]) -> Any:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            timings.add(phase, time.perf_counter() - started)

    return wrapper


def _timed_sync(timings: Timings, phase: str, function: Callable[..., T]) -> Callable[..., T]:
    def wrapper(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timings.add(phase, time.perf_counter() - started)

    return wrapper


def _graphql_view(app: Any) -> Any | None:
    """The strawberry view behind /graphql (inside the auth wrapper), if it can be found."""
    for route in getattr(app, "routes", []):
        if getattr(route, "path", None) != "/graphql":
            continue
        candidate = getattr(route, "app", None)
        for _ in range(5):
            if candidate is None or hasattr(candidate, "execute_single"):
                return candidate
            candidate = getattr(candidate, "app", None)
    return None


@contextlib.contextmanager
def timed_stage_resolver(timings: Timings) -> Iterator[None]:
    """Time every ``StageResolver`` call (cached or not): the flag cost of a request."""
    original = StageResolver.__call__
    StageResolver.__call__ = _timed_sync(timings, "flags", original)  # type: ignore[method-assign]
    try:
        yield
    finally:
        StageResolver.__call__ = original  # type: ignore[method-assign]


def in_process_settings(
    url: str,
    flags_file: Path,
    secret: str,
    prepare_threshold: int | None = PSYCOPG_PREPARE_THRESHOLD,
) -> Settings:
    """Production settings for an app measured in process (as ``start_service`` runs it)."""
    return Settings(
        database_url=url,
        auto_migrate=False,
        flags_file=flags_file,
        production=True,
        jwt_secret=secret,
        graphiql=False,
        log_level="WARNING",
        database_prepare_threshold=prepare_threshold,
    )


async def measure_in_process(
    url: str,
    flags_file: Path,
    fixture: Fixture,
    token: str,
    secret: str,
    prepare_threshold: int | None,
    stages: tuple[Stage, ...],
    requests: int,
    profile_to: Path | None,
) -> InProcessFigures:
    app = create_app(in_process_settings(url, flags_file, secret, prepare_threshold))
    figures = InProcessFigures(requests=requests)
    timings = Timings()
    async with app.router.lifespan_context(app):
        engine = app.state.services.engine.sync_engine
        started_at: list[float] = []

        def before(*_args: Any) -> None:
            started_at.append(time.perf_counter())

        def after(*_args: Any) -> None:
            timings.add("sql", time.perf_counter() - started_at.pop())

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers
        ) as client:

            async def ask(first: int) -> dict[str, Any]:
                response = await client.post(
                    "/graphql",
                    json={
                        "query": LIST,
                        "variables": {"clinicId": fixture.clinic_id, "first": first},
                    },
                )
                answer: dict[str, Any] = response.json()
                if response.status_code != 200 or "errors" in answer:
                    raise RuntimeError(f"in-process list failed: {response.text[:500]}")
                return answer

            async def statements(first: int) -> int:
                timings.reset()
                answer = await ask(first)
                assert len(answer["data"]["appointments"]["edges"]) == first
                return timings.counts.get("sql", 0)

            creates = 0

            async def create_once(stage: Stage) -> tuple[int, float]:
                """Statements and milliseconds of the second of two createAppointment calls."""
                nonlocal creates
                seconds = 0.0
                for _ in range(2):
                    creates += 1
                    moment = f"2029-01-01T{creates % 24:02d}:{creates // 24 % 60:02d}:00Z"
                    variables = {"input": create_input(fixture, stage)}
                    variables["input"].update(
                        startsAt=moment, endsAt=moment.replace(":00Z", ":30Z")
                    )
                    timings.reset()
                    started = time.perf_counter()
                    response = await client.post(
                        "/graphql", json={"query": CREATE, "variables": variables}
                    )
                    seconds = time.perf_counter() - started
                    if "AppointmentSuccess" not in response.text:
                        raise RuntimeError(f"in-process create failed: {response.text[:500]}")
                return timings.counts.get("sql", 0), seconds * 1000

            for stage in stages:
                set_stage(flags_file, fixture.clinic_id, stage, fixture.other_clinics)
                if served_stage(await ask(1), fixture.clinic_id) != stage.value:
                    raise RuntimeError(f"in-process app did not take stage {stage.value}")
                await ask(100)  # warm: caches, pool, prepared statements
                ten, hundred = await statements(10), await statements(100)
                create_statements, create_ms = await create_once(stage)
                totals: list[float] = []
                flag_seconds = flag_calls = 0.0
                with timed_stage_resolver(timings):
                    for _ in range(requests):
                        timings.reset()
                        started = time.perf_counter()
                        await ask(100)
                        totals.append(time.perf_counter() - started)
                        flag_seconds += timings.seconds.get("flags", 0.0)
                        flag_calls += timings.counts.get("flags", 0)
                figures.stages[stage] = StageFigures(
                    ten,
                    hundred,
                    statistics.median(totals) * 1000,
                    flag_seconds / requests * 1000,
                    flag_calls / requests,
                    create_statements,
                    create_ms,
                )

            set_stage(flags_file, fixture.clinic_id, Stage.SHADOW, fixture.other_clinics)
            await ask(1)
            for shape in SHAPES:
                if shape.kind not in ("list", "day", "across"):
                    continue
                counts = []
                # A warm-up first: what a process learns once (a list across clinics
                # reads the clinics' ids) is not a statement per request.
                for first in (1, 10, 100):
                    variables = shape_variables(shape, fixture, first)[0]
                    timings.reset()
                    response = await client.post(
                        "/graphql", json={"query": shape.ours, "variables": variables}
                    )
                    if response.status_code != 200 or "errors" in response.json():
                        raise RuntimeError(f"in-process {shape.name}: {response.text[:500]}")
                    counts.append(timings.counts.get("sql", 0))
                figures.shape_statements[shape.name] = (counts[1], counts[2])
            figures.phases_ms = await _phases(app, ask, timings, requests)
            captured: list[tuple[str, Any]] = []

            def capture(
                _conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any
            ) -> None:
                captured.append((statement, parameters))

            event.listen(engine, "before_cursor_execute", capture)
            await ask(100)
            event.remove(engine, "before_cursor_execute", capture)
            planning_ms, execution_ms = await asyncio.to_thread(explain_analyze_ms, url, captured)
            figures.phases_ms = _with_server_time(figures.phases_ms, planning_ms, execution_ms)
            if profile_to is not None:
                figures.profile = await _profile(ask, requests, profile_to)
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    return figures


def explain_analyze_ms(url: str, statements: list[tuple[str, Any]]) -> tuple[float, float]:
    """Planning and execution time the server reports for these statements (rolled back).

    The service's statements are prepared after their first executions on a
    connection, and PostgreSQL then reuses their plan: execution is what a request
    costs the server; planning is what it would cost unprepared (through PgBouncer
    in transaction mode with ``CLINIC_DATABASE_PREPARE_THRESHOLD=off``).
    """
    planning = execution = 0.0
    with psycopg.connect(dsn(url)) as connection:
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "WITH")):
                continue
            # The read model's statements use PostgreSQL's own placeholders ($1): a raw
            # cursor sends those as they are; the others use psycopg's (%(name)s).
            cursor = (
                psycopg.RawCursor(connection)
                if isinstance(parameters, list | tuple)
                else connection.cursor()
            )
            row = cursor.execute(
                ("EXPLAIN (ANALYZE, FORMAT JSON) " + statement).encode(), parameters
            ).fetchone()
            assert row is not None
            plan = row[0][0]
            planning += plan.get("Planning Time", 0.0)
            execution += plan.get("Execution Time", 0.0)
        connection.rollback()
    return planning, execution


def _with_server_time(
    phases: dict[str, float], planning_ms: float, execution_ms: float
) -> dict[str, float]:
    """The phases with the server's own time for the statements after the cursor time."""
    placed: dict[str, float] = {}
    for phase, milliseconds in phases.items():
        placed[phase] = milliseconds
        if "SQL, cursor" in phase:
            indent = phase[: len(phase) - len(phase.lstrip())]
            placed[f"{indent}SQL, server execution (EXPLAIN ANALYZE)"] = execution_ms
            placed[f"{indent}SQL, server planning (when not prepared)"] = planning_ms
    return placed


async def _phases(
    app: Any, ask: Callable[[int], Any], timings: Timings, requests: int
) -> dict[str, float]:
    """Mean milliseconds per request in each phase of the 100-row list."""
    view = _graphql_view(app)
    patched: list[str] = []
    if view is not None:
        for name, phase in (
            ("get_context", "context"),
            ("execute_single", "execute"),
            ("process_result", "serialise"),
        ):
            if hasattr(view, name):
                setattr(view, name, _timed_async(timings, phase, getattr(view, name)))
                patched.append(name)
        if hasattr(view, "encode_json"):
            view.encode_json = _timed_sync(timings, "serialise", view.encode_json)
            patched.append("encode_json")
    total = 0.0
    sums: dict[str, float] = {}
    with timed_stage_resolver(timings):
        for _ in range(requests):
            timings.reset()
            started = time.perf_counter()
            await ask(100)
            total += time.perf_counter() - started
            for phase, seconds in timings.seconds.items():
                sums[phase] = sums.get(phase, 0.0) + seconds
    for name in patched:
        delattr(view, name)  # the instance attribute; the class's method shows again
    mean = {phase: seconds / requests * 1000 for phase, seconds in sums.items()}
    figures = {"request (in process)": total / requests * 1000}
    if "execute" in mean:
        figures["  GraphQL execution"] = mean["execute"]
        figures["    SQL, cursor wall time (see README)"] = mean.get("sql", 0.0)
        figures["    flag evaluation"] = mean.get("flags", 0.0)
        figures["    rest: resolvers, loaders, ORM, validation"] = (
            mean["execute"] - mean.get("sql", 0.0) - mean.get("flags", 0.0)
        )
    else:
        figures["  SQL, cursor wall time (see README)"] = mean.get("sql", 0.0)
    figures["  serialisation (result to JSON)"] = mean.get("serialise", 0.0)
    figures["  context (per-request services)"] = mean.get("context", 0.0)
    accounted = mean.get("execute", mean.get("sql", 0.0)) + mean.get("serialise", 0.0)
    figures["  ASGI, auth, body parsing, rest"] = (
        figures["request (in process)"] - accounted - mean.get("context", 0.0)
    )
    return figures


async def _profile(ask: Callable[[int], Any], requests: int, directory: Path) -> Path:
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="enabled")
    with profiler:
        for _ in range(requests):
            await ask(100)
    return await asyncio.to_thread(_write_profile, profiler, directory)


def _write_profile(profiler: Any, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "graphql-profile.txt"
    path.write_text(profiler.output_text(unicode=True, color=False), encoding="utf-8")
    (directory / "graphql-profile.html").write_text(profiler.output_html(), encoding="utf-8")
    return path


# --- servers ---------------------------------------------------------------------------


def start_service(
    url: str,
    flags_file: Path,
    secret: str,
    workers: int,
    prepare_threshold: int | None,
    directory: Path,
) -> tuple[Process, str]:
    port = free_port()
    metrics = directory / "metrics"
    metrics.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "CLINIC_DATABASE_URL": url,
        "CLINIC_FLAGS_FILE": str(flags_file),
        "CLINIC_PRODUCTION": "true",
        "CLINIC_JWT_SECRET": secret,
        "CLINIC_METRICS_TOKEN": METRICS_TOKEN,
        "CLINIC_AUTO_MIGRATE": "false",
        "CLINIC_GRAPHIQL": "false",
        "CLINIC_LOG_LEVEL": "WARNING",
        "CLINIC_DATABASE_PREPARE_THRESHOLD": (
            "off" if prepare_threshold is None else str(prepare_threshold)
        ),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "server.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = Process.start("service", command, directory / "service.log", env)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200

    wait_until("the service", ready, process)
    return process, base


def start_postgraphile(url: str, secret: str, workers: int, directory: Path) -> tuple[Process, str]:
    install = subprocess.run([str(ROOT / "scripts" / "install-postgraphile")], check=False)  # noqa: S603
    if install.returncode != 0:
        raise RuntimeError("scripts/install-postgraphile failed")
    port = free_port()
    connection = make_url(url).set(drivername="postgres").render_as_string(hide_password=False)
    command = [
        "node",
        str(ROOT / ".postgraphile" / "node_modules" / "postgraphile" / "cli.js"),
        "--connection",
        connection,
        "--schema",
        "public",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--cluster-workers",
        str(workers),
        "--disable-query-log",
        "--disable-graphiql",
        "--simple-collections",
        "omit",
        "--legacy-relations",
        "omit",
        "--append-plugins",
        "postgraphile-plugin-connection-filter",
        # The same token as ours, verified the same way (HS256, issuer, audience); no role
        # switch (our tokens' role is an application role, not a PostgreSQL one).
        "--jwt-secret",
        secret,
        "--jwt-verify-algorithms",
        "HS256",
        "--jwt-verify-audience",
        "clinic-appointments",
        "--jwt-verify-issuer",
        "clinic-appointments",
        "--jwt-role",
        "pg_role",
    ]
    # The plugin is found where install-postgraphile put it.
    modules = str(ROOT / ".postgraphile" / "node_modules")
    env = {**os.environ, "NODE_ENV": "production", "NODE_PATH": modules}
    process = Process.start("postgraphile", command, directory / "postgraphile.log", env)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        answer = httpx.post(f"{base}/graphql", json={"query": "{ __typename }"}, timeout=2)
        return answer.status_code == 200

    wait_until("PostGraphile", ready, process)
    return process, base


def start_pgbouncer(directory: Path, target_url: str, pool_size: int) -> tuple[Process, str]:
    """PgBouncer in transaction mode in front of ``target_url``'s server; the URL through it."""
    if not ensure_debian_package("pgbouncer", "pgbouncer"):
        raise RuntimeError("pgbouncer is not installed")
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    print(f"pgbouncer: {version.stdout.splitlines()[0] if version.stdout else '?'}", flush=True)
    target = make_url(target_url)
    port = free_port()
    home = directory / "pgbouncer"
    home.mkdir()
    # A statement timeout cannot travel as a startup option through PgBouncer (it refuses
    # unknown startup parameters): drop the option and set the timeout on each server login.
    server = (
        f"host={target.host or '127.0.0.1'} port={target.port or 5432}"
        f" user={target.username or 'postgres'}"
        f" connect_query='SET statement_timeout = {Settings().statement_timeout_ms}'"
    )
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "any",
        "pool_mode": "transaction",
        "default_pool_size": str(pool_size),
        "max_client_conn": "1000",
        "ignore_startup_parameters": "options",
    }
    ini = ["[databases]", f"* = {server}", "", "[pgbouncer]"]
    ini += [f"{key} = {value}" for key, value in settings.items()]
    (home / "pgbouncer.ini").write_text("\n".join(ini) + "\n", encoding="utf-8")
    command = [binary, str(home / "pgbouncer.ini")]
    if os.geteuid() == 0:
        # PgBouncer will not run as root; the postgres account needs to read its config.
        shutil.chown(home, "postgres")
        home.chmod(0o755)
        directory.chmod(0o755)
        command[1:1] = ["-u", "postgres"]
    process = Process.start("pgbouncer", command, directory / "pgbouncer.log")
    url = target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)

    def ready() -> bool:
        with psycopg.connect(dsn(url), connect_timeout=2) as connection:
            connection.execute("SELECT 1")
        return True

    wait_until("pgbouncer", lambda: _quietly(ready), process, timeout=30)
    return process, url


def _quietly(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except psycopg.Error:
        return False


@dataclass(frozen=True, slots=True)
class OneAtATime:
    """Requests sent one at a time over HTTP on a kept-alive connection."""

    p50_ms: float
    mean_ms: float
    # Mean flag evaluation time per request inside the service, from its
    # clinic_flag_evaluation_seconds metric (None for PostGraphile).
    flag_ms: float | None


def one_at_a_time(base: str, payload: str, token: str, requests: int, ours: bool) -> OneAtATime:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    times: list[float] = []
    with httpx.Client(headers=headers, timeout=30) as client:
        for _ in range(5):
            client.post(f"{base}/graphql", content=payload).raise_for_status()
        flag_before = flag_seconds(client, base) if ours else 0.0
        for _ in range(requests):
            started = time.perf_counter()
            client.post(f"{base}/graphql", content=payload).raise_for_status()
            times.append(time.perf_counter() - started)
        flag_after = flag_seconds(client, base) if ours else 0.0
    return OneAtATime(
        statistics.median(times) * 1000,
        statistics.fmean(times) * 1000,
        (flag_after - flag_before) / requests * 1000 if ours else None,
    )


def flag_seconds(client: httpx.Client, base: str) -> float:
    """The service's total flag evaluation seconds so far (every worker's)."""
    response = client.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        if family.name == "clinic_flag_evaluation_seconds":
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    return float(sample.value)
    raise RuntimeError("the service reports no clinic_flag_evaluation_seconds")


# --- the run ---------------------------------------------------------------------------


@dataclass
class Results:
    wrk: dict[tuple[str, str], list[WrkResult]] = field(default_factory=dict)

    def add(self, scenario: str, stage: str, result: WrkResult) -> None:
        self.wrk.setdefault((scenario, stage), []).append(result)

    def median(self, scenario: str, stage: str) -> WrkResult | None:
        runs = self.wrk.get((scenario, stage))
        if not runs:
            return None
        return WrkResult(
            requests_per_second=statistics.median(r.requests_per_second for r in runs),
            p50_ms=statistics.median(r.p50_ms for r in runs),
            p99_ms=statistics.median(r.p99_ms for r in runs),
            requests=sum(r.requests for r in runs),
            socket_errors=sum(r.socket_errors for r in runs),
            non_2xx=sum(r.non_2xx for r in runs),
            bad=sum(r.bad for r in runs),
        )


def machine() -> str:
    """CPU count and model, and the load average now (other work on the machine skews figures)."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({model}), load average {load}"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def _verdict(value: float | None, target: float, at_least: bool) -> str:
    if value is None:
        return "n/a"
    holds = value >= target if at_least else value <= target
    return "holds" if holds else "MISSES"


def report(
    arguments: argparse.Namespace,
    volume: Volume,
    results: Results,
    inproc: InProcessFigures,
    sequential: dict[str, OneAtATime],
    verified: str,
) -> str:
    lines: list[str] = []
    out = lines.append
    out("")
    out(
        f"GraphQL benchmark: {volume.appointments:,} appointments, {volume.clinics} clinics,"
        f" {volume.doctors:,} doctors, {volume.patients:,} patients;"
        f" wrk -t{arguments.threads} -c{arguments.connections},"
        f" {arguments.rounds} x {arguments.duration:g} s per figure (median of rounds);"
        f" service: uvicorn {arguments.workers} workers"
        + (" via PgBouncer (transaction mode)" if arguments.via_pgbouncer else "")
    )
    out(f"same 100 ids from both servers: {verified}")
    out(f"machine: {machine()}")
    out("")
    header = (
        f"{'request':<32} {'stage':<11} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'bad':>5} {'SQL/req':>8}"
    )
    out(header)
    out("-" * len(header))
    names = {
        "list": "list, 100 rows, both field sets",
        "single": "appointment(id)",
        "create": "createAppointment",
        "pg-list": "PostGraphile list, 100 rows",
        "pg-single": "PostGraphile appointment(id)",
    }
    for scenario in ("list", "single", "create"):
        for stage in arguments.stage_list:
            figures = results.median(scenario, stage.value)
            if figures is None:
                continue
            statements = ""
            stage_figures = inproc.stages.get(stage)
            if scenario == "list" and stage_figures is not None:
                statements = str(stage_figures.statements_100)
            bad = figures.bad + figures.non_2xx + figures.socket_errors
            out(
                f"{names[scenario]:<32} {stage.value:<11} {figures.requests_per_second:>8.1f}"
                f" {figures.p50_ms:>8.1f} {figures.p99_ms:>8.1f} {bad:>5} {statements:>8}"
            )
    for scenario in ("pg-list", "pg-single"):
        figures = results.median(scenario, "-")
        if figures is not None:
            bad = figures.bad + figures.non_2xx + figures.socket_errors
            out(
                f"{names[scenario]:<32} {'-':<11} {figures.requests_per_second:>8.1f}"
                f" {figures.p50_ms:>8.1f} {figures.p99_ms:>8.1f} {bad:>5} {'':>8}"
            )
    out("")
    out("in process (ASGI app through httpx, one request at a time; list of 100 rows, and one")
    out("createAppointment with the stage's input)")
    header = (
        f"{'stage':<11} {'SQL first=10':>12} {'SQL first=100':>13} {'request ms':>10}"
        f" {'flags ms':>9} {'flag calls':>10} {'flag share':>10}"
        f" {'SQL create':>10} {'create ms':>9}"
    )
    out(header)
    out("-" * len(header))
    for stage, measured in inproc.stages.items():
        share = measured.flag_ms / measured.request_ms if measured.request_ms else 0.0
        out(
            f"{stage.value:<11} {measured.statements_10:>12} {measured.statements_100:>13}"
            f" {measured.request_ms:>10.2f} {measured.flag_ms:>9.3f}"
            f" {measured.flag_evaluations:>10.0f} {share:>10.2%}"
            f" {measured.create_statements:>10} {measured.create_ms:>9.2f}"
        )
    out("")
    out(f"per phase, list of 100 in shadow (mean of {inproc.requests} requests, ms)")
    for phase, milliseconds in inproc.phases_ms.items():
        out(f"  {phase:<44} {milliseconds:>8.2f}")
    for label, one_by_one in sequential.items():
        out(f"  {label:<44} {one_by_one.p50_ms:>8.2f}")
        if one_by_one.flag_ms is not None:
            out(f"    {'mean':<42} {one_by_one.mean_ms:>8.2f}")
            out(f"    {'flag evaluation in the service, mean':<42} {one_by_one.flag_ms:>8.3f}")
    if inproc.profile is not None:
        out(f"  pyinstrument profile: {inproc.profile} (and .html)")
    out("")

    def rps(scenario: str, stage: str) -> float | None:
        figures = results.median(scenario, stage)
        return None if figures is None else figures.requests_per_second

    def p50(scenario: str, stage: str) -> float | None:
        figures = results.median(scenario, stage)
        return None if figures is None else figures.p50_ms

    out(shape_table(results, inproc, fixture_day_rows(arguments)))
    out("")
    shadow = inproc.stages.get(Stage.SHADOW)
    equal_statements = all(
        f.statements_10 == f.statements_100 for f in inproc.stages.values()
    ) and all(ten == hundred for ten, hundred in inproc.shape_statements.values())
    in_process_flag_share = _ratio(shadow.flag_ms, shadow.request_ms) if shadow else None
    over_http = sequential.get(OUR_SEQUENTIAL)
    flag_share = _ratio(over_http.flag_ms, over_http.mean_ms) if over_http is not None else None
    ratios: list[tuple[str, float | None, str, float, bool]] = [
        (
            "list req/s: shadow / PostGraphile",
            _ratio(rps("list", "shadow"), rps("pg-list", "-")),
            ">= 1.0",
            1.0,
            True,
        ),
        (
            "list req/s: shadow / legacy",
            _ratio(rps("list", "shadow"), rps("list", "legacy")),
            ">= 0.9",
            0.9,
            True,
        ),
        (
            "list req/s: live / legacy",
            _ratio(rps("list", "live"), rps("list", "legacy")),
            ">= 0.9",
            0.9,
            True,
        ),
        (
            "createAppointment p50: dual_write / legacy",
            _ratio(p50("create", "dual_write"), p50("create", "legacy")),
            "<= 1.2",
            1.2,
            False,
        ),
        ("flag evaluation share of request (shadow)", flag_share, "< 2%", 0.02, False),
        (
            "  the same, in process (no HTTP server)",
            in_process_flag_share,
            "< 2%",
            0.02,
            False,
        ),
    ]
    out(f"{'ratio':<44} {'value':>8}  {'target':<8} verdict")
    for label, value, target_text, target, at_least in ratios:
        shown = (
            "n/a" if value is None else (f"{value:.2%}" if "%" in target_text else f"{value:.2f}")
        )
        out(f"{label:<44} {shown:>8}  {target_text:<8} {_verdict(value, target, at_least)}")
    out(
        f"{'SQL statements per list: 10 rows = 100 rows':<44} "
        f"{'yes' if equal_statements else 'NO':>8}  {'equal':<8} "
        f"{'holds' if equal_statements else 'MISSES'}"
    )
    return "\n".join(lines)


SHAPE_TARGETS = {
    "list": 1.2,
    "day": 1.2,
    "single": 1.2,
    "across": 1.0,
    "typename": 1.5,
    "payload": 0.6,
}
"""Ours / PostGraphile req/s each kind of shape must reach in ``shadow``, where the shapes
are measured (every row compared: lists 1.2; in ``legacy`` and ``complete`` lists are to
reach 1.3)."""
PER_ROW_SLOWER = 1.15
"""A list shape's time per row may be at most this times the hot list's."""


def fixture_day_rows(arguments: argparse.Namespace) -> int:
    rows: int = getattr(arguments, "day_rows", 0)
    return rows


def shape_table(results: Results, inproc: InProcessFigures, day_rows: int) -> str:
    """Every shape in shadow against PostGraphile: req/s, ratio and its target, time per
    row against the hot list's (list shapes), statements for 10 and 100 rows."""
    lines = [
        "shapes in shadow, ours then PostGraphile's equivalent (median req/s of rounds)",
        f"{'shape':<36} {'rows':>4} {'ours':>8} {'PG':>8} {'ratio':>6} {'target':>7}"
        f" {'verdict':>7} {'ms/row':>7} {'vs hot':>7} {'SQL 10/100':>10}",
    ]
    lines.append("-" * len(lines[1]))
    hot = results.median("list", "shadow")
    hot_per_row = None if hot is None else 1000 / hot.requests_per_second / 100
    for shape in SHAPES:
        mine = results.median(shape.name, "shadow")
        if mine is None:
            continue
        other = results.median(f"pg-{shape.name}", "-")
        rows = day_rows if shape.kind == "day" else shape.rows
        ratio = _ratio(mine.requests_per_second, other.requests_per_second if other else None)
        target = SHAPE_TARGETS.get("list" if shape.kind == "day" else shape.kind)
        verdict = "-" if target is None else _verdict(ratio, target, at_least=True)
        per_row = 1000 / mine.requests_per_second / rows if rows else None
        versus = ""
        if per_row is not None and hot_per_row and shape.kind in ("list", "day", "across"):
            slower = per_row / hot_per_row
            versus = f"{slower:.2f}" + ("" if slower <= PER_ROW_SLOWER else "!")
        statements = inproc.shape_statements.get(shape.name)
        lines.append(
            f"{shape.label:<36} {rows:>4} {mine.requests_per_second:>8.1f}"
            f" {other.requests_per_second if other else float('nan'):>8.1f}"
            f" {'n/a' if ratio is None else f'{ratio:.2f}':>6}"
            f" {'-' if target is None else f'>={target}':>7} {verdict:>7}"
            f" {'' if per_row is None else f'{per_row:.3f}':>7} {versus:>7}"
            f" {'' if statements is None else f'{statements[0]}/{statements[1]}':>10}"
        )
    lines.append(
        f"(ms/row: one worker-second per row at the measured rate; 'vs hot' is that against"
        f" the hot list's, target <= {PER_ROW_SLOWER}, '!' where it misses)"
    )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.graphql",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small data, short rounds")
    parser.add_argument("--clinics", type=int)
    parser.add_argument("--doctors", type=int)
    parser.add_argument("--patients", type=int)
    parser.add_argument("--appointments", type=int)
    parser.add_argument("--database", help="database name (default clinic_bench[_quick])")
    parser.add_argument("--reseed", action="store_true", help="drop and seed the database again")
    parser.add_argument("--rounds", type=int, help="A/B rounds (default 3; quick 2)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (10; quick 3)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per target (3; quick 1)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn and PostGraphile workers")
    parser.add_argument(
        "--stages",
        default=",".join(stage.value for stage in STAGES),
        help="comma-separated stages to measure",
    )
    parser.add_argument("--no-postgraphile", action="store_true")
    parser.add_argument("--in-process-requests", type=int, help="(default 50; quick 15)")
    parser.add_argument(
        "--pyinstrument", action="store_true", help="profile the shadow list into var/bench/"
    )
    parser.add_argument("--via-pgbouncer", action="store_true")
    parser.add_argument("--pgbouncer-pool-size", type=int, default=20)
    parser.add_argument(
        "--prepare-threshold",
        help="CLINIC_DATABASE_PREPARE_THRESHOLD for the service (default 5; 'off' via PgBouncer)",
    )
    return parser


def _defaults(arguments: argparse.Namespace) -> Volume:
    quick = arguments.quick

    def pick(name: str, full: Any, small: Any) -> None:
        if getattr(arguments, name) is None:
            setattr(arguments, name, small if quick else full)

    for volume_field in ("clinics", "doctors", "patients", "appointments"):
        pick(volume_field, getattr(FULL_VOLUME, volume_field), getattr(QUICK_VOLUME, volume_field))
    pick("database", "clinic_bench", QUICK_DATABASE)
    pick("rounds", 3, 2)
    pick("duration", 10.0, 3.0)
    pick("warmup", 3.0, 1.0)
    pick("in_process_requests", 50, 15)
    if arguments.prepare_threshold is None:
        arguments.prepare_threshold = "off" if arguments.via_pgbouncer else "5"
    arguments.stage_list = tuple(Stage.parse(name) for name in arguments.stages.split(","))
    return Volume(arguments.clinics, arguments.doctors, arguments.patients, arguments.appointments)


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    volume = _defaults(arguments)
    threshold: int | None = (
        None
        if arguments.prepare_threshold.lower() in {"off", "none"}
        else int(arguments.prepare_threshold)
    )
    if not ensure_debian_package("wrk", "wrk"):
        return 2
    base_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_URL)
    url = prepare_database(base_url, arguments.database, volume, arguments.reseed)
    deleted = delete_bench_rows(url)
    if deleted:
        print(f"deleted {deleted:,} rows inserted by an earlier run", flush=True)
    fixture = load_fixture(url)
    arguments.day_rows = fixture.day_rows
    print(
        f"day view: {fixture.day_rows} appointments from {fixture.day_from}"
        f" to {fixture.day_before}",
        flush=True,
    )
    secret = secrets.token_urlsafe(32)
    token = mint_token(
        Settings(jwt_secret=secret), asyncio.run(bench_admin(url)), UserRole.ADMIN, hours=24
    )
    processes: list[Process] = []
    with tempfile.TemporaryDirectory(prefix="clinic-bench-") as temporary:
        directory = Path(temporary)
        flags_file = directory / "flags.json"
        try:
            service_url = url
            if arguments.via_pgbouncer:
                bouncer, service_url = start_pgbouncer(
                    directory, url, arguments.pgbouncer_pool_size
                )
                processes.append(bouncer)
            set_stage(flags_file, fixture.clinic_id, Stage.SHADOW, fixture.other_clinics)
            print("in process: statements, flag time, phases ...", flush=True)
            inproc = asyncio.run(
                measure_in_process(
                    service_url,
                    flags_file,
                    fixture,
                    token,
                    secret,
                    threshold,
                    arguments.stage_list,
                    arguments.in_process_requests,
                    ROOT / "var" / "bench" if arguments.pyinstrument else None,
                )
            )
            set_stage(flags_file, fixture.clinic_id, Stage.SHADOW, fixture.other_clinics)
            service, ours = start_service(
                service_url, flags_file, secret, arguments.workers, threshold, directory
            )
            processes.append(service)
            print(f"service up at {ours}", flush=True)
            theirs: str | None = None
            if not arguments.no_postgraphile:
                postgraphile, theirs = start_postgraphile(url, secret, arguments.workers, directory)
                processes.append(postgraphile)
                print(f"PostGraphile up at {theirs}", flush=True)
            verified = verify_same_rows(ours, theirs, fixture, token)
            print(f"same rows: {verified}", flush=True)
            results, sequential = run_rounds(
                arguments, flags_file, ours, theirs, fixture, token, directory
            )
        finally:
            for process in reversed(processes):
                process.stop()
            keep_logs(directory, ROOT / "var" / "bench" / "logs")
    delete_bench_rows(url)
    print(report(arguments, volume, results, inproc, sequential, verified))
    return 0


def keep_logs(directory: Path, destination: Path) -> None:
    """Copy the servers' logs out of the temp directory (git-ignored var/bench/logs)."""
    destination.mkdir(parents=True, exist_ok=True)
    for log in directory.glob("*.log"):
        shutil.copyfile(log, destination / log.name)
    print(f"server logs: {destination}", flush=True)


def verify_same_rows(ours: str, theirs: str | None, fixture: Fixture, token: str) -> str:
    mine = post(f"{ours}/graphql", body(LIST, {"clinicId": fixture.clinic_id, "first": 100}), token)
    our_ids = [edge["node"]["id"] for edge in mine["data"]["appointments"]["edges"]]
    if len(our_ids) != 100 or tuple(our_ids) != fixture.ids:
        raise RuntimeError(f"our list returned {len(our_ids)} rows, not the first 100 by start")
    if theirs is None:
        return "PostGraphile not run"
    other = post(
        f"{theirs}/graphql", body(PG_LIST, {"clinicId": fixture.clinic_id, "first": 100}), token
    )
    if "errors" in other:
        raise RuntimeError(f"PostGraphile: {other['errors']}")
    their_ids = [node["id"] for node in other["data"]["allAppointments"]["nodes"]]
    if their_ids != our_ids:
        raise RuntimeError("PostGraphile and our service return different appointments")
    return "yes, 100 rows, same ids in the same order"


OUR_SEQUENTIAL = "HTTP, one at a time, our service (p50)"


def run_rounds(
    arguments: argparse.Namespace,
    flags_file: Path,
    ours: str,
    theirs: str | None,
    fixture: Fixture,
    token: str,
    directory: Path,
) -> tuple[Results, dict[str, OneAtATime]]:
    """Every stage measures the hot list, appointment(id) and createAppointment; ``shadow``
    measures every shape, each followed at once by PostGraphile's equivalent (A then B,
    so their ratio sees the same noise)."""
    runner = WrkRunner(directory, token, arguments.threads, arguments.connections)
    results = Results()
    pairs = [
        (
            shape_scenario(ours, shape, fixture, theirs=False),
            shape_scenario(theirs, shape, fixture, theirs=True) if theirs else None,
        )
        for shape in SHAPES
    ]
    for _, other in pairs:
        if other is not None:
            check_scenario(other, token)
    sequential: dict[str, OneAtATime] = {}
    warmed = False
    stages = list(arguments.stage_list)

    def measure(scenario: Scenario, round_number: int, stage: str) -> None:
        result = runner.run(scenario, arguments.duration)
        results.add(scenario.name, stage, result)
        print(
            f"round {round_number} {stage:<10} {scenario.name:<14}"
            f" {result.requests_per_second:8.0f} req/s  p50 {result.p50_ms:6.1f} ms"
            f"  p99 {result.p99_ms:6.1f} ms  bad {result.bad}",
            flush=True,
        )

    for round_number in range(1, arguments.rounds + 1):
        # Each round starts one stage later, so that no stage always runs right after
        # PostGraphile's load (or first, on a cold machine).
        shift = (round_number - 1) % len(stages)
        for stage in stages[shift:] + stages[:shift]:
            switch_stage(flags_file, ours, token, fixture, stage)
            scenarios = our_scenarios(ours, fixture, stage)
            if stage is Stage.SHADOW:
                scenarios = [
                    *(mine for mine, _ in pairs),
                    *(s for s in scenarios if s.name == "create"),
                ]
            for scenario in scenarios:
                check_scenario(scenario, token)
            if not warmed:
                everything = scenarios + [other for _, other in pairs if other is not None]
                for scenario in everything:
                    runner.run(scenario, arguments.warmup)
                warmed = True
            theirs_after = {mine.name: other for mine, other in pairs}
            for scenario in scenarios:
                measure(scenario, round_number, stage.value)
                other = theirs_after.get(scenario.name) if stage is Stage.SHADOW else None
                if other is not None:
                    measure(other, round_number, "-")
            if stage is Stage.SHADOW and round_number == 1:
                payload = scenarios[0].bodies[0]
                sequential[OUR_SEQUENTIAL] = one_at_a_time(ours, payload, token, 100, ours=True)
                first_theirs = pairs[0][1]
                if theirs and first_theirs is not None:
                    sequential["HTTP, one at a time, PostGraphile (p50)"] = one_at_a_time(
                        theirs, first_theirs.bodies[0], token, 100, ours=False
                    )
    return results, sequential


if __name__ == "__main__":
    raise SystemExit(main())
