"""GET /migration: one server-rendered page of every clinic's migration state.

The data comes from the same domain functions as GraphQL's ``migrationReport``
(``validation.clinic_reports`` with the request's StageResolver); recent
activity is the fleet's (``activity.fleet_totals``, with this process's counts
flushed first); the deprecated field usage panel is server/dashboard_usage.py.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from html import escape

from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import HTMLResponse

from appointments import history, layout, validation
from appointments.access import Permission, role_allows
from appointments.activity import WINDOW_MINUTES, fleet_totals
from appointments.stages import Stage
from appointments.validation import ClinicReport
from flags.stages import GatedStage, StageResolver, Viewer
from server.dashboard_charts import STYLE as CHARTS_STYLE
from server.dashboard_charts import history_panel
from server.dashboard_usage import usage_panel
from server.request_state import request_state
from server.rollout_panel import STYLE as ROLLOUT_STYLE
from server.rollout_panel import rollout_panel
from server.services import Services

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1f2933; background: #f7f8fa; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
p.meta { color: #616e7c; margin: 0 0 16px; max-width: 900px; }
td.readiness { min-width: 190px; }
table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 2px #0002; }
th, td { padding: 8px; border-bottom: 1px solid #e4e7eb; text-align: left;
         vertical-align: top; }
th { background: #eef1f5; font-size: 12px; text-transform: uppercase; color: #52606d; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 11px; color: #7b8794; white-space: nowrap; }
td.coverage { white-space: nowrap; font-variant-numeric: tabular-nums; }
.stage { display: inline-block; padding: 1px 8px; border-radius: 10px; background: #e4e7eb;
         white-space: nowrap; }
.stage-legacy { background: #e4e7eb; } .stage-dual_write { background: #dbeafe; }
.stage-shadow { background: #ede9fe; } .stage-live { background: #fef3c7; }
.stage-rampdown { background: #ffedd5; } .stage-complete { background: #dcfce7; }
td.gated { background: #fff1f2; }
.gated-note { display: block; color: #be123c; font-size: 12px; margin-top: 4px; }
.bar { width: 120px; height: 8px; background: #e4e7eb; border-radius: 4px; overflow: hidden;
       margin-top: 4px; }
.bar span { display: block; height: 100%; background: #16a34a; }
.zero { color: #9aa5b1; } .bad { color: #b91c1c; font-weight: 600; }
.ready { color: #15803d; font-weight: 600; }
ul.blockers { margin: 0; padding-left: 18px; color: #b91c1c; }
td.field code { white-space: normal; }
"""


async def migration_dashboard(request: Request) -> HTMLResponse:
    services: Services = request.app.state.services
    viewer = request_state(request).viewer or Viewer()
    if not role_allows(viewer.role, Permission.READ_MIGRATION):
        return HTMLResponse(
            "<!doctype html><title>Forbidden</title><p>The migration dashboard is for the"
            " admin and qa roles.</p>",
            status_code=403,
        )
    legacy = services.legacy_columns
    try:
        stages, reports = await _reports(services, viewer)
    except DBAPIError as error:
        # The contract dropped the legacy columns while this service ran: a read-only
        # page is simply read again on the contracted layout.
        if not (
            legacy and layout.is_missing_column(error) and await services.adopt_contracted_layout()
        ):
            raise
        stages, reports = await _reports(services, viewer)
    await services.flush_reads()
    async with services.sessions() as session:
        rollout = await rollout_panel(session)
        histories = await history.clinic_histories(session, [r.clinic_id for r in reports])
        activity = await fleet_totals(session)
    served = {report.clinic_id: stages(report.clinic_id) for report in reports}
    gated = stages.gated
    rows = [_clinic_row(r, served[r.clinic_id], gated.get(r.clinic_id)) for r in reports]
    usage = await usage_panel(services)
    gates, contracted = services.settings.readiness_gates, not services.legacy_columns
    panels = history_panel(reports, histories) + rollout
    page = _page(rows, gates, contracted, panels, _activity_rows(activity), usage)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


async def _reports(services: Services, viewer: Viewer) -> tuple[StageResolver, list[ClinicReport]]:
    stages = services.stage_resolver(viewer)
    async with services.sessions() as session:
        reports = await validation.clinic_reports(session, stages.requested)
    return stages, reports


def _stage(stage: Stage | None) -> str:
    if stage is None:
        return '<span class="zero">—</span>'
    return f'<span class="stage stage-{escape(stage.value)}">{escape(stage.value)}</span>'


def _count(value: int) -> str:
    return f'<td class="num{" bad" if value else " zero"}">{value}</td>'


