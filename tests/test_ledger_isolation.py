"""The ledger and the health counters are written from what the request read, in
transactions of their own, whatever another root field of the operation did."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from appointments.comparison import Difference
from appointments.ledger import Observation
from appointments.ledger_sightings import SEEN_AGAIN
from appointments.models import MismatchField
from appointments.sides import DOCTOR
from appointments.stages import Stage
from flags.stages import Viewer
from tests.conftest import Api, Mess, World, ledger_rows, set_stages

MIXED = """
query Mixed($clinicId: ID!) {
  appointments(first: 100, filter: {clinicId: $clinicId}) {
    edges { node { id doctor { id } clinicDoctor { id } patient { id } clinicPatient { id } } }
  }
  clinic(id: $clinicId) { id name }
  rolloutAudit(first: 0) { id }
}
"""


async def test_a_failing_root_field_loses_no_mismatch_and_no_read_transaction_fails(
    api: Api,
    world: World,
    mess: Mess,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    caplog.set_level(logging.WARNING)
    reported = 0
    for _ in range(5):
        body = await api.post(MIXED, {"clinicId": str(world.clinic_a.id)})
        assert body["data"] is None
        assert body["errors"][0]["path"] == ["rolloutAudit"]
        reported += body["extensions"]["migration"]["mismatches"]
    # A difference seen again is counted in memory and added in batches.
    await SEEN_AGAIN.flush(api.services.sessions)

    rows = await ledger_rows(sessions)
    assert reported > 0
    assert rows
    assert sum(row.times_seen for row in rows.values()) == reported
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in failures if "ledger" in m or "read transaction" in m], failures


async def test_what_was_compared_is_recorded_even_when_the_read_session_broke(
    api: Api, world: World, mess: Mess, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The ledger's own transaction reads what it needs when the request's read session
    cannot (its connection was lost under another root field)."""
    request = Request({"type": "http", "method": "POST", "path": "/graphql", "headers": []})
    context = api.services.request_context(request, None, Viewer())
    difference = Difference(MismatchField.DOCTOR, world.doctor.id, world.other_doctor.id)
    context.recorder.observe(
        Observation(mess.wrong_person, world.clinic_a.id, Stage.SHADOW, DOCTOR, (difference,))
    )

    async def lose_the_connection(session: AsyncSession) -> None:
        await (await session.connection()).invalidate()

    await context.db.run(lose_the_connection)
    await context.close()

    rows = await ledger_rows(sessions)
    assert set(rows) == {(mess.wrong_person, MismatchField.DOCTOR.value)}
