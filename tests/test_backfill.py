"""Backfill, reverse backfill and the validation report, on both databases."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import writes
from appointments.backfill import (
    BackfillOptions,
    Direction,
    Progress,
    run_backfill,
)
from appointments.events import PendingEvents
from appointments.models import Appointment, BackfillCheckpoint
from appointments.sides import DOCTOR, PATIENT
from appointments.stages import Stage, fixed_stage
from appointments.validation import ClinicReport, clinic_reports
from tests.conftest import World, insert_appointment, table_snapshot

START = datetime(2026, 12, 1, 8, tzinfo=UTC)


class InjectedCrashError(RuntimeError):
    pass


async def book(
    sessions: async_sessionmaker[AsyncSession],
    world: World,
    stage: Stage,
    count: int,
    offset: int = 0,
) -> list[uuid.UUID]:
    """Appointments in clinic A written in ``stage``, a third by a doctor with no membership."""
    doctors = (world.doctor, world.other_doctor, world.doctor_without_membership)
    patients = (world.patient, world.patient_without_membership)
    booked = []
    async with sessions() as session, session.begin():
        for number in range(count):
            starts_at = START + timedelta(hours=offset + number)
            appointment = await writes.create_appointment(
                session,
                fixed_stage(stage),
                writes.NewAppointment(
                    clinic_id=world.clinic_a.id,
                    starts_at=starts_at,
                    ends_at=starts_at + timedelta(minutes=30),
                    doctor=writes.PersonReference(person_id=doctors[number % 3].id),
                    patient=writes.PersonReference(person_id=patients[number % 2].id),
                ),
                PendingEvents(),
            )
            booked.append(appointment.id)
    return booked


async def report_of(sessions: async_sessionmaker[AsyncSession], world: World) -> ClinicReport:
    async with sessions() as session:
        (report,) = await clinic_reports(session, fixed_stage(Stage.SHADOW), [world.clinic_a.id])
    return report


async def test_a_crashed_backfill_resumes_and_a_second_run_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    await book(sessions, world, Stage.LEGACY, 30)
    before = await report_of(sessions, world)
    assert (before.doctor.linkable, before.doctor.missing_membership) == (20, 10)
    assert (before.patient.linkable, before.patient.missing_membership) == (15, 15)

    def crash_after_two_batches(progress: Progress) -> None:
        if progress.batches == 2:
            raise InjectedCrashError

    with pytest.raises(InjectedCrashError):
        await run_backfill(sessions, BackfillOptions(batch_size=7), crash_after_two_batches)
    async with sessions() as session:
        checkpoint = await session.get(BackfillCheckpoint, ("forward", "all"))
    assert checkpoint is not None
    assert (checkpoint.batches, checkpoint.finished_at) == (2, None)
    halfway = await report_of(sessions, world)
    assert 0 < halfway.doctor.linked < 20

    resumed = await run_backfill(sessions, BackfillOptions(batch_size=7))

    assert resumed.resumed is True
    assert resumed.linked == {"doctor": 20, "patient": 15}
    assert (await report_of(sessions, world)).inconsistent == 0
    assert resumed.remaining["doctor"] == {
        "no_membership_in_clinic": 10,
        "membership_exists_not_yet_linked": 0,
    }
    snapshot = await table_snapshot(sessions)
    again = await run_backfill(sessions, BackfillOptions(batch_size=7))
    assert again.resumed is False
    assert again.linked == {"doctor": 0, "patient": 0}
    assert (await table_snapshot(sessions))["appointments"] == snapshot["appointments"]


async def test_creating_memberships_links_everything_and_validation_then_reports_ready(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    await book(sessions, world, Stage.DUAL_WRITE, 12)
    assert (await report_of(sessions, world)).blockers

    summary = await run_backfill(
        sessions,
        BackfillOptions(batch_size=5, create_memberships=True, clinic_id=world.clinic_a.id),
    )

    assert summary.created_memberships == {"doctor": 1, "patient": 1}
    assert summary.linked == {"doctor": 4, "patient": 6}
    report = await report_of(sessions, world)
    assert (report.total, report.fully_linked, report.inconsistent) == (12, 12, 0)
    assert report.doctor.unlinked == report.patient.unlinked == 0
    assert report.next_stage is Stage.LIVE
    assert report.blockers == ()


async def test_a_dry_run_writes_nothing_and_predicts_the_real_run(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    await book(sessions, world, Stage.LEGACY, 9)
    before = await table_snapshot(sessions)

    preview = await run_backfill(sessions, BackfillOptions(dry_run=True))

    assert await table_snapshot(sessions) == before
    real = await run_backfill(sessions, BackfillOptions(batch_size=4))
    assert preview.linked == real.linked == {"doctor": 6, "patient": 5}
    assert preview.created_memberships == real.created_memberships == {"doctor": 0, "patient": 0}
    assert preview.remaining == real.remaining


async def test_a_dry_run_creating_memberships_counts_the_rows_they_would_link(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    """The rows linked through memberships the run creates count too; a legacy doctor who
    is not a doctor gets no membership, so neither the run nor its estimate links the row."""
    await book(sessions, world, Stage.LEGACY, 9)
    async with sessions() as session, session.begin():
        await insert_appointment(
            session, world, 20, doctor_id=world.staff.id, patient_id=world.patient.id
        )
    before = await table_snapshot(sessions)

    preview = await run_backfill(sessions, BackfillOptions(dry_run=True, create_memberships=True))

    assert await table_snapshot(sessions) == before
    real = await run_backfill(sessions, BackfillOptions(batch_size=4, create_memberships=True))
    assert real.linked == {"doctor": 9, "patient": 10}
    assert preview.linked == real.linked
    assert preview.created_memberships == real.created_memberships == {"doctor": 1, "patient": 1}
    assert preview.remaining == real.remaining
    assert real.remaining["doctor"]["no_membership_in_clinic"] == 1


async def test_concurrent_writes_during_a_backfill_all_end_consistent(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    existing = await book(sessions, world, Stage.LEGACY, 40)

    async def keep_writing() -> list[uuid.UUID]:
        created: list[uuid.UUID] = []
        for number in range(10):
            stage = (Stage.LEGACY, Stage.DUAL_WRITE)[number % 2]
            created += await book(sessions, world, stage, 1, offset=100 + number)
            side, person = (
                (DOCTOR, world.other_doctor.id) if number % 2 else (PATIENT, world.other_patient.id)
            )
            async with sessions() as session, session.begin():
                await writes.reassign_appointment(
                    session,
                    fixed_stage(stage),
                    side,
                    existing[number],
                    writes.PersonReference(person_id=person),
                    PendingEvents(),
                )
        return created

    created, _summary = await asyncio.gather(
        keep_writing(), run_backfill(sessions, BackfillOptions(batch_size=3))
    )

    report = await report_of(sessions, world)
    assert report.inconsistent == 0
    async with sessions() as session:
        stored = set((await session.execute(select(Appointment.id))).scalars())
    assert stored == set(existing) | set(created)


async def test_reverse_backfill_fills_legacy_columns_of_rows_written_in_complete(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    booked = await book(sessions, world, Stage.DUAL_WRITE, 6)
    await run_backfill(sessions, BackfillOptions(create_memberships=True))
    written_in_complete = await book(sessions, world, Stage.COMPLETE, 4, offset=50)
    assert (await report_of(sessions, world)).doctor.legacy_missing == 4

    summary = await run_backfill(sessions, BackfillOptions(direction=Direction.REVERSE))

    assert summary.linked == {"doctor": 4, "patient": 4}
    report = await report_of(sessions, world)
    assert report.doctor.legacy_missing == report.patient.legacy_missing == 0
    assert report.inconsistent == 0
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Appointment).where(Appointment.id.in_(booked + written_in_complete))
            )
        ).scalars()
        assert all(row.doctor_id is not None and row.patient_id is not None for row in rows)


async def test_a_write_from_a_stale_read_replaces_the_whole_side_a_backfill_linked_meanwhile(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    (appointment_id,) = await book(sessions, world, Stage.LEGACY, 1)
    async with sessions() as writer:
        stale = await writer.get(Appointment, appointment_id)
        assert stale is not None
        assert stale.clinic_doctor_id is None

        await run_backfill(sessions, BackfillOptions())
        DOCTOR.set_links(stale, world.other_doctor.id, None)
        await writer.commit()

    async with sessions() as reader:
        stored = await reader.get(Appointment, appointment_id)
        assert stored is not None
        assert (stored.doctor_id, stored.clinic_doctor_id) == (world.other_doctor.id, None)
