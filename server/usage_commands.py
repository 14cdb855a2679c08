"""`clinic usage`: which clients still read the deprecated fields, from the daily usage table.

For every field the schema deprecates (and any other stored in the window): per
client, the operations that selected it over the last ``--days`` UTC days (today
included), first and last seen, and the versions seen; under each client, the
operations by name and document hash (the SHA-256 a persisted-documents manifest
uses), so a frontend team can find the code still reading the field. A field no client read in
the window says so. Counts a running service has not flushed yet (at most
``CLINIC_USAGE_FLUSH_SECONDS`` old) are not in the table yet. Exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime
from typing import Any

from appointments.db import create_session_factory
from appointments.field_usage_report import (
    DEFAULT_WINDOW_DAYS,
    FieldUsage,
    UsageReport,
    usage_report,
)
from server.command_sessions import command_engine
from server.settings import Settings


def add_usage_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "usage", help="which clients still read the deprecated fields (doctor, patient)"
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_WINDOW_DAYS,
        help=f"UTC days to look back, today included (default {DEFAULT_WINDOW_DAYS})",
    )
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=_usage)


def _usage(settings: Settings, arguments: argparse.Namespace) -> int:
    report = asyncio.run(_report(settings, arguments.days))
    if arguments.json:
        print(json.dumps(report_json(report), indent=2))
        return 0
    print(
        f"Deprecated field usage over the last {report.days} days"
        f" ({report.since.isoformat()} to {report.until.isoformat()}, UTC)"
    )
    for field in report.fields:
        print()
        _print_field(field, report.days)
    return 0


async def _report(settings: Settings, days: int) -> UsageReport:
    from schema.deprecated_fields import deprecated_fields
    from schema.schema import schema

    deprecated = deprecated_fields(schema._schema)
    async with command_engine(settings) as engine, create_session_factory(engine)() as session:
        return await usage_report(session, deprecated, days)


def _print_field(field: FieldUsage, days: int) -> None:
    reason = field.deprecation_reason
    print(f"{field.field}: {'no longer deprecated' if reason is None else reason}")
    if not field.clients:
        print(f"  no client has read {field.field} in the last {days} days")
        return
    print(f"  {'client':<24} {'operations':>10}  {'first seen':<20} {'last seen':<20} versions")
    for client in field.clients:
        print(
            f"  {client.client_name:<24} {client.operations:>10}  {_moment(client.first_seen_at)}"
            f" {_moment(client.last_seen_at)} {', '.join(client.versions)}"
        )
        for document in client.documents:
            print(
                f"    {document.label:<46} {document.operations:>10}"
                f"  last seen {_moment(document.last_seen_at).rstrip()}"
            )


def _moment(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S").ljust(20)


def report_json(report: UsageReport) -> dict[str, Any]:
    return {
        "days": report.days,
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "fields": [
            {
                "field": field.field,
                "deprecationReason": field.deprecation_reason,
                "operations": field.operations,
                "clients": [
                    {
                        "clientName": client.client_name,
                        "versions": list(client.versions),
                        "operations": client.operations,
                        "firstSeenAt": client.first_seen_at.isoformat(),
                        "lastSeenAt": client.last_seen_at.isoformat(),
                        "daily": [
                            {"day": day.isoformat(), "operations": operations}
                            for day, operations in client.daily
                        ],
                        "documents": [
                            {
                                "operationName": document.operation_name,
                                "documentHash": document.document_hash,
                                "operations": document.operations,
                                "lastSeenAt": document.last_seen_at.isoformat(),
                            }
                            for document in client.documents
                        ],
                    }
                    for client in field.clients
                ],
            }
            for field in report.fields
        ],
    }
