"""Where stages come from: an Unleash client fed by a local file or by a server.

Both evaluate in process through ``UnleashClient.get_variant``; no request waits
on the network for a flag.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from UnleashClient import UnleashClient
from UnleashClient.cache import BaseCache, FileCache
from UnleashClient.constants import FEATURES_URL
from UnleashClient.events import BaseEvent, UnleashEventType
from UnleashClient.utils import InstanceAllowType

from flags import FLAG_NAME
from flags.document import FlagsFileError, read_document

logger = logging.getLogger("flags")

UNREACHABLE_URL = "http://127.0.0.1:9/unused-offline-mode"


class FlagSource(Protocol):
    def variant(self, context: dict[str, Any]) -> str | None:
        """The enabled variant's name for this context, or None when the flag gives none."""
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


def _bootstrapped_client(app_name: str, features_json: str) -> UnleashClient:
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

    The file's modification time and size are checked on every evaluation (one
    ``stat``); when they change the file is validated and a fresh client is
    bootstrapped from it. A file that fails validation is logged once and the
    last good one stays in force.
    """

    def __init__(self, path: Path, app_name: str) -> None:
        self._path = path
        self._app_name = app_name
        self._lock = threading.Lock()
        # Differs from any stat result, including "missing", so the first refresh always runs.
        self._signature: tuple[int, int, int] | None = (-1, -1, -1)
        self._client: UnleashClient | None = None
        self._problem: str | None = None
        self._refresh()

    def variant(self, context: dict[str, Any]) -> str | None:
        self._refresh()
        client = self._client
        if client is None:
            return None
        result = client.get_variant(FLAG_NAME, context)
        return str(result["name"]) if result.get("enabled") else None

    def describe(self) -> dict[str, Any]:
        return {
            "source": "file",
            "path": str(self._path),
            "loaded": self._client is not None,
            "problem": self._problem,
        }

    def close(self) -> None:
        # A bootstrapped client that was never initialised runs no thread: nothing to stop.
        with self._lock:
            self._client = None

    def _refresh(self) -> None:
        signature = self._stat()
        if signature == self._signature:
            return
        with self._lock:
            if signature == self._signature:
                return
            self._signature = signature
            if signature is None:
                self._report(f"flags file {self._path} does not exist; serving the default stage")
                return
            try:
                document = read_document(self._path)
            except FlagsFileError as error:
                self._report(
                    f"flags file {self._path} rejected, keeping the last good one: {error}"
                )
                return
            self._client = _bootstrapped_client(self._app_name, json.dumps(document))
            self._problem = None
            logger.info("flags file loaded", extra={"path": str(self._path)})

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            status = os.stat(self._path)
        except FileNotFoundError:
            return None
        return status.st_mtime_ns, status.st_size, status.st_ino

    def _report(self, problem: str) -> None:
        self._problem = problem
        logger.error(problem)


class UnleashServerFlagSource:
    """The Unleash client polling a server, with its on-disk cache for restarts during outages.

    When the cache directory holds features from an earlier run, the client is
    bootstrapped from them at once, so a restart while the server is down
    serves the last known stages from the first request.
    """

    def __init__(
        self,
        url: str,
        api_token: str,
        app_name: str,
        refresh_interval: int,
        cache_directory: Path,
        environment: str = "default",
    ) -> None:
        cache_directory.mkdir(parents=True, exist_ok=True)
        self._url = url
        self._fetched = threading.Event()
        cache = FileCache(app_name, directory=str(cache_directory))
        if cache.exists(FEATURES_URL):
            cache.bootstrapped = True
        self._client = UnleashClient(
            url=url,
            app_name=app_name,
            environment=environment,
            refresh_interval=refresh_interval,
            custom_headers={"Authorization": api_token},
            cache=cache,
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
            verbose_log_level=logging.DEBUG,
            event_callback=self._on_event,
        )
        self._client.initialize_client()

    def wait_for_fetch(self, timeout: float) -> bool:
        """Block until the client has fetched features from the server since the last call."""
        fetched = self._fetched.wait(timeout)
        self._fetched.clear()
        return fetched

    def _on_event(self, event: BaseEvent) -> None:
        if event.event_type is UnleashEventType.FETCHED:
            self._fetched.set()

    def variant(self, context: dict[str, Any]) -> str | None:
        result = self._client.get_variant(FLAG_NAME, context)
        return str(result["name"]) if result.get("enabled") else None

    def describe(self) -> dict[str, Any]:
        definitions = self._client.feature_definitions()
        return {"source": "unleash", "url": self._url, "loaded": FLAG_NAME in definitions}

    def close(self) -> None:
        self._client.destroy()
