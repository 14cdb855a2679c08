"""The dashboard's panel of deprecated field usage: which clients still read each field.

It writes this process's buffered counts first (so the page includes them; other
processes' arrive within ``CLINIC_USAGE_FLUSH_SECONDS``), then reads the daily
table over the last ``DEFAULT_WINDOW_DAYS`` days (``appointments.field_usage_report``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from html import escape

from appointments.field_usage_report import (
    DEFAULT_WINDOW_DAYS,
    ClientUsage,
    FieldUsage,
    OperationUsage,
    UsageReport,
    usage_report,
)
from schema.deprecated_fields import deprecated_fields
from schema.schema import schema
from server.services import Services

RECENT_DAYS = 7
HEADERS = (
    "Field",
    "Client",
    "Versions",
    "Operations",
    "Today",
    f"Last {RECENT_DAYS} days",
    f"Last {DEFAULT_WINDOW_DAYS} days",
    "Last seen",
)
NUMERIC = {"Today", f"Last {RECENT_DAYS} days", f"Last {DEFAULT_WINDOW_DAYS} days"}


async def usage_panel(services: Services) -> str:
    """The panel's HTML: a heading, a note and the table ``usage``."""
    await services.usage.flush_logged(services.sessions)
    async with services.sessions() as session:
        report = await usage_report(session, deprecated_fields(schema._schema))
    rows = "".join(_field_rows(field, report) for field in report.fields)
    head = "".join(f"<th{' class=num' if h in NUMERIC else ''}>{escape(h)}</th>" for h in HEADERS)
    return f"""<h2>Deprecated fields: clients still reading them</h2>
<p class="meta">Operations that selected each deprecated field, per client (the
<code>apollographql-client-name</code> and <code>-version</code> headers; unknown without
them, other beyond the limit) and per operation (its name and the first digits of its
document's SHA-256, the whole hash on hover), by UTC day, over the last {report.days} days.
A field is safe to remove once no client has read it for as long as its slowest client
takes to update; <code>clinic usage</code> gives the same from a terminal.</p>
<table id="usage">
<thead><tr>{head}</tr></thead>
<tbody>{rows}</tbody>
</table>
"""


def _field_rows(field: FieldUsage, report: UsageReport) -> str:
    name = escape(field.field)
    reason = field.deprecation_reason or "no longer deprecated"
    field_cell = f'<td class="field"><strong>{name}</strong><br><code>{escape(reason)}</code></td>'
    if not field.clients:
        return (
            f'<tr data-field="{name}" data-client="">{field_cell}'
            f'<td class="none ready">no client has read {name} in the last {report.days} days'
            '</td><td></td><td></td><td class="num zero">0</td><td class="num zero">0</td>'
            '<td class="num zero">0</td><td class="zero">never</td></tr>'
        )
    return "".join(_client_row(field_cell, name, client, report.until) for client in field.clients)


def _client_row(field_cell: str, field: str, client: ClientUsage, today: date) -> str:
    recent = client.operations_since(today - timedelta(days=RECENT_DAYS - 1))
    return (
        f'<tr data-field="{field}" data-client="{escape(client.client_name)}">{field_cell}'
        f'<td class="client">{escape(client.client_name)}</td>'
        f'<td class="versions">{escape(", ".join(client.versions))}</td>'
        f'<td class="operations">{_documents(client.documents)}</td>'
        f"{_count(client.operations_since(today))}{_count(recent)}{_count(client.operations)}"
        f'<td class="last-seen">{_moment(client.last_seen_at)}</td></tr>'
    )


def _documents(documents: tuple[OperationUsage, ...]) -> str:
    return "<br>".join(
        f'<code title="{escape(document.document_hash)}">{escape(document.label)}</code>'
        f" ({document.operations})"
        for document in documents
    )


def _count(value: int) -> str:
    return f'<td class="num{" bad" if value else " zero"}">{value}</td>'


def _moment(value: datetime) -> str:
    return escape(value.strftime("%Y-%m-%d %H:%M:%S UTC"))
