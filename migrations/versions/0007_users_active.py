"""Users can be deactivated: a deactivated user's tokens are refused on the next request.

An expand revision on the ``service`` branch (after 0006), so it applies to a
database contracted or not. Existing users stay active.

Revision ID: 0007_users_active
Revises: 0006_staff_and_idempotency
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_users_active"
down_revision = "0006_staff_and_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: SQLite's batch mode would copy the table, which
    # its foreign keys refuse while other tables reference users.
    op.add_column(
        "users", sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
    )


def downgrade() -> None:
    op.drop_column("users", "active")
