"""``createAppointment``: book an appointment; the clinic's stage decides what is written."""

from __future__ import annotations

from appointments import models, writes
from appointments.access import Access, Permission
from appointments.replays import in_clinic
from schema.context import RequestContext, WriteOperation
from schema.inputs import CreateAppointmentInput
from schema.mutations.base import Write, mutation
from schema.mutations.results import AppointmentResult, appointment_success


@mutation(
    AppointmentResult,
    position=1,
    description="Book an appointment; the clinic's stage decides what is written",
)
def create_appointment(input: CreateAppointmentInput) -> Write[models.Appointment]:
    def prepare(access: Access, context: RequestContext) -> WriteOperation[models.Appointment]:
        command = input.to_command()
        stages = context.stages
        return lambda s, events: writes.create_appointment(s, stages, command, events, access)

    return Write(prepare, appointment_success, in_clinic(Permission.BOOK, "clinicId", "clinic"))
