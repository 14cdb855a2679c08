"""GraphQL object types, built from ORM rows (rows never leak into the schema).

The types an appointment reaches also declare, beside each object field, where the
read model finds its row (``reads(...)``); a scalar field reads the column named
like it (``appointments.read_model.sources``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any, Generic, Protocol, TypeVar

import orjson
import strawberry
from graphql import GraphQLError
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from appointments import models
from appointments.queries import Page
from appointments.read_model.sources import MigrationState, Reference, Served, reads
from appointments.sides import DOCTOR, PATIENT
from schema import read_model
from schema.context import RequestContext
from schema.dataloaders import Missing, peek
from schema.migration_types import AppointmentMigration
from schema.request_id import request_id

logger = logging.getLogger("schema.types")
WRITE_COMMITTED = "WRITE_COMMITTED"

strawberry.enum(models.AppointmentStatus, name="AppointmentStatus")
strawberry.enum(models.UserRole, name="UserRole")

NodeT = TypeVar("NodeT")
RowT = TypeVar("RowT", bound=models.Base)
RowCoT = TypeVar("RowCoT", covariant=True)
ContextInfo = Info[RequestContext, None]


def node_id(row: models.Base) -> strawberry.ID:
    return strawberry.ID(str(row.id))  # type: ignore[attr-defined]


class RowBacked(Protocol[RowCoT]):
    """A GraphQL object made from a row it keeps (``strawberry.Private``)."""

    @property
    def row(self) -> RowCoT: ...


def row_id(root: RowBacked[models.Base]) -> strawberry.ID:
    """The ``id`` field of an object made from a row."""
    return node_id(root.row)


def row_clinic(
    root: RowBacked[models.ClinicDoctor | models.ClinicPatient | models.ClinicStaff],
    info: ContextInfo,
) -> Clinic | Awaitable[Clinic]:
    """The ``clinic`` field of an object made from a row of one clinic."""
    return clinic_of(info, root.row.clinic_id)


def row_user(
    root: RowBacked[models.ClinicDoctor | models.ClinicStaff], info: ContextInfo
) -> User | Awaitable[User]:
    """The ``user`` field of an object made from a row naming a user."""
    return _user(info, root.row.user_id)


def reference_field(
    resolve: Callable[..., object], node: type, model: type[models.Base], key: str
) -> Any:
    """An object field reached by the row's foreign key ``key`` to ``model``: ``resolve``
    answers it (from the request's loaders), and the read model joins it."""
    return strawberry.field(
        resolver=resolve, graphql_type=node, metadata=reads(Reference(model, key))
    )


@strawberry.type
class Clinic:
    id: strawberry.ID
    name: str
    created_at: datetime

    @classmethod
    def from_model(cls, row: models.Clinic) -> Clinic:
        return cls(id=node_id(row), name=row.name, created_at=row.created_at)


# The people and memberships below are built for every link of a listed page; their
# ids are formatted only when a query asks for them (most list queries do not).


@strawberry.type
class User:
    name: str
    email: str
    role: models.UserRole
    row: strawberry.Private[models.User]

    id: strawberry.ID = strawberry.field(resolver=row_id)

    @strawberry.field(description="False once deactivated: the user's tokens are refused")
    def active(self) -> bool:
        return self.row.active

    @classmethod
    def from_model(cls, row: models.User) -> User:
        return cls(name=row.name, email=row.email, role=models.UserRole(row.role), row=row)


@strawberry.type
class Patient:
    full_name: str
    date_of_birth: date | None
    row: strawberry.Private[models.Patient]

    id: strawberry.ID = strawberry.field(resolver=row_id)

    @classmethod
    def from_model(cls, row: models.Patient) -> Patient:
        return cls(full_name=row.full_name, date_of_birth=row.date_of_birth, row=row)


@strawberry.type(description="A doctor working in a clinic (the new model's doctor reference)")
class ClinicDoctor:
    active: bool
    created_at: datetime
    row: strawberry.Private[models.ClinicDoctor]

    id: strawberry.ID = strawberry.field(resolver=row_id)

    @classmethod
    def from_model(cls, row: models.ClinicDoctor) -> ClinicDoctor:
        return cls(active=row.active, created_at=row.created_at, row=row)

    clinic = reference_field(row_clinic, Clinic, models.Clinic, "clinic_id")

    user = reference_field(row_user, User, models.User, "user_id")


@strawberry.type(description="A patient registered in a clinic (the new model's patient reference)")
class ClinicPatient:
    created_at: datetime
    row: strawberry.Private[models.ClinicPatient]

    id: strawberry.ID = strawberry.field(resolver=row_id)

    @classmethod
    def from_model(cls, row: models.ClinicPatient) -> ClinicPatient:
        return cls(created_at=row.created_at, row=row)

    clinic = reference_field(row_clinic, Clinic, models.Clinic, "clinic_id")

    @strawberry.field(graphql_type=Patient, metadata=reads(Reference(models.Patient, "patient_id")))
    def patient(self, info: ContextInfo) -> Patient | Awaitable[Patient]:
        return _patient(info, self.row.patient_id)


@strawberry.type(description="A staff user acting for a clinic")
class ClinicStaff:
    id: strawberry.ID
    created_at: datetime
    row: strawberry.Private[models.ClinicStaff]

    @classmethod
    def from_model(cls, row: models.ClinicStaff) -> ClinicStaff:
        return cls(id=node_id(row), created_at=row.created_at, row=row)

    clinic = reference_field(row_clinic, Clinic, models.Clinic, "clinic_id")

    user = reference_field(row_user, User, models.User, "user_id")


@strawberry.type(
    description=(
        "An appointment. Both field sets are always served: doctor/patient (legacy) and "
        "clinicDoctor/clinicPatient (new), from the origin the clinic's stage makes authoritative."
    )
)
class Appointment:
    """Served only by the read model (``schema.read_model``): a field answering an
    appointment returns its JSON, built from the sources these fields declare."""

    id: strawberry.ID
    starts_at: datetime
    ends_at: datetime
    status: models.AppointmentStatus
    reason: str | None
    created_at: datetime
    updated_at: datetime
    clinic: Clinic = strawberry.field(metadata=reads(Reference(models.Clinic, "clinic_id")))
    doctor: User | None = strawberry.field(
        deprecation_reason="Use clinicDoctor.user", metadata=reads(Served(DOCTOR, "person"))
    )
    patient: Patient | None = strawberry.field(
        deprecation_reason="Use clinicPatient.patient", metadata=reads(Served(PATIENT, "person"))
    )
    clinic_doctor: ClinicDoctor | None = strawberry.field(
        description="Null while the doctor has no membership in this clinic",
        metadata=reads(Served(DOCTOR, "membership")),
    )
    clinic_patient: ClinicPatient | None = strawberry.field(
        description="Null while the patient is not registered in this clinic",
        metadata=reads(Served(PATIENT, "membership")),
    )
    migration: AppointmentMigration = strawberry.field(
        description="QA: the stage that served this appointment, both origins, and differences",
        metadata=reads(MigrationState()),
    )


def clinic_of(info: ContextInfo, clinic_id: uuid.UUID) -> Clinic | Awaitable[Clinic]:
    loaders = info.context.loaders
    return _referenced(loaders.known_clinics, loaders.clinic_by_id, clinic_id, Clinic.from_model)


def _user(info: ContextInfo, user_id: uuid.UUID) -> User | Awaitable[User]:
    loaders = info.context.loaders
    return _referenced(loaders.known_users, loaders.user_by_id, user_id, User.from_model)


def _patient(info: ContextInfo, patient_id: uuid.UUID) -> Patient | Awaitable[Patient]:
    loaders = info.context.loaders
    return _referenced(
        loaders.known_patients, loaders.patient_by_id, patient_id, Patient.from_model
    )


def _referenced(
    known: dict[uuid.UUID, RowT | None],
    loader: DataLoader[uuid.UUID, RowT | None],
    key: uuid.UUID,
    convert: Callable[[RowT], NodeT],
) -> NodeT | Awaitable[NodeT]:
    """A row a foreign key guarantees: from the request's loaded rows, else its loader."""
    row = peek(known, key)
    if isinstance(row, Missing):
        return _load_referenced(loader, key, convert)
    assert row is not None, "foreign key guarantees the row"
    return convert(row)


async def _load_referenced(
    loader: DataLoader[uuid.UUID, RowT | None],
    key: uuid.UUID,
    convert: Callable[[RowT], NodeT],
) -> NodeT:
    row = await loader.load(key)
    assert row is not None, "foreign key guarantees the row"
    return convert(row)


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    node: NodeT
    page: strawberry.Private[Page[Any]]
    row: strawberry.Private[models.Base]

    @strawberry.field
    def cursor(self) -> str:
        return self.page.cursor(self.row)


@strawberry.type(description="A page of results; pass pageInfo.endCursor as `after` for the next")
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: Page[RowT], convert: Callable[[RowT], NodeT]) -> Connection[NodeT]:
        edges = [Edge(node=convert(row), page=page, row=row) for row in page.rows]
        return cls(
            edges=edges,
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )


