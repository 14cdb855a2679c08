"""`clinic migrate backfill` and `reverse-backfill`: the batch and throttle options, the
progress (a bar on a terminal, a line every two seconds and at each pause otherwise), and
the summary.

Exit status: 0 done (also when nothing needed doing); 3 (``EXIT_CONTRACTED``) the
database is contracted: the legacy columns are gone, nothing to copy from or to.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from tqdm import tqdm

from appointments import layout
from appointments.backfill import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_BATCH_SIZE,
    BackfillOptions,
    BackfillSummary,
    Direction,
    Progress,
    ThrottleLimits,
    run_backfill,
)
from appointments.db import create_session_factory
from server.command_sessions import command_engine
from server.settings import Settings

EXIT_CONTRACTED = 3
CONTRACTED_MESSAGE = (
    "the legacy columns were dropped by the contract; nothing to {action}"
    " (`clinic migrate revert-contract` restores them)"
)
PLAIN_PROGRESS_EVERY_SECONDS = 2.0
THROTTLE = ThrottleLimits()
Number = TypeVar("Number", int, float)


def add_backfill_commands(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The two backfill actions of `clinic migrate`."""
    for name, direction, about in (
        ("backfill", Direction.FORWARD, "link appointments to clinic memberships"),
        ("reverse-backfill", Direction.REVERSE, "fill legacy columns from the new links"),
    ):
        action = actions.add_parser(
            name,
            help=about,
            epilog="exit status: 0 done (also when nothing needed doing); 3 the database is"
            " contracted: the legacy columns are gone, nothing to copy from or to",
        )
        add_backfill_arguments(action, direction)
        action.set_defaults(handler=_backfill, direction=direction)


def _backfill(settings: Settings, arguments: argparse.Namespace) -> int:
    options = options_from(arguments)

    async def run(on_progress: Callable[[Progress], None]) -> BackfillSummary:
        async with command_engine(settings) as engine:
            try:
                return await run_backfill(create_session_factory(engine), options, on_progress)
            except DBAPIError as error:
                if await _contracted_meanwhile(engine, error):
                    raise _ContractedError from error
                raise

    action = "backfill" if options.direction is Direction.FORWARD else "reverse-backfill"
    contracted = CONTRACTED_MESSAGE.format(action=action)
    if not asyncio.run(_legacy_columns_present(settings)):
        print(contracted, file=sys.stderr)
        return EXIT_CONTRACTED
    try:
        with progress_display(options.direction) as show:
            summary = asyncio.run(run(show))
    except _ContractedError:
        print(contracted, file=sys.stderr)
        return EXIT_CONTRACTED
    print(json.dumps(summary.as_dict(), indent=2) if arguments.json else describe(summary))
    return 0


class _ContractedError(Exception):
    """The legacy columns are gone: a backfill has nothing to copy from or to."""


async def _legacy_columns_present(settings: Settings) -> bool:
    async with command_engine(settings) as engine:
        return await layout.legacy_columns_present(engine)


async def _contracted_meanwhile(engine: AsyncEngine, error: DBAPIError) -> bool:
    """Whether a backfill failed because the contract ran while it did."""
    return layout.is_missing_column(error) and not await layout.legacy_columns_present(engine)


