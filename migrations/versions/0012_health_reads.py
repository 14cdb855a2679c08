"""Reads per clinic, minute and origin in the health counters, for the dashboard's charts.

An expand revision on the ``service`` branch: two counter columns, 0 for the
minutes already counted, so it applies to a database contracted or not.

Revision ID: 0012_health_reads
Revises: 0011_persisted_documents
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_health_reads"
down_revision = "0011_persisted_documents"
branch_labels = None
depends_on = None

COLUMNS = ("reads_legacy", "reads_new")


def upgrade() -> None:
    with op.batch_alter_table("clinic_health_counters") as table:
        for column in COLUMNS:
            table.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("clinic_health_counters") as table:
        for column in COLUMNS:
            table.drop_column(column)
