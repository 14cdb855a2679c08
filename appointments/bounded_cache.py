"""A least-recently-used cache bounded by entries and by weight.

Every per-process cache keyed by something a request sends (a document, a selection)
grows with the distinct keys requests send. An entry bound alone lets a few large
entries (a document of the largest size allowed, the statement of the largest
selection) take far more memory than the same number of ordinary ones, so each entry
also has a weight, an estimate of its size (characters of its query or SQL text), and
the least recently used entries go while either bound is exceeded.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    def __init__(self, max_entries: int, max_weight: int) -> None:
        self.max_entries = max_entries
        self.max_weight = max_weight
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._weight = 0
        self.evicted_weight = 0
        """Weight dropped to make room since the owner last reset it."""

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def weight(self) -> int:
        return self._weight

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V, weight: int) -> None:
        """Keep ``value``; one heavier than the whole bound is not kept at all."""
        self.discard(key)
        if weight > self.max_weight:
            return
        self._entries[key] = (value, weight)
        self._weight += weight
        while len(self._entries) > self.max_entries or self._weight > self.max_weight:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._weight -= dropped
            self.evicted_weight += dropped

    def reweigh(self, key: K, weight: int) -> None:
        """Give a kept entry its weight once known (e.g. after its first use)."""
        found = self._entries.get(key)
        if found is not None:
            self.put(key, found[0], weight)

    def discard(self, key: K) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self._weight -= found[1]

    def clear(self) -> None:
        self._entries.clear()
        self._weight = 0
