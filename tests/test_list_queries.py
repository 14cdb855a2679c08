"""List queries: the appointments connection's filters and pages, and the other lists."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import writes
from appointments.events import PendingEvents
from appointments.models import Clinic, ClinicDoctor, ClinicPatient, Patient, User
from appointments.stages import Stage, fixed_stage
from tests.conftest import Api, World, stored_appointment

APPOINTMENTS = """
query Appointments($filter: AppointmentFilterInput, $first: Int, $after: String) {
  appointments(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id startsAt status } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

CLINICS = """
query Clinics($first: Int, $after: String) {
  clinics(first: $first, after: $after) {
    edges { node { id name } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

USERS = """
query Users($role: UserRole) {
  users(role: $role) { edges { node { id name role } } pageInfo { hasNextPage } }
}
"""

PATIENTS = """
query Patients {
  patients { edges { node { id fullName } } pageInfo { hasNextPage } }
}
"""

CLINIC_MEMBERS = """
query Members($clinicId: ID!) {
  clinicDoctors(clinicId: $clinicId) { edges { node { id user { id } clinic { id } } } }
  clinicPatients(clinicId: $clinicId) { edges { node { id patient { id } clinic { id } } } }
}
"""

CLINIC_DOCTORS_PAGE = """
query ClinicDoctorsPage($clinicId: ID!, $first: Int, $after: String) {
  clinicDoctors(clinicId: $clinicId, first: $first, after: $after) {
    edges { node { id } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

FIRST_DAY = datetime(2026, 3, 2, tzinfo=UTC)
BOUNDARY = FIRST_DAY + timedelta(days=1, hours=9)


@dataclass(frozen=True)
class Booked:
    """One appointment as it was booked: who and when, whatever columns its stage wrote."""

    id: str
    clinic_id: uuid.UUID
    doctor_id: uuid.UUID
    patient_id: uuid.UUID
    clinic_doctor_id: uuid.UUID | None
    clinic_patient_id: uuid.UUID | None
    starts_at: datetime
    status: str
    stage: Stage


@dataclass(frozen=True)
class Plan:
    clinic: Clinic
    doctor: tuple[User, ClinicDoctor | None]
    patient: tuple[Patient, ClinicPatient | None]
    starts_at: datetime
    cancel: bool = False
    stage: Stage = Stage.DUAL_WRITE


def plans(world: World) -> list[Plan]:
    doctors_of_a = [
        (world.doctor, world.clinic_doctor),
        (world.other_doctor, world.other_clinic_doctor),
    ]
    patients_of_a = [
        (world.patient, world.clinic_patient),
        (world.other_patient, world.other_clinic_patient),
    ]
    result = []
    for n in range(30):
        in_b = n % 3 == 0
        patient = patients_of_a[n % 4 // 2]
        result.append(
            Plan(
                clinic=world.clinic_b if in_b else world.clinic_a,
                doctor=(world.doctor_of_b, world.clinic_doctor_of_b)
                if in_b
                else doctors_of_a[n % 2],
                patient=(patient[0], None) if in_b else patient,
                starts_at=FIRST_DAY + timedelta(days=n % 5, hours=9 + n // 10),
                cancel=n % 4 == 3,
            )
        )
    for stage in (Stage.COMPLETE, Stage.LEGACY):
        result.append(
            Plan(
                clinic=world.clinic_a,
                doctor=(world.doctor, world.clinic_doctor),
                patient=(world.patient, world.clinic_patient),
                starts_at=BOUNDARY,
                stage=stage,
            )
        )
    return result


@pytest.fixture
async def booked(sessions: async_sessionmaker[AsyncSession], world: World) -> list[Booked]:
    result = []
    async with sessions() as session, session.begin():
        for plan in plans(world):
            appointment = await writes.create_appointment(
                session,
                fixed_stage(plan.stage),
                writes.NewAppointment(
                    clinic_id=plan.clinic.id,
                    starts_at=plan.starts_at,
                    ends_at=plan.starts_at + timedelta(minutes=30),
                    doctor=writes.PersonReference(person_id=plan.doctor[0].id),
                    patient=writes.PersonReference(person_id=plan.patient[0].id),
                ),
                PendingEvents(),
            )
            if plan.cancel:
                await writes.cancel_appointment(session, appointment.id)
            result.append(
                Booked(
                    id=str(appointment.id),
                    clinic_id=plan.clinic.id,
                    doctor_id=plan.doctor[0].id,
                    patient_id=plan.patient[0].id,
                    clinic_doctor_id=plan.doctor[1].id if plan.doctor[1] else None,
                    clinic_patient_id=plan.patient[1].id if plan.patient[1] else None,
                    starts_at=plan.starts_at,
                    status="CANCELLED" if plan.cancel else "SCHEDULED",
                    stage=plan.stage,
                )
            )
    return result


def in_order(rows: list[Booked]) -> list[str]:
    return [row.id for row in sorted(rows, key=lambda row: (row.starts_at, row.id))]


async def listed(api: Api, where: dict[str, Any]) -> list[str]:
    data = await api.data(APPOINTMENTS, {"filter": where, "first": 100})
    assert data["appointments"]["pageInfo"]["hasNextPage"] is False
    return [edge["node"]["id"] for edge in data["appointments"]["edges"]]


FilterCase = Callable[[World], tuple[dict[str, Any], Callable[[Booked], bool]]]

FILTERS: dict[str, FilterCase] = {
    "clinicId A": lambda w: (
        {"clinicId": str(w.clinic_a.id)},
        lambda b: b.clinic_id == w.clinic_a.id,
    ),
    "clinicId B": lambda w: (
        {"clinicId": str(w.clinic_b.id)},
        lambda b: b.clinic_id == w.clinic_b.id,
    ),
    "doctorId": lambda w: ({"doctorId": str(w.doctor.id)}, lambda b: b.doctor_id == w.doctor.id),
    "doctorId of clinic B": lambda w: (
        {"doctorId": str(w.doctor_of_b.id)},
        lambda b: b.doctor_id == w.doctor_of_b.id,
    ),
    "patientId in both clinics": lambda w: (
        {"patientId": str(w.other_patient.id)},
        lambda b: b.patient_id == w.other_patient.id,
    ),
    "clinicDoctorId": lambda w: (
        {"clinicDoctorId": str(w.other_clinic_doctor.id)},
        lambda b: b.clinic_doctor_id == w.other_clinic_doctor.id,
    ),
    "clinicPatientId excludes the patient in another clinic": lambda w: (
        {"clinicPatientId": str(w.clinic_patient.id)},
        lambda b: b.clinic_patient_id == w.clinic_patient.id,
    ),
    "startsFrom inclusive": lambda w: (
        {"startsFrom": BOUNDARY.isoformat()},
        lambda b: b.starts_at >= BOUNDARY,
    ),
    "startsBefore exclusive": lambda w: (
        {"startsBefore": BOUNDARY.isoformat()},
        lambda b: b.starts_at < BOUNDARY,
    ),
    "window with a UTC offset": lambda w: (
        {
            "startsFrom": BOUNDARY.astimezone(offset(2)).isoformat(),
            "startsBefore": (BOUNDARY + timedelta(days=2)).astimezone(offset(-5)).isoformat(),
        },
        lambda b: BOUNDARY <= b.starts_at < BOUNDARY + timedelta(days=2),
    ),
    "status CANCELLED": lambda w: ({"status": "CANCELLED"}, lambda b: b.status == "CANCELLED"),
    "status SCHEDULED": lambda w: ({"status": "SCHEDULED"}, lambda b: b.status == "SCHEDULED"),
    "combined": lambda w: (
        {"clinicId": str(w.clinic_a.id), "doctorId": str(w.other_doctor.id), "status": "SCHEDULED"},
        lambda b: (
            b.clinic_id == w.clinic_a.id
            and b.doctor_id == w.other_doctor.id
            and b.status == "SCHEDULED"
        ),
    ),
}


def offset(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))


@pytest.mark.parametrize("case", FILTERS.values(), ids=FILTERS.keys())
async def test_appointments_filter_returns_exactly_the_matching_rows_in_order(
    api: Api, world: World, booked: list[Booked], case: FilterCase
) -> None:
    where, matches = case(world)
    expected = [row for row in booked if matches(row)]
    assert 0 < len(expected) < len(booked)

    ids = await listed(api, where)

    assert ids == in_order(expected)


async def test_time_bounds_include_startsfrom_and_exclude_startsbefore(
    api: Api, booked: list[Booked]
) -> None:
    at_boundary = {row.id for row in booked if row.starts_at == BOUNDARY}
    assert len(at_boundary) >= 2

    from_boundary = await listed(api, {"startsFrom": BOUNDARY.isoformat()})
    before_boundary = await listed(api, {"startsBefore": BOUNDARY.isoformat()})

    assert at_boundary <= set(from_boundary)
    assert not at_boundary & set(before_boundary)
    assert len(from_boundary) + len(before_boundary) == len(booked)


async def test_person_filters_match_rows_written_in_any_stage(
    api: Api, world: World, booked: list[Booked], sessions: async_sessionmaker[AsyncSession]
) -> None:
    complete = next(row for row in booked if row.stage is Stage.COMPLETE)
    legacy = next(row for row in booked if row.stage is Stage.LEGACY)
    stored_complete = await stored_appointment(sessions, complete.id)
    stored_legacy = await stored_appointment(sessions, legacy.id)
    assert (stored_complete.doctor_id, stored_complete.patient_id) == (None, None)
    assert (stored_legacy.clinic_doctor_id, stored_legacy.clinic_patient_id) == (None, None)

    by_doctor = await listed(api, {"doctorId": str(world.doctor.id)})
    by_patient = await listed(api, {"patientId": str(world.patient.id)})
    by_clinic_doctor = await listed(api, {"clinicDoctorId": str(world.clinic_doctor.id)})
    by_clinic_patient = await listed(api, {"clinicPatientId": str(world.clinic_patient.id)})

    assert {complete.id, legacy.id} <= set(by_doctor)
    assert {complete.id, legacy.id} <= set(by_patient)
    assert {complete.id, legacy.id} <= set(by_clinic_doctor)
    assert {complete.id, legacy.id} <= set(by_clinic_patient)


async def test_pages_of_seven_walk_every_row_once_in_start_then_id_order(
    api: Api, booked: list[Booked]
) -> None:
    pages: list[list[str]] = []
    more: list[bool] = []
    after: str | None = None

    while len(pages) <= len(booked):
        data = await api.data(APPOINTMENTS, {"first": 7, "after": after})
        connection = data["appointments"]
        edges = connection["edges"]
        pages.append([edge["node"]["id"] for edge in edges])
        more.append(connection["pageInfo"]["hasNextPage"])
        if edges:
            assert connection["pageInfo"]["endCursor"] == edges[-1]["cursor"]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]

    assert [row_id for page in pages for row_id in page] == in_order(booked)
    assert [len(page) for page in pages] == [7, 7, 7, 7, 4]
    assert more == [True, True, True, True, False]


def cursor_of(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


BAD_ARGUMENTS = {
    "first 101": {"first": 101},
    "first -1": {"first": -1},
    "after garbage": {"after": "garbage"},
    "after not JSON": {"after": base64.urlsafe_b64encode(b"not json").decode()},
    "after of the wrong shape": {"after": cursor_of(["2026-03-02T09:00:00+00:00"])},
    "after with a bad date": {"after": cursor_of(["yesterday", str(uuid.uuid4())])},
    "after with a bad id": {"after": cursor_of(["2026-03-02T09:00:00+00:00", "x"])},
    "after with a naive date": {"after": cursor_of(["2026-03-02T09:00:00", str(uuid.uuid4())])},
}


@pytest.mark.parametrize("arguments", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
async def test_bad_page_arguments_are_an_invalid_input_error(
    api: Api, booked: list[Booked], arguments: dict[str, Any]
) -> None:
    body = await api.post(APPOINTMENTS, arguments)

    assert body["data"] is None
    assert [error["extensions"]["code"] for error in body["errors"]] == ["INVALID_INPUT"]


async def test_clinics_lists_both_clinics_by_name_and_pages(api: Api, world: World) -> None:
    first = await api.data(CLINICS, {"first": 1})
    second = await api.data(
        CLINICS, {"first": 1, "after": first["clinics"]["pageInfo"]["endCursor"]}
    )

    assert [e["node"]["id"] for e in first["clinics"]["edges"]] == [str(world.clinic_a.id)]
    assert first["clinics"]["pageInfo"]["hasNextPage"] is True
    assert [e["node"]["id"] for e in second["clinics"]["edges"]] == [str(world.clinic_b.id)]
    assert second["clinics"]["pageInfo"]["hasNextPage"] is False


async def test_users_with_role_doctor_lists_the_doctors_only(api: Api, world: World) -> None:
    doctors = [world.doctor, world.other_doctor, world.doctor_of_b, world.doctor_without_membership]

    data = await api.data(USERS, {"role": "DOCTOR"})

    nodes = [edge["node"] for edge in data["users"]["edges"]]
    assert nodes == [
        {"id": str(doctor.id), "name": doctor.name, "role": "DOCTOR"}
        for doctor in sorted(doctors, key=lambda doctor: doctor.name)
    ]


async def test_users_without_a_role_includes_staff(api: Api, world: World) -> None:
    data = await api.data(USERS, {"role": None})

    ids = {edge["node"]["id"] for edge in data["users"]["edges"]}
    assert str(world.staff.id) in ids
    assert len(ids) == 5


async def test_patients_lists_every_patient_by_name(api: Api, world: World) -> None:
    patients = [world.patient, world.other_patient, world.patient_without_membership]

    data = await api.data(PATIENTS)

    assert [edge["node"] for edge in data["patients"]["edges"]] == [
        {"id": str(patient.id), "fullName": patient.full_name}
        for patient in sorted(patients, key=lambda patient: patient.full_name)
    ]
    assert data["patients"]["pageInfo"]["hasNextPage"] is False


async def test_clinic_members_are_listed_per_clinic(api: Api, world: World) -> None:
    in_a = await api.data(CLINIC_MEMBERS, {"clinicId": str(world.clinic_a.id)})
    in_b = await api.data(CLINIC_MEMBERS, {"clinicId": str(world.clinic_b.id)})

    assert members(in_a["clinicDoctors"], "user") == {
        (str(world.clinic_doctor.id), str(world.doctor.id), str(world.clinic_a.id)),
        (str(world.other_clinic_doctor.id), str(world.other_doctor.id), str(world.clinic_a.id)),
    }
    assert members(in_a["clinicPatients"], "patient") == {
        (str(world.clinic_patient.id), str(world.patient.id), str(world.clinic_a.id)),
        (str(world.other_clinic_patient.id), str(world.other_patient.id), str(world.clinic_a.id)),
    }
    assert members(in_b["clinicDoctors"], "user") == {
        (str(world.clinic_doctor_of_b.id), str(world.doctor_of_b.id), str(world.clinic_b.id)),
    }
    assert members(in_b["clinicPatients"], "patient") == set()


async def test_clinic_doctors_page_by_membership_age(api: Api, world: World) -> None:
    variables: dict[str, Any] = {"clinicId": str(world.clinic_a.id), "first": 1}
    first = await api.data(CLINIC_DOCTORS_PAGE, variables)
    after = first["clinicDoctors"]["pageInfo"]["endCursor"]

    second = await api.data(CLINIC_DOCTORS_PAGE, {**variables, "after": after})

    ids = [
        e["node"]["id"]
        for e in [*first["clinicDoctors"]["edges"], *second["clinicDoctors"]["edges"]]
    ]
    assert ids == [str(world.clinic_doctor.id), str(world.other_clinic_doctor.id)]
    assert first["clinicDoctors"]["pageInfo"]["hasNextPage"] is True
    assert second["clinicDoctors"]["pageInfo"]["hasNextPage"] is False


def members(connection: dict[str, Any], person: str) -> set[tuple[str, str, str]]:
    return {
        (edge["node"]["id"], edge["node"][person]["id"], edge["node"]["clinic"]["id"])
        for edge in connection["edges"]
    }
