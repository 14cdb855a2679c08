"""GraphQL documents known by their hash (automatic persisted queries).

An expand revision on the ``service`` branch: a new table only, so it applies to
a database contracted or not.

Revision ID: 0011_persisted_documents
Revises: 0010_rollout_outcomes
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_persisted_documents"
down_revision = "0010_rollout_outcomes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "persisted_documents",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_persisted_documents")),
    )
    op.create_index(
        op.f("ix_persisted_documents_created_at"), "persisted_documents", ["created_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_persisted_documents_created_at"), table_name="persisted_documents")
    op.drop_table("persisted_documents")
