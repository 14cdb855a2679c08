"""GraphQL types of the migration's ledger and validation report (QA and admin)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import datetime

import orjson
import strawberry

from appointments import models
from appointments.stages import Stage
from appointments.validation import ClinicReport, SideCounts
from schema import read_model
from schema.types import Appointment, Clinic, ContextInfo, clinic_of, node_id


def _optional_id(value: uuid.UUID | None) -> strawberry.ID | None:
    return None if value is None else strawberry.ID(str(value))


@strawberry.type(
    description="A difference between an appointment's two sides; one per appointment and field"
)
class MigrationMismatch:
    id: strawberry.ID
    field: models.MismatchField
    legacy_value: strawberry.ID | None
    new_value: strawberry.ID | None
    stage: Stage = strawberry.field(description="Stage of the read that last saw it")
    first_seen_at: datetime
    last_seen_at: datetime
    times_seen: int
    status: models.MismatchStatus
    status_changed_by: str | None
    status_changed_at: datetime | None
    status_comment: str | None
    row: strawberry.Private[models.MigrationMismatch]

    @classmethod
    def from_model(cls, row: models.MigrationMismatch) -> MigrationMismatch:
        return cls(
            id=node_id(row),
            field=models.MismatchField(row.field),
            legacy_value=_optional_id(row.legacy_value),
            new_value=_optional_id(row.new_value),
            stage=Stage(row.stage),
            first_seen_at=row.first_seen_at,
            last_seen_at=row.last_seen_at,
            times_seen=row.times_seen,
            status=models.MismatchStatus(row.status),
            status_changed_by=row.status_changed_by,
            status_changed_at=row.status_changed_at,
            status_comment=row.status_comment,
            row=row,
        )

    @strawberry.field(graphql_type=Clinic)
    def clinic(self, info: ContextInfo) -> Clinic | Awaitable[Clinic]:
        return clinic_of(info, self.row.clinic_id)

    @strawberry.field(graphql_type=Appointment)
    async def appointment(self, info: ContextInfo) -> orjson.Fragment | None:
        return await read_model.appointment_by_id(
            info.context,
            read_model.selection_below(info._raw_info, "Appointment"),
            self.row.appointment_id,
            self.row.clinic_id,
        )


@strawberry.type
class MismatchSuccess:
    mismatch: MigrationMismatch


@strawberry.type(description="One side of a clinic's appointments in the validation report")
class SideReport:
    linked: int = strawberry.field(description="Appointments with the new link set")
    linkable: int = strawberry.field(description="Unlinked, and the membership exists")
    missing_membership: int = strawberry.field(description="Unlinked, and no membership exists")
    legacy_missing: int = strawberry.field(description="New link set, legacy column empty")
    inconsistent: int = strawberry.field(description="Both set, and they disagree")
    unlinked: int

    @classmethod
    def from_counts(cls, counts: SideCounts) -> SideReport:
        return cls(
            linked=counts.linked,
            linkable=counts.linkable,
            missing_membership=counts.missing_membership,
            legacy_missing=counts.legacy_missing,
            inconsistent=counts.inconsistent,
            unlinked=counts.unlinked,
        )


@strawberry.type(description="How far a clinic's data is from the new model, counted in SQL")
class ClinicMigrationReport:
    stage: Stage = strawberry.field(description="The stage the flag asks for")
    served_stage: Stage = strawberry.field(description="The stage served (after readiness gates)")
    next_stage: Stage | None
    ready_for_next_stage: bool
    blockers: list[str] = strawberry.field(description="Why the next stage is not safe yet")
    total: int
    fully_linked: int
    inconsistent: int
    open_mismatches: int
    doctor: SideReport
    patient: SideReport
    row: strawberry.Private[ClinicReport]

    @classmethod
    def from_report(cls, report: ClinicReport, served: Stage) -> ClinicMigrationReport:
        return cls(
            stage=report.stage,
            served_stage=served,
            next_stage=report.next_stage,
            ready_for_next_stage=report.ready_for_next,
            blockers=list(report.blockers),
            total=report.total,
            fully_linked=report.fully_linked,
            inconsistent=report.inconsistent,
            open_mismatches=report.open_mismatches,
            doctor=SideReport.from_counts(report.doctor),
            patient=SideReport.from_counts(report.patient),
            row=report,
        )

    @strawberry.field(graphql_type=Clinic)
    def clinic(self, info: ContextInfo) -> Clinic | Awaitable[Clinic]:
        return clinic_of(info, self.row.clinic_id)
