"""The dashboard's last-24-hours charts in real headless Chromium, over a seeded day of
history: every clinic's charts are drawn with its data, and the screenshot shows them."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from appointments.db import create_engine, create_session_factory
from appointments.models import utcnow
from appointments.seed import DEMO_CLINICS, demo_id
from tests.dashboard_history import Seeded, seed_history
from tests.png import pixels
from tests.test_dashboard_browser import chromium
from tests.test_serve import running_demo

# Line colours of server/dashboard_charts.py, as Chromium paints them.
NEW_READS, MISMATCHES, FAILURES = (37, 99, 235), (124, 58, 237), (220, 38, 38)
SHOTS = os.environ.get("CLINIC_SCREENSHOT_DIR")


async def seed(database: Path) -> Seeded:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with create_session_factory(engine)() as session, session.begin():
            return await seed_history(session, utcnow())
    finally:
        await engine.dispose()


def test_chromium_draws_each_clinics_day_from_a_seeded_history(tmp_path: Path) -> None:
    server = tmp_path / "server"
    server.mkdir()
    screenshot = tmp_path / "charts.png"
    with running_demo(server) as url:
        seeded = asyncio.run(seed(server / "var" / "clinic.sqlite3"))
        dom = chromium(tmp_path / "profile", "--dump-dom", f"{url}/migration").stdout
        chromium(
            tmp_path / "profile",
            f"--screenshot={screenshot}",
            "--window-size=1400,1800",
            f"{url}/migration",
        )
    if SHOTS:
        shutil.copy(screenshot, Path(SHOTS) / "dashboard-charts.png")

    sections = dom.split('<section class="clinic-history" data-clinic-id="')[1:]
    assert len(sections) == len(DEMO_CLINICS)
    by_clinic = {section[:36]: section for section in sections}
    for number, (name, _) in enumerate(DEMO_CLINICS):
        clinic_id = demo_id("clinic", number)
        section = by_clinic[str(clinic_id)]
        assert f"<h3>{name}</h3>" in section
        for series, totals in seeded.totals.items():
            label = series.replace("_", " ")
            assert totals[clinic_id] >= 0, label
        reads = f"{seeded.totals['reads_legacy'][clinic_id]} legacy, "
        assert reads + f"{seeded.totals['reads_new'][clinic_id]} new" in section
        assert f"{seeded.totals['new_mismatches'][clinic_id]} new mismatches" in section
        assert f"{seeded.totals['write_failures'][clinic_id]} failed writes" in section
    hillcrest = by_clinic[str(demo_id("clinic", 3))]
    assert hillcrest.count('stroke-dasharray="3,2"') == 8  # two changes, on four charts
    assert "dual_write → shadow by autopilot" in hillcrest
    assert "shadow → live by autopilot" in hillcrest
    assert 'data-stage="live"' in hillcrest
    assert '<p class="readiness not-ready">not ready for rampdown: ' in hillcrest
    assert "appointments have no clinic doctor link" in hillcrest
    harbor = by_clinic[str(demo_id("clinic", 1))]
    assert '<p class="readiness ready-next">ready for shadow</p>' in harbor
    assert 'href="#history-title"' in dom
    assert 'href="#usage"' in dom

    width, height, colours = pixels(screenshot.read_bytes())
    assert (width, height) == (1400, 1800)
    for colour in (NEW_READS, MISMATCHES, FAILURES):
        assert colours[colour] > 20, (colour, colours.most_common(12))
