"""Where stages come from: an Unleash client fed by a local file or by a server.

Both evaluate in process through ``UnleashClient.get_variant``, behind a
``flags.memo.FlagMemo`` that answers a clinic seen before under the same features;
no request waits on the network for a flag.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from UnleashClient import UnleashClient
from UnleashClient.cache import BaseCache
from UnleashClient.constants import FEATURES_URL
from UnleashClient.utils import InstanceAllowType

from appointments import metrics
from flags.document import FlagsFileError, read_document
from flags.memo import FlagMemo

logger = logging.getLogger("flags")

UNREACHABLE_URL = "http://127.0.0.1:9/unused-offline-mode"

Evaluator = Callable[[dict[str, Any]], str | None]
"""Evaluates one context as ``FlagSource.variant`` does, against the features the source
held when the evaluator was made."""


class FlagSource(Protocol):
    def variant(self, context: dict[str, Any]) -> str | None:
        """The enabled variant's name for this context, or None when the flag gives none."""
        ...

    def evaluator(self) -> Evaluator:
        """``variant`` for a batch of contexts: the source is checked for new features once,
        here (a flags file is stat-ed), not per context. A change made after this call may
        be missed by the evaluator; the next call to ``evaluator`` or ``variant`` sees it.
        Each evaluation may raise on its own, as ``variant`` may."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the source is and whether it has data, for /readyz."""
        ...

    def close(self) -> None: ...


class MemoryCache(BaseCache):
    """An Unleash cache that lives in memory (the file itself is the durable copy)."""

    def __init__(self, features_json: str) -> None:
        self._values: dict[str, Any] = {FEATURES_URL: features_json}
        self.bootstrapped = True

    def set(self, key: str, value: Any) -> None:
        self._values[key] = value

    def mset(self, data: dict[str, Any]) -> None:
        self._values.update(data)

    def get(self, key: str, default: Any | None = None) -> Any:
        return self._values.get(key, default)

    def exists(self, key: str) -> bool:
        return key in self._values

    def destroy(self) -> None:
        self._values.clear()


def bootstrapped_client(app_name: str, features_json: str) -> UnleashClient:
    return UnleashClient(
        url=UNREACHABLE_URL,
        app_name=app_name,
        disable_metrics=True,
        disable_registration=True,
        cache=MemoryCache(features_json),
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
        verbose_log_level=logging.DEBUG,
    )


class LocalFileFlagSource:
    """The Unleash client bootstrapped from a client-features JSON file, no server.

    The file's modification time and size are checked on every evaluation, or once
    per batch through ``evaluator`` (one ``stat``); when they change the file is
    validated and a fresh client (with a fresh memo: a new revision) is bootstrapped
    from it, so a rewrite is served from the next evaluation (or batch) on. A file
    that fails validation is logged once and the last good one stays in force.
    """

    def __init__(self, path: Path, app_name: str) -> None:
        self._path = path
        self._app_name = app_name
        self._lock = threading.Lock()
        # Differs from any stat result, including "missing", so the first refresh always runs.
        self._signature: tuple[int, int, int] | None = (-1, -1, -1)
        self._client: UnleashClient | None = None
        self._memo: FlagMemo | None = None
        self._problem: str | None = None
        self._refresh()

    def variant(self, context: dict[str, Any]) -> str | None:
        return self.evaluator()(context)

    def evaluator(self) -> Evaluator:
        """The memo of the file as of this check (one ``stat``), or no variant for any
        context while no version of the file was ever loaded."""
        self._refresh()
        memo = self._memo
        return _no_variant if memo is None else memo.variant

    def describe(self) -> dict[str, Any]:
        """As of now (the file is checked first). ``reachable``: the file exists; ``loaded``:
        some version of it was loaded (and is served, even after the file went away)."""
        self._refresh()
        return {
            "source": "file",
            "path": str(self._path),
            "loaded": self._client is not None,
            "reachable": self._signature is not None,
            "problem": self._problem,
        }

    def close(self) -> None:
        # A bootstrapped client that was never initialised runs no thread: nothing to stop.
        with self._lock:
            self._client = None
            self._memo = None

    def _refresh(self) -> None:
        signature = self._stat()
        if signature == self._signature:
            return
        with self._lock:
            if signature == self._signature:
                return
            self._signature = signature
            metrics.FLAG_SOURCE_REACHABLE.set(0 if signature is None else 1)
            if signature is None:
                serving = (
                    "the default stage"
                    if self._client is None
                    else "the stages last loaded from it until it is back"
                )
                self._report(f"flags file {self._path} does not exist; serving {serving}")
                return
            try:
                document = read_document(self._path)
            except FlagsFileError as error:
                self._report(
                    f"flags file {self._path} rejected, keeping the last good one: {error}"
                )
                return
            client = bootstrapped_client(self._app_name, json.dumps(document))
            memo = FlagMemo(client)
            memo.settle()
            self._client, self._memo = client, memo
            metrics.FLAG_SOURCE_LOADED.set(1)
            self._problem = None
            logger.info("flags file loaded", extra={"path": str(self._path)})

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            status = os.stat(self._path)
        except FileNotFoundError:
            return None
        return status.st_mtime_ns, status.st_size, status.st_ino

    def _report(self, problem: str) -> None:
        metrics.FLAG_SOURCE_LOADED.set(1 if self._client is not None else 0)
        self._problem = problem
        logger.error(problem)


def _no_variant(context: dict[str, Any]) -> str | None:
    return None
