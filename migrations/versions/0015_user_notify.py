"""A notification on every change of a user or of a user's clinic membership.

Each service process keeps the users whose tokens it checked (role, active,
clinics) in memory and forgets one when PostgreSQL notifies it on channel
``clinic_users`` with the user's id: triggers send it in the transaction that
changes ``users``, ``clinic_staff`` or ``clinic_doctors``, whoever writes (the
API, the CLI, psql), and PostgreSQL delivers it when that transaction commits.
A ``TRUNCATE`` notifies ``*`` (forget every user). SQLite has no notifications:
nothing to add there, and the service checks every token with a statement.

An expand revision on the ``service`` branch: it applies to a database contracted
or not.

Revision ID: 0015_user_notify
Revises: 0014_fleet
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0015_user_notify"
down_revision = "0014_fleet"
branch_labels = None
depends_on = None

TABLES = {"users": "id", "clinic_staff": "user_id", "clinic_doctors": "user_id"}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in TABLES.items():
        op.execute(f"""
            CREATE FUNCTION clinic_notify_{table}_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP <> 'INSERT' THEN
                    PERFORM pg_notify('clinic_users', OLD.{column}::text);
                END IF;
                IF TG_OP <> 'DELETE' THEN
                    PERFORM pg_notify('clinic_users', NEW.{column}::text);
                END IF;
                RETURN NULL;
            END
            $$
        """)
        op.execute(f"""
            CREATE TRIGGER clinic_notify_users_change
            AFTER INSERT OR UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION clinic_notify_{table}_change()
        """)
    op.execute("""
        CREATE FUNCTION clinic_notify_users_truncated() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('clinic_users', '*');
            RETURN NULL;
        END
        $$
    """)
    for table in TABLES:
        op.execute(f"""
            CREATE TRIGGER clinic_notify_users_truncate
            AFTER TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION clinic_notify_users_truncated()
        """)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER clinic_notify_users_truncate ON {table}")
        op.execute(f"DROP TRIGGER clinic_notify_users_change ON {table}")
        op.execute(f"DROP FUNCTION clinic_notify_{table}_change()")
    op.execute("DROP FUNCTION clinic_notify_users_truncated()")
