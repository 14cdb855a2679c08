"""Settings: what tunes the process (pool size, the garbage collector) and what each command
needs (the Unleash tokens)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from appointments.db import create_engine
from server.app import create_app, tune_garbage_collector
from server.cli import main
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


def test_replicas_and_their_lag_limit_come_from_the_environment() -> None:
    standby = "postgresql+psycopg://reader@standby-1:5432/clinic"
    settings = Settings.from_environment(
        {
            "CLINIC_DATABASE_REPLICA_URLS": f" {standby}, ,{standby}2",
            "CLINIC_REPLICA_MAX_LAG_SECONDS": "2.5",
        }
    )

    assert settings.database_replica_urls == (standby, f"{standby}2")
    assert settings.replica_max_lag_seconds == 2.5
    assert Settings.from_environment({}).database_replica_urls == ()
    assert Settings.from_environment({}).replica_max_lag_seconds == 10.0
    with pytest.raises(SettingsError, match="replicas must be PostgreSQL URLs"):
        Settings.from_environment({"CLINIC_DATABASE_REPLICA_URLS": "sqlite:///x.db"})
    with pytest.raises(SettingsError, match="CLINIC_REPLICA_MAX_LAG_SECONDS must be a number"):
        Settings.from_environment({"CLINIC_REPLICA_MAX_LAG_SECONDS": "soon"})


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


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """`clinic` configures the root logger; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restored_logging")
def test_the_unleash_admin_commands_need_only_the_admin_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("UNLEASH_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", "*:*.admin-token")
    monkeypatch.delenv("UNLEASH_API_TOKEN", raising=False)

    exported = main(["flags", "unleash-export"])

    error = capsys.readouterr().err
    assert "UNLEASH_API_TOKEN" not in error
    assert exported == 1
    assert "Unleash at http://127.0.0.1:9: " in error
    assert "Connection refused" in error


@pytest.mark.usefixtures("restored_logging")
def test_what_reads_stages_from_unleash_still_needs_the_client_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("UNLEASH_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", "*:*.admin-token")
    monkeypatch.delenv("UNLEASH_API_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)

    assert main(["serve", "--port", "9"]) == 2
    assert "UNLEASH_API_TOKEN is not" in capsys.readouterr().err
    assert main(["flags", "show"]) == 2
    assert "UNLEASH_API_TOKEN is not" in capsys.readouterr().err
    with pytest.raises(SettingsError, match="UNLEASH_API_TOKEN"):
        create_app(Settings.from_environment())
