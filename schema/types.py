"""GraphQL object types, built from ORM rows (rows never leak into the schema)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Generic, TypeVar

import strawberry
from strawberry.types import Info

from appointments import models
from appointments.queries import Page
from appointments.reads import ResolvedLink
from appointments.sides import DOCTOR, PATIENT, Side
from server.context import RequestContext

strawberry.enum(models.AppointmentStatus, name="AppointmentStatus")
strawberry.enum(models.UserRole, name="UserRole")

NodeT = TypeVar("NodeT")
RowT = TypeVar("RowT", bound=models.Base)
ContextInfo = Info[RequestContext, None]


def _id(row: models.Base) -> strawberry.ID:
    return strawberry.ID(str(row.id))  # type: ignore[attr-defined]


@strawberry.type
class Clinic:
    id: strawberry.ID
    name: str
    created_at: datetime

    @classmethod
    def from_model(cls, row: models.Clinic) -> Clinic:
        return cls(id=_id(row), name=row.name, created_at=row.created_at)


@strawberry.type
class User:
    id: strawberry.ID
    name: str
    email: str
    role: models.UserRole

    @classmethod
    def from_model(cls, row: models.User) -> User:
        return cls(id=_id(row), name=row.name, email=row.email, role=models.UserRole(row.role))


@strawberry.type
class Patient:
    id: strawberry.ID
    full_name: str
    date_of_birth: date | None

    @classmethod
    def from_model(cls, row: models.Patient) -> Patient:
        return cls(id=_id(row), full_name=row.full_name, date_of_birth=row.date_of_birth)


@strawberry.type(description="A doctor working in a clinic (the new model's doctor reference)")
class ClinicDoctor:
    id: strawberry.ID
    active: bool
    created_at: datetime
    row: strawberry.Private[models.ClinicDoctor]

    @classmethod
    def from_model(cls, row: models.ClinicDoctor) -> ClinicDoctor:
        return cls(id=_id(row), active=row.active, created_at=row.created_at, row=row)

    @strawberry.field
    async def clinic(self, info: ContextInfo) -> Clinic:
        return await _clinic(info, self.row.clinic_id)

    @strawberry.field
    async def user(self, info: ContextInfo) -> User:
        user = await info.context.loaders.user_by_id.load(self.row.user_id)
        assert user is not None, "foreign key guarantees the user"
        return User.from_model(user)


@strawberry.type(description="A patient registered in a clinic (the new model's patient reference)")
class ClinicPatient:
    id: strawberry.ID
    created_at: datetime
    row: strawberry.Private[models.ClinicPatient]

    @classmethod
    def from_model(cls, row: models.ClinicPatient) -> ClinicPatient:
        return cls(id=_id(row), created_at=row.created_at, row=row)

    @strawberry.field
    async def clinic(self, info: ContextInfo) -> Clinic:
        return await _clinic(info, self.row.clinic_id)

    @strawberry.field
    async def patient(self, info: ContextInfo) -> Patient:
        patient = await info.context.loaders.patient_by_id.load(self.row.patient_id)
        assert patient is not None, "foreign key guarantees the patient"
        return Patient.from_model(patient)


@strawberry.type(
    description=(
        "An appointment. Both field sets are always served: doctor/patient (legacy) and "
        "clinicDoctor/clinicPatient (new), from the origin the clinic's stage makes authoritative."
    )
)
class Appointment:
    id: strawberry.ID
    starts_at: datetime
    ends_at: datetime
    status: models.AppointmentStatus
    reason: str | None
    created_at: datetime
    updated_at: datetime
    row: strawberry.Private[models.Appointment]

    @classmethod
    def from_model(cls, row: models.Appointment) -> Appointment:
        return cls(
            id=_id(row),
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            status=models.AppointmentStatus(row.status),
            reason=row.reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
            row=row,
        )

    @strawberry.field
    async def clinic(self, info: ContextInfo) -> Clinic:
        return await _clinic(info, self.row.clinic_id)

    @strawberry.field(deprecation_reason="Use clinicDoctor.user")
    async def doctor(self, info: ContextInfo) -> User | None:
        link = await self._link(info, DOCTOR)
        if link.person_id is None:
            return None
        user = await info.context.loaders.user_by_id.load(link.person_id)
        return None if user is None else User.from_model(user)

    @strawberry.field(deprecation_reason="Use clinicPatient.patient")
    async def patient(self, info: ContextInfo) -> Patient | None:
        link = await self._link(info, PATIENT)
        if link.person_id is None:
            return None
        patient = await info.context.loaders.patient_by_id.load(link.person_id)
        return None if patient is None else Patient.from_model(patient)

    @strawberry.field(description="Null while the doctor has no membership in this clinic")
    async def clinic_doctor(self, info: ContextInfo) -> ClinicDoctor | None:
        membership = (await self._link(info, DOCTOR)).membership
        assert membership is None or isinstance(membership, models.ClinicDoctor)
        return None if membership is None else ClinicDoctor.from_model(membership)

    @strawberry.field(description="Null while the patient is not registered in this clinic")
    async def clinic_patient(self, info: ContextInfo) -> ClinicPatient | None:
        membership = (await self._link(info, PATIENT)).membership
        assert membership is None or isinstance(membership, models.ClinicPatient)
        return None if membership is None else ClinicPatient.from_model(membership)

    async def _link(self, info: ContextInfo, side: Side) -> ResolvedLink:
        return await info.context.links.resolve(side, self.row)


async def _clinic(info: ContextInfo, clinic_id: uuid.UUID) -> Clinic:
    clinic = await info.context.loaders.clinic_by_id.load(clinic_id)
    assert clinic is not None, "foreign key guarantees the clinic"
    return Clinic.from_model(clinic)


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type(description="A page of results; pass pageInfo.endCursor as `after` for the next")
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: Page[RowT], convert: Callable[[RowT], NodeT]) -> Connection[NodeT]:
        edges = [
            Edge(cursor=cursor, node=convert(row))
            for row, cursor in zip(page.rows, page.cursors, strict=True)
        ]
        end_cursor = page.cursors[-1] if page.cursors else None
        return cls(
            edges=edges, page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=end_cursor)
        )


@strawberry.type
class AppointmentSuccess:
    appointment: Appointment


@strawberry.type
class ClinicSuccess:
    clinic: Clinic


@strawberry.type
class UserSuccess:
    user: User


@strawberry.type
class PatientSuccess:
    patient: Patient


@strawberry.type
class ClinicDoctorSuccess:
    clinic_doctor: ClinicDoctor


@strawberry.type
class ClinicPatientSuccess:
    clinic_patient: ClinicPatient
