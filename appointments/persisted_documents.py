"""Automatic persisted queries (Apollo's protocol): GraphQL documents known by their hash.

A client sends ``extensions.persistedQuery = {version: 1, sha256Hash}`` and no
text; when the hash is known the stored document runs, else the answer is the
``PERSISTED_QUERY_NOT_FOUND`` error Apollo Client expects, and it sends the
text with the hash, which is checked and stored. Documents are kept in each
process (an LRU bounded in bytes) and in the ``persisted_documents`` table
(bounded in rows), so every instance knows a document once any has seen it.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import PersistedDocument, utcnow
from appointments.policies import PERSISTED_CACHE_BYTES, PERSISTED_DOCUMENTS_MAX

SHA256 = re.compile(r"[0-9a-f]{64}")
DEFAULT_CACHE_BYTES = PERSISTED_CACHE_BYTES
DEFAULT_MAX_ROWS = PERSISTED_DOCUMENTS_MAX


class PersistedQueryError(Exception):
    """A persisted-query request that cannot run; ``code`` is what Apollo clients read."""

    def __init__(self, code: str, message: str, not_found: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.not_found = not_found


def sha256_of(document: str) -> str:
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class PersistedQuery:
    """The ``persistedQuery`` extension of a request, checked."""

    sha256: str

    @classmethod
    def from_extensions(cls, extensions: dict[str, Any] | None) -> PersistedQuery | None:
        """None when the request has no ``persistedQuery`` extension; raises
        ``PersistedQueryError`` when it has a malformed one."""
        persisted = (extensions or {}).get("persistedQuery")
        if persisted is None:
            return None
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise PersistedQueryError(
                "PERSISTED_QUERY_INVALID", "persistedQuery must be {version: 1, sha256Hash}"
            )
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise PersistedQueryError(
                "PERSISTED_QUERY_INVALID", "sha256Hash must be 64 lowercase hexadecimal digits"
            )
        return cls(digest)


class DocumentStore:
    """Documents by hash: this process's LRU first, then the database."""

    def __init__(
        self, cache_bytes: int = DEFAULT_CACHE_BYTES, max_rows: int = DEFAULT_MAX_ROWS
    ) -> None:
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cached_bytes = 0
        self._cache_bytes = cache_bytes
        self._max_rows = max_rows

    @property
    def cached_bytes(self) -> int:
        return self._cached_bytes

    async def resolve(
        self,
        sessions: async_sessionmaker[AsyncSession],
        persisted: PersistedQuery,
        query: str | None,
    ) -> str:
        """The document to run. With ``query``, its hash must be the one sent (else
        ``PERSISTED_QUERY_HASH_MISMATCH``) and it is stored; without, the stored document
        (else ``PERSISTED_QUERY_NOT_FOUND``)."""
        if query is not None:
            if sha256_of(query) != persisted.sha256:
                raise PersistedQueryError(
                    "PERSISTED_QUERY_HASH_MISMATCH", "provided sha does not match query"
                )
            if persisted.sha256 not in self._cache:
                await self._store(sessions, persisted.sha256, query)
            self._remember(persisted.sha256, query)
            return query
        known = self._cache.get(persisted.sha256)
        if known is not None:
            self._cache.move_to_end(persisted.sha256)
            return known
        async with sessions() as session:
            known = await session.scalar(
                select(PersistedDocument.document).where(
                    PersistedDocument.sha256 == persisted.sha256
                )
            )
        if known is None:
            raise PersistedQueryError(
                "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound", not_found=True
            )
        self._remember(persisted.sha256, known)
        return known

    def _remember(self, digest: str, document: str) -> None:
        size = len(document.encode("utf-8"))
        if size > self._cache_bytes:
            return
        previous = self._cache.pop(digest, None)
        if previous is not None:
            self._cached_bytes -= len(previous.encode("utf-8"))
        self._cache[digest] = document
        self._cached_bytes += size
        while self._cached_bytes > self._cache_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= len(evicted.encode("utf-8"))

    async def _store(
        self, sessions: async_sessionmaker[AsyncSession], digest: str, document: str
    ) -> None:
        """Insert the document (a row already there stays) and drop the oldest rows beyond
        the bound, in one transaction of its own."""
        async with sessions() as session, session.begin():
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            await session.execute(
                insert(PersistedDocument)
                .values(sha256=digest, document=document, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=[PersistedDocument.sha256])
            )
            beyond = (
                select(PersistedDocument.sha256)
                .order_by(PersistedDocument.created_at.desc(), PersistedDocument.sha256)
                .offset(self._max_rows)
            )
            await session.execute(
                delete(PersistedDocument).where(PersistedDocument.sha256.in_(beyond))
            )
