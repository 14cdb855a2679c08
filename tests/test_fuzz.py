"""Fuzzing the GraphQL endpoint with queries and mutations generated from the schema.

hypothesis-graphql builds documents from the live schema: valid ones, and
invalid ones with exactly one schema violation. Scalars get our own value
strategies: ``ID`` mixes ids of real rows with random UUIDs and garbage, times
are mostly plausible, strings include crafted list cursors. Arguments whose
name says what they point at (``clinicId``, ``doctorId``, ``appointmentId``...)
are then often pointed at a real row of that kind, so writes get past the
look-ups and into the stage-dependent write path. The two clinics of the world
get stages drawn per example.

Strings also carry lone surrogates (``"\\ud800"`` escapes, which JSON allows and
no database driver can encode), in arguments and inside crafted cursors. A second
test posts arbitrary bodies: JSON that is not an object, objects with members of
the wrong type, bytes that are not UTF-8, integers too long for Python to convert,
nesting deeper than the decoder recurses, compressed bodies.

Every document goes through the real ASGI app. Each answer must be a GraphQL
answer: HTTP 200 (or 400 for a request the server refuses), JSON with ``data``
and/or ``errors``, every error either a validation/coercion error (no ``path``:
the document was rejected) or a typed query error (``extensions.code`` one of
our ``ErrorCode``s), and no raw exception text anywhere. An unexpected
exception, which the service masks as ``INTERNAL_ERROR``, is a failure. After
every request the appointment table's invariants must still hold.

The bugs it found have explicit reproductions at the end of this file.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import graphql
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, mutations, nodes
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from appointments import writes
from appointments.errors import ErrorCode
from appointments.events import PendingEvents
from appointments.models import (
    Appointment,
    ClinicDoctor,
    ClinicPatient,
    MigrationMismatch,
    MismatchField,
    MismatchStatus,
)
from appointments.stages import Stage, fixed_stage
from schema.schema import schema as strawberry_schema
from tests.conftest import Api, World, set_stages

# CI runs a fixed, derandomized budget; a longer exploration:
#   FUZZ_EXAMPLES=5000 FUZZ_RANDOM=1 scripts/test tests/test_fuzz.py
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
DERANDOMIZE = not os.environ.get("FUZZ_RANDOM")
SCHEMA_SDL = strawberry_schema.as_str()
GRAPHQL_SCHEMA = graphql.build_schema(SCHEMA_SDL)
ERROR_CODES = frozenset(code.value for code in ErrorCode)
# Text that only a leaked Python exception would put in a response.
LEAK_MARKERS = (
    "Traceback",
    "sqlalchemy",
    "sqlalche.me",
    "psycopg",
    "aiosqlite",
    "IntegrityError",
    "StatementError",
    "DataError",
    "OperationalError",
    "ProgrammingError",
    "object has no attribute",
)
STAGES = st.sampled_from(list(Stage))
# Around the seeded appointments, so that drawn ranges are valid about half the time.
TIME_WINDOW = (datetime(2026, 11, 30), datetime(2026, 12, 3))
OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)
# Times at the edges: of what Python can convert to UTC, and of what the service accepts.
EDGE_TIMES = [
    "0001-01-01T00:10:00+01:00",
    "0001-01-01T00:00:00+00:00",
    "9999-12-31T23:50:00-01:00",
    "9999-12-31T23:59:59.999999+00:00",
    "1899-12-31T23:59:59.999999+00:00",
    "1900-01-01T00:00:00-00:01",
    "1900-01-01T00:00:00Z",
    "2199-12-31T23:59:59.999999Z",
    "2200-01-01T00:00:00+00:00",
    "2200-01-01T00:30:00+01:00",
]
NUL = "\x00"
LONE_SURROGATES = ["\ud800", "\udfff", "a\udbffb"]
# Codes of requests refused before execution (server/graphql_view.py), with a 4xx.
REQUEST_CODES = frozenset({"BAD_REQUEST", "UNSUPPORTED_MEDIA_TYPE"})


# Root fields that write; one branch of the documents asks only for these.
WRITES = [
    "createAppointment",
    "rescheduleAppointment",
    "reassignDoctor",
    "reassignPatient",
    "cancelAppointment",
    "addClinicDoctor",
    "setClinicDoctorActive",
    "addClinicPatient",
]
# Inputs that name a doctor and/or a patient, and the fields each may name them with.
REFERENCES = {
    "CreateAppointmentInput": (("doctorId", "clinicDoctorId"), ("patientId", "clinicPatientId")),
    "ReassignDoctorInput": (("doctorId", "clinicDoctorId"),),
    "ReassignPatientInput": (("patientId", "clinicPatientId"),),
}
TIMED_INPUTS = {"CreateAppointmentInput", "RescheduleAppointmentInput"}


@dataclass(frozen=True)
class RealIds:
    """Ids of seeded rows, by what an argument of that name points at."""

    clinics: list[str]
    doctors: list[str]
    patients: list[str]
    clinic_doctors: list[str]
    clinic_patients: list[str]
    appointments: list[str]
    mismatches: list[str]

    def all(self) -> list[str]:
        return [
            *self.clinics,
            *self.doctors,
            *self.patients,
            *self.clinic_doctors,
            *self.clinic_patients,
            *self.appointments,
            *self.mismatches,
        ]

    def by_argument(self) -> dict[str, list[str]]:
        return {
            "clinicId": self.clinics,
            "doctorId": self.doctors,
            "userId": self.doctors,
            "patientId": self.patients,
            "clinicDoctorId": self.clinic_doctors,
            "clinicPatientId": self.clinic_patients,
            "appointmentId": self.appointments,
            "id": self.all(),
        }


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def scalar_values(real: RealIds) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Argument values per scalar type: real ids, near misses, garbage; plausible times."""
    # Any character JSON can carry: NUL often (PostgreSQL refuses it), and now and then
    # a lone surrogate (no driver can encode one).
    utf8 = st.text(st.characters(codec="utf-8"))
    with_nul = st.text(st.sampled_from(["a", NUL]))
    text = st.one_of(utf8, utf8, with_nul, with_nul, st.sampled_from(LONE_SURROGATES))
    ids = st.one_of(
        st.sampled_from(real.all()),
        st.sampled_from(real.all()),
        st.uuids().map(str),
        st.uuids().map(lambda u: u.hex[:-1]),
        text,
    )
    aware = st.datetimes(*TIME_WINDOW, timezones=OFFSETS)
    anywhen = st.datetimes(timezones=OFFSETS)
    times = st.one_of(
        aware.map(datetime.isoformat),
        aware.map(datetime.isoformat),
        aware.map(lambda moment: moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
        st.datetimes(*TIME_WINDOW).map(datetime.isoformat),  # no offset: refused, typed
        anywhen.map(datetime.isoformat),
        st.sampled_from(EDGE_TIMES),
        text,
    )
    cursors = st.lists(
        st.one_of(
            st.sampled_from(real.all()),
            anywhen.map(datetime.isoformat),
            st.datetimes().map(datetime.isoformat),
            st.sampled_from(EDGE_TIMES),
            text,
            st.integers(),
        ),
        max_size=3,
    ).map(encode_cursor)
    strings = st.one_of(
        text,
        text.map(lambda local: f"{local}@example.org"),
        st.sampled_from(["Clinic A", "Doctor 0", "doctor0@example.org", " ", "x" * 201]),
        cursors,
    )
    return {
        "ID": ids.map(nodes.String) | st.integers(-(2**31), 2**31 - 1).map(nodes.Int),
        "DateTime": times.map(nodes.String),
        "Date": st.one_of(st.dates().map(date.isoformat), text).map(nodes.String),
        "String": strings.map(nodes.String),
        "Int": (st.integers(-2, 102) | st.integers(-(2**31), 2**31 - 1)).map(nodes.Int),
    }


def documents(real: RealIds) -> st.SearchStrategy[graphql.DocumentNode]:
    """Valid and invalid queries and mutations, as syntax trees."""
    scalars = scalar_values(real)

    def keep(document: graphql.DocumentNode) -> graphql.DocumentNode:
        return document

    only_writes = mutations(SCHEMA_SDL, fields=WRITES, custom_scalars=scalars, print_ast=keep)
    return st.one_of(
        from_schema(SCHEMA_SDL, custom_scalars=scalars, print_ast=keep),
        only_writes,
        only_writes,
        from_schema(SCHEMA_SDL, custom_scalars=scalars, print_ast=keep, mode=Mode.NEGATIVE),
    )


class Steer(graphql.Visitor):
    """Steer a generated document towards the write paths, with drawn choices.

    The generator knows types, not meaning: an ``ID`` is any id, optional references
    are often left out, and two times are ordered by chance. So, each with a drawn
    probability: an argument or input field named like ``clinicId`` gets the id of a
    real row of that kind; an input naming no doctor (patient) gets one; and an
    ``endsAt`` gets to follow its ``startsAt``.
    """

    def __init__(self, data: st.DataObject, real: RealIds, type_info: graphql.TypeInfo) -> None:
        super().__init__()
        self.data = data
        self.by_name = real.by_argument()
        self.type_info = type_info

    def chance(self, percent: int, label: str) -> bool:
        return self.data.draw(st.integers(0, 99), label=label) < percent

    def real_id(self, name: str) -> graphql.StringValueNode:
        return nodes.String(self.data.draw(st.sampled_from(self.by_name[name]), label=name))

    def pointed(self, name: str, value: graphql.ValueNode) -> graphql.ValueNode | None:
        if name not in self.by_name or isinstance(value, graphql.NullValueNode):
            return None
        return self.real_id(name) if self.chance(70, f"point {name} at a real row") else None

    def leave_argument(self, node: graphql.ArgumentNode, *_: Any) -> graphql.ArgumentNode | None:
        value = self.pointed(node.name.value, node.value)
        return None if value is None else graphql.ArgumentNode(name=node.name, value=value)

    def leave_object_field(
        self, node: graphql.ObjectFieldNode, *_: Any
    ) -> graphql.ObjectFieldNode | None:
        value = self.pointed(node.name.value, node.value)
        return None if value is None else graphql.ObjectFieldNode(name=node.name, value=value)

    def leave_object_value(
        self, node: graphql.ObjectValueNode, *_: Any
    ) -> graphql.ObjectValueNode | None:
        input_type = graphql.get_named_type(self.type_info.get_input_type())
        name = "" if input_type is None else input_type.name
        fields = {item.name.value: item.value for item in node.fields}
        changed = dict(fields)
        for choices in REFERENCES.get(name, ()):
            named = any(choice in fields for choice in choices)
            if not named and self.chance(80, f"name the {choices[0]} in {name}"):
                choice = self.data.draw(st.sampled_from(choices), label="by")
                changed[choice] = self.real_id(choice)
        if name in TIMED_INPUTS and self.chance(50, f"endsAt follows startsAt in {name}"):
            starts_at = _aware_time(fields.get("startsAt"))
            minutes = timedelta(minutes=self.data.draw(st.integers(1, 240), label="minutes"))
            if starts_at is not None and starts_at.replace(tzinfo=None) <= datetime.max - minutes:
                changed["endsAt"] = nodes.String((starts_at + minutes).isoformat())
        if changed == fields:
            return None
        return nodes.Object(
            [
                graphql.ObjectFieldNode(name=graphql.NameNode(value=key), value=value)
                for key, value in changed.items()
            ]
        )


def _aware_time(value: graphql.ValueNode | None) -> datetime | None:
    if not isinstance(value, graphql.StringValueNode):
        return None
    try:
        moment = datetime.fromisoformat(value.value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def steer(
    document: graphql.DocumentNode, data: st.DataObject, real: RealIds
) -> graphql.DocumentNode:
    type_info = graphql.TypeInfo(GRAPHQL_SCHEMA)
    steered = graphql.visit(
        document, graphql.TypeInfoVisitor(type_info, Steer(data, real, type_info))
    )
    assert isinstance(steered, graphql.DocumentNode)
    return steered


@dataclass(repr=False)
class Fuzz:
    """The app, the seeded rows, and what the run has seen."""

    api: Api
    sessions: async_sessionmaker[AsyncSession]
    flags_file: Path
    world: World
    real: RealIds
    documents: st.SearchStrategy[graphql.DocumentNode]
    violations_seen: set[tuple[str, str]] = field(default_factory=set)

    def __repr__(self) -> str:  # hypothesis prints the test's arguments
        return f"Fuzz({self.api.services.settings.database_url.split(':')[0]})"


async def seed_appointments(sessions: async_sessionmaker[AsyncSession], world: World) -> list[str]:
    """Appointments as a migration leaves them: linked, unlinked, new side only, legacy
    side only, in another clinic, cancelled."""
    a, b = world.clinic_a.id, world.clinic_b.id
    person = writes.PersonReference
    seeds = [
        (Stage.DUAL_WRITE, a, person(world.doctor.id), person(world.patient.id)),
        (Stage.LEGACY, a, person(world.other_doctor.id), person(world.other_patient.id)),
        (Stage.COMPLETE, a, person(None, world.clinic_doctor.id), person(world.other_patient.id)),
        (
            Stage.DUAL_WRITE,
            a,
            person(world.doctor_without_membership.id),
            person(world.patient_without_membership.id),
        ),
        (Stage.SHADOW, b, person(world.doctor_of_b.id), person(world.other_patient.id)),
        (Stage.DUAL_WRITE, b, person(world.doctor_of_b.id), person(world.patient.id)),
    ]
    ids: list[uuid.UUID] = []
    async with sessions() as session, session.begin():
        for hour, (stage, clinic, doctor, patient) in enumerate(seeds, start=8):
            starts_at = datetime(2026, 12, 1, hour, tzinfo=UTC)
            appointment = await writes.create_appointment(
                session,
                fixed_stage(stage),
                writes.NewAppointment(
                    clinic_id=clinic,
                    starts_at=starts_at,
                    ends_at=starts_at + timedelta(minutes=30),
                    doctor=doctor,
                    patient=patient,
                    reason="Seeded",
                ),
                PendingEvents(),
            )
            ids.append(appointment.id)
        await writes.cancel_appointment(session, ids[-1])
    return [str(appointment_id) for appointment_id in ids]


async def seed_mismatch(
    sessions: async_sessionmaker[AsyncSession], world: World, appointment_id: str
) -> str:
    """A ledger entry to triage, as a compared read of a legacy-only row leaves one."""
    now = datetime.now(UTC)
    mismatch = MigrationMismatch(
        id=uuid.uuid4(),
        appointment_id=uuid.UUID(appointment_id),
        clinic_id=world.clinic_a.id,
        field=MismatchField.DOCTOR.value,
        legacy_value=world.other_doctor.id,
        new_value=None,
        stage=Stage.SHADOW.value,
        first_seen_at=now,
        last_seen_at=now,
        times_seen=1,
        status=MismatchStatus.OPEN.value,
    )
    async with sessions() as session, session.begin():
        session.add(mismatch)
    return str(mismatch.id)


async def seed_real_ids(sessions: async_sessionmaker[AsyncSession], world: World) -> RealIds:
    """Seed appointments and a ledger entry; the ids generated documents may use."""
    appointments = await seed_appointments(sessions, world)
    w = world
    return RealIds(
        clinics=[str(w.clinic_a.id), str(w.clinic_b.id)],
        doctors=[
            str(user.id)
            for user in (w.doctor, w.other_doctor, w.doctor_of_b, w.doctor_without_membership)
        ]
        + [str(w.staff.id)],
        patients=[str(p.id) for p in (w.patient, w.other_patient, w.patient_without_membership)],
        clinic_doctors=[
            str(m.id) for m in (w.clinic_doctor, w.other_clinic_doctor, w.clinic_doctor_of_b)
        ],
        clinic_patients=[str(m.id) for m in (w.clinic_patient, w.other_clinic_patient)],
        appointments=appointments,
        mismatches=[await seed_mismatch(sessions, world, appointments[1])],
    )


@pytest_asyncio.fixture
async def fuzz(
    api: Api,
    world: World,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> Fuzz:
    real = await seed_real_ids(sessions, world)
    assert await invariant_violations(sessions) == set()
    return Fuzz(api, sessions, flags_file, world, real, documents(real))


def invariant_checks() -> dict[str, Select[uuid.UUID]]:
    """Per invariant, the appointments that break it."""
    doctor, patient = aliased(ClinicDoctor), aliased(ClinicPatient)
    return {
        "ends_at > starts_at": select(Appointment.id).where(
            Appointment.ends_at <= Appointment.starts_at
        ),
        "names its doctor and its patient": select(Appointment.id).where(
            or_(
                and_(Appointment.doctor_id.is_(None), Appointment.clinic_doctor_id.is_(None)),
                and_(Appointment.patient_id.is_(None), Appointment.clinic_patient_id.is_(None)),
            )
        ),
        "doctor_id is the clinic doctor's user": select(Appointment.id)
        .join(doctor, doctor.id == Appointment.clinic_doctor_id)
        .where(Appointment.doctor_id.is_not(None), Appointment.doctor_id != doctor.user_id),
        "patient_id is the clinic patient's patient": select(Appointment.id)
        .join(patient, patient.id == Appointment.clinic_patient_id)
        .where(Appointment.patient_id.is_not(None), Appointment.patient_id != patient.patient_id),
        "the clinic doctor is of the appointment's clinic": select(Appointment.id)
        .join(doctor, doctor.id == Appointment.clinic_doctor_id)
        .where(doctor.clinic_id != Appointment.clinic_id),
        "the clinic patient is of the appointment's clinic": select(Appointment.id)
        .join(patient, patient.id == Appointment.clinic_patient_id)
        .where(patient.clinic_id != Appointment.clinic_id),
    }


async def invariant_violations(
    sessions: async_sessionmaker[AsyncSession],
) -> set[tuple[str, str]]:
    """(invariant, appointment id) for every appointment breaking one; one query each."""
    violations: set[tuple[str, str]] = set()
    async with sessions() as session:
        for invariant, statement in invariant_checks().items():
            rows = (await session.execute(statement)).scalars()
            violations.update((invariant, str(row)) for row in rows)
    return violations


def leaked_markers(response_text: str, document: str) -> list[str]:
    """Exception text in the response that the document did not itself contain."""
    text, sent = response_text.lower(), document.lower()
    return [m for m in LEAK_MARKERS if m.lower() in text and m.lower() not in sent]


def check_answer(
    status: int, text: str, document: str, statuses: frozenset[int] = frozenset({200, 400})
) -> None:
    """A GraphQL answer: no crash, no leaked exception, only expected kinds of error."""
    assert status in statuses, f"HTTP {status}: {text}"
    assert not leaked_markers(text, document), f"leaked {leaked_markers(text, document)}: {text}"
    body = json.loads(text)
    assert isinstance(body, dict), text
    assert "data" in body or "errors" in body, text
    for error in body.get("errors") or []:
        assert isinstance(error.get("message"), str), error
        code = (error.get("extensions") or {}).get("code")
        if code is None and error.get("path") is None:
            continue  # validation or coercion: the document was rejected before execution
        if status != 200 and code in REQUEST_CODES:
            continue  # the request was refused before execution
        # INTERNAL_ERROR is how the service masks an unexpected exception.
        assert code in ERROR_CODES, f"not a typed error: {error}"


def as_json(payload: object) -> bytes:
    """JSON with non-ASCII characters escaped, as httpx cannot encode a lone surrogate."""
    return json.dumps(payload).encode()


async def post_body(api: Api, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return await api.client.post(
        "/graphql", content=body, headers={"Content-Type": "application/json", **(headers or {})}
    )


@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    database=None,  # no example store in the tree: the reproductions below keep what it found
    # One world and one app for the whole run, on purpose: writes accumulate across
    # requests, as they do in production. Each request takes a few tens of milliseconds.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_generated_documents_get_graphql_answers_and_keep_the_invariants(
    fuzz: Fuzz, data: st.DataObject
) -> None:
    world = fuzz.world
    # A mix of stages, drawn per request: every stage's write and read path gets its turn,
    # on rows that earlier requests wrote in other stages.
    stages = {
        world.clinic_a.id: data.draw(STAGES, label="stage of clinic A"),
        world.clinic_b.id: data.draw(STAGES, label="stage of clinic B"),
    }
    set_stages(fuzz.flags_file, stages)
    generated = data.draw(fuzz.documents, label="document")
    document = graphql.print_ast(steer(generated, data, fuzz.real))
    note(f"document:\n{document}")

    response = await post_body(fuzz.api, as_json({"query": document}))

    note(f"HTTP {response.status_code}: {response.text}")
    check_answer(response.status_code, response.text, document)
    violations = await invariant_violations(fuzz.sessions)
    new = violations - fuzz.violations_seen
    fuzz.violations_seen |= violations  # blame only the request that broke them
    assert not new, f"the request broke invariants: {sorted(new)}"


# Arbitrary bodies: whatever arrives, the answer is JSON with a 2xx or 4xx status, and no
# exception leaves the app (httpx's transport would raise it here).

BODY_EXAMPLES = int(os.environ.get("FUZZ_BODY_EXAMPLES", "150"))
BODY_STATUSES = frozenset({200, 400, 413, 415})
RUNNABLE = [
    "{ clinics { edges { node { name } } } }",
    "query($n: Int) { clinics(first: $n) { edges { cursor } } }",
    "query($after: String) { appointments(after: $after) { edges { cursor } } }",
    "mutation($name: String!) { createClinic(name: $name) { __typename } }",
    "query A { __typename } query B { __typename }",
]
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        ANY_TEXT,
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3)
    ),
    max_leaves=8,
)
REQUEST_OBJECTS = st.fixed_dictionaries(
    {"query": st.sampled_from(RUNNABLE) | JSON_VALUES},
    optional={
        "variables": st.dictionaries(st.sampled_from(["n", "after", "name"]), JSON_VALUES)
        | JSON_VALUES,
        "operationName": st.sampled_from(["A", "B"]) | JSON_VALUES,
        "extensions": JSON_VALUES,
    },
)


