"""The appointment JSON the database builds is written as the rest of the response is.

Compact (no ``"id" : "…"`` spacing, no ``", "`` between elements), keys in the
order the selection asks for them, strings escaped as the response encoder
escapes them, and moments as RFC 3339 exactly as the Python serializer writes
them (``datetime.isoformat()``: the offset always, microseconds only when not
zero). The same data read from SQLite and from PostgreSQL answers the same
bytes.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import migrations
from appointments.db import create_engine, create_session_factory
from appointments.models import Appointment, Clinic, ClinicDoctor, ClinicPatient, Patient, User
from appointments.stages import Stage
from tests.conftest import TABLES_CHILD_FIRST, open_api, set_stages

CLINIC = uuid.UUID(int=1)
DOCTOR, OTHER_DOCTOR = uuid.UUID(int=11), uuid.UUID(int=12)
PATIENT = uuid.UUID(int=21)
CLINIC_DOCTOR, CLINIC_PATIENT = uuid.UUID(int=31), uuid.UUID(int=41)
DOCTOR_NAMES = {DOCTOR: 'Dr. "Quote" \\ Ünïcødé / 日本', OTHER_DOCTOR: "Other"}
CREATED = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
# Whole seconds, microseconds with trailing zeros, and a single microsecond.
STARTS = (
    datetime(2030, 12, 3, 9, 0, tzinfo=UTC),
    datetime(2030, 12, 3, 9, 30, 0, 120000, tzinfo=UTC),
    datetime(2030, 12, 3, 10, 0, 0, 5, tzinfo=UTC),
)
# The last row's legacy doctor is not its membership's: its differences are not empty.
LEGACY_DOCTORS = (DOCTOR, DOCTOR, OTHER_DOCTOR)
APPOINTMENTS = tuple(uuid.UUID(int=100 + n) for n in range(len(STARTS)))

# Keys neither in alphabetical nor in length order (jsonb would reorder them).
LIST = """
query List($clinicId: ID!) {
  appointments(first: 10, filter: {clinicId: $clinicId}) {
    edges { node {
      startsAt key: id status reason updatedAt endsAt __typename createdAt
      doctor { name id email }
      patient { fullName dateOfBirth id }
      clinicDoctor { active id }
      clinic { name id }
      migration {
        stage consistent
        doctor { servedOrigin fellBack }
        differences { field legacyValue newValue }
      }
    } }
  }
}
"""
NODE_KEYS = [
    "startsAt",
    "key",
    "status",
    "reason",
    "updatedAt",
    "endsAt",
    "__typename",
    "createdAt",
    "doctor",
    "patient",
    "clinicDoctor",
    "clinic",
    "migration",
]
RFC_3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


async def seed(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        session.add(Clinic(id=CLINIC, name='Clinic "A"', created_at=CREATED))
        for user_id, name in DOCTOR_NAMES.items():
            session.add(User(id=user_id, name=name, email=f"{user_id.int}@x.org", role="doctor"))
        session.add(Patient(id=PATIENT, full_name="Pat", date_of_birth=date(1980, 1, 31)))
        await session.flush()
        session.add(
            ClinicDoctor(id=CLINIC_DOCTOR, clinic_id=CLINIC, user_id=DOCTOR, created_at=CREATED)
        )
        session.add(
            ClinicPatient(
                id=CLINIC_PATIENT, clinic_id=CLINIC, patient_id=PATIENT, created_at=CREATED
            )
        )
        await session.flush()
        for appointment_id, starts, legacy_doctor in zip(
            APPOINTMENTS, STARTS, LEGACY_DOCTORS, strict=True
        ):
            await session.execute(
                insert(Appointment).values(
                    id=appointment_id,
                    clinic_id=CLINIC,
                    starts_at=starts,
                    ends_at=starts + timedelta(minutes=30, microseconds=250),
                    status="scheduled",
                    reason=None if starts.microsecond else 'a "reason", with: commas',
                    doctor_id=legacy_doctor,
                    patient_id=PATIENT,
                    clinic_doctor_id=CLINIC_DOCTOR,
                    clinic_patient_id=CLINIC_PATIENT,
                    created_at=CREATED,
                    updated_at=starts,
                )
            )


async def list_body(database_url: str, flags_file: Path) -> bytes:
    async with open_api(database_url, flags_file) as api:
        response = await api.client.post(
            "/graphql", json={"query": LIST, "variables": {"clinicId": str(CLINIC)}}
        )
    assert response.status_code == 200, response.text
    body: bytes = response.content
    assert b'"errors"' not in body, body
    return body


def assert_written_as_the_encoder_writes(body: bytes) -> Any:
    """The body's ``data`` exactly as orjson writes what it says; answers that data."""
    data = orjson.loads(body)["data"]
    expected = b'{"data":' + orjson.dumps(data)
    assert body[: len(expected) + 1] in (expected + b",", expected + b"}"), body
    return data