@strawberry.type
class AppointmentSuccess:
    row: strawberry.Private[models.Appointment]

    @strawberry.field(graphql_type=Appointment)
    async def appointment(self, info: ContextInfo) -> orjson.Fragment | None:
        context = info.context
        try:
            if id(self.row) in context.replayed:
                return await read_model.appointment_snapshot(context, info._raw_info, self.row)
            return await read_model.appointment_by_id(
                context,
                read_model.selection_below(info._raw_info, "Appointment"),
                self.row.id,
                self.row.clinic_id,
            )
        except Exception:
            # The write has committed: a bare INTERNAL_ERROR would make a client that
            # believes it book twice.
            logger.exception(
                "the write committed but its payload could not be read",
                extra={"appointment_id": str(self.row.id)},
            )
            raise write_committed(self.row.id) from None


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


@strawberry.type
class ClinicStaffSuccess:
    clinic_staff: ClinicStaff


strawberry.enum(models.MismatchField, name="MismatchField")
strawberry.enum(models.MismatchStatus, name="MismatchStatus")


def write_committed(appointment_id: uuid.UUID) -> GraphQLError:
    """The error of a payload that could not be read after its write committed: it says
    so (``committed: true``) and names the appointment, so the client reads it instead
    of writing again."""
    return GraphQLError(
        f"The write succeeded (appointment {appointment_id}) but its result could not be"
        " read; do not repeat it: read the appointment with appointment(id:).",
        extensions={
            "code": WRITE_COMMITTED,
            "committed": True,
            "appointmentId": str(appointment_id),
            "requestId": request_id.get(),
        },
    )
