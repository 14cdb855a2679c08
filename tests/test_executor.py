"""The executor: a request's objects are freed by reference counting when it ends."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

from appointments.stages import Stage
from bench.opcodes import HOT_QUERY
from schema.context import RequestContext
from tests.conftest import Mess, World, open_api, set_stages


async def test_a_request_is_freed_without_the_cyclic_garbage_collector(
    database_url: str,
    world: World,
    mess: Mess,
    flags_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Everything a list request built (its context, session, read model, recorded
    comparisons) goes when the request ends: the executor lets go of the context, so
    the cyclic collector is not needed to free it (it was, and scanning it took a tenth
    of the request's time)."""
    contexts: list[weakref.ref[RequestContext]] = []
    build = RequestContext.build

    def build_and_watch(*args: Any, **kwargs: Any) -> RequestContext:
        context = build(*args, **kwargs)
        contexts.append(weakref.ref(context))
        return context

    monkeypatch.setattr(RequestContext, "build", build_and_watch)
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    async with open_api(database_url, flags_file) as api:
        gc.collect()
        gc.disable()
        try:
            data = await api.data(HOT_QUERY, {"clinicId": str(world.clinic_a.id)})
            alive = [ref for ref in contexts if ref() is not None]
        finally:
            gc.enable()

    assert data["appointments"]["edges"]
    assert len(contexts) == 1
    assert alive == []
