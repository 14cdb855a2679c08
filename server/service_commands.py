"""`clinic serve`, `seed`, `token` and `schema`. Each handler imports what it needs when it
runs, so that registering these parsers costs nothing to the other commands."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING

from server.settings import Settings

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

ROLES = ("admin", "staff", "doctor", "qa")


def add_serve_command(commands: Commands) -> None:
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


def add_seed_command(commands: Commands) -> None:
    seed = commands.add_parser("seed", help="load the demo data set (skipped if present)")
    seed.add_argument("--appointments-per-clinic", type=int, default=50)
    seed.add_argument("--reset-flags", action="store_true", help="overwrite the flags file")
    seed.set_defaults(handler=_seed)


def add_token_command(commands: Commands) -> None:
    token = commands.add_parser(
        "token", help="mint a bearer token (HS256, CLINIC_JWT_SECRET) to try a role in GraphiQL"
    )
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("--demo", choices=ROLES, help="a demo user of that role (from `clinic seed`)")
    who.add_argument("--user", type=uuid.UUID, help="any user id (with --role)")
    token.add_argument("--role", choices=ROLES)
    token.add_argument("--hours", type=float, default=8.0)
    token.set_defaults(handler=_token)


def add_schema_command(commands: Commands) -> None:
    schema = commands.add_parser("schema", help="print the GraphQL SDL")
    schema.set_defaults(handler=_schema)


def _serve(settings: Settings, arguments: argparse.Namespace) -> int:
    import uvicorn

    from server.logs import logging_config
    from server.startup_checks import EXIT_CANNOT_START, StartupError, check_startup

    settings.require_client_token()
    settings.require_production_keys()
    try:
        check_startup(settings)
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    if arguments.demo:
        asyncio.run(_prepare_demo(settings, reset_flags=False, per_clinic=50))
    if arguments.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker writes its metrics here and /metrics adds them up; set before
        # the workers start, since prometheus_client reads it when first imported.
        metrics_directory = tempfile.mkdtemp(prefix="clinic-metrics-")
        import atexit

        atexit.register(shutil.rmtree, metrics_directory, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_directory
    url = f"http://{arguments.host}:{arguments.port}/graphql"
    if settings.graphiql:
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
    import migrations
    from appointments.db import create_session_factory
    from appointments.events import PendingEvents
    from appointments.seed import seed_demo
    from server.command_sessions import command_engine

    async with command_engine(settings) as engine:
        await migrations.upgrade(engine)
        sessions = create_session_factory(engine)
        # The demo history's unlinked writes are the point of the data set, not news: not logged.
        async with sessions() as session, session.begin():
            summary = await seed_demo(session, PendingEvents(), per_clinic)
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
    from appointments.seed import DEMO_ROLLOUT, demo_clinic_stages
    from flags.document import build_document, write_document

    if path.exists() and not reset:
        print(f"flags file {path} kept as it is")
        return
    write_document(path, build_document(demo_clinic_stages(), [DEMO_ROLLOUT]))
    print(f"flags file {path} written: each demo clinic in a different stage")


def _token(settings: Settings, arguments: argparse.Namespace) -> int:
    from appointments.models import UserRole
    from appointments.seed import DEMO_USERS
    from server.auth import mint_token

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
