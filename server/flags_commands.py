"""`clinic flags ...`: the local flags file, and the migration flag in an Unleash server."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from appointments.stages import Stage
from server.settings import Settings, SettingsError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from appointments.models import RolloutAudit
    from appointments.rollout.flag import StageWriter
    from flags.unleash_admin import UnleashAdmin

# Each handler imports what it needs: `clinic flags show` should not pay for the Admin API
# client, the reshape or the audit trail.

STAGES = ", ".join(stage.value for stage in Stage)


def add_flags_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    flags = commands.add_parser("flags", help="the flags file, or the flag in Unleash")
    actions = flags.add_subparsers(required=True, metavar="ACTION")

    show = actions.add_parser("show", help="the stage every clinic gets now")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)

    set_stage = actions.add_parser(
        "set-stage", help="pin a clinic to a stage (in Unleash when UNLEASH_URL is set)"
    )
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

    reshape = actions.add_parser(
        "reshape",
        help="move a flag of the old shape (clinic lists per stage) to one pin per clinic",
    )
    reshape.add_argument(
        "--dry-run", action="store_true", help="print each step it would take, change nothing"
    )
    reshape.set_defaults(handler=_reshape)

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
    from sqlalchemy import select

    from appointments.db import create_session_factory
    from appointments.models import Clinic
    from flags.stages import StageResolver, Viewer
    from server.command_sessions import command_engine
    from server.flag_sources import open_flag_source

    async def clinics() -> list[tuple[uuid.UUID, str]]:
        async with command_engine(settings) as engine, create_session_factory(engine)() as session:
            rows = await session.execute(select(Clinic.id, Clinic.name).order_by(Clinic.name))
            return [(row.id, row.name) for row in rows]

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
    """Pin the clinic where the flag lives (Unleash's Admin API when ``UNLEASH_URL`` is set,
    else the flags file) with one atomic write, read it back, then record the change in the
    rollout audit trail, from the stage the flag gave before (if the database cannot take
    it, a warning says so; the next rollout pass records the change as observed)."""
    from appointments.models import RolloutAction
    from appointments.rollout import audit
    from appointments.rollout.flag import FlagWriteRefusedError
    from server.command_sessions import cli_actor, in_transaction

    clinic_id, stage = arguments.clinic_id, arguments.stage
    refuse_a_fleets_flags_file(settings)
    with open_stage_writer(settings) as writer:
        before = writer.read([clinic_id])
        served = before.stages[clinic_id]
        if before.switched_off is not None:
            print(f"error: {before.switched_off}; nothing written", file=sys.stderr)
            return 1
        if served is stage:
            print(f"clinic {clinic_id} is already in stage {stage.value}; nothing written")
            return 0
        try:
            writer.set_stage(clinic_id, stage)
        except FlagWriteRefusedError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        now = writer.read([clinic_id]).stages[clinic_id]
    where = writer.observer
    if now is not stage:
        print(
            f"error: the flag ({where}) gives clinic {clinic_id} {now.value} after the write,"
            f" not {stage.value}",
            file=sys.stderr,
        )
        return 1
    print(f"clinic {clinic_id} is now in stage {stage.value} ({where})")
    actor = cli_actor(arguments)

    def record(session: AsyncSession) -> Awaitable[RolloutAudit]:
        return audit.record(
            session,
            clinic_id,
            actor,
            RolloutAction.SET_STAGE,
            arguments.reason,
            served,
            stage,
            {"source": where},
        )

    try:
        in_transaction(settings, record)
    except Exception as error:
        print(
            f"warning: not recorded in the rollout audit trail ({str(error).splitlines()[0]});"
            " the next rollout pass records it as an observed change",
            file=sys.stderr,
        )
    return 0


def _reshape(settings: Settings, arguments: argparse.Namespace) -> int:
    from appointments.rollout.flag import FlagWriteRefusedError
    from flags.reshape import ReshapeError, reshape_file, reshape_unleash

    try:
        if settings.unleash_url is None:
            steps = reshape_file(
                settings.flags_file, settings.default_stage, arguments.dry_run, print
            )
        else:
            with unleash_admin(settings) as admin:
                steps = reshape_unleash(admin, settings.default_stage, arguments.dry_run, print)
    except (FlagWriteRefusedError, ReshapeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if steps == 0:
        print("the flag has the pinned shape already; nothing to do")
    elif arguments.dry_run:
        print(f"{steps} steps (dry run): run again without --dry-run to take them")
    else:
        print(f"reshaped in {steps} steps; no clinic changed stage")
    return 0


def refuse_a_fleets_flags_file(settings: Settings) -> None:
    """Raise ``SettingsError`` when stages live in the flags file (no ``UNLEASH_URL``) while
    the database shows serving instances on other hosts: each host's file would be a
    flag source of its own, and moves by one host's copy would read as moves by hand
    on another's. When the database cannot tell, a warning says so and writing goes on
    (one host is the case a flags file is for)."""
    if settings.unleash_url is not None:
        return
    from appointments.instances import hosts_besides
    from server.command_sessions import in_transaction

    try:
        others = in_transaction(settings, hosts_besides)
    except Exception as error:
        print(
            "warning: could not look for instances on other hosts in the database"
            f" ({str(error).splitlines()[0]}); writing the flags file",
            file=sys.stderr,
        )
        return
    if others:
        raise SettingsError(
            f"instances on other hosts ({', '.join(others)}) serve from this database, and"
            f" stages live in this host's flags file ({settings.flags_file}): each host's"
            " file would be a flag source of its own. With more than one host, keep the"
            " stages in Unleash (UNLEASH_URL; see the operations guide, Running on several"
            " machines); nothing written"
        )


@contextmanager
def open_stage_writer(settings: Settings) -> Iterator[StageWriter]:
    """The Unleash server's flag when ``UNLEASH_URL`` is set (its Admin API: needs
    ``UNLEASH_ADMIN_TOKEN``), else the flags file."""
    from flags.stage_writers import FlagsFileStageWriter, UnleashStageWriter

    if settings.unleash_url is None:
        yield FlagsFileStageWriter(settings.flags_file, settings.default_stage)
        return
    if settings.unleash_admin_token is None:
        raise SettingsError(
            "the flag lives in Unleash (UNLEASH_URL is set): writing it needs"
            " UNLEASH_ADMIN_TOKEN (an admin API token); nothing written"
        )
    with unleash_admin(settings) as admin:
        yield UnleashStageWriter(admin, settings.default_stage)


def _set_rollout(settings: Settings, arguments: argparse.Namespace) -> int:
    from appointments.rollout.flag import FlagWriteRefusedError
    from flags.document import build_document, locked, read_document, set_rollout, write_document

    path = settings.flags_file
    try:
        with locked(path):
            document = read_document(path) if path.exists() else build_document({})
            write_document(path, set_rollout(document, arguments.stage, arguments.percentage))
    except FlagWriteRefusedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    stage, percentage = arguments.stage.value, arguments.percentage
    print(f"{percentage}% of unpinned clinics now get stage {stage} ({path})")
    return 0


def _validate(settings: Settings, _arguments: argparse.Namespace) -> int:
    from flags.document import read_document

    read_document(settings.flags_file)
    print(f"{settings.flags_file}: valid")
    return 0


@contextmanager
def unleash_admin(settings: Settings) -> Iterator[UnleashAdmin]:
    """The Admin API client: needs ``UNLEASH_URL`` and ``UNLEASH_ADMIN_TOKEN`` only (no client
    token). A server that cannot be reached or refuses is reported as one ``ValueError``."""
    from flags.unleash_admin import UnleashAdmin, UnleashAdminError

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
    except UnleashAdminError as error:
        raise ValueError(f"Unleash at {base}: {error}") from error
    finally:
        admin.close()


def _unleash_apply(settings: Settings, arguments: argparse.Namespace) -> int:
    from flags.unleash_admin import Description

    description = Description.parse(json.loads(arguments.description.read_text(encoding="utf-8")))
    with unleash_admin(settings) as admin:
        admin.apply(description)
    print(
        f"flag set up in Unleash: {len(description.clinics)} pinned clinics,"
        f" {len(description.rollouts)} rollouts"
    )
    return 0


def _unleash_export(settings: Settings, arguments: argparse.Namespace) -> int:
    from flags.document import write_document

    with unleash_admin(settings) as admin:
        document = admin.export()
    if arguments.output is None:
        json.dump(document, sys.stdout, indent=2)
        print()
    else:
        write_document(arguments.output, document)
        print(f"written to {arguments.output}", file=sys.stderr)
    return 0
