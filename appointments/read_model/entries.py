"""What the mismatch ledger holds for an appointment, read by the read statement itself.

A read in a compared stage needs to know, for each difference it finds, whether
the ledger has it already (open or ignored: only counted again), had it fixed
(reopened) or never saw it (a first sighting, written before the response); and
for each field found consistent, whether an open entry is to be marked fixed.
One correlated subquery per row (one index lookup on the ledger's
``(appointment_id, field)``) answers all of it as one integer: two bits per
field, in ``FIELDS`` order, holding the entry's status code (0: no entry).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, case, func, select

from appointments.ledger import Entries
from appointments.models import MigrationMismatch, MismatchField, MismatchStatus
from appointments.read_model.sql import text_constant

FIELDS = tuple(MismatchField)
_CODES = {MismatchStatus.OPEN: 1, MismatchStatus.IGNORED: 2, MismatchStatus.FIXED: 3}
_STATUSES = {code: status for status, code in _CODES.items()}

NO_ENTRIES: Entries = {}


def entries_sql(appointment_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """The statuses of the appointment's entries, encoded (NULL when it has none)."""
    table = MigrationMismatch.__table__.alias("ledger")
    weight = case(
        *((table.c.field == text_constant(field.value), 4**n) for n, field in enumerate(FIELDS)),
        else_=0,
    )
    code = case(
        *((table.c.status == text_constant(status.value), n) for status, n in _CODES.items()),
        else_=0,
    )
    return (
        select(func.sum(weight * code))
        .where(table.c.appointment_id == appointment_id)
        .scalar_subquery()
    )


def decoded(encoded: int | None) -> Entries:
    """The statuses ``entries_sql`` encoded."""
    if not encoded:
        return NO_ENTRIES
    found: dict[MismatchField, MismatchStatus] = {}
    for n, field in enumerate(FIELDS):
        code = (int(encoded) >> (2 * n)) & 3
        if code:
            found[field] = _STATUSES[code]
    return found
