"""`clinic rollout ...`: the guarded rollout autopilot from a terminal or cron.

``validate`` checks a plan; ``status`` shows what a pass would decide for each
clinic; ``step`` runs one pass (cron-friendly), ``run`` a pass every
``--interval`` seconds until the plan is complete (or for ever with
``--watch``); ``hold`` stops a clinic where it is and ``release`` lets a held
clinic move again; ``history`` prints the audit trail. The flag is written
where it lives: the Unleash server's Admin API when ``UNLEASH_URL`` is set (with
``UNLEASH_ADMIN_TOKEN``), else the flags file. Exit status: 0 done (also when
another pass held the lock and this one skipped, and when the flag is switched
off and the pass paused), 1 refused (a plan with problems, a hold or release
that does not apply, a flag that could not be read, a move that failed or could
not be verified).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from appointments.db import create_session_factory
from appointments.errors import DomainError
from appointments.layout import Layout, legacy_columns_present
from appointments.models import utcnow
from appointments.rollout import audit
from appointments.rollout.decisions import Decision, Verdict
from appointments.rollout.engine import PassReport, run_pass
from appointments.rollout.lock import pass_lock
from appointments.rollout.plan import Plan, PlanError, parse_plan
from server.command_sessions import cli_actor, command_engine, in_transaction
from server.flags_commands import open_stage_writer, refuse_a_fleets_flags_file
from server.settings import Settings, SettingsError

EXIT_REFUSED = 1


@dataclass(frozen=True, slots=True)
class ByHand:
    """A person's hold or release of one clinic."""

    name: str
    help: str
    reason: str
    change: Callable[[AsyncSession, uuid.UUID, str, str], Awaitable[object]]
    done: str
    consequence: str = ""


BY_HAND = (
    ByHand(
        "hold",
        "stop a clinic where it is until released",
        "why it must not move",
        audit.hold_by_hand,
        "held",
        ": it moves no further until released",
    ),
    ByHand(
        "release",
        "let a held clinic move again",
        "why it may move again",
        audit.release,
        "released",
    ),
)


def add_rollout_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("rollout", help="the guarded rollout autopilot")
    actions = parser.add_subparsers(required=True, metavar="ACTION")

    validate = actions.add_parser("validate", help="check a rollout plan")
    validate.add_argument("plan", type=Path)
    validate.set_defaults(handler=_validate)

    status = actions.add_parser("status", help="each clinic's stage, next step, blocking guard")
    status.add_argument("plan", type=Path)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    step = actions.add_parser("step", help="one pass: move each eligible clinic one stage")
    step.add_argument("plan", type=Path)
    step.add_argument(
        "--dry-run", action="store_true", help="print what it would do, change nothing"
    )
    step.add_argument("--json", action="store_true")
    step.set_defaults(handler=_step)

    run = actions.add_parser("run", help="a pass every --interval seconds, until stopped")
    run.add_argument("plan", type=Path)
    run.add_argument("--interval", type=float, default=60.0, help="seconds between passes (60)")
    run.add_argument("--passes", type=int, help="stop after this many passes")
    run.add_argument(
        "--dry-run", action="store_true", help="print what it would do, change nothing"
    )
    run.add_argument("--watch", action="store_true", help="keep running once the plan is complete")
    run.set_defaults(handler=_run)

    for by_hand in BY_HAND:
        action = actions.add_parser(by_hand.name, help=by_hand.help)
        action.add_argument("clinic_id", type=uuid.UUID)
        action.add_argument("--reason", required=True, help=f"{by_hand.reason} (audited)")
        action.add_argument("--actor", help="who, as recorded (default: cli:<login name>)")
        action.set_defaults(handler=_by_hand, by_hand=by_hand)

    history = actions.add_parser("history", help="the audit trail, newest first")
    history.add_argument("--clinic", type=uuid.UUID)
    history.add_argument("--first", type=int, default=50)
    history.add_argument("--json", action="store_true")
    history.set_defaults(handler=_history)


def load_plan(path: Path) -> Plan:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PlanError([f"{path}: cannot read: {error.strerror}"]) from error
    return parse_plan(text, str(path))


