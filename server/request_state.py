"""What the server's layers hand down one request: the authenticated viewer, the checked
access, the request's session and the response GraphQL fills in. One typed object under
one key of the ASGI scope's state, read and written only through ``request_state``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Scope

from appointments.access import Access
from appointments.db import SerializedSession
from flags.stages import Viewer

_KEY = "clinic"


@dataclass
class RequestState:
    viewer: Viewer | None = None
    """Set by ``server.auth.RequireViewer`` once the request is authenticated."""
    access: Access | None = None
    """Set by ``server.viewers.RequireKnownUser`` once the viewer's user is checked."""
    db: SerializedSession | None = None
    """The request's session, opened by ``RequireKnownUser`` and ended when answered."""
    sub_response: Response | None = None
    """The response the GraphQL view sets headers and status on."""


def request_state(at: Scope | HTTPConnection) -> RequestState:
    """The request's state (of an ASGI scope or a Starlette request), made on first use."""
    scope = at.scope if isinstance(at, HTTPConnection) else at
    state = scope.setdefault("state", {})
    found = state.get(_KEY)
    if found is None:
        found = state[_KEY] = RequestState()
    assert isinstance(found, RequestState)
    return found
