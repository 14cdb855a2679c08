"""Mismatch ledger: differences seen between the legacy and the new side of appointments.

Revision ID: 0003_mismatch_ledger
Revises: 0002_expand_clinic_memberships
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_mismatch_ledger"
down_revision = "0002_expand_clinic_memberships"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "migration_mismatches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("appointment_id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("legacy_value", sa.Uuid(), nullable=True),
        sa.Column("new_value", sa.Uuid(), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("times_seen", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_changed_by", sa.String(length=200), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_comment", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "field IN ('doctor', 'patient', 'doctor_clinic', 'patient_clinic')",
            name=op.f("ck_migration_mismatches_field_known"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'ignored', 'fixed')",
            name=op.f("ck_migration_mismatches_status_known"),
        ),
        sa.CheckConstraint(
            "times_seen > 0", name=op.f("ck_migration_mismatches_seen_at_least_once")
        ),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointments.id"],
            name=op.f("fk_migration_mismatches_appointment_id_appointments"),
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_migration_mismatches_clinic_id_clinics")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_mismatches")),
        sa.UniqueConstraint(
            "appointment_id", "field", name=op.f("uq_migration_mismatches_appointment_id_field")
        ),
    )
    op.create_index(
        op.f("ix_migration_mismatches_clinic_id_status_last_seen_at"),
        "migration_mismatches",
        ["clinic_id", "status", "last_seen_at"],
    )
    op.create_index(
        op.f("ix_migration_mismatches_status_last_seen_at"),
        "migration_mismatches",
        ["status", "last_seen_at"],
    )


def downgrade() -> None:
    op.drop_table("migration_mismatches")