def _with_long_integer(digits: int) -> bytes:
    return b'{"query": "' + RUNNABLE[1].encode() + b'", "variables": {"n": ' + b"7" * digits + b"}}"


BODIES = st.one_of(
    REQUEST_OBJECTS.map(as_json),
    REQUEST_OBJECTS.map(as_json),
    JSON_VALUES.map(as_json),
    st.binary(max_size=64),
    st.integers(4290, 4400).map(_with_long_integer),
    st.integers(900, 60_000).map(lambda depth: b"[" * depth),
    REQUEST_OBJECTS.map(lambda request: gzip.compress(as_json(request))),
)
BODY_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Content-Encoding": st.sampled_from(["gzip", "br", "identity", "deflate, gzip"]),
        "Content-Type": st.sampled_from(
            ["application/json", "application/json; charset=utf-8", "text/plain"]
        ),
    },
)


@settings(
    max_examples=BODY_EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES, headers=BODY_HEADERS)
async def test_any_body_gets_a_json_answer_and_the_client_is_answered_after(
    api: Api, world: World, body: bytes, headers: dict[str, str]
) -> None:
    note(f"body: {body[:200]!r}")

    response = await post_body(api, body, headers)

    note(f"HTTP {response.status_code}: {response.text[:500]}")
    check_answer(response.status_code, response.text, body.decode(errors="replace"), BODY_STATUSES)
    if response.status_code != 200:
        assert response.json().get("data") is None, response.text
    follow_up = await post_body(api, as_json({"query": RUNNABLE[0]}))
    assert follow_up.status_code == 200, follow_up.text
    assert len(follow_up.json()["data"]["clinics"]["edges"]) >= 2


