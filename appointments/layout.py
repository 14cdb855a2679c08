"""The database's appointment layout: one fact, held by the sessions (``db.layout_of``)."""

from __future__ import annotations

from enum import Enum


class Layout(Enum):
    """Which person columns the appointments table has.

    ``EXPANDED``: the legacy ``doctor_id`` and ``patient_id`` beside the membership links,
    until the contract revision drops them; ``CONTRACTED``: the links only.
    """

    EXPANDED = "expanded"
    CONTRACTED = "contracted"

    @classmethod
    def of(cls, legacy_columns_present: bool) -> Layout:
        return cls.EXPANDED if legacy_columns_present else cls.CONTRACTED

    @property
    def legacy_columns(self) -> bool:
        return self is Layout.EXPANDED
