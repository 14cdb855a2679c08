"""Clinic staff memberships (who may act for which clinic) and idempotency keys.

An expand revision: it branches from 0004 beside the contract revision (0005),
so the service's automatic upgrade can apply it on a database contracted or not.

Revision ID: 0006_staff_and_idempotency
Revises: 0004_backfill_checkpoints
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_staff_and_idempotency"
down_revision = "0004_backfill_checkpoints"
branch_labels = ("service",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clinic_staff",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_clinic_staff_clinic_id_clinics")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_clinic_staff_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_staff")),
        sa.UniqueConstraint("clinic_id", "user_id", name=op.f("uq_clinic_staff_clinic_id_user_id")),
    )
    op.create_index(op.f("ix_clinic_staff_user_id"), "clinic_staff", ["user_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("operation", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claim", sa.Uuid(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('running', 'done')", name=op.f("ck_idempotency_keys_state_known")
        ),
        sa.PrimaryKeyConstraint("actor", "key", "operation", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name=op.f("idempotency_keys"))
    op.drop_table("idempotency_keys")
    op.drop_index(op.f("ix_clinic_staff_user_id"), table_name=op.f("clinic_staff"))
    op.drop_table("clinic_staff")
