"""GET /migration in real headless Chromium, against `clinic serve --demo`."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from appointments.seed import DEMO_CLINICS, demo_clinic_stages, demo_id
from tests.conftest import browser_skipped, unavailable
from tests.test_dashboard import parse_tables
from tests.test_serve import running_demo

CHROMIUM = Path(os.environ.get("CLINIC_CHROMIUM", "/usr/bin/chromium"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COVERAGE = re.compile(r"(\d+\.\d)% \((\d+) / (\d+)\)")


def chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with a fresh profile, skipped with ``CLINIC_SKIP_BROWSER`` outside CI."""
    if browser_skipped():
        pytest.skip("CLINIC_SKIP_BROWSER is set (and CI is not)")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing; run scripts/install-browser")
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *arguments,
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr
    return finished


def test_chromium_renders_every_demo_clinic_with_its_stage_and_coverage(tmp_path: Path) -> None:
    server = tmp_path / "server"
    server.mkdir()
    screenshot = tmp_path / "dashboard.png"
    with running_demo(server) as url:
        dom = chromium(tmp_path / "profile", "--dump-dom", f"{url}/migration").stdout
        chromium(
            tmp_path / "profile",
            f"--screenshot={screenshot}",
            "--window-size=1400,900",
            f"{url}/migration",
        )

    clinics = parse_tables(dom)["clinics"]
    rows = clinics.by_attr("data-clinic-id")
    expected = list(zip(demo_clinic_stages().items(), DEMO_CLINICS, strict=True))
    assert set(rows) == {clinic_id for (clinic_id, _), _ in expected}
    for (clinic_id, stage), (name, _) in expected:
        row = rows[clinic_id]
        assert clinics.column(row, "Clinic").text == f"{name} {clinic_id}"
        assert clinics.column(row, "Requested (flag)").text == stage.value
        assert clinics.column(row, "Served").text == stage.value
        coverage = COVERAGE.fullmatch(clinics.column(row, "Backfill coverage").text)
        assert coverage is not None, clinics.column(row, "Backfill coverage").text
        percent, linked, total = float(coverage[1]), int(coverage[2]), int(coverage[3])
        assert 0 < linked < total
        assert abs(percent - 100 * linked / total) < 0.1
    assert "Activity in the last" in dom

    image = screenshot.read_bytes()
    assert image.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", image[16:24])
    assert (width, height) == (1400, 900)
    assert len(image) > 10_000


def test_chromium_shows_which_clients_still_read_the_deprecated_fields(tmp_path: Path) -> None:
    server = tmp_path / "server"
    server.mkdir()
    legacy = "{ appointments(first: 5) { edges { node { id doctor { name } } } } }"
    current = "{ appointments(first: 5) { edges { node { id clinicDoctor { id } } } } }"
    listed = {"CLINIC_USAGE_CLIENTS": "web,ios,android"}
    with (
        running_demo(server, settings=listed) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        for name, version, query in (
            ("web", "1.4.0", legacy),
            ("web", "1.5.0", legacy),
            ("ios", "3.1", legacy),
            ("android", "2.0", current),
        ):
            response = client.post(
                "/graphql",
                json={"query": query},
                headers={
                    "apollographql-client-name": name,
                    "apollographql-client-version": version,
                },
            )
            assert response.status_code == 200
            assert "errors" not in response.json()
        client.post("/graphql", json={"query": legacy}).raise_for_status()
        dom = chromium(tmp_path / "profile", "--dump-dom", f"{url}/migration").stdout

    usage = parse_tables(dom)["usage"]
    rows = {(row.attrs["data-field"], row.attrs["data-client"]): row for row in usage.rows}
    assert set(rows) == {
        ("Appointment.doctor", "web"),
        ("Appointment.doctor", "ios"),
        ("Appointment.doctor", "unknown"),
        ("Appointment.patient", ""),
    }
    web = rows[("Appointment.doctor", "web")]
    assert usage.column(web, "Versions").text == "1.4.0, 1.5.0"
    assert usage.column(web, "Today").text == "2"
    assert usage.column(rows[("Appointment.doctor", "unknown")], "Last 30 days").text == "1"
    assert usage.column(rows[("Appointment.patient", "")], "Client").text == (
        "no client has read Appointment.patient in the last 30 days"
    )


DEMO_PLAN = """
target = "complete"
max_moves_per_hour = 100

[soak]
default = "0s"

[[cohort]]
name = "everyone"
percentage = 100
"""


def test_chromium_renders_the_rollout_panel_after_a_pass(tmp_path: Path) -> None:
    server = tmp_path / "server"
    server.mkdir()
    plan = server / "plan.toml"
    plan.write_text(DEMO_PLAN, encoding="utf-8")
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_"))
    }
    with running_demo(server) as url:
        step = subprocess.run(
            [str(Path(sys.executable).with_name("clinic")), "rollout", "step", str(plan)],
            cwd=server,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert step.returncode == 0, step.stderr
        dom = chromium(tmp_path / "profile", "--dump-dom", f"{url}/migration").stdout

    rollout = parse_tables(dom)["rollout"]
    rows = rollout.by_attr("data-clinic-id")
    names = {str(demo_id("clinic", n)): name for n, (name, _) in enumerate(DEMO_CLINICS)}
    ids = {name: clinic_id for clinic_id, name in names.items()}
    assert set(rows) == set(names)
    stage_after = {
        "Northside Family Practice": "dual_write",
        "Harbor Health Center": "shadow",
        "Riverside Clinic": "shadow",
        "Hillcrest Medical": "shadow",
        "Lakeview Care": "live",
        "Summit Health": "rampdown",
    }
    for clinic_id, row in rows.items():
        name = names[clinic_id]
        assert rollout.column(row, "Clinic").text == name
        assert rollout.column(row, "Stage").text == stage_after[name]
        assert rollout.column(row, "Target").text == "complete"
    hillcrest = rows[ids["Hillcrest Medical"]]
    assert hillcrest.attrs["data-held"] == "true"
    assert rollout.column(hillcrest, "Blocking").text.startswith(
        "held: breach: readiness of the current stage:"
    )
    assert (
        "step_back live → shadow applied by autopilot: breach: readiness of the current stage"
        in (rollout.column(hillcrest, "History").text)
    )
    riverside = rows[ids["Riverside Clinic"]]
    assert rollout.column(riverside, "Blocking").text.startswith("readiness for live:")
    assert rollout.column(riverside, "Next step").text == "promote to live"