# Reproductions of the bugs this fuzzer found: each request answered INTERNAL_ERROR (an
# unexpected exception) where a typed error was due. Both were then fixed by checking
# inputs before they reach the database (appointments/checks.py); these stay as
# regression tests, and the generators above keep drawing such values.

RESULT = "__typename ... on UserError { code field message }"
SOME_ID = "7a1e3c52-0f4b-4c3e-9d7a-2b6f8e1d4c90"


def create_appointment(world: World, **changes: str) -> str:
    fields = {
        "clinicId": str(world.clinic_a.id),
        "startsAt": "2026-12-01T09:00:00Z",
        "endsAt": "2026-12-01T09:30:00Z",
        "doctorId": str(world.doctor.id),
        "patientId": str(world.patient.id),
        **changes,
    }
    literal = ", ".join(f"{key}: {json.dumps(value)}" for key, value in fields.items())
    return f"mutation {{ result: createAppointment(input: {{{literal}}}) {{ {RESULT} }} }}"


def page_after(connection: str, cursor: list[str]) -> str:
    return f'{{ {connection}(after: "{encode_cursor(cursor)}") {{ edges {{ cursor }} }} }}'


# On both databases: UtcDateTime.process_bind_param (appointments/models.py) converts
# every aware time with value.astimezone(UTC), which raises OverflowError ("date value
# out of range") for a time within its UTC offset of datetime.min or datetime.max.
# Nothing caught it: createAppointment, rescheduleAppointment, the appointments filter
# (startsFrom, startsBefore) and a crafted `after` cursor all crashed.
TIME_OUT_OF_RANGE = [
    pytest.param(
        lambda w: create_appointment(
            w, startsAt="0001-01-01T00:10:00+01:00", endsAt="0001-01-01T00:50:00+01:00"
        ),
        id="createAppointment-before-year-1-in-utc",
    ),
    pytest.param(
        lambda w: create_appointment(
            w, startsAt="9999-12-31T23:10:00-01:00", endsAt="9999-12-31T23:50:00-01:00"
        ),
        id="createAppointment-after-year-9999-in-utc",
    ),
    pytest.param(
        lambda _w: (
            '{ appointments(filter: {startsFrom: "0001-01-01T00:00:00+01:00"}) '
            "{ edges { cursor } } }"
        ),
        id="appointments-filter-startsFrom",
    ),
    pytest.param(
        lambda _w: page_after("appointments", ["9999-12-31T23:00:00-05:00", SOME_ID]),
        id="appointments-after-cursor",
    ),
]

