"""The mutations: one module a mutation (``<entity>_<verb>.py``), found by ``Mutation``.

A new mutation is a module declaring its field with ``mutation`` (schema/mutations/base.py),
its domain action, and the committed SDL (``clinic schema > schema.graphql``): the modules
of this package are imported, and every field ``mutation`` made is a field of the
``Mutation`` type, in the order of their positions.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import strawberry
from strawberry.types.field import StrawberryField

from schema.mutations.base import POSITION


def _declared() -> dict[str, StrawberryField]:
    """Every mutation field of the package's modules, by Python name, in schema order."""
    found: dict[int, tuple[str, StrawberryField]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for name, value in vars(module).items():
            if not isinstance(value, StrawberryField) or POSITION not in value.metadata:
                continue
            position: int = value.metadata[POSITION]
            if position in found and found[position][1] is not value:
                raise TypeError(f"{name} and {found[position][0]} share position {position}")
            found[position] = (name, value)
    return dict(found[position] for position in sorted(found))


def _mutation_type() -> Any:
    namespace: dict[str, Any] = {"__module__": __name__, **_declared()}
    return strawberry.type(type("Mutation", (), namespace))


Mutation = _mutation_type()
