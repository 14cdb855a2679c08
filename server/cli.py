"""The `clinic` command: serve, migrate, seed, flags, ledger, rollout, usage, token, schema."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
import webbrowser
from collections.abc import Sequence
from pathlib import Path

import uvicorn

import migrations
from appointments.db import create_engine, create_session_factory
from appointments.events import PendingEvents
from appointments.models import UserRole
from appointments.seed import DEMO_ROLLOUT, DEMO_USERS, demo_clinic_stages, seed_demo
from flags.document import (
    FlagsFileError,
    build_document,
    write_document,
)
from server.auth import mint_token
from server.documents_commands import add_documents_commands
from server.flags_commands import add_flags_commands
from server.ledger_commands import add_ledger_commands
from server.logs import configure_logging, logging_config
from server.migrate_commands import add_migrate_commands
from server.rollout_commands import add_rollout_commands
from server.settings import Settings, SettingsError
from server.terminal import safe_standard_output
from server.usage_commands import add_usage_commands
from server.user_commands import add_user_commands

logger = logging.getLogger("server.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        settings = Settings.from_environment()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        with safe_standard_output():
            result: int = arguments.handler(settings, arguments)
    except BrokenPipeError:
        # The reader went away (`clinic rollout status | head`): the rest is not wanted.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except (FlagsFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinic", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the GraphQL service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--demo", action="store_true", help="migrate, load the demo data and flags file if absent"
    )
    serve.add_argument(
        "--open", action="store_true", help="open GraphiQL in a browser once the service is up"
    )
    serve.set_defaults(handler=_serve)

    add_migrate_commands(commands)
    add_user_commands(commands)

    seed = commands.add_parser("seed", help="load the demo data set (skipped if present)")
    seed.add_argument("--appointments-per-clinic", type=int, default=50)
    seed.add_argument("--reset-flags", action="store_true", help="overwrite the flags file")
    seed.set_defaults(handler=_seed)

    add_flags_commands(commands)
    add_documents_commands(commands)
    add_ledger_commands(commands)
    add_rollout_commands(commands)
    add_usage_commands(commands)

    token = commands.add_parser(
        "token", help="mint a bearer token (HS256, CLINIC_JWT_SECRET) to try a role in GraphiQL"
    )
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--demo",
        choices=[role.value for role in UserRole],
        help="a demo user of that role (from `clinic seed`)",
    )
    who.add_argument("--user", type=uuid.UUID, help="any user id (with --role)")
    token.add_argument("--role", choices=[role.value for role in UserRole])
    token.add_argument("--hours", type=float, default=8.0)
    token.set_defaults(handler=_token)

    schema = commands.add_parser("schema", help="print the GraphQL SDL")
    schema.set_defaults(handler=_schema)
    return parser


def _serve(settings: Settings, arguments: argparse.Namespace) -> int:
    settings.require_client_token()
    if arguments.demo:
        asyncio.run(_prepare_demo(settings, reset_flags=False, per_clinic=50))
    if arguments.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker writes its metrics here and /metrics adds them up; set before
        # the workers start, since prometheus_client reads it when first imported.
        metrics_directory = tempfile.mkdtemp(prefix="clinic-metrics-")
        atexit.register(shutil.rmtree, metrics_directory, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_directory
    url = f"http://{arguments.host}:{arguments.port}/graphql"
    print(f"GraphiQL: {url}", flush=True)
    if arguments.open:
        threading.Thread(
            target=_open_when_listening, args=(arguments.host, arguments.port, url), daemon=True
        ).start()
    uvicorn.run(
        "server.app:create_app",
        factory=True,
        host=arguments.host,
        port=arguments.port,
        workers=arguments.workers,
        log_config=logging_config(settings.log_level, settings.log_format),
    )
    return 0


def _open_when_listening(host: str, port: int, url: str) -> None:
    """Open a graphical browser once the port accepts connections; never a terminal one."""
    if not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ) and sys.platform not in (
        "darwin",
        "win32",
    ):
        print("no display: open the GraphiQL address above in a browser", flush=True)
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                webbrowser.open(url)
                return
        except OSError:
            time.sleep(0.2)


def _seed(settings: Settings, arguments: argparse.Namespace) -> int:
    asyncio.run(_prepare_demo(settings, arguments.reset_flags, arguments.appointments_per_clinic))
    return 0


async def _prepare_demo(settings: Settings, reset_flags: bool, per_clinic: int) -> None:
    engine = create_engine(
        settings.database_url, prepare_threshold=settings.database_prepare_threshold
    )
    try:
        await migrations.upgrade(engine)
        sessions = create_session_factory(engine)
        # The demo history's unlinked writes are the point of the data set, not news: not logged.
        async with sessions() as session, session.begin():
            summary = await seed_demo(session, PendingEvents(), per_clinic)
    finally:
        await engine.dispose()
    if summary.skipped:
        print("demo data already present; left as it is")
    else:
        print(
            f"demo data: {summary.clinics} clinics, {summary.doctors} doctors, "
            f"{summary.patients} patients, {summary.appointments} appointments "
            f"({summary.unlinked} whose doctor or patient has no clinic membership)"
        )
    _write_demo_flags(settings.flags_file, reset_flags)


def _write_demo_flags(path: Path, reset: bool) -> None:
    if path.exists() and not reset:
        print(f"flags file {path} kept as it is")
        return
    write_document(path, build_document(demo_clinic_stages(), [DEMO_ROLLOUT]))
    print(f"flags file {path} written: each demo clinic in a different stage")


def _token(settings: Settings, arguments: argparse.Namespace) -> int:
    if arguments.demo is not None:
        role = UserRole(arguments.demo)
        user = DEMO_USERS[role]
    elif arguments.role is None:
        print("error: --user needs --role", file=sys.stderr)
        return 2
    else:
        role, user = UserRole(arguments.role), arguments.user
    print(mint_token(settings, user, role, arguments.hours))
    return 0


def _schema(_settings: Settings, _arguments: argparse.Namespace) -> int:
    from schema.schema import schema

    print(schema.as_str())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