# On PostgreSQL (SQLite stored the character): psycopg refuses U+0000 in a text
# parameter ("PostgreSQL text fields cannot contain NUL (0x00) bytes", raised as
# sqlalchemy.exc.DataError). The write path checked length and blankness, not this, and
# turns only IntegrityError into a typed error: every name, email, reason, comment and
# crafted cursor with a NUL crashed.
NUL_IN_TEXT = [
    pytest.param(
        lambda _w: (
            f"mutation {{ result: createClinic(name: {json.dumps('a' + NUL + 'b')}) "
            f"{{ {RESULT} }} }}"
        ),
        id="createClinic-name",
    ),
    pytest.param(
        lambda w: create_appointment(w, reason="a" + NUL + "b"),
        id="createAppointment-reason",
    ),
    pytest.param(
        lambda _w: page_after("clinics", ["a" + NUL, SOME_ID]),
        id="clinics-after-cursor",
    ),
]


async def check_typed_answer(api: Api, document: str) -> None:
    response = await post_body(api, as_json({"query": document}))
    check_answer(response.status_code, response.text, document)
    result = (response.json().get("data") or {}).get("result", "no mutation")
    assert result is not None, response.text


@pytest.mark.parametrize("document", TIME_OUT_OF_RANGE)
async def test_a_time_outside_the_range_of_utc_gets_a_typed_answer(
    api: Api, world: World, flags_file: Path, document: Callable[[World], str]
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})

    await check_typed_answer(api, document(world))


@pytest.mark.parametrize("document", NUL_IN_TEXT)
async def test_text_with_a_nul_character_gets_a_typed_answer(
    api: Api, world: World, flags_file: Path, document: Callable[[World], str]
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})

    await check_typed_answer(api, document(world))
