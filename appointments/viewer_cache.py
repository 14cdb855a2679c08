"""The users behind tokens, kept per process while PostgreSQL says when one changes.

Every request checks that its token's user exists, is active and holds the role the
token claims, and learns the clinics they belong to. ``ViewerCache`` keeps that
answer per user, so a request whose user is known costs no statement, and forgets a
user as soon as the listener (``appointments.user_changes``) hears that a change to
them committed. What it keeps is used only while it can be trusted:

- the listener is connected, and has been since the entry was kept (everything is
  forgotten when it connects or drops, and an answer loaded across either, or across
  any notification, is not kept: it may predate a change the listener reported);
- nothing is waiting unread on the listener's connection (a notification the
  process has received but not yet handled), and it is not checking its connection
  (during that check a notification could be read but not yet handled).

A change this process commits itself through a SQLAlchemy session (the API's
mutations, a command run in it) is forgotten when its commit returns, before the
notification comes back: the process's next request cannot be served from before it.

Otherwise, and always without a listener (SQLite), the request runs the statement,
as without a cache. Only what the primary answered is kept: a request reading on a
replica asks the primary when it may keep the answer (a replica may not have
replayed a change the listener has reported already). A deactivation therefore
takes effect on the first request a process reads after PostgreSQL has sent it the
notification, which it does when the deactivating transaction commits.
"""

from __future__ import annotations

import asyncio
import select
import uuid
import weakref
from collections import OrderedDict
from itertools import chain
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from appointments import metrics
from appointments.access import (
    NOBODY,
    Access,
    StoredViewer,
    claimed_viewer,
    load_viewer,
    viewer_access,
)
from appointments.db import SerializedSession
from appointments.models import ClinicDoctor, ClinicStaff, User
from appointments.replicas import ReplicaSession, on_replica

HITS = metrics.VIEWER_CACHE.labels("hit")
MISSES = metrics.VIEWER_CACHE.labels("miss")
BYPASSES = metrics.VIEWER_CACHE.labels("bypass")


class ViewerCache:
    """User id to ``StoredViewer`` (or None: unknown or inactive), at most ``capacity``
    users (the least recently used forgotten first); 0 keeps none."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[uuid.UUID, StoredViewer | None] = OrderedDict()
        self._version = 0
        self._listening = False
        self._checking = False
        self._pending_input: select.poll | None = None
        self._changed = asyncio.Condition()
        self._heard = asyncio.Event()
        _CACHES.add(self)

    async def access(self, db: SerializedSession, user_id: str | None, role: str | None) -> Access:
        """The access of the user a verified token names, as ``access.load_access``
        answers it: from memory when it can be trusted, else with one statement."""
        claimed = claimed_viewer(user_id, role)
        if claimed is None:
            return NOBODY
        viewer_id, claimed_role = claimed
        if self.trusted():
            entries = self._entries
            if viewer_id in entries:
                entries.move_to_end(viewer_id)
                HITS.inc()
                return viewer_access(viewer_id, claimed_role, entries[viewer_id])
            MISSES.inc()
            if on_replica(db):
                # What is kept must be the primary's: a replica may not have replayed a
                # change the listener has already reported. Misses are rare.
                assert isinstance(db, ReplicaSession)
                await db.use_primary()
        else:
            BYPASSES.inc()
        version = self._version
        stored = await db.run(lambda session: load_viewer(session, viewer_id))
        keep = self._listening and version == self._version and not on_replica(db)
        if keep and self.capacity > 0:
            self._entries[viewer_id] = stored
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return viewer_access(viewer_id, claimed_role, stored)

    def trusted(self) -> bool:
        """Whether what is kept may answer now (module docstring)."""
        if not self._listening or self._checking:
            return False
        pending = self._pending_input
        return pending is None or not pending.poll(0)

    @property
    def listening(self) -> bool:
        return self._listening

    def __len__(self) -> int:
        return len(self._entries)

    def forget(self, payload: str) -> None:
        """A change to the user ``payload`` names committed (``*``: to any user)."""
        self._version += 1
        self._heard.set()
        self._heard = asyncio.Event()
        _CACHES.add(self)
        try:
            viewer_id = uuid.UUID(payload)
        except ValueError:
            self._entries.clear()
            return
        self._entries.pop(viewer_id, None)

    def forget_committed(self, viewer_ids: frozenset[uuid.UUID] | None) -> None:
        """This process committed a change of these users (None: of users it cannot name).
        May be called from another thread (a command run in the process)."""
        self._version += 1
        if viewer_ids is None:
            self._entries.clear()
            return
        for viewer_id in viewer_ids:
            self._entries.pop(viewer_id, None)

    def checking(self, checking: bool) -> None:
        """The listener is (or no longer is) running a statement on its connection."""
        self._checking = checking

    async def connected(self, socket: int | None) -> None:
        """The listener now hears every change that commits; ``socket`` is its
        connection's file descriptor, watched for input not yet handled."""
        self._entries.clear()
        self._version += 1
        if socket is not None:
            self._pending_input = select.poll()
            self._pending_input.register(socket, select.POLLIN)
        self._listening = True
        metrics.VIEWER_LISTENER_CONNECTED.set(1)
        await self._announce()

    async def disconnected(self) -> None:
        """The listener lost its connection: nothing kept may be trusted any more."""
        was_listening = self._listening
        self._listening = False
        self._pending_input = None
        self._entries.clear()
        self._version += 1
        metrics.VIEWER_LISTENER_CONNECTED.set(0)
        if was_listening:
            await self._announce()

    async def next_change(self) -> None:
        """Return once the listener has reported the next change of a user."""
        await self._heard.wait()

    async def wait_listening(self, listening: bool) -> None:
        """Return once the listener is connected (or, with False, not connected)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._listening is listening)

    async def _announce(self) -> None:
        async with self._changed:
            self._changed.notify_all()


_CACHES: weakref.WeakSet[ViewerCache] = weakref.WeakSet()
_CHANGED = "viewer_cache_changed_users"
_SOME_USERS = "some users"
VIEWER_TABLES = frozenset({"users", "clinic_staff", "clinic_doctors"})


def _note(session: Session, viewer_ids: set[uuid.UUID] | None) -> None:
    noted = session.info.get(_CHANGED)
    if viewer_ids is None or noted == _SOME_USERS:
        session.info[_CHANGED] = _SOME_USERS
    else:
        session.info[_CHANGED] = (noted or frozenset()) | viewer_ids


@event.listens_for(Session, "after_flush")
def _note_flushed_users(session: Session, _context: Any) -> None:
    viewer_ids: set[uuid.UUID] = set()
    for changed in chain(session.new, session.dirty, session.deleted):
        if isinstance(changed, User):
            viewer_ids.add(changed.id)
        elif isinstance(changed, ClinicStaff | ClinicDoctor):
            viewer_ids.add(changed.user_id)
    if viewer_ids:
        _note(session, viewer_ids)


@event.listens_for(Session, "do_orm_execute")
def _note_user_statements(state: ORMExecuteState) -> None:
    table = getattr(state.statement, "table", None)
    if not state.is_select and getattr(table, "name", None) in VIEWER_TABLES:
        _note(state.session, None)


@event.listens_for(Session, "after_commit")
def _forget_committed_users(session: Session) -> None:
    noted = session.info.pop(_CHANGED, None)
    if noted is None:
        return
    viewer_ids = None if noted == _SOME_USERS else frozenset(noted)
    for cache in list(_CACHES):
        cache.forget_committed(viewer_ids)


@event.listens_for(Session, "after_rollback")
def _drop_rolled_back_users(session: Session) -> None:
    session.info.pop(_CHANGED, None)
