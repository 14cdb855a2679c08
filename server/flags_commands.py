"""`clinic flags ...`: the local flags file, and the migration flag in an Unleash server."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import select

from appointments.db import create_engine, create_session_factory
from appointments.models import Clinic, RolloutAction
from appointments.rollout import audit
from appointments.stages import Stage
from flags.document import (
    build_document,
    read_document,
    set_rollout,
    write_document,
)
from flags.stage_writers import FlagsFileStageWriter
from flags.stages import StageResolver, Viewer
from flags.unleash_admin import Description, UnleashAdmin, UnleashAdminError
from server.app import open_flag_source
from server.settings import Settings, SettingsError

STAGES = ", ".join(stage.value for stage in Stage)


def add_flags_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    flags = commands.add_parser("flags", help="the flags file, or the flag in Unleash")
    actions = flags.add_subparsers(required=True, metavar="ACTION")

    show = actions.add_parser("show", help="the stage every clinic gets now")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)

    set_stage = actions.add_parser("set-stage", help="pin a clinic to a stage (flags file)")
    set_stage.add_argument("clinic_id", type=uuid.UUID)
    set_stage.add_argument("stage", type=Stage.parse, help=STAGES)
    set_stage.add_argument("--actor", help="who, as audited (default: cli:<login name>)")
    set_stage.add_argument("--reason", default="set by hand", help="why, as audited")
    set_stage.set_defaults(handler=_set_stage)

    rollout = actions.add_parser(
        "set-rollout", help="give a percentage of unpinned clinics a stage (flags file)"
    )
    rollout.add_argument("stage", type=Stage.parse, help=STAGES)
    rollout.add_argument("percentage", type=int, help="0 to 100; 0 removes the rollout")
    rollout.set_defaults(handler=_set_rollout)

    validate = actions.add_parser("validate", help="check the flags file")
    validate.set_defaults(handler=_validate)

    apply = actions.add_parser(
        "unleash-apply", help="create or update the flag in Unleash from a description file"
    )
    apply.add_argument(
        "description",
        type=Path,
        help='JSON: {"clinics": {"<id>": "<stage>"}, '
        '"rollouts": [{"stage": "<stage>", "percentage": <0-100>}]}',
    )
    apply.set_defaults(handler=_unleash_apply)

    export = actions.add_parser(
        "unleash-export", help="write the flag from Unleash in the flags file format"
    )
    export.add_argument("--output", type=Path, help="file to write (default: standard output)")
    export.set_defaults(handler=_unleash_export)


def _show(settings: Settings, arguments: argparse.Namespace) -> int:
    async def clinics() -> list[tuple[uuid.UUID, str]]:
        engine = create_engine(
            settings.database_url, prepare_threshold=settings.database_prepare_threshold
        )
        try:
            async with create_session_factory(engine)() as session:
                rows = await session.execute(select(Clinic.id, Clinic.name).order_by(Clinic.name))
                return [(row.id, row.name) for row in rows]
        finally:
            await engine.dispose()

    source = open_flag_source(settings)
    try:
        stages = StageResolver(source, settings.default_stage, Viewer())
        listed = [(clinic, name, stages(clinic)) for clinic, name in asyncio.run(clinics())]
        described = source.describe()
    finally:
        source.close()
    if arguments.json:
        print(json.dumps({str(c): {"name": n, "stage": s.value} for c, n, s in listed}, indent=2))
    else:
        print(f"stages from {described['source']}, default {settings.default_stage.value}")
        for clinic, name, stage in listed:
            print(f"  {stage.value:<10} {name} ({clinic})")
    return 0


def _set_stage(settings: Settings, arguments: argparse.Namespace) -> int:
    """Pin the clinic in the flags file, then record the change in the rollout audit trail
    (if the database cannot take it, a warning says so; the next rollout pass records the
    change as observed)."""
    path, clinic_id, stage = settings.flags_file, arguments.clinic_id, arguments.stage
    writer = FlagsFileStageWriter(path, settings.default_stage)
    before = writer.stages([clinic_id])[clinic_id] if path.exists() else None
    writer.set_stage(clinic_id, stage)
    print(f"clinic {clinic_id} is now in stage {stage.value} ({path})")
    actor = arguments.actor or f"cli:{getpass.getuser()}"

    async def record() -> None:
        engine = create_engine(
            settings.database_url, prepare_threshold=settings.database_prepare_threshold
        )
        try:
            async with create_session_factory(engine)() as session, session.begin():
                await audit.record(
                    session,
                    clinic_id,
                    actor,
                    RolloutAction.SET_STAGE,
                    arguments.reason,
                    before,
                    stage,
                    {"source": "flags-file"},
                )
        finally:
            await engine.dispose()

    try:
        asyncio.run(record())
    except Exception as error:
        print(
            f"warning: not recorded in the rollout audit trail ({str(error).splitlines()[0]});"
            " the next rollout pass records it as an observed change",
            file=sys.stderr,
        )
    return 0


def _set_rollout(settings: Settings, arguments: argparse.Namespace) -> int:
    path = settings.flags_file
    document = read_document(path) if path.exists() else build_document({})
    write_document(path, set_rollout(document, arguments.stage, arguments.percentage))
    stage, percentage = arguments.stage.value, arguments.percentage
    print(f"{percentage}% of unpinned clinics now get stage {stage} ({path})")
    return 0


def _validate(settings: Settings, _arguments: argparse.Namespace) -> int:
    read_document(settings.flags_file)
    print(f"{settings.flags_file}: valid")
    return 0


@contextmanager
def unleash_admin(settings: Settings) -> Iterator[UnleashAdmin]:
    """The Admin API client: needs ``UNLEASH_URL`` and ``UNLEASH_ADMIN_TOKEN`` only (no client
    token). A server that cannot be reached or refuses is reported as one ``ValueError``."""
    if settings.unleash_url is None or settings.unleash_admin_token is None:
        raise SettingsError("set UNLEASH_URL and UNLEASH_ADMIN_TOKEN to use the Unleash Admin API")
    base = settings.unleash_url.removesuffix("/").removesuffix("/api")
    admin = UnleashAdmin(
        base,
        settings.unleash_admin_token,
        settings.unleash_project,
        settings.unleash_admin_environment,
    )
    try:
        yield admin
    except (httpx.HTTPError, UnleashAdminError) as error:
        raise ValueError(f"Unleash at {base}: {error}") from error
    finally:
        admin.close()


def _unleash_apply(settings: Settings, arguments: argparse.Namespace) -> int:
    description = Description.parse(json.loads(arguments.description.read_text(encoding="utf-8")))
    with unleash_admin(settings) as admin:
        admin.apply(description)
    print(
        f"flag set up in Unleash: {len(description.clinics)} pinned clinics,"
        f" {len(description.rollouts)} rollouts"
    )
    return 0


def _unleash_export(settings: Settings, arguments: argparse.Namespace) -> int:
    with unleash_admin(settings) as admin:
        document = admin.export()
    if arguments.output is None:
        json.dump(document, sys.stdout, indent=2)
        print()
    else:
        write_document(arguments.output, document)
        print(f"written to {arguments.output}", file=sys.stderr)
    return 0
