"""The dashboard's "last 24 hours" panel: per clinic, small server-rendered SVG charts of
reads by origin, read fallbacks, new mismatches and failed writes, a strip of the
stages it was in, its stage changes, and the readiness of its next stage in words.
No script and nothing from elsewhere: the page stays one self-contained response."""

from __future__ import annotations

import uuid
from datetime import datetime
from html import escape

from appointments.history import BUCKETS, WINDOW, ClinicHistory, StageChange
from appointments.stages import Stage
from appointments.validation import ClinicReport

WIDTH, HEIGHT, TOP = 300, 72, 14
BUCKET_MINUTES = int(WINDOW.total_seconds() // 60 // BUCKETS)
STRIP = 4 * WIDTH + 3 * 10  # the four charts and their gaps
STAGE_COLOURS = {
    Stage.LEGACY: "#cbd2d9",
    Stage.DUAL_WRITE: "#93c5fd",
    Stage.SHADOW: "#c4b5fd",
    Stage.LIVE: "#fcd34d",
    Stage.RAMPDOWN: "#fdba74",
    Stage.COMPLETE: "#86efac",
}
CHARTS = (
    (
        "reads",
        "Reads by origin",
        (("reads_legacy", "legacy", "#64748b"), ("reads_new", "new", "#2563eb")),
    ),
    ("fallbacks", "Read fallbacks", (("read_fallbacks", "fallbacks", "#d97706"),)),
    ("mismatches", "New mismatches", (("new_mismatches", "new mismatches", "#7c3aed"),)),
    ("failures", "Failed writes", (("write_failures", "failed writes", "#dc2626"),)),
)

STYLE = """
nav.panels { position: sticky; top: 0; z-index: 1; background: #f7f8fa; padding: 6px 0;
             margin: 0 0 12px; border-bottom: 1px solid #e4e7eb; }
nav.panels a { margin-right: 14px; color: #1d4ed8; text-decoration: none; font-weight: 600; }
section.clinic-history { background: #fff; box-shadow: 0 1px 2px #0002; padding: 10px 12px;
                         margin: 0 0 12px; max-width: 1260px; }
section.clinic-history h3 { font-size: 15px; margin: 0 0 2px; }
p.readiness { margin: 0 0 6px; font-size: 13px; }
p.readiness.not-ready { color: #b91c1c; } p.readiness.ready-next { color: #15803d; }
div.charts { display: flex; flex-wrap: wrap; gap: 10px; }
figure.chart { margin: 0; } figure.chart figcaption { font-size: 12px; color: #52606d; }
svg.chart { background: #fbfcfd; border: 1px solid #e4e7eb; }
svg text { font: 10px system-ui, sans-serif; fill: #7b8794; }
ol.changes { margin: 4px 0 0; padding-left: 18px; font-size: 12px; color: #3e4c59; }
.legend-swatch { display: inline-block; width: 10px; height: 3px; margin: 0 3px 2px 6px; }
"""


def readiness_words(report: ClinicReport) -> tuple[str, str]:
    """(CSS class, plain words): ready for the next stage or what keeps the clinic out."""
    if report.next_stage is None:
        return "final", f"{report.stage.value} is the final stage"
    if report.ready_for_next:
        return "ready-next", f"ready for {report.next_stage.value}"
    return "not-ready", f"not ready for {report.next_stage.value}: " + "; ".join(report.blockers)


def history_panel(reports: list[ClinicReport], histories: dict[uuid.UUID, ClinicHistory]) -> str:
    sections = "".join(
        _clinic_section(report, histories[report.clinic_id])
        for report in reports
        if report.clinic_id in histories
    )
    hours = int(WINDOW.total_seconds() // 3600)
    return f"""<h2 id="history-title">The last {hours} hours, per clinic</h2>
<p class="meta">From the health counters (reads by origin, read fallbacks, failed writes; every
process adds its reads every <code>CLINIC_HEALTH_FLUSH_SECONDS</code>), the mismatch ledger
(entries first seen) and the rollout audit trail (stage changes, the dashed lines), in
{BUCKETS} buckets of {BUCKET_MINUTES} minutes.</p>
<div id="history">{sections or '<p class="zero">No clinics yet.</p>'}</div>
"""


def _clinic_section(report: ClinicReport, history: ClinicHistory) -> str:
    kind, words = readiness_words(report)
    charts = "".join(_chart(key, title, lines, history) for key, title, lines in CHARTS)
    return (
        f'<section class="clinic-history" data-clinic-id="{escape(str(report.clinic_id))}">'
        f"<h3>{escape(report.clinic_name)}</h3>"
        f'<p class="readiness {kind}">{escape(words)}</p>'
        f"{_stage_strip(report.stage, history)}"
        f'<div class="charts">{charts}</div>{_changes(history.changes)}</section>'
    )


def _x(history: ClinicHistory, moment: datetime, width: float = WIDTH) -> float:
    return width * (moment - history.start) / (history.end - history.start)


def _stage_strip(current: Stage, history: ClinicHistory) -> str:
    """The stage over the window: the one before it (or, with no trail, the first change's
    from-stage or today's), then each change's."""
    first = history.changes[0].from_stage if history.changes else None
    stage = history.stage_before or first or current
    segments, left = [], 0.0
    for change in history.changes:
        x = _x(history, change.at, STRIP)
        segments.append((left, x, stage))
        left, stage = x, change.to_stage
    segments.append((left, float(STRIP), stage))
    rects = "".join(
        f'<rect x="{a:.1f}" y="0" width="{max(b - a, 0.5):.1f}" height="12"'
        f' fill="{STAGE_COLOURS[s]}" data-stage="{s.value}"><title>{s.value}</title></rect>'
        for a, b, s in segments
    )
    labels = "".join(
        f'<text x="{a + 3:.1f}" y="10" style="fill:#1f2933">{s.value}</text>'
        for a, b, s in segments
        if b - a > 50
    )
    return (
        f'<svg class="stages" width="{STRIP}" height="24" role="img" aria-label="stages">'
        f'{rects}{labels}<text x="0" y="22">24 h ago</text>'
        f'<text x="{STRIP}" y="22" text-anchor="end">now</text></svg>'
    )


def _chart(
    key: str, title: str, lines: tuple[tuple[str, str, str], ...], history: ClinicHistory
) -> str:
    highest = max(max(history.series[name]) for name, _, _ in lines)
    peak = max(highest, 1)
    step = WIDTH / (BUCKETS - 1)
    height = HEIGHT - TOP - 2
    polylines = []
    for name, label, colour in lines:
        points = " ".join(
            f"{i * step:.1f},{TOP + height - height * value / peak:.1f}"
            for i, value in enumerate(history.series[name])
        )
        polylines.append(
            f'<polyline data-series="{name}" fill="none" stroke="{colour}" stroke-width="1.6"'
            f' points="{points}"><title>{escape(label)}</title></polyline>'
        )
    markers = "".join(
        f'<line x1="{_x(history, change.at):.1f}" x2="{_x(history, change.at):.1f}" y1="{TOP}"'
        f' y2="{HEIGHT}" stroke="#52606d" stroke-dasharray="3,2"/>'
        for change in history.changes
    )
    totals = ", ".join(f"{history.total(name)} {label}" for name, label, _ in lines)
    legend = (
        "".join(
            f'<span class="legend-swatch" style="background:{colour}"></span>{escape(label)}'
            for _, label, colour in lines
        )
        if len(lines) > 1
        else ""
    )
    return (
        f'<figure class="chart"><figcaption>{escape(title)}{legend}</figcaption>'
        f'<svg class="chart" data-chart="{key}" width="{WIDTH}" height="{HEIGHT}"'
        f' role="img" aria-label="{escape(f"{title}: {totals} in 24 h")}">'
        f'<text x="2" y="10">max {highest} per {BUCKET_MINUTES} min</text>'
        f'<text x="{WIDTH - 2}" y="10" text-anchor="end">{escape(totals)}</text>'
        f"{markers}{''.join(polylines)}</svg></figure>"
    )


def _changes(changes: list[StageChange]) -> str:
    if not changes:
        return '<p class="zero" style="font-size:12px;margin:4px 0 0">no stage change in 24 h</p>'
    items = "".join(
        f"<li>{change.at.strftime('%H:%M')} UTC "
        f"{escape(change.from_stage.value if change.from_stage else '?')} → "
        f"{escape(change.to_stage.value)} by {escape(change.actor)}: {escape(change.reason)}</li>"
        for change in changes
    )
    return f'<ol class="changes">{items}</ol>'
