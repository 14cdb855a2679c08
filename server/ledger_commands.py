"""`clinic ledger ...`: the mismatch ledger from a terminal, with the GraphQL ledger's rules.

``list`` takes the filters of ``migrationMismatches`` (clinic, field, status) and its
pagination (``--first`` at most 100, ``--after`` a cursor printed by the previous
page); ``show`` prints one entry; ``set-status`` triages one as ``setMismatchStatus``
does (the same comment checks), recording ``--actor`` (default ``cli:<login name>``)
as who changed it. They call the same functions as GraphQL (``appointments.ledger``),
acting as the system. Exit status: 0 done, 1 refused (invalid input), 2 no such entry.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from appointments import ledger
from appointments.errors import DomainError, ErrorCode
from appointments.models import MigrationMismatch, MismatchField, MismatchStatus
from server.command_sessions import cli_actor, in_transaction
from server.settings import Settings

E = TypeVar("E", MismatchField, MismatchStatus)
EXIT_REFUSED = 1
EXIT_NOT_FOUND = 2
COLUMNS = (
    "id",
    "appointment_id",
    "clinic_id",
    "field",
    "legacy_value",
    "new_value",
    "stage",
    "times_seen",
    "first_seen_at",
    "last_seen_at",
    "status",
    "status_changed_by",
    "status_changed_at",
    "status_comment",
)


def add_ledger_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("ledger", help="list, show and triage the mismatch ledger")
    actions = parser.add_subparsers(required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="entries, least recently seen first")
    listing.add_argument("--clinic", type=uuid.UUID, help="only this clinic's entries")
    # Checked by the handler, not argparse, so that a bad filter exits 1 like GraphQL's
    # refusals (argparse's 2 is this command's "no such entry").
    listing.add_argument("--field", help=f"one of {', '.join(MismatchField)}")
    listing.add_argument("--status", help=f"one of {', '.join(MismatchStatus)}")
    listing.add_argument("--first", type=int, help="page size (default 20, at most 100)")
    listing.add_argument("--after", help="the cursor the previous page printed")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="one entry")
    show.add_argument("id", type=uuid.UUID)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)

    status = actions.add_parser("set-status", help="mark an entry open, ignored or fixed")
    status.add_argument("id", type=uuid.UUID)
    status.add_argument("status", type=MismatchStatus, choices=list(MismatchStatus))
    status.add_argument("--comment", help="why (at most 2000 characters)")
    status.add_argument("--actor", help="who, as recorded (default: cli:<login name>)")
    status.set_defaults(handler=_set_status)


def _list(settings: Settings, arguments: argparse.Namespace) -> int:
    try:
        field = _choice(MismatchField, "--field", arguments.field)
        status = _choice(MismatchStatus, "--status", arguments.status)
    except DomainError as error:
        return _refused(error)
    where = ledger.MismatchFilter(arguments.clinic, field, status)

    async def page_of(session: AsyncSession) -> tuple[list[dict[str, Any]], bool, str | None]:
        page = await ledger.list_mismatches(session, where, arguments.first, arguments.after)
        end_cursor = page.cursor(page.rows[-1]) if page.rows else None
        return [_entry(row) for row in page.rows], page.has_next_page, end_cursor

    try:
        entries, has_next_page, end_cursor = in_transaction(settings, page_of)
    except DomainError as error:
        return _refused(error)
    if arguments.json:
        listed = {"entries": entries, "hasNextPage": has_next_page, "endCursor": end_cursor}
        print(json.dumps(listed, indent=2))
        return 0
    for entry in entries:
        print(
            f"{entry['id']}  {entry['status']:<7} {entry['field']:<14} {entry['stage']:<10}"
            f" seen {entry['times_seen']}x, last {entry['last_seen_at']},"
            f" appointment {entry['appointment_id']}"
        )
    more = ""
    if has_next_page:
        more = (
            f"; next page: --after {end_cursor}" if end_cursor else "; more with --first 1 or more"
        )
    print(f"{len(entries)} entries{more}")
    return 0


def _show(settings: Settings, arguments: argparse.Namespace) -> int:
    async def entry_of(session: AsyncSession) -> dict[str, Any]:
        return _entry(await ledger.get_mismatch(session, arguments.id))

    try:
        entry = in_transaction(settings, entry_of)
    except DomainError as error:
        return _refused(error)
    _print_entry(entry, arguments.json)
    return 0


def _set_status(settings: Settings, arguments: argparse.Namespace) -> int:
    actor = cli_actor(arguments)

    async def triage(session: AsyncSession) -> dict[str, Any]:
        row = await ledger.set_mismatch_status(
            session, arguments.id, arguments.status, actor, arguments.comment
        )
        return _entry(row)

    try:
        entry = in_transaction(settings, triage)
    except DomainError as error:
        return _refused(error)
    _print_entry(entry, as_json=False)
    return 0


def _choice(kind: type[E], option: str, value: str | None) -> E | None:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"{option} {value!r} is not one of: {known}", option
        ) from None


def _refused(error: DomainError) -> int:
    print(f"error: {error.message}", file=sys.stderr)
    return EXIT_NOT_FOUND if error.code is ErrorCode.NOT_FOUND else EXIT_REFUSED


def _entry(row: MigrationMismatch) -> dict[str, Any]:
    return {column: _text(getattr(row, column)) for column in COLUMNS}


def _text(value: Any) -> Any:
    if value is None or isinstance(value, int | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _print_entry(entry: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(entry, indent=2))
        return
    for column, value in entry.items():
        print(f"{column:<18} {'' if value is None else value}")
