"""An Unleash server that cannot be reached is an ``UnleashAdminError``, from every call.

The commands that talk to the Admin API (``clinic flags unleash-*``, the rollout
autopilot's stage writer) catch ``UnleashAdminError`` and say what failed; a raw
``httpx`` error would escape them as a traceback.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from appointments.stages import Stage
from flags.unleash_admin import Description, UnleashAdmin, UnleashAdminError


@pytest.fixture
def refusing_admin() -> Iterator[UnleashAdmin]:
    """An Admin API client for a port nothing listens on: every connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    admin = UnleashAdmin(f"http://127.0.0.1:{port}", "admin-token")
    try:
        yield admin
    finally:
        admin.close()


CALLS: dict[str, Callable[[UnleashAdmin], object]] = {
    "flag": UnleashAdmin.flag,
    "export": UnleashAdmin.export,
    "apply": lambda admin: admin.apply(Description({"clinic": Stage.LIVE})),
    "pin": lambda admin: admin.pin("clinic", Stage.LIVE),
    "delete_strategy": lambda admin: admin.delete_strategy("strategy"),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_refused_connection_is_an_admin_error_naming_the_call(
    refusing_admin: UnleashAdmin, call: str
) -> None:
    with pytest.raises(UnleashAdminError, match=r"^(GET|POST|PUT|DELETE) api/admin/") as raised:
        CALLS[call](refusing_admin)

    assert raised.value.__cause__ is not None
    assert "connect" in type(raised.value.__cause__).__name__.lower()