def _validate(_settings: Settings, arguments: argparse.Namespace) -> int:
    try:
        plan = load_plan(arguments.plan)
    except PlanError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_REFUSED
    cohorts = ", ".join(cohort.name for cohort in plan.cohorts)
    print(f"{arguments.plan}: valid: target {plan.target}, cohorts {cohorts}")
    return 0


def _pass(settings: Settings, arguments: argparse.Namespace, dry_run: bool) -> PassReport | None:
    """One pass (None when another pass held the lock)."""
    plan = load_plan(arguments.plan)
    if not dry_run:
        refuse_a_fleets_flags_file(settings)

    async def one_pass() -> PassReport | None:
        async with command_engine(settings) as engine:
            layout = Layout.of(await legacy_columns_present(engine))
            sessions = create_session_factory(engine, layout)
            with open_stage_writer(settings) as writer:
                if dry_run:
                    return await run_pass(sessions, plan, writer, utcnow(), True)
                async with pass_lock(engine) as taken:
                    if not taken:
                        return None
                    return await run_pass(sessions, plan, writer, utcnow(), False)

    return asyncio.run(one_pass())


def _step(settings: Settings, arguments: argparse.Namespace) -> int:
    try:
        report = _pass(settings, arguments, arguments.dry_run)
    except PlanError as error:
        print("\n".join(error.problems), file=sys.stderr)
        return EXIT_REFUSED
    if report is None:
        print("another rollout pass holds the lock; this one skipped", file=sys.stderr)
        return 0
    _print_report(report, arguments.dry_run, getattr(arguments, "json", False))
    return EXIT_REFUSED if report.errors else 0


def _status(settings: Settings, arguments: argparse.Namespace) -> int:
    try:
        report = _pass(settings, arguments, dry_run=True)
    except PlanError as error:
        print("\n".join(error.problems), file=sys.stderr)
        return EXIT_REFUSED
    assert report is not None
    rows = [_decision_row(report, decision, True) for decision in report.decisions]
    if arguments.json:
        print(json.dumps(rows, indent=2))
        return 0
    if report.paused is not None:
        print(f"paused: {report.paused}; the autopilot writes nothing until it is switched on")
    for row in rows:
        held = {"held": "  HELD", "would hold": "  WOULD HOLD", "claimed": "  CLAIMED"}.get(
            row["held_state"], ""
        )
        print(f"{row['name']} ({row['clinic_id']}) cohort {row['cohort']}{held}")
        print(f"  stage {row['stage']}, target {row['target']}, next step: {row['next_step']}")
        print(f"  blocking: {row['blocking'] or 'nothing'}")
    return 0


