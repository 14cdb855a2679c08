"""Settings that tune the process: pool size and the garbage collector."""

from __future__ import annotations

import gc

import pytest

from appointments.db import create_engine
from server.app import tune_garbage_collector
from server.settings import Settings, SettingsError


def test_pool_and_collector_settings_come_from_the_environment() -> None:
    settings = Settings.from_environment(
        {
            "CLINIC_DATABASE_POOL_SIZE": "7",
            "CLINIC_DATABASE_MAX_OVERFLOW": "0",
            "CLINIC_GC_THRESHOLD": "0",
        }
    )

    assert (settings.database_pool_size, settings.database_max_overflow) == (7, 0)
    assert settings.gc_threshold == 0
    with pytest.raises(SettingsError, match="CLINIC_DATABASE_POOL_SIZE must be at least 1"):
        Settings.from_environment({"CLINIC_DATABASE_POOL_SIZE": "0"})
    with pytest.raises(SettingsError, match="CLINIC_GC_THRESHOLD must be at least 0"):
        Settings.from_environment({"CLINIC_GC_THRESHOLD": "-5"})


async def test_a_postgresql_engine_keeps_the_configured_number_of_connections() -> None:
    engine = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test", pool_size=7, max_overflow=2
    )
    try:
        assert engine.sync_engine.pool.size() == 7  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


def test_the_collector_threshold_is_set_once_and_zero_leaves_it_alone() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector(0)
        assert gc.get_threshold() == before
        tune_garbage_collector(12_345)
        assert gc.get_threshold()[0] == 12_345
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
