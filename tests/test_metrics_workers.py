"""`clinic serve --workers 2`: /metrics tells the truth after workers die and are replaced."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appointments.seed import demo_id
from tests.conftest import READ_CLINIC
from tests.test_dashboard import parse_tables
from tests.test_serve import STARTUP_SECONDS, free_port

STARTED = re.compile(r"Started server process \[(\d+)\]")
READY = "Application startup complete"


def read_until(log: IO[str] | None, marker: str, seconds: float = STARTUP_SECONDS) -> list[str]:
    """The server's log lines up to the first one saying ``marker``."""
    assert log is not None
    deadline = time.monotonic() + seconds
    said: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([log], [], [], deadline - time.monotonic())
        line = log.readline() if ready else ""
        if not line:
            break
        said.append(line)
        if marker in line:
            return said
    pytest.fail(f"server did not log {marker!r}; it said:\n{''.join(said[-30:])}")


def gauges(exposition: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith("clinic_flag_source_")
    }


def test_gauges_of_dead_workers_are_forgotten(tmp_path: Path) -> None:
    clinic = str(Path(sys.executable).with_name("clinic"))
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_", "PROMETHEUS_"))
    }
    subprocess.run([clinic, "seed"], cwd=tmp_path, env=environment, check=True, capture_output=True)
    # The workers start without flags (gauges 0), as a worker dying during start-up did.
    environment["CLINIC_FLAGS_FILE"] = "var/later.json"
    port = free_port()
    process = subprocess.Popen(
        [clinic, "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = read_until(process.stderr, READY)
        said += read_until(process.stderr, READY)
        workers = [int(m[1]) for line in said if (m := STARTED.search(line))]
        assert len(workers) == 2, said
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert gauges(client.get("/metrics").text) == {
                "clinic_flag_source_loaded": 0,
                "clinic_flag_source_reachable": 0,
            }
            shutil.copy(tmp_path / "var" / "flags.json", tmp_path / "var" / "later.json")
            for worker in workers:
                os.kill(worker, signal.SIGKILL)
                replaced = read_until(process.stderr, READY)
                assert any(f"[{worker}] died" in line for line in replaced), replaced
            assert gauges(client.get("/metrics").text) == {
                "clinic_flag_source_loaded": 1,
                "clinic_flag_source_reachable": 1,
            }
            assert client.get("/readyz").json()["status"] == "ready"
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_the_dashboards_activity_adds_up_every_worker(tmp_path: Path) -> None:
    """Reads served by either of two workers show on the dashboard whichever worker draws
    it: its Activity panel equals the reads /metrics sums over the workers."""
    clinic = str(Path(sys.executable).with_name("clinic"))
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_", "PROMETHEUS_"))
    }
    subprocess.run([clinic, "seed"], cwd=tmp_path, env=environment, check=True, capture_output=True)
    environment["CLINIC_HEALTH_FLUSH_SECONDS"] = "1"
    port = free_port()
    process = subprocess.Popen(
        [clinic, "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_until(process.stderr, READY)
        read_until(process.stderr, READY)
        # The workers log each mismatch their compared reads meet: keep the pipe flowing.
        assert process.stderr is not None
        threading.Thread(target=process.stderr.read, daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        for number in range(3):
            clinic_id = str(demo_id("clinic", number))
            for _ in range(4):  # a connection each, so either worker may take it
                with httpx.Client(base_url=base, timeout=30) as client:
                    response = client.post(
                        "/graphql",
                        json={"query": READ_CLINIC, "variables": {"clinicId": clinic_id}},
                    )
                    assert response.status_code == 200, response.text
        with httpx.Client(base_url=base, timeout=30) as client:
            served = reads_by_stage(client.get("/metrics").text)
            assert sum(served.values()) > 0
            deadline = time.monotonic() + STARTUP_SECONDS
            while (shown := dashboard_reads(client.get("/migration").text)) != served:
                assert time.monotonic() < deadline, (shown, served)
                # The other worker adds its counts within its flush interval (1 s).
                client.get("/healthz")
    finally:
        process.terminate()
        process.communicate(timeout=30)


def reads_by_stage(exposition: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "clinic_appointment_reads_total":
                stage = sample.labels["stage"]
                totals[stage] = totals.get(stage, 0) + int(sample.value)
    return {stage: count for stage, count in totals.items() if count}


def dashboard_reads(page: str) -> dict[str, int]:
    activity = parse_tables(page)["activity"]
    counts = {row.cells[0].text: int(activity.column(row, "Reads").text) for row in activity.rows}
    counts.pop("total")
    return {stage: count for stage, count in counts.items() if count}
