"""GET /migration in real headless Chromium, against `clinic serve --demo`."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import httpx
import pytest

from appointments.seed import DEMO_CLINICS, demo_clinic_stages
from tests.conftest import browser_skipped, unavailable
from tests.test_dashboard import parse_tables
from tests.test_serve import running_demo

CHROMIUM = Path("/usr/bin/chromium")
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
    with running_demo(server) as url, httpx.Client(base_url=url, timeout=30) as client:
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
