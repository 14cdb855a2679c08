"""``addClinicDoctor``: make a doctor (a user with role doctor) a member of a clinic."""

from __future__ import annotations

import strawberry

from appointments import directory, models
from schema.mutations.base import Write, mutation
from schema.mutations.clinic_membership import membership_addition
from schema.mutations.results import ClinicDoctorResult, clinic_doctor_success


@mutation(
    ClinicDoctorResult,
    position=10,
    description="Make a doctor (a user with role doctor) a member of a clinic",
)
def add_clinic_doctor(
    clinic_id: strawberry.ID, user_id: strawberry.ID
) -> Write[models.ClinicDoctor]:
    return membership_addition(
        directory.add_clinic_doctor, clinic_doctor_success, clinic_id, (user_id, "userId")
    )
