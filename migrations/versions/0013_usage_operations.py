"""Daily counts of operations selecting a deprecated field, per client and operation (its
name and document hash), so a frontend team can find the code still reading the field.

An expand revision on the ``service`` branch (a new table), so it applies to a database
contracted or not.

Revision ID: 0013_usage_operations
Revises: 0012_health_reads
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_usage_operations"
down_revision = "0012_health_reads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "field_usage_operations",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("client_name", sa.String(length=64), nullable=False),
        sa.Column("operation_name", sa.String(length=128), nullable=False),
        sa.Column("document_hash", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=128), nullable=False),
        sa.Column("operations", sa.BigInteger(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "client_name",
            "operation_name",
            "document_hash",
            "field",
            name=op.f("pk_field_usage_operations"),
        ),
    )


def downgrade() -> None:
    op.drop_table("field_usage_operations")
