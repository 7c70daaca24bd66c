"""The stream-level ``trackflow_*`` Prometheus families, registered on the default registry.

One plain module of metric objects: the code that measures imports the object it needs, and the
dashboards, alert rules and the test that checks them read it through
:mod:`streams.metrics_doc`. Base units (seconds,
ratios 0..1), counters end in ``_total``, and labels are low-cardinality only: provider, kind,
level, result, outcome, state, from_state, to_state, operation, attempt, error_class. Never a
per-track label (track id, ISRC, title, cache key).

The families of the providers layer (provider calls, cache, rate limit, breaker, retries) live
in :mod:`providers.metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

PROVIDER_ERRORS = Counter(
    "trackflow_provider_errors_total",
    "Failed provider calls by error class (TransientError, BreakerOpen, RateLimitWait, ...).",
    ["provider", "error_class"],
)
RESULT_CACHE_REQUESTS = Counter(
    "trackflow_result_cache_requests_total",
    "Waterfall results looked up for repeated inputs, by level (process: the worker's own; "
    "redis: shared by every worker, asked after a process miss) and result; a redis miss "
    "(none shared, or Redis unavailable) is computed stage by stage.",
    ["level", "result"],
)
DEFERRED_FIELDS = Counter(
    "trackflow_deferred_fields_total",
    "Fields left out of a published record because their provider was busy or its breaker "
    "open (the stage was deferred), by provider.",
    ["provider"],
)
REFRESH_SCHEDULED = Counter(
    "trackflow_refresh_scheduled_total",
    "Published records with deferred or failed stages for which a refresh was scheduled.",
)
REFRESHES = Counter(
    "trackflow_refreshes_total",
    "Refresh requests handled: published (a newer revision), unchanged (nothing new found, "
    "nothing published), rescheduled (stages still missing), finished (the last round: the "
    "track's request deleted), skipped_done (re-delivered after its refresh), invalid.",
    ["outcome"],
)
REFRESH_BACKLOG = Gauge(
    "trackflow_refresh_backlog",
    "Refresh requests this worker has read and not finished (waiting until due or running).",
)
REFRESH_PENDING_STAGES = Gauge(
    "trackflow_refresh_pending_stages",
    "Stages of the refresh requests this worker has read that will call their provider and "
    "have not run yet, by provider: what the refresh backlog still asks of each provider.",
    ["provider"],
)
REFRESH_STAGES = Counter(
    "trackflow_refresh_stages_total",
    "Refresh stages over that were planned to call their provider, by provider; with "
    "trackflow_ratelimit_slots_total{priority=\"refresh\"}, the calls such a stage costs.",
    ["provider"],
)
REFRESH_DUE_IN_SECONDS = Gauge(
    "trackflow_refresh_due_in_seconds",
    "How long until the last refresh request this worker has read is due (0 when all are).",
)
FRESH_RECORDS = Counter(
    "trackflow_fresh_records_total",
    "Fresh records finished (published or dead-lettered): read from the raw topic for the "
    "first time, dead-letter replays not counted.",
)
FRESH_CALLS = Counter(
    "trackflow_fresh_calls_total",
    "Calls the fresh records finished made of each provider, and one more for each stage "
    "published deferred (its refresh calls again): with trackflow_fresh_records_total, what a "
    "fresh record costs each provider.",
    ["provider"],
)
FRESH_BACKLOG = Gauge(
    "trackflow_fresh_backlog_records",
    "Records of the raw topic this worker has not finished: not read yet (its consumer lag) "
    "or in flight.",
)
BACKLOG_CALLS = Gauge(
    "trackflow_backlog_calls",
    "Calls the backlog still needs from each provider (agents.backlog): the fresh records not "
    "finished times a fresh record's calls, plus the refresh stages to come times a refresh "
    "stage's calls, over the last minute.",
    ["provider"],
)
FRESH_CALL_DEMAND = Gauge(
    "trackflow_fresh_call_demand",
    "Calls per second that fresh records arriving now ask of each provider (agents.backlog): "
    "their arrival rate (the median over the last minute) times a fresh record's calls.",
    ["provider"],
)
REFRESH_OLDEST_SECONDS = Gauge(
    "trackflow_refresh_oldest_due_seconds",
    "How long the most overdue refresh request has been due (0 when none is overdue).",
)
PROVIDER_STAGE_OUTCOMES = Counter(
    "trackflow_provider_stage_outcomes_total",
    "Waterfall stage results per record: matched, not_found, skipped, failed or deferred.",
    ["provider", "outcome"],
)

# --- stream ---

RECORDS_IN = Counter(
    "trackflow_records_in_total",
    "Records read from a topic by a trackflow agent.",
    ["topic"],
)
RECORDS_OUT = Counter(
    "trackflow_records_out_total",
    "Records published to a topic by a trackflow agent.",
    ["topic"],
)
ENRICHED = Counter(
    "trackflow_enriched_total",
    "Records published to tracks.enriched, by status (complete or partial).",
    ["status"],
)
DEAD_LETTERS = Counter(
    "trackflow_dead_letters_total",
    "Records sent to the dead-letter topic, by stage, provider and retryability.",
    ["stage", "provider", "retryable"],
)
RECORDS_SKIPPED = Counter(
    "trackflow_records_skipped_total",
    "Records Kafka refused to take even as a dead letter, by source topic and destination: "
    "skipped so they cannot stop the worker; their topic, partition and offset are logged.",
    ["topic", "destination"],
)
END_TO_END_LATENCY = Histogram(
    "trackflow_end_to_end_latency_seconds",
    "Time from a raw record's Kafka timestamp to the publication of its enriched record.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
IN_FLIGHT = Gauge(
    "trackflow_in_flight_records",
    "Records this worker is processing right now (all partitions).",
)
CONSUMER_LAG = Gauge(
    "trackflow_consumer_lag_records",
    "Records between this worker's position and the end of each assigned input partition.",
    ["topic", "partition"],
)

# --- dead letters and reprocessing ---

DLQ_RECEIVED = Counter(
    "trackflow_dlq_received_total",
    "Dead letters read by the reprocessing agent.",
    ["stage", "provider", "error_class"],
)
DLQ_SCHEDULED = Counter(
    "trackflow_dlq_scheduled_total",
    "Dead letters scheduled for a retry.",
    ["provider"],
)
DLQ_REPLAYED = Counter(
    "trackflow_dlq_replayed_total",
    "Dead letters republished to the raw topic for another attempt.",
    ["provider"],
)
DLQ_PARKED = Counter(
    "trackflow_dlq_parked_total",
    "Dead letters moved to the parked topic (retries exhausted or not retryable).",
    ["stage", "provider", "error_class"],
)
DLQ_SCHEDULE_SIZE = Gauge(
    "trackflow_dlq_schedule_size",
    "Dead letters waiting for their retry time on this worker.",
)
DLQ_OLDEST_WAITING = Gauge(
    "trackflow_dlq_oldest_waiting_seconds",
    "Age of the oldest dead letter waiting for its retry on this worker (0 when none).",
)

# --- build ---

BUILD_INFO = Info(
    "trackflow_build",
    "trackflow version and the versions of the libraries it runs on (exported as "
    "trackflow_build_info).",
)