def coverage_percent(linked: int, total: int) -> str:
    """Rounded down, so that 100% means every appointment."""
    if total == 0:
        return "n/a"
    return f"{math.floor(1000 * linked / total) / 10:.1f}%"


def _clinic_row(report: ClinicReport, served: Stage, gated: GatedStage | None) -> str:
    differs = served is not report.stage
    served_cell = _stage(served)
    if differs:
        reasons = "; ".join(gated.blockers) if gated is not None else ""
        served_cell += (
            f'<span class="gated-note" title="{escape(reasons)}">'
            f"gated: not {escape(report.stage.value)}</span>"
        )
    width = 0.0 if report.total == 0 else 100 * report.fully_linked / report.total
    if report.next_stage is None:
        readiness = '<span class="zero">final stage</span>'
    elif report.ready_for_next:
        readiness = '<span class="ready">ready</span>'
    else:
        items = "".join(f"<li>{escape(blocker)}</li>" for blocker in report.blockers)
        readiness = f'<ul class="blockers">{items}</ul>'
    return (
        f'<tr data-clinic-id="{escape(str(report.clinic_id))}">'
        f'<td class="clinic"><strong>{escape(report.clinic_name)}</strong><br>'
        f"<code>{escape(str(report.clinic_id))}</code></td>"
        f'<td class="requested">{_stage(report.stage)}</td>'
        f'<td class="served{" gated" if differs else ""}">{served_cell}</td>'
        '<td class="coverage">'
        f"<strong>{escape(coverage_percent(report.fully_linked, report.total))}</strong> "
        f"({report.fully_linked} / {report.total})"
        f'<div class="bar"><span style="width: {width:.1f}%"></span></div></td>'
        f"{_count(report.doctor.unlinked)}{_count(report.patient.unlinked)}"
        f"{_count(report.inconsistent)}{_count(report.open_mismatches)}"
        f'<td class="next">{_stage(report.next_stage)}</td>'
        f'<td class="readiness">{readiness}</td></tr>'
    )


def _activity_rows(totals: Counter[tuple[str, str]]) -> str:
    known = {stage.value: stage for stage in Stage}
    names = [*known, *sorted({stage for _, stage in totals} - set(known))]
    rows = "".join(
        f"<tr><td>{_stage(known[name]) if name in known else escape(name)}</td>"
        f'<td class="num">{totals[("read", name)]}</td>'
        f'<td class="num">{totals[("write", name)]}</td></tr>'
        for name in names
    )
    reads = sum(n for (kind, _), n in totals.items() if kind == "read")
    writes = sum(n for (kind, _), n in totals.items() if kind == "write")
    return f'{rows}<tr><th>total</th><th class="num">{reads}</th><th class="num">{writes}</th></tr>'


def _page(
    rows: list[str], gates: bool, contracted: bool, rollout: str, activity: str, usage: str
) -> str:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    notes = [f"Generated {generated}", f"readiness gates {'on' if gates else 'off'}"]
    if contracted:
        notes.append("legacy columns dropped: every clinic is served complete")
    body = "".join(rows) or '<tr><td colspan="10" class="zero">No clinics yet.</td></tr>'
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="30">
<title>Migration dashboard</title>
<style>{STYLE}{ROLLOUT_STYLE}{CHARTS_STYLE}</style>
</head>
<body>
<h1>Clinic model migration</h1>
<nav class="panels"><a href="#clinics">Clinics</a><a href="#history-title">Last 24 hours</a>
<a href="#rollout">Rollout</a><a href="#activity">Activity</a>
<a href="#usage">Deprecated fields</a></nav>
<p class="meta">{escape(" · ".join(notes))}<br>
Coverage: appointments linked on both sides (clinic doctor and clinic patient) out of all.
Served is the stage requests get; it is highlighted when readiness gates hold a clinic below
its flag. Readiness is for the next stage.</p>
<table id="clinics">
<thead><tr><th>Clinic</th><th>Requested (flag)</th><th>Served</th>
<th>Backfill coverage</th><th class="num">Unlinked doctor</th>
<th class="num">Unlinked patient</th><th class="num">Inconsistent</th>
<th class="num">Open mismatches</th><th>Next stage</th><th>Readiness</th></tr></thead>
<tbody>{body}</tbody>
</table>
{rollout}
<h2>Activity in the last {WINDOW_MINUTES} minutes (every instance)</h2>
<table id="activity">
<thead><tr><th>Stage</th><th class="num">Reads</th><th class="num">Writes</th></tr></thead>
<tbody>{activity}</tbody>
</table>
{usage}</body>
</html>
"""
