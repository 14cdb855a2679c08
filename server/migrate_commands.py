"""`clinic migrate ...`: schema upgrades, backfills, the validation report, the contract.

Exit status: 0 done (also: nothing to do); 1 refused or not ready (the contract
refused, a clinic asked about is not ready, the revert failed); 2 a clinic asked
about does not exist; 3 (``backfill_commands.EXIT_CONTRACTED``) a backfill on a contracted database,
which has no legacy columns to copy from or to.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid

from sqlalchemy.exc import SQLAlchemyError

import migrations
from appointments.db import create_session_factory
from appointments.layout import Layout, legacy_columns_present
from appointments.stages import contracted_stage
from appointments.validation import ClinicReport, clinic_reports
from flags.stages import StageResolver, Viewer
from server.backfill_commands import add_backfill_commands
from server.command_sessions import command_engine
from server.flag_sources import open_flag_source
from server.settings import Settings

REVERT_DESCRIPTION = """\
Undo `clinic migrate contract`: add appointments.doctor_id and patient_id back,
filled from each appointment's clinic memberships. Only the contract branch goes
down (Alembic `downgrade contract@-1`); the service branch (0006 and later:
clinic_staff, idempotency_keys) stays.

A running service keeps serving every clinic `complete` until it is restarted;
rows it writes meanwhile have empty legacy columns. Restart it, then run
`clinic migrate reverse-backfill`.

exit status: 0 the legacy columns are restored, or the contract was not applied
(nothing to revert); 1 the database refused the revert (the message says why).
"""


def add_migrate_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = commands.add_parser(
        "migrate", help="schema upgrades, backfills, validation, contract (default: upgrade)"
    )
    migrate.set_defaults(handler=_upgrade, revision=migrations.SERVICE_HEAD)
    actions = migrate.add_subparsers(metavar="ACTION")

    upgrade = actions.add_parser("upgrade", help="upgrade the schema (the expand revisions)")
    upgrade.add_argument("--revision", default=migrations.SERVICE_HEAD)
    upgrade.set_defaults(handler=_upgrade)

    add_backfill_commands(actions)

    validate = actions.add_parser("validate", help="the validation report and readiness")
    validate.add_argument("--clinic", type=uuid.UUID, action="append", help="repeatable")
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(handler=_validate)

    contract = actions.add_parser(
        "contract",
        help="drop the legacy columns (refuses while any appointment is unlinked)",
        epilog="Running services switch to the contracted layout by themselves; a request"
        " caught by the switch is answered SCHEMA_CHANGED (retryable). Undo: revert-contract."
        " exit status: 0 dropped; 1 refused, nothing changed (the message says what to run)",
    )
    contract.set_defaults(handler=_contract)

    revert = actions.add_parser(
        "revert-contract",
        help="undo the contract: restore the legacy columns, filled from the memberships",
        description=REVERT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    revert.set_defaults(handler=_revert_contract)


def _upgrade(settings: Settings, arguments: argparse.Namespace) -> int:
    async def run() -> None:
        async with command_engine(settings) as engine:
            await migrations.upgrade(engine, arguments.revision)

    asyncio.run(run())
    print(f"database at revision {arguments.revision}")
    return 0


def _contract(settings: Settings, _arguments: argparse.Namespace) -> int:
    async def run() -> None:
        async with command_engine(settings) as engine:
            await migrations.upgrade(engine, migrations.CONTRACT_REVISION)

    try:
        asyncio.run(run())
    except migrations.ContractRefusedError as refusal:
        print(f"contract refused: {refusal}", file=sys.stderr)
        return 1
    print("legacy columns dropped: every appointment is served from its clinic memberships")
    return 0


def _revert_contract(settings: Settings, _arguments: argparse.Namespace) -> int:
    """``revert-contract``: see ``REVERT_DESCRIPTION`` for what it does and its exit status."""

    async def run() -> bool:
        async with command_engine(settings) as engine:
            return await migrations.revert_contract(engine)

    try:
        reverted = asyncio.run(run())
    except SQLAlchemyError as error:
        print(f"revert-contract failed: {_first_line(error)}", file=sys.stderr)
        return 1
    if not reverted:
        print("the contract has not been applied; nothing to revert")
        return 0
    print(
        "legacy columns restored and filled from the memberships; restart running services,"
        " then run `clinic migrate reverse-backfill` for rows they wrote meanwhile"
    )
    return 0


def _first_line(error: SQLAlchemyError) -> str:
    original = getattr(error, "orig", None) or error
    return str(original).strip().splitlines()[0]


def _validate(settings: Settings, arguments: argparse.Namespace) -> int:
    """The validation report, as GraphQL ``migrationReport`` gives it: on a contracted
    database every clinic's stage is ``complete`` (what the service serves whatever
    the flag says), so the readiness is the same too."""

    async def run() -> tuple[list[ClinicReport], bool]:
        source = open_flag_source(settings)
        try:
            async with command_engine(settings) as engine:
                layout = Layout.of(await legacy_columns_present(engine))
                stages = StageResolver(
                    source, settings.default_stage, Viewer(), contracted_stage(layout)
                )
                async with create_session_factory(engine, layout)() as session:
                    reports = await clinic_reports(session, stages, arguments.clinic)
                    return reports, layout.legacy_columns
        finally:
            source.close()

    reports, legacy = asyncio.run(run())
    if arguments.json:
        print(json.dumps([report.as_dict() for report in reports], indent=2))
    else:
        if not legacy:
            print("legacy columns dropped (contracted): every clinic is served complete")
        for report in reports:
            print(_report_lines(report, legacy))
    asked = arguments.clinic is not None
    if asked and {report.clinic_id for report in reports} != set(arguments.clinic):
        print("error: some clinics asked about do not exist", file=sys.stderr)
        return 2
    return 1 if asked and not all(report.ready_for_next for report in reports) else 0


def _report_lines(report: ClinicReport, legacy: bool) -> str:
    following = report.next_stage.value if report.next_stage else "none (last stage)"
    verdict = "ready" if report.ready_for_next else "NOT READY"
    lines = [
        f"{report.clinic_name} ({report.clinic_id}): stage {report.stage.value},"
        f" next {following}: {verdict}",
        f"  appointments {report.total}, fully linked {report.fully_linked},"
        f" inconsistent {report.inconsistent}, open mismatches {report.open_mismatches}",
    ]
    for name, side in (("doctor", report.doctor), ("patient", report.patient)):
        lines.append(
            f"  {name}: linked {side.linked}, linkable now {side.linkable},"
            f" no membership {side.missing_membership}"
            + (f", legacy empty {side.legacy_missing}" if legacy else "")
        )
    lines += [f"  blocked: {blocker}" for blocker in report.blockers]
    return "\n".join(lines)
