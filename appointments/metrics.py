"""Prometheus metrics of the migration. Labels are bounded: no appointment or clinic ids.

Under several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` before this
module is first imported (``clinic serve --workers N`` does) and ``/metrics``
aggregates every worker's values.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

READS = Counter(
    "clinic_appointment_reads",
    "Appointment sides served, by stage, side, origin served and outcome",
    ["stage", "side", "origin", "outcome"],
)
WRITES = Counter(
    "clinic_appointment_writes",
    "Appointment writes, by stage, operation, input style and outcome (ok or error code)",
    ["stage", "operation", "input", "outcome"],
)
COMPARISONS = Counter(
    "clinic_comparisons",
    "Reads compared across origins, by stage and outcome",
    ["stage", "outcome"],
)
MISMATCHES = Counter(
    "clinic_mismatches",
    "Differences seen between the legacy and the new side, by stage and field",
    ["stage", "field"],
)
READ_FALLBACKS = Counter(
    "clinic_read_fallbacks",
    "Reads served from the non-authoritative side because the authoritative one was empty",
    ["stage", "side"],
)
UNLINKED_WRITES = Counter(
    "clinic_unlinked_writes",
    "Writes that left the new side empty because the person has no membership in the clinic",
    ["stage", "side"],
)
ORIGIN_READ_SECONDS = Histogram(
    "clinic_origin_read_seconds",
    "Time for one appointment side to be read from an origin (batched loads included)",
    ["origin"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
FLAG_EVALUATIONS = Counter(
    "clinic_flag_evaluations",
    "Migration flag evaluations (once per request and clinic), by stage and how it was decided",
    ["stage", "decided_by"],
)
FLAG_EVALUATION_SECONDS = Histogram(
    "clinic_flag_evaluation_seconds",
    "Time of one migration flag evaluation (the Unleash SDK's and the readiness gate's)",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025),
)
LEDGER_FLUSHES = Counter(
    "clinic_ledger_flushes",
    "Writes of the mismatch ledger (a request's first sightings and fixes, or a batch of"
    " differences seen again), by outcome",
    ["outcome"],
)
STAGES_GATED = Counter(
    "clinic_stages_gated",
    "Clinics served a lower stage than their flag asked for (readiness gates), per request",
    ["requested", "served"],
)
FLAG_SOURCE_LOADED = Gauge(
    "clinic_flag_source_loaded",
    "1 when the flag source has the migration flag (else every clinic gets the default stage)",
    multiprocess_mode="livemin",
)
FLAG_SOURCE_REACHABLE = Gauge(
    "clinic_flag_source_reachable",
    "1 when the flag source can be read: the flags file exists, or the Unleash server"
    " answered its last poll (0: stages come from the last loaded data, or the default)",
    multiprocess_mode="livemin",
)
DEPRECATED_FIELD_OPERATIONS = Counter(
    "clinic_deprecated_field_operations",
    "Operations selecting a deprecated field, by client (apollographql-client-name: unknown"
    " when missing, other beyond the limit) and field (schema coordinate)",
    ["client", "field"],
)
USAGE_FLUSHES = Counter(
    "clinic_usage_flushes",
    "Writes of the buffered deprecated field usage to the daily table, by outcome",
    ["outcome"],
)
VIEWER_CACHE = Counter(
    "clinic_viewer_cache_lookups",
    "Token users looked up: hit (from memory), miss (a statement, then kept), bypass"
    " (a statement: the user-change listener is not connected, or has unread input)",
    ["outcome"],
)
VIEWER_LISTENER_CONNECTED = Gauge(
    "clinic_viewer_listener_connected",
    "1 while the process listens for changes of users (its token-user cache is in use)",
    multiprocess_mode="livemin",
)
