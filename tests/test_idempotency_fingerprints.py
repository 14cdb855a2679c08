"""Idempotency fingerprints keep the canonical form keys are already stored with.

A key stored by an earlier version of the service (during a rolling deploy, or
within the retention) must be replayed, not refused as reused, when the same
input comes again. The fingerprint is the SHA-256 of a canonical JSON document:
the operation (the response key), the mutation's name, each GraphQL argument by
its GraphQL name, and input objects by their Python field names, with ids and
moments as text. Each mutation's document is written out here as it is stored.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import directory, snapshots
from appointments.models import (
    Clinic,
    IdempotencyKey,
    IdempotencyState,
    MigrationMismatch,
    utcnow,
)
from appointments.stages import Stage
from server.auth import DEMO_ADMIN
from tests.conftest import Api, World, consistent_links, insert_appointment, set_stages

STARTS, ENDS = "2026-12-20T09:00:00Z", "2026-12-20T09:30:00Z"
STORED_STARTS, STORED_ENDS = "2026-12-20T09:00:00+00:00", "2026-12-20T09:30:00+00:00"


@dataclass(frozen=True, slots=True)
class Ids:
    world: World
    appointment: str
    mismatch: str

    def of(self, name: str) -> str:
        return str(getattr(self.world, name).id)


@dataclass(frozen=True, slots=True)
class Case:
    """A mutation sent under a key, and the arguments its stored fingerprint is made of."""

    document: str
    variables: Callable[[Ids], dict[str, Any]]
    stored_arguments: Callable[[Ids], dict[str, Any]]
    operation: str


def case(
    field: str,
    signature: str,
    call: str,
    variables: Callable[[Ids], dict[str, Any]],
    stored_arguments: Callable[[Ids], dict[str, Any]],
    alias: str | None = None,
) -> Case:
    response_key = f"{alias}: {field}" if alias else field
    document = (
        f"mutation{signature} {{ {response_key}{call} {{ __typename"
        " ... on UserError { code message } } }"
    )
    return Case(
        document,
        variables,
        lambda ids: {"mutation": field, **stored_arguments(ids)},
        alias or field,
    )


CASES = {
    "createAppointment": case(
        "createAppointment",
        "($input: CreateAppointmentInput!)",
        "(input: $input)",
        lambda ids: {
            "input": {
                "clinicId": ids.of("clinic_a"),
                "startsAt": STARTS,
                "endsAt": ENDS,
                "doctorId": ids.of("doctor"),
                "patientId": ids.of("patient"),
            }
        },
        lambda ids: {
            "input": {
                "clinic_id": ids.of("clinic_a"),
                "starts_at": STORED_STARTS,
                "ends_at": STORED_ENDS,
                "reason": None,
                "doctor_id": ids.of("doctor"),
                "patient_id": ids.of("patient"),
                "clinic_doctor_id": None,
                "clinic_patient_id": None,
            }
        },
        alias="booked",
    ),
    "rescheduleAppointment": case(
        "rescheduleAppointment",
        "($input: RescheduleAppointmentInput!)",
        "(input: $input)",
        lambda ids: {
            "input": {"appointmentId": ids.appointment, "startsAt": STARTS, "endsAt": ENDS}
        },
        lambda ids: {
            "input": {
                "appointment_id": ids.appointment,
                "starts_at": STORED_STARTS,
                "ends_at": STORED_ENDS,
            }
        },
    ),
    "reassignDoctor": case(
        "reassignDoctor",
        "($input: ReassignDoctorInput!)",
        "(input: $input)",
        lambda ids: {
            "input": {
                "appointmentId": ids.appointment,
                "clinicDoctorId": ids.of("other_clinic_doctor"),
            }
        },
        lambda ids: {
            "input": {
                "appointment_id": ids.appointment,
                "doctor_id": None,
                "clinic_doctor_id": ids.of("other_clinic_doctor"),
            }
        },
    ),
    "reassignPatient": case(
        "reassignPatient",
        "($input: ReassignPatientInput!)",
        "(input: $input)",
        lambda ids: {
            "input": {"appointmentId": ids.appointment, "patientId": ids.of("other_patient")}
        },
        lambda ids: {
            "input": {
                "appointment_id": ids.appointment,
                "patient_id": ids.of("other_patient"),
                "clinic_patient_id": None,
            }
        },
    ),
    "cancelAppointment": case(
        "cancelAppointment",
        "($id: ID!)",
        "(appointmentId: $id)",
        lambda ids: {"id": ids.appointment},
        lambda ids: {"appointmentId": ids.appointment},
    ),
    "createClinic": case(
        "createClinic",
        "",
        '(name: "Clinic C")',
        lambda _ids: {},
        lambda _ids: {"name": "Clinic C"},
    ),
    "createUser": case(
        "createUser",
        "($input: CreateUserInput!)",
        "(input: $input)",
        lambda _ids: {"input": {"name": "New", "email": "new@example.org", "role": "DOCTOR"}},
        lambda _ids: {"input": {"name": "New", "email": "new@example.org", "role": "doctor"}},
    ),
    "setUserActive": case(
        "setUserActive",
        "($id: ID!)",
        "(userId: $id, active: false)",
        lambda ids: {"id": ids.of("staff")},
        lambda ids: {"userId": ids.of("staff"), "active": False},
    ),
    "createPatient": case(
        "createPatient",
        "($input: CreatePatientInput!)",
        "(input: $input)",
        lambda ids: {
            "input": {
                "fullName": "New Patient",
                "dateOfBirth": "1990-05-01",
                "clinicId": ids.of("clinic_a"),
            }
        },
        lambda ids: {
            "input": {
                "full_name": "New Patient",
                "date_of_birth": "1990-05-01",
                "clinic_id": ids.of("clinic_a"),
            }
        },
    ),
    "addClinicDoctor": case(
        "addClinicDoctor",
        "($clinic: ID!, $user: ID!)",
        "(clinicId: $clinic, userId: $user)",
        lambda ids: {"clinic": ids.of("clinic_b"), "user": ids.of("doctor_without_membership")},
        lambda ids: {
            "clinicId": ids.of("clinic_b"),
            "userId": ids.of("doctor_without_membership"),
        },
    ),
    "setClinicDoctorActive": case(
        "setClinicDoctorActive",
        "($id: ID!)",
        "(clinicDoctorId: $id, active: false)",
        lambda ids: {"id": ids.of("other_clinic_doctor")},
        lambda ids: {"clinicDoctorId": ids.of("other_clinic_doctor"), "active": False},
    ),
    "addClinicPatient": case(
        "addClinicPatient",
        "($clinic: ID!, $patient: ID!)",
        "(clinicId: $clinic, patientId: $patient)",
        lambda ids: {
            "clinic": ids.of("clinic_a"),
            "patient": ids.of("patient_without_membership"),
        },
        lambda ids: {
            "clinicId": ids.of("clinic_a"),
            "patientId": ids.of("patient_without_membership"),
        },
    ),
    "addClinicStaff": case(
        "addClinicStaff",
        "($clinic: ID!, $user: ID!)",
        "(clinicId: $clinic, userId: $user)",
        lambda ids: {"clinic": ids.of("clinic_a"), "user": ids.of("staff")},
        lambda ids: {"clinicId": ids.of("clinic_a"), "userId": ids.of("staff")},
    ),
    "setMismatchStatus": case(
        "setMismatchStatus",
        "($input: SetMismatchStatusInput!)",
        "(input: $input)",
        lambda ids: {"input": {"id": ids.mismatch, "status": "IGNORED", "comment": "known"}},
        lambda ids: {"input": {"id": ids.mismatch, "status": "ignored", "comment": "known"}},
    ),
    "relinkAppointment": case(
        "relinkAppointment",
        "($id: ID!)",
        "(appointmentId: $id)",
        lambda ids: {"id": ids.appointment},
        lambda ids: {"appointmentId": ids.appointment, "comment": None},
    ),
}


def fingerprint(operation: str, arguments: dict[str, Any]) -> str:
    """The canonical document of a key's input, hashed (``IdempotentRequest.build``)."""
    document = json.dumps(
        {"operation": operation, "arguments": arguments}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(document.encode()).hexdigest()


async def prepared(sessions: async_sessionmaker[AsyncSession], world: World) -> Ids:
    async with sessions() as session, session.begin():
        appointment = await insert_appointment(session, world, 9, **consistent_links(world))
        now = utcnow()
        mismatch = MigrationMismatch(
            appointment_id=appointment,
            clinic_id=world.clinic_a.id,
            field="doctor",
            legacy_value=world.doctor.id,
            new_value=world.other_doctor.id,
            stage=Stage.DUAL_WRITE.value,
            first_seen_at=now,
            last_seen_at=now,
            times_seen=1,
        )
        session.add(mismatch)
        await session.flush()
        return Ids(world, str(appointment), str(mismatch.id))


async def send(api: Api, chosen: Case, ids: Ids, key: str) -> tuple[dict[str, Any], bool]:
    response = await api.client.post(
        "/graphql",
        json={"query": chosen.document, "variables": chosen.variables(ids)},
        headers={"Idempotency-Key": key},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"][chosen.operation]
    return result, response.headers.get("Idempotent-Replayed") == "true"


@pytest.fixture(autouse=True)
def dual_write(flags_file: Any, world: World) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})


