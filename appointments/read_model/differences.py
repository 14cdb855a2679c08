"""Where an appointment's two stored origins differ, from the read model's own SQL.

For writes that need to know it after the fact (the QA repair marks the ledger
entries it fixed): the same comparison a read makes (``served``), for one row.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.db import layout_of
from appointments.models import MismatchField
from appointments.read_model import rows
from appointments.read_model.served import RowPolicy, served_side
from appointments.sides import SIDES
from appointments.stages import Stage


async def stored_differences(
    session: AsyncSession, appointment_id: uuid.UUID
) -> set[MismatchField]:
    """The ledger fields on which the appointment's two origins differ now."""
    layout = layout_of(session)
    row = rows.from_clause(rows.by_ids([]).key, layout)
    # What the origins hold does not depend on the stage: any stage's policy will do.
    policy = RowPolicy.of(row.c.clinic_id, list(Stage)[:1])
    sides = [served_side(side, row, policy, layout, True) for side in SIDES]
    source: Any = row
    columns = []
    for served in sides:
        for table, on in served.joins:
            source = source.outerjoin(table, on)
        columns += [served.values.person_differs, served.values.clinic_differs]
    found = (
        await session.execute(select(*columns).select_from(source), {"ids": [appointment_id]})
    ).one_or_none()
    if found is None:
        return set()
    fields = [field for side in SIDES for field in (side.person_field, side.clinic_field)]
    return {field for field, differs in zip(fields, found, strict=True) if differs}
