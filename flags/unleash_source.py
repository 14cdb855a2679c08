"""Stages from an Unleash server: the SDK polling it, with its on-disk cache for restarts
during outages, behind the same memo as the local file (``flags.source``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED  # type: ignore[import-untyped]
from UnleashClient import UnleashClient
from UnleashClient.cache import FileCache
from UnleashClient.constants import ETAG, FEATURES_URL
from UnleashClient.utils import InstanceAllowType

from appointments import metrics
from flags import FLAG_NAME
from flags.memo import FlagMemo
from flags.source import Evaluator

logger = logging.getLogger("flags")


class _ObservedFileCache(FileCache):
    """The client's on-disk cache, which also tells when a poll starts and ends.

    A poll reads the ETag first and the cached features last; a poll that ended
    without the SDK logging a failure in between succeeded. Features that differ
    from the cached ones are written before the engine takes them (a 304 writes
    nothing).
    """

    def __init__(
        self,
        name: str,
        directory: str,
        on_poll_start: Callable[[], None],
        on_poll_end: Callable[[], None],
        on_new_features: Callable[[], None],
    ) -> None:
        super().__init__(name, directory=directory)
        self._on_poll_start = on_poll_start
        self._on_poll_end = on_poll_end
        self._on_new_features = on_new_features

    def set(self, key: str, value: Any) -> None:
        if key == FEATURES_URL and value != super().get(FEATURES_URL):
            self._on_new_features()
        super().set(key, value)

    def get(self, key: str, default: Any | None = None) -> Any:
        value = super().get(key, default)
        if key == ETAG:
            self._on_poll_start()
        elif key == FEATURES_URL:
            self._on_poll_end()
        return value


# The SDK logs a traceback per failed poll, and urllib3 a warning per retry under it.
NOISY_LOGGERS = ("UnleashClient", "urllib3.connectionpool")


class _OutageFilter(logging.Filter):
    """Turns the SDK's warning-and-traceback per failed poll into one line per outage."""

    def __init__(self, on_failure: Callable[[str], None]) -> None:
        super().__init__()
        self._on_failure = on_failure

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if record.name.startswith("urllib3"):
            return "/client/" not in message
        self._on_failure(message.splitlines()[0])
        return False


class UnleashServerFlagSource:
    """The Unleash client polling a server, with its on-disk cache for restarts during outages.

    When the cache directory holds features from an earlier run, the client is
    bootstrapped from them at once, so a restart while the server is down
    serves the last known stages from the first request. An outage is logged
    once when it starts and once when it ends, and shown in ``describe()`` and
    the ``clinic_flag_source_*`` gauges. A poll that brings new features
    unsettles the memo before the engine takes them (the cache write) and
    settles it once the poll job has returned; a 304 keeps the memo's revision.
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
        self._lock = threading.Lock()
        self._failed = threading.Condition(self._lock)
        self._failures = 0
        self._polling = False
        self._poll_failed = False
        self._poll_succeeded = False
        self._outage_since: datetime | None = None
        self._outage_problem: str | None = None
        self._last_success: datetime | None = None
        self._filter = _OutageFilter(self._note_failure)
        for name in NOISY_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        cache = _ObservedFileCache(
            app_name,
            str(cache_directory),
            self._note_poll_start,
            self._note_poll_end,
            self._note_new_features,
        )
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
        )
        self._memo = FlagMemo(self._client)
        self._memo.settle()  # the features bootstrapped from the cache, if any
        self._client.unleash_scheduler.add_listener(
            self._note_job_done, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR
        )
        self._client.initialize_client()  # the first poll runs here, not as a job
        self._note_poll_job_done()
        self._update_gauges()

    def wait_for_fetch(self, timeout: float) -> bool:
        """Block until the client has polled the server successfully since the last call
        and the features it brought are the ones served."""
        fetched = self._fetched.wait(timeout)
        self._fetched.clear()
        return fetched

    def wait_for_failures(self, count: int, timeout: float) -> bool:
        """Block until ``count`` polls in a row have failed (the server is down)."""
        with self._failed:
            return self._failed.wait_for(lambda: self._failures >= count, timeout)

    def variant(self, context: dict[str, Any]) -> str | None:
        return self._memo.variant(context)

    def evaluator(self) -> Evaluator:
        """The memo itself: the SDK's poll feeds its engine in the background, so there is
        nothing to check per batch, and each evaluation sees the features of the moment."""
        return self._memo.variant

    def describe(self) -> dict[str, Any]:
        loaded = self._loaded()
        problem = self._outage_problem
        if not loaded:
            problem = f"{problem or 'no flag data yet'}; serving the default stage"
        return {
            "source": "unleash",
            "url": self._url,
            "loaded": loaded,
            "reachable": self._outage_since is None and self._last_success is not None,
            "last_success_at": _iso(self._last_success),
            "outage_since": _iso(self._outage_since),
            "problem": problem,
        }

    def close(self) -> None:
        self._client.destroy()
        for name in NOISY_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)

    def _loaded(self) -> bool:
        return FLAG_NAME in self._client.feature_definitions()

    def _note_poll_start(self) -> None:
        with self._lock:
            self._polling = True
            self._poll_failed = False

    def _note_poll_end(self) -> None:
        with self._lock:
            finished, failed = self._polling, self._poll_failed
            self._polling = False
        if finished and not failed:
            self._poll_succeeded = True
            self._note_success()

    def _note_new_features(self) -> None:
        self._memo.unsettle()

    def _note_job_done(self, event: Any) -> None:
        job = getattr(self._client.connector, "job", None)
        if job is not None and event.job_id == job.id:
            self._note_poll_job_done()

    def _note_poll_job_done(self) -> None:
        """The poll has returned: the engine holds whatever it brought."""
        if not self._memo.settled:
            self._memo.settle()
        if self._poll_succeeded:
            self._poll_succeeded = False
            self._fetched.set()

    def _note_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._last_success = datetime.now(UTC)
            ended = self._outage_since
            self._outage_since = None
            self._outage_problem = None
        if ended is not None:
            logger.warning(
                "Unleash server reachable again",
                extra={"url": self._url, "outage_seconds": round(_since(ended), 1)},
            )
        self._update_gauges()

    def _note_failure(self, problem: str) -> None:
        with self._lock:
            self._poll_failed = True
            if problem.startswith("Unleash Client feature fetch failed"):
                self._failures += 1
                self._failed.notify_all()
            started = self._outage_since is None
            if started:
                self._outage_since = datetime.now(UTC)
            self._outage_problem = f"Unleash server unreachable: {problem}"
        if started:
            serving = "the last known stages" if self._loaded() else "the default stage"
            logger.warning(
                f"Unleash server unreachable; serving {serving} until it answers",
                extra={"url": self._url, "problem": problem},
            )
        self._update_gauges()

    def _update_gauges(self) -> None:
        metrics.FLAG_SOURCE_LOADED.set(1 if self._loaded() else 0)
        reachable = self._outage_since is None and self._last_success is not None
        metrics.FLAG_SOURCE_REACHABLE.set(1 if reachable else 0)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _since(moment: datetime) -> float:
    return (datetime.now(UTC) - moment).total_seconds()
