"""``setClinicDoctorActive``: mark a doctor's membership active or inactive."""

from __future__ import annotations

import strawberry

from appointments import directory, models
from appointments.access import Access, Permission
from appointments.replays import in_clinic
from schema.context import RequestContext, WriteOperation
from schema.errors import parse_id
from schema.mutations.base import Write, mutation, without_events
from schema.mutations.results import ClinicDoctorResult
from schema.types import ClinicDoctor, ClinicDoctorSuccess


@mutation(
    ClinicDoctorResult, position=11, description="Mark a doctor's membership active or inactive"
)
def set_clinic_doctor_active(
    clinic_doctor_id: strawberry.ID, active: bool
) -> Write[models.ClinicDoctor]:
    def prepare(access: Access, _context: RequestContext) -> WriteOperation[models.ClinicDoctor]:
        membership = parse_id(clinic_doctor_id, "clinicDoctorId")
        return without_events(
            lambda s: directory.set_clinic_doctor_active(s, membership, active, access)
        )

    return Write(
        prepare,
        lambda row: ClinicDoctorSuccess(clinic_doctor=ClinicDoctor.from_model(row)),
        in_clinic(Permission.MANAGE_MEMBERSHIPS, "clinicDoctorId", "clinic doctor"),
    )
