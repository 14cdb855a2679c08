"""What the service counts and shares between its instances: field usage, persisted
documents, clinic health counters, recent activity and the serving instances."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from appointments.models.base import Base


class FieldUsageDaily(Base):
    """Operations that selected a deprecated field, per UTC day, client and field.

    Written in batches by ``appointments.field_usage`` (an upsert adding each
    process's buffered counts); read by `clinic usage` and the dashboard.
    """

    __tablename__ = "field_usage_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    client_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    field: Mapped[str] = mapped_column(String(128), primary_key=True)
    operations: Mapped[int] = mapped_column(BigInteger)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class FieldUsageOperation(Base):
    """Operations that selected a deprecated field, per UTC day, client and operation: its
    name (empty when anonymous, ``other`` beyond the per-client limit) and the SHA-256 of
    its document text (the hash persisted and trusted documents are known by)."""

    __tablename__ = "field_usage_operations"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    client_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    operation_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    document_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    field: Mapped[str] = mapped_column(String(128), primary_key=True)
    operations: Mapped[int] = mapped_column(BigInteger)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class PersistedDocument(Base):
    """A GraphQL document known by its SHA-256 (automatic persisted queries), so that every
    instance can run it by hash once any instance has seen its text. Bounded: the oldest
    rows beyond ``CLINIC_PERSISTED_DOCUMENTS_MAX`` are removed when one is added."""

    __tablename__ = "persisted_documents"

    __table_args__ = (Index(None, "created_at"),)

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class ClinicHealthCounter(Base):
    """Per clinic and minute: reads that fell back and writes that failed, from every process,
    and the appointment sides read from each origin (for the dashboard's charts).

    The rollout autopilot's guards read these; Prometheus counters carry no clinic id.
    """

    __tablename__ = "clinic_health_counters"

    clinic_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    read_fallbacks: Mapped[int] = mapped_column(default=0)
    write_failures: Mapped[int] = mapped_column(default=0)
    reads_legacy: Mapped[int] = mapped_column(default=0, server_default="0")
    reads_new: Mapped[int] = mapped_column(default=0, server_default="0")


class StageActivity(Base):
    """Reads and writes served per minute, kind and stage, added by every process
    (``appointments.activity``): the dashboard's fleet-wide recent activity."""

    __tablename__ = "stage_activity"

    minute: Mapped[datetime] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class ServiceInstance(Base):
    """A serving process: where it runs, and where it reads stages from; ``seen_at`` is
    its last heartbeat (``appointments.instances``). The CLI's flags-file writers look
    here for instances on other hosts."""

    __tablename__ = "service_instances"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer, primary_key=True)
    flag_source: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(index=True)
