"""``addClinicPatient``: register a patient in a clinic."""

from __future__ import annotations

import strawberry

from appointments import directory, models
from schema.mutations.base import Write, mutation
from schema.mutations.clinic_membership import membership_addition
from schema.mutations.results import ClinicPatientResult, clinic_patient_success


@mutation(ClinicPatientResult, position=12, description="Register a patient in a clinic")
def add_clinic_patient(
    clinic_id: strawberry.ID, patient_id: strawberry.ID
) -> Write[models.ClinicPatient]:
    return membership_addition(
        directory.add_clinic_patient, clinic_patient_success, clinic_id, (patient_id, "patientId")
    )
