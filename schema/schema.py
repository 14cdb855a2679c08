"""The assembled schema."""

from __future__ import annotations

import strawberry

from schema.extensions import MigrationExtension
from schema.mutations import Mutation
from schema.queries import Query

schema = strawberry.Schema(query=Query, mutation=Mutation, extensions=[MigrationExtension])
