"""A proxy in front of Unleash's Admin API that fails, or kills the writer at, one chosen call.

It forwards every request to the real server. Before the first call and after
every call it forwards, it takes a snapshot of what the server gives every
clinic (``snapshot``), so a test can check each state the flag passed through. At the
call chosen with ``fault`` it answers 503 without forwarding (``fail``), forwards
and then answers 503 as a cut connection would (``fail_after``), or sends SIGKILL
to the writer process before forwarding (``kill``) or after (``kill_after``).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from flags import FLAG_NAME
from tests.test_serve import free_port
from tests.test_unleash_real import ADMIN_TOKEN, UnleashServer, started_unleash_server

Snapshot = dict[str, Any]


@dataclass
class Fault:
    call: int
    mode: str
    """``fail``, ``fail_after``, ``kill`` or ``kill_after``."""


@dataclass
class AdminProxy:
    target: str
    snapshot: Callable[[], Snapshot]
    fault: Fault | None = None
    victim: int | None = None
    """The pid of the writer process a ``kill`` fault kills."""
    calls: list[str] = field(default_factory=list)
    snapshots: list[tuple[str, Snapshot]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> AdminProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return None

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815 - http.server's names

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def reset(self, fault: Fault | None, victim: int | None = None) -> None:
        self.fault, self.victim = fault, victim
        self.calls.clear()
        self.snapshots.clear()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        call = f"{handler.command} {handler.path}"
        self.calls.append(call)
        number = len(self.calls)
        if number == 1:
            # Only a forwarded call changes the server: the state before any later call is
            # the one after the call before it.
            self.snapshots.append((f"before call 1 ({call})", self.snapshot()))
        mode = self.fault.mode if self.fault is not None and self.fault.call == number else None
        if mode == "kill":
            self._kill()
            handler.close_connection = True
            return
        if mode == "fail":
            self._answer(handler, 503, b'{"message": "injected failure"}', "application/json")
            return
        response = httpx.request(
            handler.command,
            self.target + handler.path,
            content=body,
            headers={
                key: value
                for key, value in handler.headers.items()
                if key.lower() in ("authorization", "content-type", "accept")
            },
            timeout=30,
        )
        self.snapshots.append((f"after call {number} ({call})", self.snapshot()))
        if mode == "kill_after":
            self._kill()
            handler.close_connection = True
            return
        if mode == "fail_after":
            self._answer(handler, 503, b'{"message": "injected failure"}', "application/json")
            return
        self._answer(
            handler,
            response.status_code,
            response.content,
            response.headers.get("content-type", "application/json"),
        )

    def _kill(self) -> None:
        assert self.victim is not None, "a kill fault needs the writer's pid"
        os.kill(self.victim, signal.SIGKILL)

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def delete_flag(url: str, admin_token: str, flag: str) -> None:
    """Remove the flag for good (archive, then delete from the archive), so a test sharing
    the server starts from no flag."""
    headers = {"Authorization": admin_token}
    archived = httpx.delete(f"{url}/api/admin/projects/default/features/{flag}", headers=headers)
    if archived.status_code == httpx.codes.NOT_FOUND:
        return
    archived.raise_for_status()
    httpx.delete(f"{url}/api/admin/archive/{flag}", headers=headers).raise_for_status()


@pytest.fixture(scope="module")
def shared_unleash() -> Iterator[UnleashServer]:
    """One Unleash server for a module's tests (starting one takes seconds)."""
    yield from started_unleash_server()


@pytest.fixture
def unleash_server(shared_unleash: UnleashServer) -> UnleashServer:
    """The module's server with no migration flag: each test sets up its own."""
    delete_flag(shared_unleash.url, ADMIN_TOKEN, FLAG_NAME)
    return shared_unleash
