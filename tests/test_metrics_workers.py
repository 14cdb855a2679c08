"""`clinic serve --workers 2`: /metrics tells the truth after workers die and are replaced."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

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
