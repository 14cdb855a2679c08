"""The rollout autopilot's tables: the audit trail, holds, last decisions, per-clinic health.

An expand revision on the ``service`` branch: new tables only, so it applies to a
database contracted or not.

Revision ID: 0009_rollout
Revises: 0008_field_usage
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_rollout"
down_revision = "0008_field_usage"
branch_labels = None
depends_on = None

ACTIONS = "'promote', 'step_back', 'hold', 'release', 'set_stage', 'observed_change'"
STATES = "'intent', 'applied', 'abandoned'"


def upgrade() -> None:
    op.create_table(
        "clinic_health_counters",
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_fallbacks", sa.Integer(), nullable=False),
        sa.Column("write_failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("clinic_id", "minute", name=op.f("pk_clinic_health_counters")),
    )
    op.create_table(
        "rollout_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("from_stage", sa.String(length=16), nullable=True),
        sa.Column("to_stage", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("guards", sa.JSON(), nullable=False),
        sa.CheckConstraint(f"action IN ({ACTIONS})", name=op.f("ck_rollout_audit_action_known")),
        sa.CheckConstraint(f"state IN ({STATES})", name=op.f("ck_rollout_audit_state_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_audit")),
    )
    op.create_index(op.f("ix_rollout_audit_clinic_id_id"), "rollout_audit", ["clinic_id", "id"])
    op.create_index(op.f("ix_rollout_audit_action_at"), "rollout_audit", ["action", "at"])
    op.create_table(
        "rollout_holds",
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("audit_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("clinic_id", name=op.f("pk_rollout_holds")),
    )
    op.create_table(
        "rollout_status",
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cohort", sa.String(length=100), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("next_step", sa.Text(), nullable=False),
        sa.Column("blocking", sa.Text(), nullable=True),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("clinic_id", name=op.f("pk_rollout_status")),
    )


def downgrade() -> None:
    op.drop_table("rollout_status")
    op.drop_table("rollout_holds")
    op.drop_index(op.f("ix_rollout_audit_action_at"), table_name="rollout_audit")
    op.drop_index(op.f("ix_rollout_audit_clinic_id_id"), table_name="rollout_audit")
    op.drop_table("rollout_audit")
    op.drop_table("clinic_health_counters")