def add_backfill_arguments(action: argparse.ArgumentParser, direction: Direction) -> None:
    action.add_argument("--clinic", type=uuid.UUID, help="one clinic (default: all)")
    action.add_argument(
        "--batch-size",
        type=_at_least(int, 1),
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"the largest batch, in appointments (default {DEFAULT_BATCH_SIZE})",
    )
    action.add_argument(
        "--batch-seconds",
        type=_at_least(float, 0),
        default=DEFAULT_BATCH_SECONDS,
        metavar="SECONDS",
        help="size each batch to take about this long, which bounds how long it holds row"
        f" locks (default {DEFAULT_BATCH_SECONDS}; 0: every batch --batch-size)",
    )
    action.add_argument(
        "--max-active-backends",
        type=_at_least(int, 0),
        default=THROTTLE.max_active_backends,
        metavar="N",
        help="pause between batches while more than N other client backends run a statement"
        f" (pg_stat_activity; default {THROTTLE.max_active_backends}; 0: never)."
        " PostgreSQL only: SQLite has no throttling probe",
    )
    action.add_argument(
        "--max-replica-lag",
        type=_at_least(float, 0),
        default=THROTTLE.max_replica_lag_seconds,
        metavar="SECONDS",
        help="pause between batches while a replica lags more than this"
        f" (pg_stat_replication; default {THROTTLE.max_replica_lag_seconds:g}; 0: never)",
    )
    action.add_argument("--dry-run", action="store_true", help="report, write nothing")
    action.add_argument("--restart", action="store_true", help="ignore an unfinished run")
    action.add_argument("--json", action="store_true", help="print the summary as JSON")
    if direction is Direction.FORWARD:
        action.add_argument(
            "--create-memberships",
            action="store_true",
            help="create the missing clinic doctor/patient memberships",
        )


def options_from(arguments: argparse.Namespace) -> BackfillOptions:
    """The run's options from the parsed command line (0 turns a limit off)."""
    return BackfillOptions(
        direction=arguments.direction,
        clinic_id=arguments.clinic,
        batch_size=arguments.batch_size,
        batch_seconds=arguments.batch_seconds or None,
        create_memberships=getattr(arguments, "create_memberships", False),
        dry_run=arguments.dry_run,
        restart=arguments.restart,
        throttle=ThrottleLimits(
            max_active_backends=arguments.max_active_backends or None,
            max_replica_lag_seconds=arguments.max_replica_lag or None,
        ),
    )


def _at_least(kind: Callable[[str], Number], least: Number) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}: {text}")
        return value

    return parse


@contextmanager
def progress_display(direction: Direction) -> Iterator[Callable[[Progress], None]]:
    """A progress callback writing to stderr: a bar on a terminal, lines otherwise."""
    if not sys.stderr.isatty():
        yield _plain_progress()
        return
    with tqdm(unit=" appointments", desc=direction.value) as bar:

        def advance(progress: Progress) -> None:
            bar.total = progress.total
            bar.set_postfix_str(pace(progress), refresh=False)
            bar.update(progress.done - bar.n)
            bar.refresh()

        yield advance


def _plain_progress() -> Callable[[Progress], None]:
    last = 0.0

    def report(progress: Progress) -> None:
        nonlocal last
        now = time.monotonic()
        due = now - last >= PLAIN_PROGRESS_EVERY_SECONDS or progress.done >= progress.total
        if progress.paused or due:
            last = now
            print(
                f"batch {progress.batches}: {progress.done} of {progress.total} appointments,"
                f" {pace(progress)}",
                file=sys.stderr,
                flush=True,
            )

    return report


def pace(progress: Progress) -> str:
    """Rows per second, the next batch's size, and why the run waits, while it does."""
    text = f"{progress.rows_per_second:,.0f} rows/s, batch {progress.batch_size:,}"
    return text + (f", paused: {progress.paused}" if progress.paused else "")


def describe(summary: BackfillSummary) -> str:
    verb = "would link" if summary.dry_run else "linked"
    lines = [
        f"{summary.direction.value} backfill of {summary.scope}"
        + (" (dry run, nothing written)" if summary.dry_run else "")
        + (" resumed from its checkpoint" if summary.resumed else "")
        + f": {summary.batches} batches"
        + (
            f", paused {summary.paused_seconds:.1f} s by the throttle"
            if summary.paused_seconds
            else ""
        ),
    ]
    for side in ("doctor", "patient"):
        created = summary.created_memberships[side]
        lines.append(
            f"  {side}: {verb} {summary.linked[side]} appointments"
            + (
                f", {'would create' if summary.dry_run else 'created'} {created} memberships"
                if created
                else ""
            )
        )
        left = "would remain unlinked" if summary.dry_run else "still unlinked"
        for reason, count in summary.remaining.get(side, {}).items():
            if count:
                lines.append(f"    {left}, {reason.replace('_', ' ')}: {count}")
    return "\n".join(lines)
