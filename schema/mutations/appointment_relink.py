"""``relinkAppointment``: rewrite an appointment's derived side from its authoritative side."""

from __future__ import annotations

import strawberry

from appointments import models, relink
from appointments.access import Access, Permission
from appointments.replays import in_clinic
from schema.context import RequestContext, WriteOperation
from schema.errors import parse_id
from schema.mutations.base import Write, actor_of, mutation
from schema.mutations.results import AppointmentResult, appointment_success


@mutation(
    AppointmentResult,
    position=15,
    description=(
        "Rewrite an appointment's derived side from its authoritative side, as the"
        " clinic's stage says, with the checks of a write (qa, admin); its ledger entries"
        " that are consistent again are marked fixed, by the viewer, with the comment"
    ),
)
def relink_appointment(
    appointment_id: strawberry.ID, comment: str | None = None
) -> Write[models.Appointment]:
    def prepare(access: Access, context: RequestContext) -> WriteOperation[models.Appointment]:
        parsed = parse_id(appointment_id, "appointmentId")
        actor = actor_of(context)
        stages = context.stages
        return lambda s, events: relink.relink_appointment(
            s, stages, parsed, actor, comment, events, access
        )

    return Write(
        prepare,
        appointment_success,
        in_clinic(Permission.RELINK, "appointmentId", "appointment"),
    )
