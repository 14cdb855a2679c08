"""What `clinic migrate backfill` and `reverse-backfill` take and show: the batch and
throttle options, the progress (a bar on a terminal, a line every two seconds and at
each pause otherwise), and the summary."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm import tqdm

from appointments.backfill import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_BATCH_SIZE,
    BackfillOptions,
    BackfillSummary,
    Direction,
    Progress,
    ThrottleLimits,
)

PLAIN_PROGRESS_EVERY_SECONDS = 2.0
THROTTLE = ThrottleLimits()
Number = TypeVar("Number", int, float)


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
