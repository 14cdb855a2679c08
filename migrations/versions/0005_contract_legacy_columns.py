"""Contract: drop the legacy doctor_id / patient_id columns (Phase 5).

Refuses, changing nothing, while any appointment lacks a clinic doctor or
clinic patient link, or has one that disagrees with its legacy columns:
dropping them then would lose who the appointment is for. Run the backfill
first. Not part of the service's automatic upgrade: `clinic migrate contract`.
The downgrade restores the columns and fills them from the memberships.

Revision ID: 0005_contract_legacy_columns
Revises: 0004_backfill_checkpoints
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations import ContractRefusedError

revision = "0005_contract_legacy_columns"
down_revision = "0004_backfill_checkpoints"
branch_labels = ("contract",)
depends_on = None

UNLINKED = """
SELECT count(*) FROM appointments
WHERE clinic_doctor_id IS NULL OR clinic_patient_id IS NULL
"""
DISAGREEING = """
SELECT count(*) FROM appointments a
JOIN clinic_doctors cd ON cd.id = a.clinic_doctor_id
JOIN clinic_patients cp ON cp.id = a.clinic_patient_id
WHERE (a.doctor_id IS NOT NULL AND a.doctor_id <> cd.user_id)
   OR (a.patient_id IS NOT NULL AND a.patient_id <> cp.patient_id)
   OR cd.clinic_id <> a.clinic_id OR cp.clinic_id <> a.clinic_id
"""


def upgrade() -> None:
    bind = op.get_bind()
    unlinked = bind.execute(sa.text(UNLINKED)).scalar_one()
    disagreeing = bind.execute(sa.text(DISAGREEING)).scalar_one()
    if unlinked or disagreeing:
        raise ContractRefusedError(
            f"{unlinked} appointments lack a clinic doctor or clinic patient link and "
            f"{disagreeing} have links that disagree with their legacy columns; dropping the "
            "legacy columns would lose who they are for. Run `clinic migrate backfill "
            "--create-memberships`, check `clinic migrate validate`, then contract again."
        )
    with op.batch_alter_table("appointments") as batch:
        batch.drop_constraint(op.f("ck_appointments_doctor_named"), type_="check")
        batch.drop_constraint(op.f("ck_appointments_patient_named"), type_="check")
        batch.drop_index(op.f("ix_appointments_doctor_id"))
        batch.drop_index(op.f("ix_appointments_patient_id"))
        batch.drop_constraint(op.f("fk_appointments_doctor_id_users"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_appointments_patient_id_patients"), type_="foreignkey")
        batch.drop_column("doctor_id")
        batch.drop_column("patient_id")
        batch.alter_column("clinic_doctor_id", existing_type=sa.Uuid(), nullable=False)
        batch.alter_column("clinic_patient_id", existing_type=sa.Uuid(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("appointments") as batch:
        batch.add_column(sa.Column("doctor_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("patient_id", sa.Uuid(), nullable=True))
        batch.alter_column("clinic_doctor_id", existing_type=sa.Uuid(), nullable=True)
        batch.alter_column("clinic_patient_id", existing_type=sa.Uuid(), nullable=True)
        batch.create_foreign_key(
            op.f("fk_appointments_doctor_id_users"), "users", ["doctor_id"], ["id"]
        )
        batch.create_foreign_key(
            op.f("fk_appointments_patient_id_patients"), "patients", ["patient_id"], ["id"]
        )
        batch.create_index(op.f("ix_appointments_doctor_id"), ["doctor_id"])
        batch.create_index(op.f("ix_appointments_patient_id"), ["patient_id"])
        batch.create_check_constraint(
            op.f("ck_appointments_doctor_named"),
            "doctor_id IS NOT NULL OR clinic_doctor_id IS NOT NULL",
        )
        batch.create_check_constraint(
            op.f("ck_appointments_patient_named"),
            "patient_id IS NOT NULL OR clinic_patient_id IS NOT NULL",
        )
    op.execute(
        "UPDATE appointments SET"
        " doctor_id = (SELECT user_id FROM clinic_doctors"
        " WHERE clinic_doctors.id = appointments.clinic_doctor_id),"
        " patient_id = (SELECT patient_id FROM clinic_patients"
        " WHERE clinic_patients.id = appointments.clinic_patient_id)"
    )
