"""``rescheduleAppointment``: move an appointment the viewer may change to another time."""

from __future__ import annotations

from appointments import models, writes
from appointments.access import Access
from appointments.replays import appointment_change
from schema.context import RequestContext, WriteOperation
from schema.errors import parse_id
from schema.inputs import RescheduleAppointmentInput
from schema.mutations.base import Write, mutation
from schema.mutations.results import AppointmentResult, appointment_success


@mutation(AppointmentResult, position=2)
def reschedule_appointment(input: RescheduleAppointmentInput) -> Write[models.Appointment]:
    def prepare(access: Access, _context: RequestContext) -> WriteOperation[models.Appointment]:
        appointment_id = parse_id(input.appointment_id, "appointmentId")
        return lambda s, _events: writes.reschedule_appointment(
            s, appointment_id, input.starts_at, input.ends_at, access=access
        )

    return Write(prepare, appointment_success, appointment_change(own_suffices=True))
