"""The migration dashboard's rollout panel: each clinic's stage, next step, blocking guard
and history, from what the autopilot's last pass stored and the audit trail."""

from __future__ import annotations

from collections import defaultdict
from html import escape

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.models import Clinic, RolloutAudit, RolloutStatus
from appointments.rollout import audit

HISTORY_PER_CLINIC = 5
HISTORY_ROWS = 300

STYLE = """
table#rollout td.history { font-size: 12px; color: #3e4c59; }
table#rollout td.history ol { margin: 0; padding-left: 16px; }
.held { color: #b91c1c; font-weight: 600; }
.state-failed, .state-abandoned { color: #b91c1c; font-weight: 600; }
.state-intent { color: #b45309; font-weight: 600; }
.guards { color: #52606d; }
"""


async def rollout_panel(session: AsyncSession) -> str:
    statuses = (
        await session.execute(
            select(RolloutStatus, Clinic.name)
            .outerjoin(Clinic, Clinic.id == RolloutStatus.clinic_id)
            .order_by(Clinic.name, RolloutStatus.clinic_id)
        )
    ).all()
    held = await audit.holds(session)
    history: dict[object, list[RolloutAudit]] = defaultdict(list)
    for row, _name in await audit.entries(session, None, HISTORY_ROWS):
        if len(history[row.clinic_id]) < HISTORY_PER_CLINIC:
            history[row.clinic_id].append(row)
    if not statuses:
        body = (
            '<tr><td colspan="7" class="zero">No rollout pass yet: run'
            " <code>clinic rollout step PLAN</code>.</td></tr>"
        )
        evaluated = ""
    else:
        body = "".join(
            _row(status, name, status.clinic_id in held, history[status.clinic_id])
            for status, name in statuses
        )
        latest = max(status.evaluated_at for status, _ in statuses)
        evaluated = f" Last pass {latest.strftime('%Y-%m-%d %H:%M:%S UTC')}."
    return f"""<h2>Rollout</h2>
<p class="meta">What the autopilot's last pass of each plan decided for its clinics.{evaluated}
A held clinic moves only after <code>clinic rollout release CLINIC --reason ...</code>.</p>
<table id="rollout">
<thead><tr><th>Clinic</th><th>Cohort</th><th>Stage</th><th>Target</th><th>Next step</th>
<th>Blocking</th><th>History</th></tr></thead>
<tbody>{body}</tbody>
</table>
"""


def _row(status: RolloutStatus, name: str | None, held: bool, history: list[RolloutAudit]) -> str:
    label = escape(name or str(status.clinic_id))
    blocking = escape(status.blocking) if status.blocking else '<span class="zero">nothing</span>'
    if held:
        blocking = f'<span class="held">{blocking}</span>'
    elif status.held:
        blocking += " (released since)"
    items = "".join(
        f'<li data-state="{escape(entry.state)}">'
        f"{escape(entry.at.strftime('%Y-%m-%d %H:%M'))} {escape(entry.action)}"
        f'{_stages(entry)} <span class="state-{escape(entry.state)}">{escape(entry.state)}</span>'
        f" by {escape(entry.actor)}: {escape(entry.reason)}{_guards(entry)}</li>"
        for entry in history
    )
    return (
        f'<tr data-clinic-id="{escape(str(status.clinic_id))}"'
        f' data-held="{"true" if held else "false"}">'
        f'<td class="clinic"><strong>{label}</strong></td>'
        f"<td>{escape(status.cohort)}</td>"
        f'<td class="stage-cell"><span class="stage stage-{escape(status.stage)}">'
        f"{escape(status.stage)}</span></td>"
        f"<td>{escape(status.target)}</td>"
        f'<td class="next-step">{escape(status.next_step)}</td>'
        f'<td class="blocking">{blocking}</td>'
        f'<td class="history"><ol>{items}</ol></td></tr>'
    )


def _guards(entry: RolloutAudit) -> str:
    """The evidence a promotion was decided on, in a few words."""
    if entry.action != "promote" or not entry.guards:
        return ""
    shown = [
        f"{label} {entry.guards[key]}"
        for key, label in (
            ("mismatches", "mismatches"),
            ("read_fallbacks", "fallbacks"),
            ("write_failures", "failed writes"),
        )
        if entry.guards.get(key) is not None
    ]
    return f' <span class="guards">({escape(", ".join(shown))})</span>' if shown else ""


def _stages(entry: RolloutAudit) -> str:
    if entry.to_stage is None or entry.from_stage == entry.to_stage:
        return ""
    return f" {escape(entry.from_stage or '?')} &rarr; {escape(entry.to_stage)}"
