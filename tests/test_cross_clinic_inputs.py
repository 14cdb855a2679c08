"""Generated from the schema: every id a query or mutation takes, from another clinic, answers
exactly like an unknown id and changes nothing.

Each argument or input field of type ``ID`` in the schema is found by walking the
root types, so a new field is covered without editing this test. The other
arguments are filled with valid values of clinic A; the id under test gets the
id of clinic B's object of that kind, then an unknown id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLUnionType,
    get_named_type,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import ClinicPatient, MigrationMismatch, MismatchField
from appointments.stages import Stage
from schema.schema import schema
from tests.conftest import Caller, Clinics, insert_appointment, set_stages, table_snapshot

GRAPHQL_SCHEMA = schema._schema
ID_KINDS_BY_NAME = {
    "clinicId": "clinic",
    "doctorId": "user",
    "userId": "user",
    "patientId": "patient",
    "clinicDoctorId": "clinic doctor",
    "clinicPatientId": "clinic patient",
    "appointmentId": "appointment",
    "mismatchId": "mismatch",
}
# An argument or input field named ``id`` names an object of the root field's result type.
ID_KINDS_BY_TYPE = {"Appointment": "appointment", "Clinic": "clinic", "Mismatch": "mismatch"}
MEMBERSHIP_KINDS = {"clinic doctor", "clinic patient"}


@dataclass(frozen=True)
class IdPosition:
    """Where an id goes: a root field, its argument, and the input field path inside it."""

    operation: str
    field: str
    argument: str
    path: tuple[str, ...]
    kind: str

    def __str__(self) -> str:
        return ".".join((self.operation, self.field, self.argument, *self.path))


def id_positions() -> list[IdPosition]:
    positions: list[IdPosition] = []
    for operation, root in (
        ("query", GRAPHQL_SCHEMA.query_type),
        ("mutation", GRAPHQL_SCHEMA.mutation_type),
    ):
        assert root is not None
        for name, field in root.fields.items():
            for argument_name, argument in field.args.items():
                for path, leaf_name in _id_paths(argument.type, ()):
                    key = leaf_name if path else argument_name
                    positions.append(
                        IdPosition(operation, name, argument_name, path, _kind_of(key, field, name))
                    )
    return positions


def _id_paths(type_: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
    named = get_named_type(type_)
    if isinstance(named, GraphQLScalarType) and named.name == "ID":
        return [(path, path[-1] if path else "")]
    if isinstance(named, GraphQLInputObjectType):
        return [
            found
            for name, field in named.fields.items()
            for found in _id_paths(field.type, (*path, name))
        ]
    return []


def _kind_of(name: str, field: GraphQLField, field_name: str) -> str:
    if name == "id":
        result = get_named_type(field.type).name
        kind = ID_KINDS_BY_TYPE.get(result.removesuffix("Result").removesuffix("Connection"))
    else:
        kind = ID_KINDS_BY_NAME.get(name)
    assert kind is not None, f"{field_name}: teach this test which object an id named {name} is"
    return kind


POSITIONS = id_positions()


@dataclass
class Ids:
    of_a: dict[str, str]
    of_b: dict[str, str]


async def ids_of_both_clinics(clinics: Clinics, sessions: async_sessionmaker[AsyncSession]) -> Ids:
    world = clinics.world
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        registration_of_b = (
            await session.execute(
                select(ClinicPatient.id).where(ClinicPatient.patient_id == clinics.patient_of_b)
            )
        ).scalar_one()
        mismatches = {}
        for clinic, appointment in ((world.clinic_a, clinics.in_a), (world.clinic_b, clinics.in_b)):
            row = MigrationMismatch(
                id=uuid.uuid4(),
                appointment_id=appointment,
                clinic_id=clinic.id,
                field=MismatchField.DOCTOR.value,
                legacy_value=uuid.uuid4(),
                new_value=None,
                stage=Stage.SHADOW.value,
                first_seen_at=now,
                last_seen_at=now,
                times_seen=1,
                status="open",
            )
            session.add(row)
            mismatches[clinic.id] = row.id
    return Ids(
        of_a={
            "clinic": str(world.clinic_a.id),
            "user": str(world.doctor.id),
            "patient": str(world.patient.id),
            "clinic doctor": str(world.clinic_doctor.id),
            "clinic patient": str(world.clinic_patient.id),
            "appointment": str(clinics.in_a),
            "mismatch": str(mismatches[world.clinic_a.id]),
        },
        of_b={
            "clinic": str(world.clinic_b.id),
            "user": str(world.doctor_of_b.id),
            "patient": str(clinics.patient_of_b),
            "clinic doctor": str(world.clinic_doctor_of_b.id),
            "clinic patient": str(registration_of_b),
            "appointment": str(clinics.in_b),
            "mismatch": str(mismatches[world.clinic_b.id]),
        },
    )


def request_for(
    position: IdPosition, ids: Ids, value: str, memberships: bool
) -> tuple[str, dict[str, Any]]:
    """The operation calling the position's root field, and its variables with ``value``.

    ``memberships``: the other inputs name memberships too (in stages that accept them).
    """
    root = (
        GRAPHQL_SCHEMA.query_type if position.operation == "query" else GRAPHQL_SCHEMA.mutation_type
    )
    assert root is not None
    field = root.fields[position.field]
    variables = {
        name: _valid(argument, name, ids, memberships) for name, argument in field.args.items()
    }
    if position.path:
        target = variables[position.argument]
        for step in position.path[:-1]:
            target = target.setdefault(step, {})
        target[position.path[-1]] = value
    else:
        variables[position.argument] = value
    variables = {name: value for name, value in variables.items() if value is not None}
    declared = ", ".join(f"${name}: {field.args[name].type}" for name in variables)
    passed = ", ".join(f"{name}: ${name}" for name in variables)
    call = f"{position.field}({passed})" if passed else position.field
    header = f"{position.operation}({declared})" if declared else position.operation
    return f"{header} {{ {call} {_selection(field.type)} }}", variables


def _valid(
    target: GraphQLArgument | GraphQLInputField, name: str, ids: Ids, memberships: bool
) -> Any:
    """A valid value of clinic A for an argument or input field (None: leave it out)."""
    type_ = target.type
    required = isinstance(type_, GraphQLNonNull)
    named = get_named_type(type_)
    if isinstance(named, GraphQLInputObjectType):
        return {
            field_name: value
            for field_name, field in named.fields.items()
            if (value := _valid(field, field_name, ids, memberships)) is not None
        }
    if isinstance(named, GraphQLScalarType) and named.name == "ID":
        kind = ID_KINDS_BY_NAME.get(name)
        if kind is None or (kind in MEMBERSHIP_KINDS and not memberships):
            return None
        return ids.of_a[kind]
    if not required:
        return None
    return _scalar(named, name)


def _scalar(named: GraphQLNamedType, name: str) -> Any:
    if isinstance(named, GraphQLEnumType):
        return next(iter(named.values))
    values: dict[str, Any] = {
        "String": "Cross Clinic",
        "Boolean": False,
        "Int": 10,
        "Date": "1990-01-01",
        "DateTime": "2027-03-01T09:30:00Z" if name.startswith("ends") else "2027-03-01T09:00:00Z",
    }
    return values[named.name]


def _selection(type_: Any) -> str:
    named = get_named_type(type_)
    if isinstance(named, GraphQLUnionType):
        errors = "... on UserError { code message field }"
        return f"{{ __typename {errors} }}"
    if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
        if "edges" in named.fields:
            return "{ edges { node { __typename } } pageInfo { hasNextPage } }"
        return "{ __typename }"
    return ""


def _without(body: Any, value: str) -> Any:
    if isinstance(body, dict):
        return {key: _without(item, value) for key, item in body.items()}
    if isinstance(body, list):
        return [_without(item, value) for item in body]
    if isinstance(body, str):
        return body.replace(value, "<id>")
    return body


@pytest.mark.parametrize("stage", [Stage.DUAL_WRITE, Stage.LIVE])
@pytest.mark.parametrize("role", ["staff", "doctor"])
async def test_every_id_input_of_another_clinic_answers_like_an_unknown_id(
    clinics: Clinics,
    role: str,
    stage: Stage,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world = clinics.world
    set_stages(flags_file, {world.clinic_a.id: stage, world.clinic_b.id: stage})
    ids = await ids_of_both_clinics(clinics, sessions)
    caller: Caller = clinics.callers[role]
    assert len(POSITIONS) >= 20, [str(position) for position in POSITIONS]
    before = await table_snapshot(sessions)

    differing: dict[str, tuple[Any, Any]] = {}
    for position in POSITIONS:
        of_b = ids.of_b[position.kind]
        unknown = str(uuid.uuid4())
        answers = []
        for value in (of_b, unknown):
            query, variables = request_for(position, ids, value, stage is Stage.LIVE)
            answers.append(_without(await caller.post(query, **variables), value))
        if answers[0] != answers[1]:
            differing[str(position)] = (answers[0], answers[1])

    assert differing == {}
    assert await table_snapshot(sessions) == before


FILTER_POSITIONS = [
    position
    for position in POSITIONS
    if position.operation == "query" and position.argument == "filter" and position.path
    if position.kind in {"user", "patient", *MEMBERSHIP_KINDS}
]


@pytest.mark.parametrize("stage", [Stage.DUAL_WRITE, Stage.LIVE])
@pytest.mark.parametrize("role", ["staff", "doctor"])
async def test_a_filter_by_a_hidden_link_into_another_clinic_matches_like_an_unknown_id(
    clinics: Clinics,
    role: str,
    stage: Stage,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """An appointment of clinic A whose stored new links name clinic B's memberships (the
    data error the ledger records as DOCTOR_CLINIC/PATIENT_CLINIC): reads serve those sides
    as unlinked to viewers who cannot see B, so a filter by B's person or membership must
    not find it either."""
    world = clinics.world
    set_stages(flags_file, {world.clinic_a.id: stage, world.clinic_b.id: stage})
    ids = await ids_of_both_clinics(clinics, sessions)
    async with sessions() as session, session.begin():
        linked_into_b = await insert_appointment(
            session,
            world,
            13,
            doctor_id=world.doctor.id,
            clinic_doctor_id=world.clinic_doctor_of_b.id,
            patient_id=world.patient.id,
            clinic_patient_id=uuid.UUID(ids.of_b["clinic patient"]),
        )
    caller: Caller = clinics.callers[role]
    assert {position.path[-1] for position in FILTER_POSITIONS} >= {
        "doctorId",
        "patientId",
        "clinicDoctorId",
        "clinicPatientId",
    }

    differing: dict[str, tuple[Any, Any]] = {}
    for position in FILTER_POSITIONS:
        of_b = ids.of_b[position.kind]
        answers = []
        for value in (of_b, str(uuid.uuid4())):
            query, variables = request_for(position, ids, value, stage is Stage.LIVE)
            variables[position.argument] = {position.path[-1]: value}
            answers.append(_without(await caller.post(query, **variables), value))
        if answers[0] != answers[1]:
            differing[str(position)] = (answers[0], answers[1])

    assert differing == {}
    admin = await clinics.callers["admin"].data(
        "query($id: ID!) { appointments(filter: {clinicDoctorId: $id}) { edges { node { id } } } }",
        id=str(world.clinic_doctor_of_b.id),
    )
    assert str(linked_into_b) in {edge["node"]["id"] for edge in admin["appointments"]["edges"]}
