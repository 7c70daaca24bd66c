"""The ``trackflow_*`` Prometheus families of the providers layer: provider calls, cache,
rate limit, circuit breaker and retries, registered on the default registry.

The gate and the cache import the object they need; :mod:`agents.metrics` holds the
stream-level families, and :mod:`streams.metrics_doc` renders both into docs/metrics.md.
Base units (seconds, ratios 0..1), counters end in ``_total``, labels are low-cardinality
only. Never a per-track label (track id, ISRC, title, cache key).

Resilience (provider calls, cache, rate limit, breaker, retries):

=============================================== ========= =========================================
family                                          type      labels
=============================================== ========= =========================================
trackflow_provider_calls_total                  counter   provider, kind, outcome
trackflow_provider_call_duration_seconds        histogram provider, kind
trackflow_cache_requests_total                  counter   provider, level (lru|redis|inflight),
                                                          result (hit|miss|skipped)
trackflow_cache_errors_total                    counter   operation (get|mget|set|decode)
trackflow_cache_operation_duration_seconds      histogram operation (get|mget|set)
trackflow_ratelimit_tokens                      gauge     provider
trackflow_ratelimit_capacity                    gauge     provider
trackflow_ratelimit_waits_total                 counter   provider
trackflow_ratelimit_wait_seconds                histogram provider
trackflow_ratelimit_limited_answers_total       counter   provider
trackflow_ratelimit_slots_total                 counter   provider, priority (fresh|refresh|replay)
trackflow_ratelimit_min_share                   gauge     priority (refresh|replay)
trackflow_breaker_state                         gauge     provider (0 closed, 1 half_open, 2 open)
trackflow_breaker_transitions_total             counter   provider, from_state, to_state
trackflow_breaker_rejected_calls_total          counter   provider
trackflow_breaker_failure_rate                  gauge     provider (0..1 over the count window)
trackflow_retries_total                         counter   provider, attempt (1, 2, ...)
trackflow_retry_backoff_seconds                 histogram provider
trackflow_retry_budget_exhausted_total          counter   provider
trackflow_provider_disabled                     gauge     provider (1: disabled by a configuration
                                                          error until restart)
=============================================== ========= =========================================

``outcome`` of a provider call is one of ``found``, ``not_found``, ``unavailable``
(feature unavailable), ``transient``, ``permanent``, ``rejected`` (breaker or rate limit said no).
Cache ``level=inflight`` counts lookups that joined an identical lookup already in flight;
``result=skipped`` counts Redis reads skipped while Redis is considered down.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

#: Value of ``trackflow_breaker_state`` for each breaker state (ordered by severity).
BREAKER_STATE_VALUES: Final[dict[str, int]] = {"closed": 0, "half_open": 1, "open": 2}

_CALL_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_CACHE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

# --- provider calls ---

PROVIDER_CALLS = Counter(
    "trackflow_provider_calls_total",
    "Provider calls by outcome (found, not_found, unavailable, transient, permanent, rejected, "
    "deferred).",
    ["provider", "kind", "outcome"],
)
PROVIDER_CALL_DURATION = Histogram(
    "trackflow_provider_call_duration_seconds",
    "Duration of one provider HTTP exchange, retries excluded.",
    ["provider", "kind"],
    buckets=_CALL_BUCKETS,
)

# --- cache ---

CACHE_REQUESTS = Counter(
    "trackflow_cache_requests_total",
    "Cache lookups by level (lru, redis, inflight) and result (hit, miss, skipped).",
    ["provider", "level", "result"],
)
REDIS_MEMORY_USED = Gauge(
    "trackflow_redis_memory_used_bytes",
    "Memory the Redis of each role (cache, limiter) reports in use (INFO memory used_memory), "
    "read every 30 s.",
    ["role"],
)
REDIS_MEMORY_MAX = Gauge(
    "trackflow_redis_memory_max_bytes",
    "The maxmemory of the Redis of each role; 0: no limit set (it grows until the host runs "
    "out).",
    ["role"],
)
REDIS_EVICTING = Gauge(
    "trackflow_redis_evicting",
    "1 when the Redis of the role evicts keys once full (its maxmemory-policy is not "
    "noeviction), 0 when it refuses writes instead.",
    ["role"],
)
CACHE_ERRORS = Counter(
    "trackflow_cache_errors_total",
    "Redis operations that failed (the call carried on without the cache).",
    ["operation"],
)
CACHE_OPERATION_DURATION = Histogram(
    "trackflow_cache_operation_duration_seconds",
    "Duration of one Redis operation, failed ones included.",
    ["operation"],
    buckets=_CACHE_BUCKETS,
)

# --- rate limit ---

RATELIMIT_TOKENS = Gauge(
    "trackflow_ratelimit_tokens",
    "Permits this worker could use now: per owned partition, how near its next slot is, summed.",
    ["provider"],
)
RATELIMIT_CAPACITY = Gauge(
    "trackflow_ratelimit_capacity",
    "Most permits this worker could hold at once: one per owned partition.",
    ["provider"],
)
RATELIMIT_WAITS = Counter(
    "trackflow_ratelimit_waits_total",
    "Permits that had to wait for their slot or for a pause to end.",
    ["provider"],
)
RATELIMIT_WAIT_SECONDS = Histogram(
    "trackflow_ratelimit_wait_seconds",
    "Time spent waiting for a rate-limit permit.",
    ["provider"],
    buckets=_WAIT_BUCKETS,
)
RATELIMIT_LIMITED_ANSWERS = Counter(
    "trackflow_ratelimit_limited_answers_total",
    "Answers saying we exceeded the provider's limit (429, 503 or quota), which pause it.",
    ["provider"],
)
LIMITER_MODE = Gauge(
    "trackflow_ratelimit_global",
    "1 while the provider is paced by the global limiter in Redis, 0 while by the per-partition "
    "fallback slots.",
    ["provider"],
)
LIMITER_ERRORS = Counter(
    "trackflow_ratelimit_limiter_errors_total",
    "Round trips to the global limiter in Redis that failed (the gate fell back to per-partition "
    "slots).",
    ["provider"],
)
RATELIMIT_SLOTS_LOST = Counter(
    "trackflow_ratelimit_slots_lost_total",
    "Reserved slots given up because the caller woke too late to use them.",
    ["provider"],
)
RATELIMIT_RATE = Gauge(
    "trackflow_ratelimit_rate",
    "Calls per second the gate paces the provider at, all workers together (the configured "
    "rate less the slack).",
    ["provider"],
)
RATELIMIT_TRANSIT = Histogram(
    "trackflow_ratelimit_transit_seconds",
    "Time from a call's commit in the global limiter to the provider's answer; the call counts "
    "against the provider's limit for its window plus this (at least rate_slack_s, at most "
    "rate_slack_max_s).",
    ["provider"],
    buckets=_CALL_BUCKETS,
)
RATELIMIT_SLOTS = Counter(
    "trackflow_ratelimit_slots_total",
    "Calls let go by the gate (a slot taken), by provider and the priority whose budget it "
    "took (fresh, refresh, replay): what is left of a provider's rate for refreshes.",
    ["provider", "priority"],
)
RATELIMIT_MIN_SHARE = Gauge(
    "trackflow_ratelimit_min_share",
    "The share of every provider's rate a priority below fresh gets however busy fresh "
    "records keep it (limiter.refresh_min_share, limiter.replay_min_share).",
    ["priority"],
)
WAITING_CALLS = Gauge(
    "trackflow_ratelimit_waiting_calls",
    "Calls waiting for a rate-limit slot now (records held up by this provider's budget).",
    ["provider"],
)

# --- circuit breaker ---

BREAKER_STATE = Gauge(
    "trackflow_breaker_state",
    "Circuit breaker state: 0 closed, 1 half_open, 2 open.",
    ["provider"],
)
BREAKER_TRANSITIONS = Counter(
    "trackflow_breaker_transitions_total",
    "Circuit breaker state changes.",
    ["provider", "from_state", "to_state"],
)
BREAKER_REJECTED_CALLS = Counter(
    "trackflow_breaker_rejected_calls_total",
    "Calls refused because the breaker was open or its half-open probes were taken.",
    ["provider"],
)
BREAKER_FAILURE_RATE = Gauge(
    "trackflow_breaker_failure_rate",
    "Failure rate (0..1) over the breaker's count window.",
    ["provider"],
)

# --- retries ---

RETRIES = Counter(
    "trackflow_retries_total",
    "Retries of transient failures, by retry number (1 = first retry).",
    ["provider", "attempt"],
)
RETRY_BACKOFF_SECONDS = Histogram(
    "trackflow_retry_backoff_seconds",
    "Backoff slept before a retry (jittered, Retry-After honoured).",
    ["provider"],
    buckets=_WAIT_BUCKETS,
)
RETRY_BUDGET_EXHAUSTED = Counter(
    "trackflow_retry_budget_exhausted_total",
    "Retries not made because the provider's retry budget was spent.",
    ["provider"],
)

# --- configuration errors ---

PROVIDER_DISABLED = Gauge(
    "trackflow_provider_disabled",
    "1 while the provider is disabled in this worker because it rejected our credentials "
    "(fix the variable the log names, then restart); 0 while it is in use.",
    ["provider"],
)
