"""The README's first command: `clinic serve --demo` on a fresh directory, over real HTTP."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appointments.seed import demo_clinic_stages

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


def wait_for_line(process: subprocess.Popen[str], marker: str) -> None:
    """Read the server's log until it says `marker` (the event), within a deadline."""
    assert process.stderr is not None
    deadline = time.monotonic() + STARTUP_SECONDS
    seen: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return
    pytest.fail(f"server did not log {marker!r}; it said:\n{''.join(seen)}")


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[str]:
    executable = Path(sys.executable).with_name("clinic")
    assert executable.exists(), "the package's console script is not installed"
    port = free_port()
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_"))
    }
    process = subprocess.Popen(
        [executable, "serve", "--demo", "--port", str(port)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(process, "Application startup complete")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=30)


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
