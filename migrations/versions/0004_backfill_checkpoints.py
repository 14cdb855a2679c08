"""Backfill checkpoints (where a run got to, so a crashed run resumes) and its keyset index.

Revision ID: 0004_backfill_checkpoints
Revises: 0003_mismatch_ledger
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_backfill_checkpoints"
down_revision = "0003_mismatch_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backfill_checkpoints",
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("last_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_appointment_id", sa.Uuid(), nullable=True),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("linked_doctors", sa.Integer(), nullable=False),
        sa.Column("linked_patients", sa.Integer(), nullable=False),
        sa.Column("created_doctor_memberships", sa.Integer(), nullable=False),
        sa.Column("created_patient_memberships", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("direction", "scope", name=op.f("pk_backfill_checkpoints")),
    )
    # Backfills walk appointments in the order they were written.
    op.create_index(op.f("ix_appointments_created_at_id"), "appointments", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_appointments_created_at_id"), table_name="appointments")
    op.drop_table("backfill_checkpoints")
