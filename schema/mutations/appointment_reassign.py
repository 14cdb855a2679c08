"""What ``reassignDoctor`` and ``reassignPatient`` share: one write, for either side."""

from __future__ import annotations

from appointments import models, writes
from appointments.access import Access
from appointments.replays import appointment_change
from appointments.sides import Side
from schema.context import RequestContext, WriteOperation
from schema.errors import parse_id
from schema.inputs import ReassignDoctorInput, ReassignPatientInput, reassigned
from schema.mutations.base import Write
from schema.mutations.results import appointment_success


def reassignment(
    side: Side, input: ReassignDoctorInput | ReassignPatientInput
) -> Write[models.Appointment]:
    """Name another person on ``side`` of an appointment; a doctor may not change their own."""

    def prepare(access: Access, context: RequestContext) -> WriteOperation[models.Appointment]:
        appointment_id = parse_id(input.appointment_id, "appointmentId")
        reference = reassigned(input)
        stages = context.stages
        return lambda s, events: writes.reassign_appointment(
            s, stages, side, appointment_id, reference, events, access
        )

    return Write(prepare, appointment_success, appointment_change(own_suffices=False))