def _run(settings: Settings, arguments: argparse.Namespace) -> int:
    """Passes until interrupted (Ctrl-C, SIGTERM) or ``--passes`` ran; a pass that fails
    is reported and the next one runs as usual."""
    done = 0
    failed = False
    try:
        while arguments.passes is None or done < arguments.passes:
            started = time.monotonic()
            try:
                report = _pass(settings, arguments, arguments.dry_run)
            except PlanError as error:
                print("\n".join(error.problems), file=sys.stderr)
                return EXIT_REFUSED
            except SettingsError:
                raise
            except Exception as error:
                print(f"rollout pass failed: {error}", file=sys.stderr, flush=True)
                failed = True
            else:
                if report is None:
                    print("another rollout pass holds the lock; skipped", file=sys.stderr)
                else:
                    _print_report(report, arguments.dry_run, False)
                    failed = bool(report.errors)
                    if report.complete and not arguments.watch and not arguments.dry_run:
                        print("the plan is complete: every clinic is at the target", flush=True)
                        return 0
            done += 1
            if arguments.passes is not None and done >= arguments.passes:
                break
            time.sleep(max(0.0, arguments.interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return EXIT_REFUSED if failed else 0


def _by_hand(settings: Settings, arguments: argparse.Namespace) -> int:
    """``hold`` or ``release``: one audited change in one transaction."""
    by_hand: ByHand = arguments.by_hand
    actor = cli_actor(arguments)
    try:
        in_transaction(
            settings,
            lambda session: by_hand.change(session, arguments.clinic_id, actor, arguments.reason),
        )
    except DomainError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"clinic {arguments.clinic_id} {by_hand.done} by {actor}{by_hand.consequence}")
    return 0


def _history(settings: Settings, arguments: argparse.Namespace) -> int:
    async def entries() -> list[dict[str, Any]]:
        async with command_engine(settings) as engine, create_session_factory(engine)() as session:
            rows = await audit.entries(session, arguments.clinic, arguments.first)
        return [audit.as_dict(row, name) for row, name in rows]

    try:
        listed = asyncio.run(entries())
    except DomainError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return EXIT_REFUSED
    if arguments.json:
        print(json.dumps(listed, indent=2))
        return 0
    for entry in listed:
        stages = f" {entry['from_stage']} -> {entry['to_stage']}" if entry["to_stage"] else ""
        print(
            f"{entry['at']} {entry['clinic_name'] or entry['clinic_id']}: {entry['action']}"
            f"{stages} by {entry['actor']} ({entry['state']}): {entry['reason']}"
        )
    return 0


def _decision_row(report: PassReport, decision: Decision, dry_run: bool) -> dict[str, Any]:
    verdict = decision.verdict
    held_state = None
    if verdict is Verdict.HELD:
        held_state = "held"
    elif verdict is Verdict.CLAIMED:
        held_state = "claimed"
    elif verdict in (Verdict.HOLD, Verdict.STEP_BACK):
        applied = decision.clinic_id in report.outcomes.applied or verdict is Verdict.HOLD
        held_state = "would hold" if dry_run or not applied else "held"
    return {
        "clinic_id": str(decision.clinic_id),
        "name": report.names.get(decision.clinic_id, ""),
        "cohort": decision.cohort,
        "stage": decision.stage.value,
        "target": decision.target.value,
        "verdict": decision.verdict.value,
        "next_step": decision.next_step(applied=not dry_run),
        "blocking": decision.blocking,
        "held": held_state == "held",
        "held_state": held_state,
        "reason": decision.reason,
        "guards": decision.guards,
    }


def _print_report(report: PassReport, dry_run: bool, as_json: bool) -> None:
    outcomes = report.outcomes
    if as_json:
        print(
            json.dumps(
                {
                    "dry_run": dry_run,
                    "paused": report.paused,
                    "complete": report.complete,
                    "decisions": [_decision_row(report, d, dry_run) for d in report.decisions],
                    "applied": {str(c): s.value for c, s in outcomes.applied.items()},
                    "failed": {str(c): p for c, p in outcomes.failed.items()},
                    "unverified": {str(c): p for c, p in outcomes.unverified.items()},
                    "backfilled": [str(c) for c in report.backfilled],
                    "repaired": report.repaired,
                    "observed": report.observed,
                    "errors": report.errors,
                },
                indent=2,
            ),
            flush=True,
        )
        return
    if report.paused is not None:
        print(f"paused: {report.paused}; nothing written", flush=True)
    for line in report.repaired:
        print(f"repaired {line}")
    for line in report.observed:
        print(f"observed {line}")
    for decision in report.moves:
        name = report.names.get(decision.clinic_id, str(decision.clinic_id))
        if dry_run:
            outcome = "would "
        elif decision.clinic_id in outcomes.applied:
            outcome = ""
        else:
            outcome = "FAILED "
        print(
            f"{outcome}{decision.verdict.value} {name} ({decision.clinic_id}):"
            f" {decision.stage} -> {decision.to_stage}: {decision.reason}"
        )
    for clinic_id in report.backfilled:
        print(f"backfilled {report.names.get(clinic_id, str(clinic_id))} ({clinic_id})")
    for line in report.errors:
        print(f"error: {line}", file=sys.stderr)
    if dry_run:
        waiting = len(report.decisions) - len(report.moves)
        print(f"{len(report.moves)} moved (dry run), {waiting} not", flush=True)
        return
    moved = len(outcomes.applied)
    failed = len(outcomes.failed) + len(outcomes.unverified)
    waiting = len(report.decisions) - moved - failed
    print(f"{moved} moved, {failed} failed, {waiting} not", flush=True)
