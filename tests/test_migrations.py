"""Alembic revisions agree with the models and tell the legacy-then-expand story."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import migrations
from appointments.models import Appointment, Base
from appointments.stages import Stage
from tests.conftest import Api, World, set_stages

READ = """
query Read($id: ID!) {
  appointment(id: $id) { doctor { id } clinicDoctor { id } patient { id } clinicPatient { id } }
}
"""


async def test_models_and_migrations_agree(engine: AsyncEngine) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_rows_from_the_legacy_schema_survive_the_expand_revision(
    engine: AsyncEngine,
    api: Api,
    world: World,
    flags_file: object,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await migrations.downgrade(engine, "0001_legacy_schema")
    appointment_id = uuid.uuid4()
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO appointments (id, clinic_id, starts_at, ends_at, status,"
                    " doctor_id, patient_id, created_at, updated_at) VALUES (:id, :clinic,"
                    " :starts, :ends, 'scheduled', :doctor, :patient, :starts, :starts)"
                ).bindparams(
                    id=appointment_id,
                    clinic=world.clinic_a.id,
                    starts=datetime(2026, 12, 3, 9, tzinfo=UTC),
                    ends=datetime(2026, 12, 3, 10, tzinfo=UTC),
                    doctor=world.doctor.id,
                    patient=world.patient.id,
                )
            )
    finally:
        await migrations.upgrade(engine)
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})  # type: ignore[arg-type]

    data = await api.data(READ, {"id": str(appointment_id)})

    assert data["appointment"]["doctor"] == {"id": str(world.doctor.id)}
    assert data["appointment"]["patient"] == {"id": str(world.patient.id)}
    assert data["appointment"]["clinicDoctor"] is None
    assert data["appointment"]["clinicPatient"] is None


async def test_downgrade_and_upgrade_round_trip(engine: AsyncEngine) -> None:
    await migrations.downgrade(engine, "base")
    await migrations.upgrade(engine)

    assert await migrations.current_heads(engine) == {migrations.SERVICE_HEAD}


async def test_a_database_contracted_before_a_new_expand_revision_still_takes_it(
    engine: AsyncEngine,
) -> None:
    await migrations.downgrade(engine, "base")
    await migrations.upgrade(engine, "0004_backfill_checkpoints")
    await migrations.upgrade(engine, migrations.CONTRACT_REVISION)
    try:
        await migrations.upgrade(engine)
        assert await migrations.current_heads(engine) == {
            migrations.SERVICE_HEAD,
            migrations.CONTRACT_REVISION,
        }
        assert await migrations.legacy_columns_present(engine) is False
    finally:
        await migrations.revert_contract(engine)
    assert await migrations.current_heads(engine) == {migrations.SERVICE_HEAD}
    assert await migrations.legacy_columns_present(engine) is True


@pytest.mark.parametrize(
    ("columns", "constraint"),
    [
        ({"doctor_id": None, "clinic_doctor_id": None}, "doctor_named"),
        ({"patient_id": None, "clinic_patient_id": None}, "patient_named"),
        ({"ends_at": datetime(2026, 12, 3, 8, tzinfo=UTC)}, "ends_after_start"),
        ({"status": "lost"}, "status_known"),
    ],
    ids=["no-doctor", "no-patient", "ends-before-start", "unknown-status"],
)
async def test_the_database_rejects_rows_that_break_its_checks(
    sessions: async_sessionmaker[AsyncSession],
    world: World,
    columns: dict[str, object],
    constraint: str,
) -> None:
    row: dict[str, object] = {
        "id": uuid.uuid4(),
        "clinic_id": world.clinic_a.id,
        "starts_at": datetime(2026, 12, 3, 9, tzinfo=UTC),
        "ends_at": datetime(2026, 12, 3, 10, tzinfo=UTC),
        "status": "scheduled",
        "doctor_id": world.doctor.id,
        "patient_id": world.patient.id,
        "clinic_doctor_id": None,
        "clinic_patient_id": None,
        **columns,
    }

    with pytest.raises(IntegrityError) as raised:
        async with sessions() as session, session.begin():
            await session.execute(insert(Appointment).values(row))

    assert constraint in str(raised.value)
