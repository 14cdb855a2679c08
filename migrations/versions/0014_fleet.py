"""Fleet-wide recent activity per stage, and the serving instances (host, process, flag
source) with their heartbeats.

An expand revision on the ``service`` branch: new tables only, so it applies to a
database contracted or not.

Revision ID: 0014_fleet
Revises: 0013_usage_operations
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_fleet"
down_revision = "0013_usage_operations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_activity",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "kind", "stage", name=op.f("pk_stage_activity")),
    )
    op.create_table(
        "service_instances",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("flag_source", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("host", "pid", name=op.f("pk_service_instances")),
    )
    op.create_index(op.f("ix_service_instances_seen_at"), "service_instances", ["seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_service_instances_seen_at"), table_name="service_instances")
    op.drop_table("service_instances")
    op.drop_table("stage_activity")
