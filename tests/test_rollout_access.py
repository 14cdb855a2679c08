"""The rollout audit trail in GraphQL: for qa and admin only, on both databases."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import utcnow
from appointments.rollout.engine import run_pass
from appointments.stages import Stage
from flags.stage_writers import FlagsFileStageWriter
from tests.conftest import Clinics
from tests.rollout_setup import RolloutClinics, rollout_plan

AUDIT = """
query($clinicId: ID, $first: Int) {
  rolloutAudit(clinicId: $clinicId, first: $first) {
    id clinicId clinicName actor action state fromStage toStage reason guards
  }
}
"""


async def test_the_audit_query_is_for_qa_and_admin(
    sessions: async_sessionmaker[AsyncSession], flags_file: Path, clinics: Clinics
) -> None:
    world = clinics.world
    plan_clinics = RolloutClinics(world.clinic_a.id, world.clinic_b.id, uuid.uuid4(), uuid.uuid4())
    await run_pass(
        sessions,
        rollout_plan(plan_clinics),
        FlagsFileStageWriter(flags_file, Stage.DUAL_WRITE),
        utcnow(),
    )
    callers = clinics.callers

    for role in ("admin", "qa"):
        data = await callers[role].data(AUDIT, clinicId=str(world.clinic_a.id), first=10)
        entries: list[dict[str, Any]] = data["rolloutAudit"]
        assert [(e["action"], e["fromStage"], e["toStage"]) for e in entries] == [
            ("PROMOTE", "DUAL_WRITE", "SHADOW"),
            ("OBSERVED_CHANGE", None, "DUAL_WRITE"),
        ]
        assert entries[0]["actor"] == "autopilot"
        assert entries[0]["state"] == "APPLIED"
        assert entries[0]["clinicName"] == "Clinic A"
        assert entries[0]["guards"]["mismatches"] == 0
    for role in ("staff", "doctor"):
        body = await callers[role].post(AUDIT)
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await callers["admin"].post(AUDIT, first=0)
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
