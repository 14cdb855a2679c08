"""One DataLoader per relation, created per request; each batch is one SQL statement.

Appointments are served by the read model (one statement per read); these load
the rows other fields reach (a membership's clinic and person, a ledger entry's
clinic). Every loaded row is also kept in a plain dict (``known``), so that a
resolver whose row is known answers without awaiting anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Final, TypeVar

from strawberry.dataloader import DataLoader

from appointments import queries
from appointments.db import SerializedSession
from appointments.models import Base, Clinic, Patient, User

RowT = TypeVar("RowT", bound=Base)
KeyT = TypeVar("KeyT", bound=Hashable)
ValueT = TypeVar("ValueT")


class Missing:
    """Not loaded yet (None means loaded, and no row has that key)."""


MISSING: Final = Missing()


def _known_first(
    known: dict[KeyT, ValueT | None],
    fetch: Callable[[list[KeyT]], Awaitable[Mapping[KeyT, ValueT]]],
) -> DataLoader[KeyT, ValueT | None]:
    """A loader answering keys already known from ``known`` and fetching the rest in one
    batch; what it fetches becomes known."""

    async def load(keys: list[KeyT]) -> list[ValueT | None]:
        unknown = [key for key in keys if key not in known]
        if unknown:
            found = await fetch(unknown)
            for key in unknown:
                known[key] = found.get(key)
        return [known[key] for key in keys]

    return DataLoader(load_fn=load)


def _by_id_loader(
    db: SerializedSession, model: type[RowT], known: dict[uuid.UUID, RowT | None]
) -> DataLoader[uuid.UUID, RowT | None]:
    return _known_first(
        known, lambda ids: db.run(lambda session: queries.rows_by_ids(session, model, ids))
    )


def peek(known: dict[KeyT, ValueT], key: KeyT) -> ValueT | Missing:
    return known.get(key, MISSING)


class Loaders:
    """The request's loaders, one per relation."""

    def __init__(self, db: SerializedSession) -> None:
        self.known_clinics: dict[uuid.UUID, Clinic | None] = {}
        self.known_users: dict[uuid.UUID, User | None] = {}
        self.known_patients: dict[uuid.UUID, Patient | None] = {}
        self.clinic_by_id = _by_id_loader(db, Clinic, self.known_clinics)
        self.user_by_id = _by_id_loader(db, User, self.known_users)
        self.patient_by_id = _by_id_loader(db, Patient, self.known_patients)

    def clear_all(self) -> None:
        """Forget cached rows, after a write in this request may have changed them."""
        for loader in (self.clinic_by_id, self.user_by_id, self.patient_by_id):
            loader.clear_all()
        for known in (self.known_clinics, self.known_users, self.known_patients):
            known.clear()
