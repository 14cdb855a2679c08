"""Settings from environment variables. Every variable and default is listed in the README."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from appointments.policies import (
    DEFAULT_DATABASE_URL,
    OTHER_CLIENT,
    PERSISTED_CACHE_BYTES,
    PERSISTED_DOCUMENTS_MAX,
    PSYCOPG_PREPARE_THRESHOLD,
    UNKNOWN_CLIENT,
    IdempotencyPolicy,
    label_of,
)
from appointments.stages import Stage

DEFAULT_FLAGS_FILE = "var/flags.json"
LOG_FORMATS = ("auto", "json", "text")
MIN_JWT_SECRET_BYTES = 32


class SettingsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    database_replica_urls: tuple[str, ...] = ()
    """Hot standbys of ``database_url`` that serve queries (appointments/replicas.py)."""
    replica_max_lag_seconds: float = 10.0
    auto_migrate: bool = True
    default_stage: Stage = Stage.DUAL_WRITE
    flags_file: Path = Path(DEFAULT_FLAGS_FILE)
    unleash_url: str | None = None
    unleash_api_token: str | None = None
    unleash_app_name: str = "clinic-appointments"
    unleash_environment: str = "default"
    unleash_refresh_interval: int = 15
    unleash_cache_dir: Path = Path("var/unleash-cache")
    unleash_admin_token: str | None = None
    unleash_project: str = "default"
    unleash_admin_environment: str = "development"
    graphiql: bool = True
    production: bool = False
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str = "clinic-appointments"
    jwt_audience: str = "clinic-appointments"
    introspection: bool = True
    max_query_depth: int = 12
    max_aliases: int = 15
    max_tokens: int = 2000
    compiled_operations: bool = True
    max_body_bytes: int = 100_000
    max_header_bytes: int = 16_384
    max_header_field_bytes: int = 8_192
    metrics_token: str | None = None
    gc_threshold: int = 50_000
    database_pool_size: int = 5
    database_max_overflow: int = 10
    statement_timeout_ms: int = 5000
    database_prepare_threshold: int | None = PSYCOPG_PREPARE_THRESHOLD
    compare_sample_ratio: float = 1.0
    readiness_gates: bool = False
    readiness_refresh_seconds: int = 30
    idempotency_retention_hours: int = 24
    idempotency_claim_seconds: int = 60
    usage_clients: frozenset[str] = frozenset()
    usage_flush_seconds: int = 60
    persisted_cache_bytes: int = PERSISTED_CACHE_BYTES
    persisted_documents_max: int = PERSISTED_DOCUMENTS_MAX
    trusted_documents: Path | None = None
    health_flush_seconds: int = 30
    token_cache_size: int = 10_000
    viewer_cache_size: int = 10_000
    viewer_listen_url: str | None = None
    viewer_listener_check_seconds: int = 10
    log_level: str = "INFO"
    log_format: str = "auto"

    @property
    def viewer_listener_url(self) -> str:
        """Where the token-user cache listens for changes of users: a direct PostgreSQL
        connection (a pooler in transaction mode does not deliver notifications)."""
        return self.viewer_listen_url or self.database_url

    @property
    def idempotency(self) -> IdempotencyPolicy:
        return IdempotencyPolicy(
            retention=timedelta(hours=self.idempotency_retention_hours),
            claim_timeout=timedelta(seconds=self.idempotency_claim_seconds),
        )

    def require_production_keys(self) -> None:
        """Raise ``SettingsError`` when production mode has no key to check tokens with, or
        an HS256 secret shorter than ``MIN_JWT_SECRET_BYTES`` (RFC 7518 asks for at least
        the hash's size: a shorter one can be guessed offline from any token)."""
        if not self.production:
            return
        if self.jwt_secret is None and self.jwt_public_key is None:
            raise SettingsError(
                "production mode needs CLINIC_JWT_SECRET or CLINIC_JWT_PUBLIC_KEY_FILE"
            )
        if self.jwt_public_key is None and self.jwt_secret is not None:
            length = len(self.jwt_secret.encode())
            if length < MIN_JWT_SECRET_BYTES:
                raise SettingsError(
                    f"CLINIC_JWT_SECRET is {length} bytes; production mode needs at least"
                    f" {MIN_JWT_SECRET_BYTES} (e.g. `openssl rand -hex 32`)"
                )

    def require_client_token(self) -> None:
        """Raise ``SettingsError`` when stages would come from Unleash (``UNLEASH_URL`` set)
        without the client token that reads them. Only what reads stages (the service,
        `clinic flags show`) calls this: the admin commands need only the admin token."""
        if self.unleash_url is not None and self.unleash_api_token is None:
            raise SettingsError(
                "UNLEASH_URL is set but UNLEASH_API_TOKEN is not; both are needed to read"
                " stages from Unleash"
            )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        unleash_url = env.get("UNLEASH_URL") or None
        token = env.get("UNLEASH_API_TOKEN") or None
        try:
            default_stage = Stage.parse(
                env.get("CLINIC_DEFAULT_STAGE", defaults.default_stage.value)
            )
        except ValueError as error:
            raise SettingsError(f"CLINIC_DEFAULT_STAGE: {error}") from None
        return cls(
            database_url=env.get("CLINIC_DATABASE_URL", defaults.database_url),
            database_replica_urls=_replica_urls(env, "CLINIC_DATABASE_REPLICA_URLS"),
            replica_max_lag_seconds=_seconds(
                env, "CLINIC_REPLICA_MAX_LAG_SECONDS", defaults.replica_max_lag_seconds
            ),
            auto_migrate=_flag(env, "CLINIC_AUTO_MIGRATE", defaults.auto_migrate),
            default_stage=default_stage,
            flags_file=Path(env.get("CLINIC_FLAGS_FILE", str(defaults.flags_file))),
            unleash_url=unleash_url,
            unleash_api_token=token,
            unleash_app_name=env.get("UNLEASH_APP_NAME", defaults.unleash_app_name),
            unleash_environment=env.get("UNLEASH_ENVIRONMENT", defaults.unleash_environment),
            unleash_refresh_interval=_integer(
                env, "UNLEASH_REFRESH_INTERVAL", defaults.unleash_refresh_interval
            ),
            unleash_cache_dir=Path(env.get("UNLEASH_CACHE_DIR", str(defaults.unleash_cache_dir))),
            unleash_admin_token=env.get("UNLEASH_ADMIN_TOKEN") or None,
            unleash_project=env.get("UNLEASH_PROJECT", defaults.unleash_project),
            unleash_admin_environment=env.get(
                "UNLEASH_ADMIN_ENVIRONMENT", defaults.unleash_admin_environment
            ),
            graphiql=_flag(env, "CLINIC_GRAPHIQL", defaults.graphiql),
            production=_flag(env, "CLINIC_PRODUCTION", defaults.production),
            jwt_secret=env.get("CLINIC_JWT_SECRET") or None,
            jwt_public_key=_read_key(env.get("CLINIC_JWT_PUBLIC_KEY_FILE")),
            jwt_issuer=env.get("CLINIC_JWT_ISSUER", defaults.jwt_issuer),
            jwt_audience=env.get("CLINIC_JWT_AUDIENCE", defaults.jwt_audience),
            introspection=_flag(env, "CLINIC_INTROSPECTION", defaults.introspection),
            max_query_depth=_integer(env, "CLINIC_MAX_QUERY_DEPTH", defaults.max_query_depth),
            max_aliases=_integer(env, "CLINIC_MAX_ALIASES", defaults.max_aliases),
            max_tokens=_integer(env, "CLINIC_MAX_TOKENS", defaults.max_tokens),
            compiled_operations=_flag(
                env, "CLINIC_COMPILED_OPERATIONS", defaults.compiled_operations
            ),
            max_body_bytes=_integer(env, "CLINIC_MAX_BODY_BYTES", defaults.max_body_bytes),
            max_header_bytes=_integer(env, "CLINIC_MAX_HEADER_BYTES", defaults.max_header_bytes),
            max_header_field_bytes=_integer(
                env, "CLINIC_MAX_HEADER_FIELD_BYTES", defaults.max_header_field_bytes
            ),
            metrics_token=env.get("CLINIC_METRICS_TOKEN") or None,
            gc_threshold=_integer(env, "CLINIC_GC_THRESHOLD", defaults.gc_threshold, minimum=0),
            database_pool_size=_integer(
                env, "CLINIC_DATABASE_POOL_SIZE", defaults.database_pool_size
            ),
            database_max_overflow=_integer(
                env, "CLINIC_DATABASE_MAX_OVERFLOW", defaults.database_max_overflow, minimum=0
            ),
            statement_timeout_ms=_integer(
                env, "CLINIC_STATEMENT_TIMEOUT_MS", defaults.statement_timeout_ms
            ),
            database_prepare_threshold=_threshold(
                env, "CLINIC_DATABASE_PREPARE_THRESHOLD", defaults.database_prepare_threshold
            ),
            compare_sample_ratio=_ratio(
                env, "CLINIC_COMPARE_SAMPLE_RATIO", defaults.compare_sample_ratio
            ),
            readiness_gates=_flag(env, "CLINIC_READINESS_GATES", defaults.readiness_gates),
            readiness_refresh_seconds=_integer(
                env, "CLINIC_READINESS_REFRESH_SECONDS", defaults.readiness_refresh_seconds
            ),
            idempotency_retention_hours=_integer(
                env, "CLINIC_IDEMPOTENCY_RETENTION_HOURS", defaults.idempotency_retention_hours
            ),
            idempotency_claim_seconds=_integer(
                env, "CLINIC_IDEMPOTENCY_CLAIM_SECONDS", defaults.idempotency_claim_seconds
            ),
            usage_clients=_client_names(env, "CLINIC_USAGE_CLIENTS"),
            usage_flush_seconds=_integer(
                env, "CLINIC_USAGE_FLUSH_SECONDS", defaults.usage_flush_seconds
            ),
            persisted_cache_bytes=_integer(
                env, "CLINIC_PERSISTED_CACHE_BYTES", defaults.persisted_cache_bytes, minimum=0
            ),
            persisted_documents_max=_integer(
                env, "CLINIC_PERSISTED_DOCUMENTS_MAX", defaults.persisted_documents_max
            ),
            trusted_documents=Path(env["CLINIC_TRUSTED_DOCUMENTS"])
            if env.get("CLINIC_TRUSTED_DOCUMENTS")
            else None,
            health_flush_seconds=_integer(
                env, "CLINIC_HEALTH_FLUSH_SECONDS", defaults.health_flush_seconds
            ),
            token_cache_size=_integer(
                env, "CLINIC_TOKEN_CACHE_SIZE", defaults.token_cache_size, minimum=0
            ),
            viewer_cache_size=_integer(
                env, "CLINIC_VIEWER_CACHE_SIZE", defaults.viewer_cache_size, minimum=0
            ),
            viewer_listen_url=env.get("CLINIC_VIEWER_LISTEN_URL") or None,
            viewer_listener_check_seconds=_integer(
                env,
                "CLINIC_VIEWER_LISTENER_CHECK_SECONDS",
                defaults.viewer_listener_check_seconds,
            ),
            log_level=env.get("CLINIC_LOG_LEVEL", defaults.log_level).upper(),
            log_format=_choice(env, "CLINIC_LOG_FORMAT", defaults.log_format, LOG_FORMATS),
        )


def _replica_urls(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated PostgreSQL URLs (hot standbys)."""
    urls = tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
    for url in urls:
        if not url.startswith("postgresql"):
            raise SettingsError(f"{name}: replicas must be PostgreSQL URLs (postgresql+psycopg://)")
    return urls


def _client_names(env: Mapping[str, str], name: str) -> frozenset[str]:
    """Comma-separated client names, each a valid label (1 to 64 printable ASCII
    characters, no space at either end, not ``unknown`` or ``other``)."""
    names = frozenset(part.strip() for part in env.get(name, "").split(",") if part.strip())
    for client in names:
        if label_of(client) != client or client in (UNKNOWN_CLIENT, OTHER_CLIENT):
            raise SettingsError(f"{name}: {client!r} is not a client name")
    return names


def _read_key(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(f"CLINIC_JWT_PUBLIC_KEY_FILE: {error.strerror}: {path}") from None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _threshold(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    """A count of at least 0, or ``off``/``none`` for never."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() in {"off", "none", "never"}:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number or 'off', not {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be at least 0 (or 'off')")
    return value


def _ratio(env: Mapping[str, str], name: str, default: float) -> float:
    return _float(env, name, default, "a number from 0 to 1", 1.0)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    return _float(env, name, default, "a number of seconds", None)


def _float(
    env: Mapping[str, str], name: str, default: float, kind: str, most: float | None
) -> float:
    """A number from 0 to ``most`` (unbounded above when None); ``kind`` names it in errors."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {kind}, not {raw!r}") from None
    if most is not None and not 0.0 <= value <= most:
        raise SettingsError(f"{name} must be from 0 to {most:g}, not {value}")
    if not value >= 0.0:
        raise SettingsError(f"{name} must be at least 0")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value
