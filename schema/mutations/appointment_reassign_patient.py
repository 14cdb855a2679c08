"""``reassignPatient``: name another patient for an appointment."""

from __future__ import annotations

from appointments import models
from appointments.sides import PATIENT
from schema.inputs import ReassignPatientInput
from schema.mutations.appointment_reassign import reassignment
from schema.mutations.base import Write, mutation
from schema.mutations.results import AppointmentResult


@mutation(AppointmentResult, position=4)
def reassign_patient(input: ReassignPatientInput) -> Write[models.Appointment]:
    return reassignment(PATIENT, input)
