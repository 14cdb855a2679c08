"""The `clinic` command answers at once: it imports only the command asked for, and says
nothing of third-party libraries' inner workings. Timings are in bench/cli.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_serve import free_port

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("alembic", "strawberry", "uvicorn", "schema.schema", "server.app", "migrations")
CLINIC = str(Path(sys.executable).with_name("clinic"))


def imported_by(arguments: list[str], directory: Path) -> set[str]:
    """The modules `clinic ARGUMENTS` has imported once it finished, run in ``directory``."""
    probe = (
        "import sys\n"
        "from server.cli import main\n"
        "try:\n"
        f"    main({arguments!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\n'.join(sys.modules), file=sys.stderr)\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=directory,
        env=clean_environment() | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return set(finished.stderr.splitlines())


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CLINIC_", "UNLEASH_"))}


def heavy(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in HEAVY or name in HEAVY}


def test_help_imports_no_command(tmp_path: Path) -> None:
    modules = imported_by(["--help"], tmp_path)

    assert heavy(modules) == set()
    assert not {"sqlalchemy", "UnleashClient", "httpx", "prometheus_client"} & modules


@pytest.mark.parametrize("command", [["flags", "show"], ["flags", "validate"]])
def test_flags_commands_import_neither_the_app_nor_alembic(
    tmp_path: Path, command: list[str]
) -> None:
    subprocess.run([CLINIC, "seed"], cwd=tmp_path, env=clean_environment(), check=True)

    assert heavy(imported_by(command, tmp_path)) == set()


def test_every_command_is_listed_and_parses_its_own_arguments(tmp_path: Path) -> None:
    listed = subprocess.run(
        [CLINIC, "--help"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    for command in ("serve", "migrate", "seed", "flags", "ledger", "rollout", "usage", "token"):
        assert f"    {command} " in listed, listed
        usage = subprocess.run(
            [CLINIC, command, "--help"], cwd=tmp_path, capture_output=True, text=True, check=True
        ).stdout
        assert usage.startswith(f"usage: clinic {command}"), usage


def test_unleash_scheduler_says_nothing_at_info(tmp_path: Path) -> None:
    subprocess.run([CLINIC, "seed"], cwd=tmp_path, env=clean_environment(), check=True)
    environment = clean_environment() | {
        "UNLEASH_URL": f"http://127.0.0.1:{free_port()}/api",
        "UNLEASH_API_TOKEN": "default:development.unused",
        "UNLEASH_CACHE_DIR": str(tmp_path / "cache"),
        "CLINIC_LOG_FORMAT": "json",
    }
    shown = subprocess.run(
        [CLINIC, "flags", "show"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )

    loggers = {json.loads(line)["logger"] for line in shown.stderr.splitlines()}
    assert loggers <= {"server", "flags"}, shown.stderr
    assert "stages from unleash" in shown.stdout


def test_token_roles_are_the_user_roles() -> None:
    from appointments.models import UserRole
    from server.service_commands import ROLES

    assert tuple(role.value for role in UserRole) == ROLES


def test_the_service_logs_keep_the_unleash_scheduler_and_alembic_plugins_quiet() -> None:
    from server.logs import logging_config

    loggers = logging_config("INFO")["loggers"]

    assert loggers["apscheduler"]["level"] == "WARNING"
    assert loggers["alembic.runtime.plugins"]["level"] == "WARNING"
