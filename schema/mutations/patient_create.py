"""``createPatient``: a new patient, registered in a clinic when one is named."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from appointments import directory, models
from appointments.access import Access
from schema.context import RequestContext, WriteOperation
from schema.errors import parse_id
from schema.inputs import CreatePatientInput
from schema.mutations.base import Write, mutation, without_events
from schema.mutations.results import PatientResult
from schema.types import Patient, PatientSuccess


@mutation(PatientResult, position=9)
def create_patient(input: CreatePatientInput) -> Write[models.Patient]:
    def clinic() -> uuid.UUID | None:
        return None if input.clinic_id is None else parse_id(input.clinic_id, "clinicId")

    def prepare(access: Access, _context: RequestContext) -> WriteOperation[models.Patient]:
        chosen = clinic()
        return without_events(
            lambda s: directory.create_patient(
                s, input.full_name, input.date_of_birth, access, chosen
            )
        )

    async def replay(_session: AsyncSession, access: Access, _row: models.Patient) -> None:
        directory.authorize_patient_creation(access, clinic())

    return Write(prepare, lambda row: PatientSuccess(patient=Patient.from_model(row)), replay)
