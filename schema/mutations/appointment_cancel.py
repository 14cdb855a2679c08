"""``cancelAppointment``: cancel an appointment the viewer may change."""

from __future__ import annotations

import strawberry

from appointments import models, writes
from appointments.access import Access
from appointments.replays import appointment_change
from schema.context import RequestContext, WriteOperation
from schema.errors import parse_id
from schema.mutations.base import Write, mutation
from schema.mutations.results import AppointmentResult, appointment_success


@mutation(AppointmentResult, position=5)
def cancel_appointment(appointment_id: strawberry.ID) -> Write[models.Appointment]:
    def prepare(access: Access, _context: RequestContext) -> WriteOperation[models.Appointment]:
        parsed = parse_id(appointment_id, "appointmentId")
        return lambda s, _events: writes.cancel_appointment(s, parsed, access=access)

    return Write(prepare, appointment_success, appointment_change(own_suffices=True))
