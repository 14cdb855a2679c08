"""The rollout audit trail learns failed moves, the kill switch's pauses and backfills.

A move the flag refused or does not show after its write is ``failed``; a pass
that found the flag switched off records a ``pause`` (and a ``resume`` when it is
on again); a backfill the autopilot ran before a promotion is a ``backfill``
row. Only the two check constraints change.

Revision ID: 0010_rollout_outcomes
Revises: 0009_rollout
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0010_rollout_outcomes"
down_revision = "0009_rollout"
branch_labels = None
depends_on = None

ACTIONS_BEFORE = "'promote', 'step_back', 'hold', 'release', 'set_stage', 'observed_change'"
ACTIONS = f"{ACTIONS_BEFORE}, 'pause', 'resume', 'backfill'"
STATES_BEFORE = "'intent', 'applied', 'abandoned'"
STATES = f"{STATES_BEFORE}, 'failed'"


def _constraints(actions: str, states: str) -> None:
    with op.batch_alter_table("rollout_audit") as table:
        table.drop_constraint(op.f("ck_rollout_audit_action_known"), type_="check")
        table.drop_constraint(op.f("ck_rollout_audit_state_known"), type_="check")
        table.create_check_constraint(
            op.f("ck_rollout_audit_action_known"), f"action IN ({actions})"
        )
        table.create_check_constraint(op.f("ck_rollout_audit_state_known"), f"state IN ({states})")


def upgrade() -> None:
    _constraints(ACTIONS, STATES)


def downgrade() -> None:
    op.execute("UPDATE rollout_audit SET state = 'abandoned' WHERE state = 'failed'")
    op.execute("DELETE FROM rollout_audit WHERE action IN ('pause', 'resume', 'backfill')")
    _constraints(ACTIONS_BEFORE, STATES_BEFORE)
