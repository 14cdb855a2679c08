"""The rollout autopilot on the flags file, on both databases: whole rollouts, breaches,
soak, rate limit, observed changes, crash repair, the lock, the audit trail's views."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.errors import DomainError
from appointments.models import (
    Appointment,
    ClinicHealthCounter,
    RolloutAction,
    RolloutState,
    RolloutStatus,
    utcnow,
)
from appointments.rollout import audit
from appointments.rollout.decisions import ClinicState, Verdict, decide
from appointments.rollout.engine import PassReport, run_pass
from appointments.rollout.evidence import Evidence
from appointments.rollout.plan import Plan
from appointments.stages import Stage
from flags.stage_writers import FlagsFileStageWriter
from server.cli import main
from tests.conftest import Api, set_stages
from tests.rollout_setup import (
    FORWARD,
    READ,
    RolloutClinics,
    audit_rows,
    held,
    moves,
    rollout_clinics,
    rollout_plan,
)
from tests.test_dashboard import dashboard


@pytest.fixture
async def clinics(sessions: async_sessionmaker[AsyncSession], flags_file: Path) -> RolloutClinics:
    created = await rollout_clinics(sessions)
    set_stages(flags_file, dict.fromkeys(created.all, Stage.LEGACY))
    return created


def writer_of(flags_file: Path) -> FlagsFileStageWriter:
    return FlagsFileStageWriter(flags_file, Stage.DUAL_WRITE)


async def passes(
    sessions: async_sessionmaker[AsyncSession], plan: Plan, flags_file: Path, count: int
) -> PassReport:
    report = PassReport()
    for _ in range(count):
        report = await run_pass(sessions, plan, writer_of(flags_file), utcnow())
        assert not report.errors, report.errors
    return report


async def test_clean_clinics_reach_complete_a_mismatch_steps_back_and_unlinked_waits(
    api: Api,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    clinics: RolloutClinics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "appointments.rollout")
    plan = rollout_plan(clinics)
    writer = writer_of(flags_file)

    await passes(sessions, plan, flags_file, 5)
    stages = writer.read(clinics.all).stages
    assert stages[clinics.clean_one] is Stage.COMPLETE
    assert {stages[c] for c in clinics.all[1:]} == {Stage.LEGACY}, "the rest waits for the pilot"

    await passes(sessions, plan, flags_file, 2)
    stages = writer.read(clinics.all).stages
    assert {stages[c] for c in clinics.all[1:3]} == {Stage.SHADOW}
    assert stages[clinics.unlinked] is Stage.DUAL_WRITE, "a backfill is due before shadow"
    body = await api.post(READ, {"clinicId": str(clinics.mismatched)})
    assert body["extensions"]["migration"]["mismatches"] == 1

    await passes(sessions, plan, flags_file, 5)

    stages = writer.read(clinics.all).stages
    assert stages == {
        clinics.clean_one: Stage.COMPLETE,
        clinics.clean_two: Stage.COMPLETE,
        clinics.mismatched: Stage.DUAL_WRITE,
        clinics.unlinked: Stage.DUAL_WRITE,
    }
    assert await moves(sessions, clinics.clean_one) == FORWARD
    assert await moves(sessions, clinics.clean_two) == FORWARD
    assert await moves(sessions, clinics.unlinked) == FORWARD[:1]
    assert await moves(sessions, clinics.mismatched) == [
        *FORWARD[:2],
        ("step_back", "shadow", "dual_write"),
    ]
    assert await held(sessions) == {clinics.mismatched}
    step_back, hold = (await audit_rows(sessions, clinics.mismatched))[-2:]
    assert (step_back.action, hold.action) == ("step_back", "hold")
    assert "mismatches: 1 in the window (at most 0)" in step_back.reason
    assert step_back.guards["mismatches"] == 1
    assert step_back.guards["limits"]["max_mismatches"] == 0
    async with sessions() as session:
        status = {row.clinic_id: row for row in await session.scalars(select(RolloutStatus))}
    assert (status[clinics.unlinked].blocking or "").startswith(
        "readiness for shadow: 1 appointments were booked before dual_write and not backfilled"
    )
    assert (status[clinics.mismatched].blocking or "").startswith("held: breach: mismatches: 1")
    assert status[clinics.clean_two].next_step.startswith("none: at the target")
    logged = [r for r in caplog.records if getattr(r, "event", None) == "rollout"]
    audited = await audit_rows(sessions)
    assert {getattr(r, "audit_id", None) for r in logged} == {row.id for row in audited}

    async with sessions() as session, session.begin():
        await audit.release(session, clinics.mismatched, "cli:qa", "the doctor link is fixed")
    await passes(sessions, plan, flags_file, 1)

    assert writer.read([clinics.mismatched]).stages[clinics.mismatched] is Stage.SHADOW
    assert await held(sessions) == set()
    release = [r for r in await audit_rows(sessions, clinics.mismatched) if r.action == "release"]
    assert [(r.actor, r.reason) for r in release] == [("cli:qa", "the doctor link is fixed")]


async def test_a_clinic_waits_out_its_soak_time_and_the_hourly_rate_limit(
    sessions: async_sessionmaker[AsyncSession], flags_file: Path, clinics: RolloutClinics
) -> None:
    plan = rollout_plan(clinics, soak='legacy = "0s"\ndefault = "1h"')
    plan = Plan(plan.target, 2, plan.soak, plan.guards, plan.cohorts[1:])
    writer = writer_of(flags_file)
    start = utcnow()

    first = await run_pass(sessions, plan, writer, start)

    assert len(first.moves) == 2, "two moves an hour"
    waiting = [d for d in first.decisions if d.verdict is Verdict.WAIT]
    assert [d.blocking for d in waiting] == ["rate limit: 2 moves in the last hour"] * 2
    moved = {d.clinic_id for d in first.moves}

    later = await run_pass(sessions, plan, writer, start + timedelta(minutes=30))
    soaking = {d.clinic_id: d.blocking for d in later.decisions if d.clinic_id in moved}
    assert set(soaking.values()) == {"eligible in 30m"}
    assert {d.blocking for d in later.decisions if d.clinic_id not in moved} == {
        "rate limit: 2 moves in the last hour"
    }

    hour_later = await run_pass(sessions, plan, writer, start + timedelta(minutes=61))
    assert len(hour_later.moves) == 2, "an hour later, two more moves"
    for decision in hour_later.moves:
        following = Stage.SHADOW if decision.clinic_id in moved else Stage.DUAL_WRITE
        assert decision.to_stage is following


async def test_a_change_made_by_hand_is_audited_as_observed_and_restarts_the_soak(
    sessions: async_sessionmaker[AsyncSession], flags_file: Path, clinics: RolloutClinics
) -> None:
    plan = rollout_plan(clinics, soak='default = "1h"')
    start = utcnow()
    await run_pass(sessions, plan, writer_of(flags_file), start)
    set_stages(
        flags_file, dict.fromkeys(clinics.all, Stage.LEGACY) | {clinics.clean_one: Stage.SHADOW}
    )

    report = await run_pass(sessions, plan, writer_of(flags_file), start + timedelta(minutes=90))

    observed = [
        r for r in await audit_rows(sessions, clinics.clean_one) if r.action == "observed_change"
    ]
    assert [(r.actor, r.from_stage, r.to_stage) for r in observed] == [
        ("flags-file", None, "legacy"),
        ("flags-file", "legacy", "shadow"),
    ]
    decision = next(d for d in report.decisions if d.clinic_id == clinics.clean_one)
    assert decision.blocking == "eligible in 1h", "the soak restarts at the observed change"
    assert decision.stage is Stage.SHADOW


async def test_a_failed_write_is_counted_per_clinic_and_steps_the_clinic_back(
    api: Api,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    clinics: RolloutClinics,
) -> None:
    set_stages(
        flags_file, dict.fromkeys(clinics.all, Stage.LEGACY) | {clinics.clean_two: Stage.LIVE}
    )
    plan = rollout_plan(clinics)
    await run_pass(sessions, plan, writer_of(flags_file), utcnow(), dry_run=False)
    async with sessions() as session:
        stranger = await _doctor_without_membership(session)
    body = await api.post(
        """mutation($input: CreateAppointmentInput!) {
          createAppointment(input: $input) { __typename ... on UserError { code } } }""",
        {
            "input": {
                "clinicId": str(clinics.clean_two),
                "startsAt": "2026-12-01T09:00:00Z",
                "endsAt": "2026-12-01T09:30:00Z",
                "doctorId": str(stranger),
                "patientId": str(await _any_patient(sessions, clinics.clean_two)),
            }
        },
    )
    assert body["data"]["createAppointment"]["code"] == "MEMBERSHIP_MISSING"
    async with sessions() as session:
        counters = list(await session.scalars(select(ClinicHealthCounter)))
    assert [(c.clinic_id, c.write_failures, c.read_fallbacks) for c in counters] == [
        (clinics.clean_two, 1, 0)
    ]

    report = await run_pass(sessions, plan, writer_of(flags_file), utcnow())

    decision = next(d for d in report.decisions if d.clinic_id == clinics.clean_two)
    assert (decision.verdict, decision.to_stage) == (Verdict.STEP_BACK, Stage.SHADOW)
    assert "write failures: 1 in the window (at most 0)" in decision.reason
    assert writer_of(flags_file).read([clinics.clean_two]).stages[clinics.clean_two] is Stage.SHADOW


async def _doctor_without_membership(session: AsyncSession) -> uuid.UUID:
    from appointments import directory
    from appointments.models import UserRole

    doctor = await directory.create_user(
        session, "Stranger", f"s{uuid.uuid4().hex[:6]}@example.org", UserRole.DOCTOR
    )
    await session.commit()
    return doctor.id


async def _any_patient(
    sessions: async_sessionmaker[AsyncSession], clinic_id: uuid.UUID
) -> uuid.UUID:
    from appointments.models import ClinicPatient

    async with sessions() as session:
        found = await session.scalar(
            select(ClinicPatient.patient_id).where(ClinicPatient.clinic_id == clinic_id)
        )
    assert found is not None
    return found


async def test_a_pass_killed_between_intent_and_flag_is_repaired_by_the_next(
    sessions: async_sessionmaker[AsyncSession], flags_file: Path, clinics: RolloutClinics
) -> None:
    plan = rollout_plan(clinics)
    writer = writer_of(flags_file)
    await run_pass(sessions, plan, writer, utcnow(), dry_run=True)
    async with sessions() as session, session.begin():
        for clinic_id in (clinics.clean_one, clinics.clean_two):
            await audit.record(
                session,
                clinic_id,
                "autopilot",
                RolloutAction.PROMOTE,
                "killed before the flag was written",
                Stage.LEGACY,
                Stage.DUAL_WRITE,
                state=RolloutState.INTENT,
            )
    writer.set_stage(clinics.clean_two, Stage.DUAL_WRITE)

    report = await run_pass(sessions, plan, writer, utcnow())

    assert sorted(report.repaired) == sorted(
        [f"{clinics.clean_one}: promote abandoned", f"{clinics.clean_two}: promote applied"]
    )
    assert await moves(sessions, clinics.clean_one) == FORWARD[:1], "retaken afresh"
    assert await moves(sessions, clinics.clean_two) == FORWARD[:1], "not taken twice"
    states = [
        r.state for r in await audit_rows(sessions, clinics.clean_one) if r.action == "promote"
    ]
    assert states == ["abandoned", "applied"]
    assert writer.read([clinics.clean_one]).stages[clinics.clean_one] is Stage.DUAL_WRITE


async def test_a_dry_run_writes_nothing_and_says_what_it_would_do(
    sessions: async_sessionmaker[AsyncSession], flags_file: Path, clinics: RolloutClinics
) -> None:
    before = await asyncio.to_thread(flags_file.read_bytes)

    report = await run_pass(sessions, rollout_plan(clinics), writer_of(flags_file), utcnow(), True)

    assert [(d.clinic_id, d.to_stage) for d in report.moves] == [
        (clinics.clean_one, Stage.DUAL_WRITE)
    ]
    assert await asyncio.to_thread(flags_file.read_bytes) == before
    assert await audit_rows(sessions) == []


def test_missing_evidence_holds_a_clinic_where_it_is() -> None:
    clinics = RolloutClinics(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    plan = rollout_plan(clinics)
    state = ClinicState(clinics.clean_one, "pilot", Stage.SHADOW, None, None)
    now = utcnow()
    missing = Evidence(
        since=now - timedelta(days=1),
        mismatches=0,
        read_fallbacks=None,
        write_failures=None,
        current_blockers=(),
        next_blockers=(),
        missing=("health counters unreadable: no such table",),
    )

    decision = decide(plan, state, missing, now, moves_left=10)

    assert decision.verdict is Verdict.WAIT
    assert decision.blocking == "health counters unreadable: no such table"


async def test_release_of_a_clinic_not_held_is_refused_and_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], clinics: RolloutClinics
) -> None:
    with pytest.raises(DomainError, match="is not held"):
        async with sessions() as session, session.begin():
            await audit.release(session, clinics.clean_one, "cli:qa", "why not")
    assert await audit_rows(sessions) == []


async def test_the_dashboard_shows_each_clinics_stage_next_step_blocking_guard_and_history(
    api: Api,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    clinics: RolloutClinics,
) -> None:
    before = await dashboard(api)
    assert "No rollout pass yet" in before["rollout"].rows[0].cells[0].text

    await passes(sessions, rollout_plan(clinics), flags_file, 2)

    rollout = (await dashboard(api))["rollout"]
    rows = rollout.by_attr("data-clinic-id")
    assert set(rows) == {str(c) for c in clinics.all}
    pilot = rows[str(clinics.clean_one)]
    assert rollout.column(pilot, "Stage").text == "shadow"
    assert rollout.column(pilot, "Next step").text.startswith("promote to live")
    history = rollout.column(pilot, "History").text
    assert "promote dual_write → shadow applied by autopilot" in history
    assert "promote legacy → dual_write applied by autopilot" in history
    assert "(mismatches 0, fallbacks 0, failed writes 0)" in history
    waiting = rows[str(clinics.clean_two)]
    assert rollout.column(waiting, "Blocking").text == 'cohort "pilot" is not at the target yet'


async def test_read_fallbacks_are_counted_per_clinic_and_step_the_clinic_back(
    api: Api,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    clinics: RolloutClinics,
) -> None:
    set_stages(
        flags_file, dict.fromkeys(clinics.all, Stage.LEGACY) | {clinics.clean_two: Stage.SHADOW}
    )
    plan = rollout_plan(clinics)
    await run_pass(sessions, plan, writer_of(flags_file), utcnow())
    async with sessions() as session, session.begin():
        row = await session.scalar(
            select(Appointment).where(Appointment.clinic_id == clinics.clean_two)
        )
        assert row is not None
        row.doctor_id = None  # written in complete, read after a step back: legacy side empty

    body = await api.post(READ, {"clinicId": str(clinics.clean_two)})

    assert body["extensions"]["migration"]["readFallbacks"] == 1
    async with sessions() as session:
        counters = list(await session.scalars(select(ClinicHealthCounter)))
    assert [(c.clinic_id, c.read_fallbacks, c.write_failures) for c in counters] == [
        (clinics.clean_two, 1, 0)
    ]
    report = await run_pass(sessions, plan, writer_of(flags_file), utcnow())
    decision = next(d for d in report.decisions if d.clinic_id == clinics.clean_two)
    assert (decision.verdict, decision.to_stage) == (Verdict.STEP_BACK, Stage.DUAL_WRITE)
    assert "read fallbacks: 1 in the window (at most 0)" in decision.reason


async def test_clinic_flags_set_stage_is_audited_and_not_seen_again_as_a_change(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    clinics: RolloutClinics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLINIC_DATABASE_URL", database_url)
    monkeypatch.setenv("CLINIC_FLAGS_FILE", str(flags_file))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        arguments = ["flags", "set-stage", str(clinics.unlinked), "dual_write"]
        arguments += ["--actor", "po:anna", "--reason", "pilot by hand"]
        assert await asyncio.to_thread(main, arguments) == 0
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

    [row] = await audit_rows(sessions, clinics.unlinked)
    assert (row.action, row.actor, row.reason) == ("set_stage", "po:anna", "pilot by hand")
    assert (row.from_stage, row.to_stage, row.state) == ("legacy", "dual_write", "applied")
    report = await run_pass(sessions, rollout_plan(clinics), writer_of(flags_file), utcnow())
    assert str(clinics.unlinked) not in " ".join(report.observed)
