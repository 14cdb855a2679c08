"""``addClinicStaff``: make a staff user a member of a clinic's staff."""

from __future__ import annotations

import strawberry

from appointments import directory, models
from schema.mutations.base import Write, mutation
from schema.mutations.clinic_membership import membership_addition
from schema.mutations.results import ClinicStaffResult, clinic_staff_success


@mutation(
    ClinicStaffResult, position=13, description="Make a staff user a member of a clinic's staff"
)
def add_clinic_staff(clinic_id: strawberry.ID, user_id: strawberry.ID) -> Write[models.ClinicStaff]:
    return membership_addition(
        directory.add_clinic_staff, clinic_staff_success, clinic_id, (user_id, "userId")
    )
