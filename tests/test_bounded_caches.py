"""Every per-process cache keyed by what requests send is bounded in entries and in
weight (characters of query or SQL text), so distinct documents cannot grow a worker
without limit (bench/memory.py measures the worker's memory)."""

from __future__ import annotations

import random
from typing import Any

from appointments.bounded_cache import BoundedCache
from appointments.read_model import runner
from bench.memory import document
from schema import documents
from tests.conftest import Api, Mess


def test_the_least_recently_used_entries_go_when_either_bound_is_exceeded() -> None:
    cache: BoundedCache[str, int] = BoundedCache(max_entries=3, max_weight=100)
    for name, weight in (("a", 10), ("b", 10), ("c", 10)):
        cache.put(name, weight, weight)
    assert cache.get("a") == 10  # now the most recently used
    cache.put("d", 10, 10)
    assert (cache.get("b"), len(cache)) == (None, 3), "over the entry bound: b, the oldest"
    cache.put("e", 90, 90)
    assert (len(cache), cache.weight) == (2, 100), "over the weight bound: c and a went"
    assert cache.evicted_weight == 30
    cache.put("huge", 0, 101)
    assert cache.get("huge") is None, "heavier than the whole bound: not kept"
    cache.reweigh("e", 5)
    assert cache.weight == 15
    assert cache.get("e") == 90


async def test_distinct_documents_stay_within_every_cache_bound(api: Api, mess: Mess) -> None:
    engine_cache: Any = api.services.engine.sync_engine._compiled_cache
    before = len(engine_cache)
    generator = random.Random(7)
    bounds: list[BoundedCache[Any, Any]] = [runner.shapes, documents.parsed, documents.validated]
    for number in range(60):
        await api.data(document(generator, number))
        for cache in bounds:
            assert len(cache) <= cache.max_entries
            assert cache.weight <= cache.max_weight

    assert len(engine_cache) - before < 10, "read statements are kept in the bounded cache"
    assert len(runner.shapes) > 0


def test_the_bounds_are_the_documented_ones() -> None:
    assert (documents.DOCUMENTS, documents.DOCUMENT_CHARACTERS) == (256, 200_000)
    assert (runner.COMPILED_READS, runner.COMPILED_READS_SQL) == (512, 300_000)
    assert runner.shapes.max_weight == runner.COMPILED_READS_SQL
    assert documents.parsed.max_weight == documents.DOCUMENT_CHARACTERS
