"""`clinic serve` refuses to start in one line, before any worker, when it cannot work:
a missing or unreachable database (exit 3), production without a usable key (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from server.app import create_app
from server.settings import Settings, SettingsError
from tests.conftest import DEFAULT_POSTGRES_URL, unavailable
from tests.test_serve import free_port

CLINIC = str(Path(sys.executable).with_name("clinic"))
POSTGRES = make_url(os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))


def serve(directory: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_"))
    }
    return subprocess.run(
        [CLINIC, "serve", "--port", str(free_port())],
        cwd=directory,
        env=environment | settings,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def require_postgres() -> None:
    admin = POSTGRES.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        psycopg.connect(admin, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        unavailable(f"PostgreSQL at {POSTGRES.render_as_string()} is unreachable: {error}")


def test_a_missing_postgresql_database_is_named_with_the_fix(tmp_path: Path) -> None:
    require_postgres()
    name = f"clinic_missing_{uuid.uuid4().hex[:8]}"
    url = POSTGRES.set(database=name).render_as_string(hide_password=False)

    finished = serve(tmp_path, CLINIC_DATABASE_URL=url)

    assert finished.returncode == 3
    assert finished.stdout == ""
    assert finished.stderr.count("\n") == 1, finished.stderr
    assert f'database "{name}" does not exist on' in finished.stderr
    assert f"createdb -h {POSTGRES.host} -O {POSTGRES.username} {name}" in finished.stderr


def test_a_missing_postgresql_role_is_named_with_the_fix(tmp_path: Path) -> None:
    require_postgres()
    role = f"clinic_nobody_{uuid.uuid4().hex[:8]}"
    url = POSTGRES.set(username=role).render_as_string(hide_password=False)

    finished = serve(tmp_path, CLINIC_DATABASE_URL=url)

    assert finished.returncode == 3
    assert finished.stderr.count("\n") == 1, finished.stderr
    assert f'role "{role}" does not exist' in finished.stderr
    assert f"createuser -h {POSTGRES.host} {role}" in finished.stderr


def test_an_unreachable_server_is_named_in_one_line(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://clinic@127.0.0.1:{free_port()}/clinic"

    finished = serve(tmp_path, CLINIC_DATABASE_URL=url)

    assert finished.returncode == 3
    assert finished.stderr.count("\n") == 1, finished.stderr
    assert finished.stderr.startswith('error: cannot reach database "clinic" on 127.0.0.1:')
    assert "CLINIC_DATABASE_URL" in finished.stderr


def test_a_sqlite_file_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")

    finished = serve(tmp_path, CLINIC_DATABASE_URL=f"sqlite+aiosqlite:///{blocker}/clinic.db")

    assert finished.returncode == 3
    assert finished.stderr.count("\n") == 1, finished.stderr
    assert f"cannot open the SQLite database {blocker}/clinic.db" in finished.stderr


@pytest.mark.parametrize(
    ("secret", "refusal"),
    [
        ("", "production mode needs CLINIC_JWT_SECRET or CLINIC_JWT_PUBLIC_KEY_FILE"),
        ("0123456789abcdef0123456789abcde", "CLINIC_JWT_SECRET is 31 bytes; production mode"),
    ],
)
def test_production_without_a_usable_key_refuses_before_saying_anything_else(
    tmp_path: Path, secret: str, refusal: str
) -> None:
    finished = serve(tmp_path, CLINIC_PRODUCTION="true", CLINIC_JWT_SECRET=secret)

    assert finished.returncode == 2
    assert finished.stdout == ""
    assert finished.stderr.startswith(f"configuration error: {refusal}"), finished.stderr
    assert finished.stderr.count("\n") == 1, finished.stderr


def test_the_app_refuses_a_short_secret_in_production_only(tmp_path: Path) -> None:
    short = "s" * 31
    with pytest.raises(SettingsError, match="CLINIC_JWT_SECRET is 31 bytes"):
        create_app(Settings(production=True, jwt_secret=short, flags_file=tmp_path / "f.json"))
    create_app(Settings(production=True, jwt_secret=short + "s", flags_file=tmp_path / "f.json"))
    create_app(Settings(jwt_secret=short, flags_file=tmp_path / "f.json"))
