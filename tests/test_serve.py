"""The README's first command: `clinic serve --demo` on a fresh directory, over real HTTP."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appointments.seed import demo_clinic_stages
from appointments.stages import Stage

STARTUP_SECONDS = 60
QUERY = """
{
  appointments(first: 100) {
    edges { node { clinic { id } doctor { id } clinicDoctor { user { id } } } }
  }
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_line(
    log: IO[str] | None, marker: str, times: int = 1, seconds: float = STARTUP_SECONDS
) -> None:
    """Read a server's log until it has said `marker` (the event) `times` times."""
    assert log is not None
    deadline = time.monotonic() + seconds
    seen: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([log], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = log.readline()
        if not line:
            break
        seen.append(line)
        if sum(marker in said for said in seen) == times:
            return
    pytest.fail(f"server did not log {marker!r}; it said:\n{''.join(seen[-30:])}")


@contextmanager
def running_demo(
    directory: Path, workers: int = 1, settings: dict[str, str] | None = None
) -> Iterator[str]:
    executable = Path(sys.executable).with_name("clinic")
    assert executable.exists(), "the package's console script is not installed"
    port = free_port()
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_"))
    } | (settings or {})
    process = subprocess.Popen(
        [executable, "serve", "--demo", "--port", str(port), "--workers", str(workers)],
        cwd=directory,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(process.stderr, "Application startup complete", times=workers)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[str]:
    with running_demo(tmp_path) as url:
        yield url


def test_demo_server_serves_both_field_sets_with_the_demo_stages(demo_server: str) -> None:
    response = httpx.post(f"{demo_server}/graphql", json={"query": QUERY}, timeout=30)

    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body
    nodes = [edge["node"] for edge in body["data"]["appointments"]["edges"]]
    assert len(nodes) == 100
    linked = [node for node in nodes if node["clinicDoctor"] is not None]
    assert linked, "the demo data has linked appointments"
    assert all(node["clinicDoctor"]["user"] == node["doctor"] for node in linked)
    served_stages = body["extensions"]["migration"]["stages"]
    assert served_stages
    demo_stages = {clinic: stage.value for clinic, stage in demo_clinic_stages().items()}
    assert all(demo_stages[clinic] == stage for clinic, stage in served_stages.items())


def test_metrics_add_up_across_worker_processes(tmp_path: Path) -> None:
    riverside = next(
        clinic for clinic, stage in demo_clinic_stages().items() if stage is Stage.SHADOW
    )
    query = {
        "query": "query($c: ID!) { appointments(first: 5, filter: {clinicId: $c}) "
        "{ edges { node { doctor { id } } } } }",
        "variables": {"c": riverside},
    }
    requests = 24
    with running_demo(tmp_path, workers=2) as url, httpx.Client(base_url=url) as client:
        for _ in range(requests):
            assert client.post("/graphql", json=query).status_code == 200
        exposition = client.get("/metrics").text

    evaluations = [
        sample
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "clinic_flag_evaluations_total"
    ]
    assert sum(sample.value for sample in evaluations) == requests
    assert {sample.labels["stage"] for sample in evaluations if sample.value} == {"shadow"}
