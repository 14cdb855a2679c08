"""``setMismatchStatus``: triage a mismatch-ledger entry (open, ignored, fixed)."""

from __future__ import annotations

from appointments import ledger, models
from appointments.access import Access, Permission
from appointments.replays import anywhere
from schema.context import RequestContext, WriteOperation
from schema.errors import parse_id
from schema.inputs import SetMismatchStatusInput
from schema.ledger_types import MigrationMismatch, MismatchSuccess
from schema.mutations.base import Write, actor_of, mutation, without_events
from schema.mutations.results import MismatchResult


@mutation(
    MismatchResult, position=14, description="Triage a mismatch-ledger entry (open, ignored, fixed)"
)
def set_mismatch_status(input: SetMismatchStatusInput) -> Write[models.MigrationMismatch]:
    def prepare(
        access: Access, context: RequestContext
    ) -> WriteOperation[models.MigrationMismatch]:
        mismatch_id = parse_id(input.id, "id")
        actor = actor_of(context)
        return without_events(
            lambda s: ledger.set_mismatch_status(
                s, mismatch_id, input.status, actor, input.comment, access
            )
        )

    return Write(
        prepare,
        lambda row: MismatchSuccess(mismatch=MigrationMismatch.from_model(row)),
        anywhere(Permission.TRIAGE_LEDGER),
    )
