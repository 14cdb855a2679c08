"""The README's production command, `uvicorn server.app:create_app --factory`, over real HTTP.

One server for the module, its database unreachable (an SQLite file in a directory
that does not exist), so that a query fails and is logged as an error. It runs in dev
mode, where a request from this machine is the demo admin: a token's user would have
to be looked up in that database. Its stderr goes to a file, read once the server has
stopped (the log test stops it, so it comes last).
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.app import create_app
from server.logs import JsonFormatter, RequestIdFilter, configure_logging, configure_logging_once
from server.settings import Settings
from tests.test_serve import STARTUP_SECONDS, free_port

UVICORN = [sys.executable, "-m", "uvicorn", "server.app:create_app", "--factory"]


@dataclass
class Served:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        """What the server wrote to stderr, once it has stopped."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        return [line for line in self.log.read_text().splitlines() if line.strip()]


def wait_until_healthy(served: Served) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            pytest.fail(f"uvicorn exited: {served.log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{served.port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"uvicorn did not answer /healthz: {served.log.read_text()}")


@contextmanager
def uvicorn_serving(directory: Path, *arguments: str) -> Iterator[Served]:
    """uvicorn's factory command in dev mode on an unreachable SQLite database, stopped after."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_"))
    } | {
        "CLINIC_DATABASE_URL": f"sqlite+aiosqlite:///{directory}/missing/clinic.sqlite3",
        "CLINIC_AUTO_MIGRATE": "false",
        "CLINIC_FLAGS_FILE": str(directory / "flags.json"),
    }
    port = free_port()
    log = directory / "stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [*UVICORN, "--host", "127.0.0.1", "--port", str(port), *arguments],
            cwd=directory,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    running = Served(port, process, log)
    try:
        wait_until_healthy(running)
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with uvicorn_serving(tmp_path_factory.mktemp("uvicorn")) as running:
        yield running


def test_bad_bodies_leave_the_keep_alive_connection_usable(served: Served) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    bad = [
        (b"[]", {}),
        (b'"x"', {}),
        (b'{"query": "\xff"}', {}),
        (gzip.compress(b'{"query": "{ __typename }"}'), {"Content-Encoding": "gzip"}),
        (b'{"query": "{ __typename }", "variables": {"n": ' + b"1" * 5000 + b"}}", {}),
        (json.dumps({"query": '{ clinics(after: "\ud800") { edges { cursor } } }'}).encode(), {}),
    ]
    sockets = set()
    try:
        for body, extra in bad:
            connection.request("POST", "/graphql", body=body, headers=headers | extra)
            response = connection.getresponse()
            answer = json.loads(response.read())
            sockets.add(id(connection.sock))

            assert response.status in {400, 415}, answer
            assert answer["errors"][0]["extensions"]["code"] != "INTERNAL_ERROR"
            assert response.getheader("connection", "").lower() != "close"
        connection.request("POST", "/graphql", body=b'{"query": "{ __typename }"}', headers=headers)
        good = connection.getresponse()
        sockets.add(id(connection.sock))

        assert good.status == 200
        assert json.loads(good.read())["data"] == {"__typename": "Query"}
        assert len(sockets) == 1, "the server closed the connection after a bad body"
    finally:
        connection.close()


def test_the_factory_logs_json_lines_with_the_request_id(served: Served) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{served.port}/graphql",
        json={"query": "{ clinics { edges { cursor } } }"},
        headers={"X-Request-ID": "factory-log-1"},
        timeout=30,
    )
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "INTERNAL_ERROR", "requestId": "factory-log-1"}

    lines = served.lines()

    entries = [json.loads(line) for line in lines]  # every line is a JSON object
    ours = [entry for entry in entries if entry.get("request_id") == "factory-log-1"]
    assert any(entry["level"] == "error" for entry in ours), lines
    assert any("Traceback" in entry.get("exception", "") for entry in ours), lines
    assert any(entry["logger"].startswith("uvicorn") for entry in entries), lines
    assert any(entry["logger"] == "uvicorn.access" for entry in entries), lines


def test_no_access_log_means_no_access_log(tmp_path: Path) -> None:
    with uvicorn_serving(tmp_path, "--no-access-log") as quiet:
        answered = httpx.post(
            f"http://127.0.0.1:{quiet.port}/graphql",
            json={"query": "{ __typename }"},
            headers={"X-Request-ID": "no-access-log-1"},
            timeout=30,
        )
        assert answered.status_code == 200
        lines = quiet.lines()

    entries = [json.loads(line) for line in lines]
    assert any(entry["logger"] == "uvicorn.error" for entry in entries), lines
    assert not [entry for entry in entries if entry["logger"] == "uvicorn.access"], lines
    assert not [line for line in lines if "POST /graphql" in line], lines


@contextmanager
def bare_root_logger() -> Iterator[logging.Logger]:
    """The root logger as plain uvicorn leaves it (no handler; pytest's capture handlers
    are added for each test phase, so this runs inside the test), restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.handlers.clear()
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_logging_is_configured_once_and_only_when_nothing_did() -> None:
    with bare_root_logger() as root:
        assert configure_logging_once("INFO", "json") is True
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert any(isinstance(f, RequestIdFilter) for f in handler.filters)

        assert configure_logging_once("DEBUG", "text") is False
        assert root.handlers == [handler]
        assert root.level == logging.INFO


def test_the_factory_keeps_the_logging_clinic_serve_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in os.environ:
        if name.startswith(("CLINIC_", "UNLEASH_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CLINIC_FLAGS_FILE", str(tmp_path / "flags.json"))
    monkeypatch.setenv("CLINIC_LOG_FORMAT", "json")
    with bare_root_logger() as root:
        configure_logging("WARNING", "text")
        configured: list[Any] = list(root.handlers)

        create_app()

        assert root.handlers == configured
        assert root.level == logging.WARNING


def test_an_app_given_settings_leaves_logging_to_its_caller(tmp_path: Path) -> None:
    with bare_root_logger() as root:
        create_app(Settings(flags_file=tmp_path / "flags.json"))

        assert root.handlers == []
