"""The server flag source: the real Unleash client polling over HTTP, and its on-disk cache.

The peer here is a minimal stand-in for Unleash's client API (features,
register, metrics) on loopback; the tests against a real Unleash server belong
to the product-owner tooling.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from appointments.stages import Stage
from flags.document import Document, build_document
from flags.unleash_source import UnleashServerFlagSource

TOKEN = "default:development.test-secret"
CLINIC = "0b9f3c1e-8f0e-4f55-9a55-1f6d1f0c2a11"
FETCH_TIMEOUT = 20


@dataclass
class ClientApi:
    """What the stand-in server serves and what it was asked."""

    document: Document
    authorizations: list[str] = field(default_factory=list)


def handler_for(api: ClientApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            api.authorizations.append(self.headers.get("Authorization", ""))
            if self.path.split("?")[0] != "/api/client/features":
                self.send_error(404)
                return
            body = json.dumps(api.document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def client_api() -> Iterator[tuple[ClientApi, str, ThreadingHTTPServer]]:
    api = ClientApi(build_document({CLINIC: Stage.LIVE}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_address[1]}/api", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def open_source(url: str, cache: Path) -> UnleashServerFlagSource:
    return UnleashServerFlagSource(
        url=url, api_token=TOKEN, app_name="clinic-tests", refresh_interval=1, cache_directory=cache
    )


def context() -> dict[str, Any]:
    return {"properties": {"clinicId": CLINIC}}


def test_the_server_source_follows_the_server_and_survives_a_restart_during_an_outage(
    client_api: tuple[ClientApi, str, ThreadingHTTPServer], tmp_path: Path
) -> None:
    api, url, server = client_api
    source = open_source(url, tmp_path / "cache")
    try:
        assert source.wait_for_fetch(FETCH_TIMEOUT)
        assert source.variant(context()) == "live"
        assert source.evaluator()(context()) == "live"
        assert source.describe()["loaded"] is True
        assert TOKEN in api.authorizations

        api.document = build_document({CLINIC: Stage.COMPLETE})
        # The first fetch may have been under way before the change; the second began after it.
        assert source.wait_for_fetch(FETCH_TIMEOUT)
        assert source.wait_for_fetch(FETCH_TIMEOUT)

        assert source.variant(context()) == "complete"
        assert source.evaluator()(context()) == "complete"
    finally:
        source.close()
    server.shutdown()
    server.server_close()

    restarted = open_source(url, tmp_path / "cache")
    try:
        assert restarted.variant(context()) == "complete"
    finally:
        restarted.close()


def test_with_no_server_and_no_cache_the_source_has_no_variant(tmp_path: Path) -> None:
    source = open_source("http://127.0.0.1:1/api", tmp_path / "empty-cache")
    try:
        assert source.variant(context()) is None
        assert source.evaluator()(context()) is None
        assert source.describe()["loaded"] is False
    finally:
        source.close()
