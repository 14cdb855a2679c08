"""GraphiQL works offline: the page and every file it loads come from the service itself."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

from server import graphiql
from tests.conftest import Api
from tests.test_dashboard_browser import chromium
from tests.test_serve import running_demo

EXTERNAL = re.compile(r"(?i)(?:https?:)?//[a-z0-9.-]+")


class References(HTMLParser):
    """Every script, stylesheet, image or frame the page would load, with its integrity."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for attribute in ("src", "href"):
            value = named.get(attribute)
            if value is not None:
                self.loaded.append((tag, value, named.get("integrity")))


def references(page: str) -> list[tuple[str, str, str | None]]:
    parser = References()
    parser.feed(page)
    return parser.loaded


async def test_the_page_names_no_other_host_and_allows_only_its_own_origin(api: Api) -> None:
    response = await api.client.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 200
    assert graphiql.installed(), "scripts/install-graphiql (run by scripts/test) installs them"
    assert EXTERNAL.findall(response.text) == []
    loaded = references(response.text)
    assert {url for _, url, _ in loaded} == {a.url for a in graphiql.assets().values()}
    assert all(url.startswith("/graphiql/") for _, url, _ in loaded)
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy


async def test_every_file_the_page_loads_is_served_with_its_type_and_pinned_hash(
    api: Api,
) -> None:
    page = (await api.client.get("/graphql", headers={"Accept": "text/html"})).text

    for tag, url, integrity in references(page):
        response = await api.client.get(url)
        assert response.status_code == 200, url
        expected = "text/javascript" if tag == "script" else "text/css"
        assert response.headers["content-type"] == f"{expected}; charset=utf-8"
        digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
        assert integrity == f"sha384-{digest}", url


async def test_only_listed_files_are_served(api: Api) -> None:
    for path in ("/graphiql/unknown.js", "/graphiql/..%2Fgraphiql-assets.json", "/graphiql/"):
        assert (await api.client.get(path)).status_code == 404, path


def test_chromium_renders_graphiql_with_the_network_limited_to_this_machine(
    tmp_path: Path,
) -> None:
    server = tmp_path / "server"
    server.mkdir()
    # Every host name but the loopback address fails to resolve: nothing outside loads.
    offline = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    screenshot = tmp_path / "graphiql.png"
    with running_demo(server) as url:
        dom = chromium(
            tmp_path / "profile",
            offline,
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{url}/graphql",
        ).stdout
        chromium(
            tmp_path / "profile",
            offline,
            "--virtual-time-budget=15000",
            f"--screenshot={screenshot}",
            "--window-size=1400,900",
            f"{url}/graphql",
        )

    assert "Loading..." not in dom
    assert "graphiql-query-editor" in dom
    assert "query Hillcrest" in dom, "the example query is in the editor"
    # The deprecated doctor/patient fields of the example are marked: the schema came
    # through the page's own fetcher (introspection over POST /graphql).
    assert "CodeMirror-lint-mark-warning" in dom
    assert screenshot.stat().st_size > 10_000
