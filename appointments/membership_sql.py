"""The SQL for "the membership of (clinic, person)", written once for every set-based path.

A clinic membership (``clinic_doctors``, ``clinic_patients``) is unique per
(clinic, person). So the membership an appointment's legacy column stands for is
the one whose clinic is the appointment's clinic and whose person is the legacy
person, and the legacy person a new link stands for is the linked membership's
person. The backfill, the reverse backfill, their dry run and the validation
report join on these conditions; a read path can too.

Everything here builds SQLAlchemy Core expressions over any ``FromClause`` with a
membership table's columns (the table itself, an alias of it, a subquery or a
lateral selecting from it), so a caller names its own aliases and join shape.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, FromClause, SQLColumnExpression, and_

from appointments.sides import Side


def membership_table(side: Side) -> FromClause:
    """The table of the side's memberships (``clinic_doctors`` or ``clinic_patients``);
    ``.alias(name)`` it to join it more than once."""
    return side.membership_model.__table__


def person_of(side: Side, membership: FromClause) -> ColumnElement[uuid.UUID]:
    """A membership's person: the user (doctor side) or patient (patient side) it is for."""
    column: ColumnElement[uuid.UUID] = membership.c[side.person_column]
    return column


def membership_of(
    side: Side,
    membership: FromClause,
    clinic: SQLColumnExpression[uuid.UUID],
    person: SQLColumnExpression[uuid.UUID],
) -> ColumnElement[bool]:
    """True for the row of ``membership`` that is ``person``'s membership in ``clinic``.

    At most one row matches (the membership tables are unique per clinic and
    person), so a join on it never multiplies the other side's rows. NULL, and so
    no match, when ``clinic`` or ``person`` is NULL: an empty legacy column has no
    membership. Both columns are equalities, served by the unique index.
    """
    return and_(membership.c.clinic_id == clinic, person_of(side, membership) == person)
