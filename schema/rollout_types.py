"""GraphQL types of the rollout audit trail (QA and admin)."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from appointments import models
from appointments.stages import Stage


@strawberry.type(
    description="One stage change, hold or release of a clinic: when, who, why, on what evidence"
)
class RolloutAuditEntry:
    id: int = strawberry.field(description="Increasing: a later entry has a larger id")
    at: datetime
    clinic_id: strawberry.ID
    clinic_name: str | None
    actor: str = strawberry.field(
        description="autopilot, cli:<login> (clinic flags set-stage, clinic rollout release),"
        " or unleash / flags-file for a change seen in the flag"
    )
    action: models.RolloutAction
    state: models.RolloutState = strawberry.field(
        description="A stage change is an intent until the flag was written, then applied;"
        " abandoned when the flag never showed it"
    )
    from_stage: Stage | None
    to_stage: Stage | None
    reason: str
    guards: JSON = strawberry.field(
        description="The evidence the decision read: window start, mismatches, read fallbacks,"
        " write failures, readiness, and the plan's limits"
    )

    @classmethod
    def from_row(cls, row: models.RolloutAudit, clinic_name: str | None) -> RolloutAuditEntry:
        return cls(
            id=row.id,
            at=row.at,
            clinic_id=strawberry.ID(str(row.clinic_id)),
            clinic_name=clinic_name,
            actor=row.actor,
            action=models.RolloutAction(row.action),
            state=models.RolloutState(row.state),
            from_stage=None if row.from_stage is None else Stage(row.from_stage),
            to_stage=None if row.to_stage is None else Stage(row.to_stage),
            reason=row.reason,
            guards=cast("JSON", row.guards),
        )