@pytest.mark.parametrize("name", sorted(CASES))
async def test_each_mutation_stores_the_fingerprint_of_its_canonical_input(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession], name: str
) -> None:
    chosen = CASES[name]
    ids = await prepared(sessions, world)

    result, replayed = await send(api, chosen, ids, f"key-{name}")

    assert "code" not in result, result
    assert not replayed
    async with sessions() as session:
        stored = await session.scalar(
            select(IdempotencyKey.fingerprint).where(
                IdempotencyKey.key == f"key-{name}", IdempotencyKey.operation == chosen.operation
            )
        )
    assert stored == fingerprint(chosen.operation, chosen.stored_arguments(ids))


async def test_a_key_stored_by_the_previous_version_is_replayed_not_refused(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    chosen = CASES["createClinic"]
    ids = await prepared(sessions, world)
    async with sessions() as session, session.begin():
        earlier = await directory.create_clinic(session, "Clinic C")
        now = utcnow() - timedelta(minutes=5)
        session.add(
            IdempotencyKey(
                actor=DEMO_ADMIN.user_id,
                key="deployed-before",
                operation=chosen.operation,
                fingerprint=fingerprint(chosen.operation, chosen.stored_arguments(ids)),
                state=IdempotencyState.DONE.value,
                claim=uuid.uuid4(),
                claimed_at=now,
                created_at=now,
                completed_at=now,
                result=snapshots.snapshot(earlier),
            )
        )

    result, replayed = await send(api, chosen, ids, "deployed-before")

    assert replayed
    assert result == {"__typename": "ClinicSuccess"}
    async with sessions() as session:
        clinics = await session.scalar(
            select(func.count()).select_from(Clinic).where(Clinic.name == "Clinic C")
        )
    assert clinics == 1, "the replay wrote nothing"
