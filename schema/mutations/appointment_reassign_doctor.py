"""``reassignDoctor``: name another doctor for an appointment."""

from __future__ import annotations

from appointments import models
from appointments.sides import DOCTOR
from schema.inputs import ReassignDoctorInput
from schema.mutations.appointment_reassign import reassignment
from schema.mutations.base import Write, mutation
from schema.mutations.results import AppointmentResult


@mutation(AppointmentResult, position=3)
def reassign_doctor(input: ReassignDoctorInput) -> Write[models.Appointment]:
    return reassignment(DOCTOR, input)
