"""GraphiQL served from this service alone: the page and its scripts and styles, no CDN.

The files are the pinned npm packages that ``scripts/install-graphiql`` puts into
``server/static/graphiql/`` (listed, with their sha384 hashes, in
``server/graphiql-assets.json``). The page loads each from ``/graphiql/NAME`` with its
hash as subresource integrity, and its Content-Security-Policy lets the browser load
and connect to this origin only. Without the files the page says how to install them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

logger = logging.getLogger("server")

PACKAGE_DIRECTORY = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIRECTORY / "graphiql-assets.json"
ASSET_DIRECTORY = PACKAGE_DIRECTORY / "static" / "graphiql"
ASSET_PATH = "/graphiql"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none';"
    " form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class Asset:
    name: str
    package: str
    integrity: str

    @property
    def url(self) -> str:
        return f"{ASSET_PATH}/{self.name}"

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[Path(self.name).suffix]

    @property
    def path(self) -> Path:
        return ASSET_DIRECTORY / self.name


@cache
def assets() -> dict[str, Asset]:
    """The manifest's files by name (read once)."""
    listed = json.loads(MANIFEST.read_text(encoding="utf-8"))["assets"]
    return {a["name"]: Asset(a["name"], a["package"], a["integrity"]) for a in listed}


def installed() -> bool:
    return all(asset.path.is_file() for asset in assets().values())


async def serve_asset(request: Request) -> Response:
    """``GET /graphiql/NAME``: a listed file with its media type; 404 for anything else."""
    asset = assets().get(request.path_params["name"])
    if asset is None or not asset.path.is_file():
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(
        asset.path,
        media_type=asset.media_type,
        headers={"Cache-Control": "public, max-age=86400"},
    )


def page_response() -> HTMLResponse:
    """The GraphiQL page (or, with the files missing, how to install them)."""
    if not installed():
        logger.warning("GraphiQL's files are missing; run scripts/install-graphiql")
        return HTMLResponse(MISSING_PAGE, headers={"Content-Security-Policy": "default-src 'none'"})
    return HTMLResponse(_page(), headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@cache
def _page() -> str:
    tags = []
    for asset in assets().values():
        if asset.name.endswith(".css"):
            tags.append(f'<link rel="stylesheet" href="{asset.url}" integrity="{asset.integrity}">')
    for name in (
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "plugin-explorer.umd.js",
    ):
        asset = assets()[name]
        tags.append(f'<script src="{asset.url}" integrity="{asset.integrity}"></script>')
    return PAGE.replace("<!-- assets -->", "\n    ".join(tags))


MISSING_PAGE = """<!doctype html>
<html lang="en">
  <head><meta charset="utf-8"><title>GraphiQL not installed</title></head>
  <body>
    <h1>GraphiQL's files are not installed</h1>
    <p>Run <code>scripts/install-graphiql</code> (it needs npm), then reload this page.
    GraphQL itself answers at this address with POST.</p>
  </body>
</html>
"""

PAGE = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Clinic appointments: GraphiQL</title>
    <style>
      body { height: 100%; margin: 0; width: 100%; overflow: hidden; }
      #graphiql { height: 100vh; display: flex; }
    </style>
    <!-- assets -->
  </head>
  <body>
    <div id="graphiql" class="graphiql-container">Loading...</div>
    <script>
      const EXAMPLE_QUERY = `# Clinic appointments. Run: Ctrl-Enter.
# Both field sets: doctor, patient (legacy)
# and clinicDoctor, clinicPatient (new).
# extensions.migration in the answer says
# which stage each clinic was served.
query Hillcrest {
  appointments(first: 5, filter: {clinicId: "405defc3-ac1e-56ce-bc33-925b4562fa1d"}) {
    edges {
      node {
        id startsAt status
        doctor { name } clinicDoctor { id user { name } }
        patient { fullName } clinicPatient { id }
      }
    }
  }
}
`;
      const parameters = new URLSearchParams(window.location.search);
      function remember(name, value) {
        if (value) { parameters.set(name, value); } else { parameters.delete(name); }
        history.replaceState(null, "", "?" + parameters.toString());
      }
      const fetcher = GraphiQL.createFetcher({ url: window.location.pathname });

      function ClinicGraphiQL() {
        const [query, setQuery] = React.useState(parameters.get("q") || EXAMPLE_QUERY);
        const [variables, setVariables] = React.useState(parameters.get("variables"));
        const [headers, setHeaders] = React.useState(null);
        return React.createElement(GraphiQL, {
          fetcher: fetcher,
          defaultEditorToolsVisibility: true,
          plugins: [GraphiQLPluginExplorer.explorerPlugin()],
          query: query,
          variables: variables,
          headers: headers,
          onEditQuery: function (value) { setQuery(value); remember("q", value); },
          onEditVariables: function (value) { setVariables(value); remember("variables", value); },
          onEditHeaders: setHeaders,
          inputValueDeprecation: true,
          isHeadersEditorEnabled: true,
          shouldPersistHeaders: true,
        });
      }

      ReactDOM.createRoot(document.getElementById("graphiql")).render(
        React.createElement(ClinicGraphiQL)
      );
    </script>
  </body>
</html>
"""
