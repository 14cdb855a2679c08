"""Expand: clinic memberships and the new appointment links, beside the legacy ones.

Adds ``clinic_doctors`` and ``clinic_patients`` and the nullable
``appointments.clinic_doctor_id`` / ``clinic_patient_id``. The legacy columns
become nullable (rows written in the ``complete`` stage have none), and a check
keeps every appointment naming its doctor and its patient on at least one side.
Nothing is dropped: old code keeps working against this schema.

Revision ID: 0002_expand_clinic_memberships
Revises: 0001_legacy_schema
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_expand_clinic_memberships"
down_revision = "0001_legacy_schema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clinic_doctors",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_clinic_doctors_clinic_id_clinics")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_clinic_doctors_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_doctors")),
        sa.UniqueConstraint(
            "clinic_id", "user_id", name=op.f("uq_clinic_doctors_clinic_id_user_id")
        ),
    )
    op.create_index(op.f("ix_clinic_doctors_user_id"), "clinic_doctors", ["user_id"])
    op.create_table(
        "clinic_patients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_clinic_patients_clinic_id_clinics")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_clinic_patients_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_patients")),
        sa.UniqueConstraint(
            "clinic_id", "patient_id", name=op.f("uq_clinic_patients_clinic_id_patient_id")
        ),
    )
    op.create_index(op.f("ix_clinic_patients_patient_id"), "clinic_patients", ["patient_id"])
    with op.batch_alter_table("appointments") as batch:
        batch.add_column(sa.Column("clinic_doctor_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("clinic_patient_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_appointments_clinic_doctor_id_clinic_doctors"),
            "clinic_doctors",
            ["clinic_doctor_id"],
            ["id"],
        )
        batch.create_foreign_key(
            op.f("fk_appointments_clinic_patient_id_clinic_patients"),
            "clinic_patients",
            ["clinic_patient_id"],
            ["id"],
        )
        batch.create_index(op.f("ix_appointments_clinic_doctor_id"), ["clinic_doctor_id"])
        batch.create_index(op.f("ix_appointments_clinic_patient_id"), ["clinic_patient_id"])
        batch.alter_column("doctor_id", existing_type=sa.Uuid(), nullable=True)
        batch.alter_column("patient_id", existing_type=sa.Uuid(), nullable=True)
        batch.create_check_constraint(
            op.f("ck_appointments_doctor_named"),
            "doctor_id IS NOT NULL OR clinic_doctor_id IS NOT NULL",
        )
        batch.create_check_constraint(
            op.f("ck_appointments_patient_named"),
            "patient_id IS NOT NULL OR clinic_patient_id IS NOT NULL",
        )


def downgrade() -> None:
    # Refuses (the NOT NULL fails) while rows written in `complete` lack legacy
    # links: run the reverse backfill first, so no appointment loses its people.
    with op.batch_alter_table("appointments") as batch:
        batch.drop_constraint(op.f("ck_appointments_patient_named"), type_="check")
        batch.drop_constraint(op.f("ck_appointments_doctor_named"), type_="check")
        batch.alter_column("patient_id", existing_type=sa.Uuid(), nullable=False)
        batch.alter_column("doctor_id", existing_type=sa.Uuid(), nullable=False)
        batch.drop_index(op.f("ix_appointments_clinic_patient_id"))
        batch.drop_index(op.f("ix_appointments_clinic_doctor_id"))
        batch.drop_constraint(
            op.f("fk_appointments_clinic_patient_id_clinic_patients"), type_="foreignkey"
        )
        batch.drop_constraint(
            op.f("fk_appointments_clinic_doctor_id_clinic_doctors"), type_="foreignkey"
        )
        batch.drop_column("clinic_patient_id")
        batch.drop_column("clinic_doctor_id")
    op.drop_index(op.f("ix_clinic_patients_patient_id"), table_name="clinic_patients")
    op.drop_table("clinic_patients")
    op.drop_index(op.f("ix_clinic_doctors_user_id"), table_name="clinic_doctors")
    op.drop_table("clinic_doctors")