async def test_both_databases_answer_the_same_compact_bytes(
    database_url: str, tmp_path: Path, flags_file: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("reads SQLite itself beside PostgreSQL: runs once, with PostgreSQL")
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'compact.sqlite3'}"
    bodies: dict[str, bytes] = {}
    for name, url in (("postgresql", database_url), ("sqlite", sqlite_url)):
        engine = create_engine(url)
        try:
            await migrations.upgrade(engine)
            sessions = create_session_factory(engine)
            async with sessions() as session, session.begin():
                for model in TABLES_CHILD_FIRST:
                    await session.execute(delete(model))
            await seed(sessions)
        finally:
            await engine.dispose()
        set_stages(flags_file, {CLINIC: Stage.SHADOW})
        bodies[name] = await list_body(url, flags_file)

    postgres, sqlite = bodies["postgresql"], bodies["sqlite"]
    for body in (postgres, sqlite):
        data = assert_written_as_the_encoder_writes(body)
        assert b'" : ' not in body
        assert b'", "' not in body
        assert b", {" not in body
        nodes = [edge["node"] for edge in data["appointments"]["edges"]]
        assert [node["key"] for node in nodes] == [str(a) for a in APPOINTMENTS]
        # ``shadow`` serves the legacy doctor.
        for node, starts, doctor in zip(nodes, STARTS, LEGACY_DOCTORS, strict=True):
            assert list(node) == NODE_KEYS
            assert node["startsAt"] == starts.isoformat()
            assert node["endsAt"] == (starts + timedelta(minutes=30, microseconds=250)).isoformat()
            assert node["updatedAt"] == starts.isoformat()
            assert node["createdAt"] == CREATED.isoformat()
            for moment in (node["startsAt"], node["endsAt"], node["createdAt"]):
                assert RFC_3339.fullmatch(moment), moment
            assert node["doctor"] == {
                "name": DOCTOR_NAMES[doctor],
                "id": str(doctor),
                "email": f"{doctor.int}@x.org",
            }
            assert list(node["patient"]) == ["fullName", "dateOfBirth", "id"]
            assert node["patient"]["dateOfBirth"] == "1980-01-31"
            # The other doctor has no membership of the clinic.
            membership = {"active": True, "id": str(CLINIC_DOCTOR)} if doctor == DOCTOR else None
            assert node["clinicDoctor"] == membership
        assert nodes[0]["startsAt"] == "2030-12-03T09:00:00+00:00"
        assert nodes[1]["startsAt"] == "2030-12-03T09:30:00.120000+00:00"
        assert nodes[2]["startsAt"] == "2030-12-03T10:00:00.000005+00:00"
        assert nodes[0]["reason"] == 'a "reason", with: commas'
        assert nodes[1]["reason"] is None
        assert nodes[0]["migration"]["differences"] == []
        assert len(nodes[2]["migration"]["differences"]) == 1
    assert postgres == sqlite
