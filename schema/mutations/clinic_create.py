"""``createClinic``: a new clinic (directory managers)."""

from __future__ import annotations

from appointments import directory, models
from appointments.access import Access, Permission
from appointments.replays import anywhere
from schema.context import RequestContext, WriteOperation
from schema.mutations.base import Write, mutation, without_events
from schema.mutations.results import ClinicResult
from schema.types import Clinic, ClinicSuccess


@mutation(ClinicResult, position=6)
def create_clinic(name: str) -> Write[models.Clinic]:
    def prepare(access: Access, _context: RequestContext) -> WriteOperation[models.Clinic]:
        return without_events(lambda s: directory.create_clinic(s, name, access))

    return Write(
        prepare,
        lambda row: ClinicSuccess(clinic=Clinic.from_model(row)),
        anywhere(Permission.MANAGE_DIRECTORY),
    )
