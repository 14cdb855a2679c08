"""Daily counts of operations selecting a deprecated field, per client (field usage).

An expand revision on the ``service`` branch (after 0007), so it applies to a
database contracted or not.

Revision ID: 0008_field_usage
Revises: 0007_users_active
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_field_usage"
down_revision = "0007_users_active"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "field_usage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("client_name", sa.String(length=64), nullable=False),
        sa.Column("client_version", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=128), nullable=False),
        sa.Column("operations", sa.BigInteger(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "client_name", "client_version", "field", name=op.f("pk_field_usage_daily")
        ),
    )


def downgrade() -> None:
    op.drop_table("field_usage_daily")
