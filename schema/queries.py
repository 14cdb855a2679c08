"""Query resolvers: translate arguments, call the domain, wrap rows in types."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol, Self, TypeVar

import orjson
import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from appointments import ledger, models, queries, validation
from appointments.access import Permission
from appointments.errors import DomainError
from appointments.ledger_sightings import SEEN_AGAIN
from appointments.rollout import audit
from schema import read_model
from schema.errors import parse_id, query_error
from schema.inputs import AppointmentFilterInput, MismatchFilterInput
from schema.ledger_types import ClinicMigrationReport, MigrationMismatch
from schema.rollout_types import RolloutAuditEntry
from schema.types import (
    Appointment,
    Clinic,
    ClinicDoctor,
    ClinicPatient,
    Connection,
    ContextInfo,
    Patient,
    User,
)

T = TypeVar("T")
RowT = TypeVar("RowT", bound=models.Base)
NodeT = TypeVar("NodeT")
RowContraT = TypeVar("RowContraT", contravariant=True)
PageSize = Annotated[
    int | None,
    strawberry.argument(
        description=(
            f"Page size: default {queries.DEFAULT_PAGE_SIZE}, at most {queries.MAX_PAGE_SIZE}"
        )
    ),
]


async def _read(info: ContextInfo, operation: Callable[[AsyncSession], Awaitable[T]]) -> T:
    return await info.context.db.run(operation)


def _parse(value: strawberry.ID, field: str) -> uuid.UUID:
    try:
        return parse_id(value, field)
    except DomainError as error:
        raise query_error(error) from None


async def _require(info: ContextInfo, permission: Permission) -> None:
    try:
        (await info.context.access()).require(permission)
    except DomainError as error:
        raise query_error(error) from None


async def _scope(info: ContextInfo) -> queries.ClinicScope:
    return (await info.context.access()).visible_clinics


async def _page(
    info: ContextInfo,
    operation: Callable[[AsyncSession], Awaitable[queries.Page[queries.ListedT]]],
) -> queries.Page[queries.ListedT]:
    try:
        return await _read(info, operation)
    except DomainError as error:
        raise query_error(error) from None


ListRows = Callable[
    [AsyncSession, int | None, str | None, queries.ClinicScope], Awaitable[queries.Page[RowT]]
]
ListMembers = Callable[
    [AsyncSession, uuid.UUID, int | None, str | None, queries.ClinicScope],
    Awaitable[queries.Page[RowT]],
]


class Node(Protocol[RowContraT]):
    """A GraphQL type made from a row."""

    @classmethod
    def from_model(cls, row: RowContraT) -> Self: ...


async def _connection(
    info: ContextInfo,
    convert: Callable[[RowT], NodeT],
    list_page: Callable[[AsyncSession, queries.ClinicScope], Awaitable[queries.Page[RowT]]],
) -> Connection[NodeT]:
    """A page of rows listed within the clinics the viewer may see."""
    scope = await _scope(info)
    page = await _page(info, lambda s: list_page(s, scope))
    return Connection.from_page(page, convert)


def _page_field(node: type[Node[RowT]], description: str, resolve: Callable[..., object]) -> Any:
    return strawberry.field(
        resolver=resolve,
        graphql_type=Connection[node],  # type: ignore[valid-type]
        description=description,
    )


def _listing(node: type[Node[RowT]], list_rows: ListRows[RowT], description: str) -> Any:
    """A field answering a page of all the rows of ``node`` the viewer may see."""

    async def resolve(
        info: ContextInfo, first: PageSize = None, after: str | None = None
    ) -> object:
        return await _connection(
            info, node.from_model, lambda s, scope: list_rows(s, first, after, scope)
        )

    return _page_field(node, description, resolve)


def _members(node: type[Node[RowT]], list_members: ListMembers[RowT], description: str) -> Any:
    """A field answering a page of one clinic's members of ``node``'s kind."""

    async def resolve(
        info: ContextInfo,
        clinic_id: strawberry.ID,
        first: PageSize = None,
        after: str | None = None,
    ) -> object:
        clinic = _parse(clinic_id, "clinicId")
        return await _connection(
            info, node.from_model, lambda s, scope: list_members(s, clinic, first, after, scope)
        )

    return _page_field(node, description, resolve)


@strawberry.type
class Query:
    @strawberry.field(
        graphql_type=Appointment | None,
        metadata={read_model.ROOT_READ: read_model.read_appointment},
    )
    async def appointment(self, info: ContextInfo, id: strawberry.ID) -> orjson.Fragment | None:
        raw = info._raw_info
        return await read_model.read_appointment(
            info.context, lambda: read_model.selection_below(raw, "Appointment"), id=id
        )

    @strawberry.field(
        description="Appointments ordered by start time, then id",
        graphql_type=Connection[Appointment],
        metadata={read_model.ROOT_READ: read_model.read_appointments},
    )
    async def appointments(
        self,
        info: ContextInfo,
        filter: AppointmentFilterInput | None = None,
        first: PageSize = None,
        after: str | None = None,
    ) -> orjson.Fragment:
        raw = info._raw_info
        return await read_model.read_appointments(
            info.context,
            lambda: read_model.selection_below(raw, "AppointmentConnection"),
            filter=filter,
            first=first,
            after=after,
        )

    @strawberry.field
    async def clinic(self, info: ContextInfo, id: strawberry.ID) -> Clinic | None:
        row = await info.context.loaders.clinic_by_id.load(_parse(id, "id"))
        if row is None or not (await info.context.access()).sees(row.id):
            return None
        return Clinic.from_model(row)

    @strawberry.field(
        description="The validation report of one clinic, or of every clinic, with readiness"
    )
    async def migration_report(
        self, info: ContextInfo, clinic_id: strawberry.ID | None = None
    ) -> list[ClinicMigrationReport]:
        clinics = None if clinic_id is None else [_parse(clinic_id, "clinicId")]
        await _require(info, Permission.READ_MIGRATION)
        stages = info.context.stages
        reports = await _read(
            info, lambda s: validation.clinic_reports(s, stages.requested, clinics)
        )
        return [ClinicMigrationReport.from_report(r, stages(r.clinic_id)) for r in reports]

    @strawberry.field(description="The mismatch ledger, least recently seen first")
    async def migration_mismatches(
        self,
        info: ContextInfo,
        filter: MismatchFilterInput | None = None,
        first: PageSize = None,
        after: str | None = None,
    ) -> Connection[MigrationMismatch]:
        try:
            where = (filter or MismatchFilterInput()).to_filter()
        except DomainError as error:
            raise query_error(error) from None
        await _require(info, Permission.READ_MIGRATION)
        # This process's repeated sightings first, so that the counts listed include them.
        await SEEN_AGAIN.flush_logged(info.context.sessions)
        page = await _page(info, lambda s: ledger.list_mismatches(s, where, first, after))
        return Connection.from_page(page, MigrationMismatch.from_model)

    @strawberry.field(
        description="The rollout audit trail (every stage change, hold and release), newest"
        " first; of one clinic or all"
    )
    async def rollout_audit(
        self, info: ContextInfo, clinic_id: strawberry.ID | None = None, first: int = 50
    ) -> list[RolloutAuditEntry]:
        clinic = None if clinic_id is None else _parse(clinic_id, "clinicId")
        await _require(info, Permission.READ_ROLLOUT)
        try:
            rows = await _read(info, lambda s: audit.entries(s, clinic, first))
        except DomainError as error:
            raise query_error(error) from None
        return [RolloutAuditEntry.from_row(row, name) for row, name in rows]

    clinics = _listing(Clinic, queries.list_clinics, "Clinics ordered by name")

    @strawberry.field(description="Users ordered by name")
    async def users(
        self,
        info: ContextInfo,
        role: models.UserRole | None = None,
        first: PageSize = None,
        after: str | None = None,
    ) -> Connection[User]:
        return await _connection(
            info, User.from_model, lambda s, scope: queries.list_users(s, role, first, after, scope)
        )

    patients = _listing(Patient, queries.list_patients, "Patients ordered by name")
    clinic_doctors = _members(
        ClinicDoctor,
        queries.list_clinic_doctors,
        "Doctors working in a clinic, oldest membership first",
    )
    clinic_patients = _members(
        ClinicPatient,
        queries.list_clinic_patients,
        "Patients registered in a clinic, oldest registration first",
    )
