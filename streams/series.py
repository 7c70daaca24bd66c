"""Create, at 0, every metric series whose label values are known before any traffic.

prometheus_client exports a labelled series only once ``labels(...)`` was called for it. A
counter that first appears at 1 hides that increment from ``rate()`` and ``increase()``, so the
first breaker transition, retry or Redis error would be invisible to the alerts built on them,
and dashboard panels would say "No data" instead of 0. The worker calls :func:`create_series`
at start; ``tests/integration/test_metrics_at_start.py`` checks a fresh worker's ``/metrics``
holds a sample of every family a dashboard or rule names, for every provider.

The label values come from the places that define them: providers and their lookup kinds from
:data:`providers.specs.SPECS`, breaker states and transitions from :mod:`providers.breaker`, retry
numbers from each provider's ``max_attempts``, topics from the settings. Values only traffic can
tell (a consumer-lag partition before assignment, the class of an exception Kafka raises while
publishing) are left to the code that meets them.
"""

from __future__ import annotations

from collections.abc import Iterable

from trackflow.agents import metrics as sm
from trackflow.agents.records import STAGE_OUTCOMES
from trackflow.agents.waterfall import MATCH_STAGE, NO_SURE_MATCH
from trackflow.providers import metrics as pm
from trackflow.providers.breaker import State
from trackflow.providers.context import Priority
from trackflow.providers.specs import PROVIDER_NAMES, SPECS
from trackflow.streams.settings import Settings

#: ``outcome`` of ``trackflow_provider_calls_total`` (see :mod:`providers.metrics`).
CALL_OUTCOMES = ("found", "not_found", "unavailable", "transient", "permanent", "rejected")
#: Every state change the breaker makes (:mod:`providers.breaker`).
BREAKER_TRANSITIONS = ((State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN),
                       (State.HALF_OPEN, State.OPEN), (State.HALF_OPEN, State.CLOSED))
CACHE_REQUESTS = (("lru", "hit"), ("lru", "miss"), ("inflight", "hit"), ("redis", "hit"),
                  ("redis", "miss"), ("redis", "skipped"))
CACHE_ERRORS = ("get", "mget", "set", "decode")
CACHE_OPERATIONS = ("get", "mget", "set")
#: Error classes a failed stage counts in ``trackflow_provider_errors_total``.
STAGE_ERRORS = ("TransientError", "BreakerOpen", "RateLimitWait", "PermanentError")
#: Error classes of the dead letters a provider stage writes: retryable after transient
#: failures (``agents.waterfall``), not retryable when nobody knows the track.
PROVIDER_DEAD_LETTERS = (("TransientError", "true"), ("BreakerOpen", "true"),
                         ("RateLimitWait", "true"), ("NotFound", "false"))
#: Dead letters of a record that never reached the providers: (stage, error class).
RECORD_DEAD_LETTERS = (("decode", "DecodeError"), ("validate", "InvalidRecord"))


def create_provider_series(settings: Settings, providers: Iterable[str] = PROVIDER_NAMES
                           ) -> None:
    """Provider calls, cache, rate limit, breaker, retries, disabled state: at 0."""
    for p in providers:
        spec = SPECS[p]
        for kind in spec.kinds:
            pm.PROVIDER_CALL_DURATION.labels(provider=p, kind=kind)
            for outcome in CALL_OUTCOMES:
                pm.PROVIDER_CALLS.labels(provider=p, kind=kind, outcome=outcome)
        for level, result in CACHE_REQUESTS:
            pm.CACHE_REQUESTS.labels(provider=p, level=level, result=result)
        for gauge in (pm.RATELIMIT_TOKENS, pm.RATELIMIT_CAPACITY, pm.BREAKER_STATE,
                      pm.BREAKER_FAILURE_RATE, pm.PROVIDER_DISABLED):
            gauge.labels(provider=p)
        for family in (pm.RATELIMIT_WAITS, pm.RATELIMIT_WAIT_SECONDS,
                       pm.RATELIMIT_LIMITED_ANSWERS, pm.BREAKER_REJECTED_CALLS,
                       pm.RETRY_BACKOFF_SECONDS, pm.RETRY_BUDGET_EXHAUSTED):
            family.labels(provider=p)
        for from_state, to_state in BREAKER_TRANSITIONS:
            pm.BREAKER_TRANSITIONS.labels(provider=p, from_state=from_state.value,
                                          to_state=to_state.value)
        # Retry n of a call that may make max_attempts attempts: 1 .. max_attempts - 1.
        for retry in range(1, settings.providers[p].max_attempts):
            pm.RETRIES.labels(provider=p, attempt=str(retry))
    for operation in CACHE_ERRORS:
        pm.CACHE_ERRORS.labels(operation=operation)
    for operation in CACHE_OPERATIONS:
        pm.CACHE_OPERATION_DURATION.labels(operation=operation)


def create_stream_series(settings: Settings, providers: Iterable[str] = PROVIDER_NAMES) -> None:
    """Records in and out, stage outcomes and errors, dead letters, DLQ reprocessing: at 0."""
    k = settings.kafka
    for topic in (k.raw_topic, k.dlq_topic):
        sm.RECORDS_IN.labels(topic=topic)
    for topic in (k.enriched_topic, k.dlq_topic, k.raw_topic, k.parked_topic):
        sm.RECORDS_OUT.labels(topic=topic)
    for status in ("complete", "partial"):
        sm.ENRICHED.labels(status=status)
    for level in ("process", "redis"):
        for result in ("hit", "miss"):
            sm.RESULT_CACHE_REQUESTS.labels(level=level, result=result)
    sm.RECORDS_SKIPPED.labels(topic=k.raw_topic, destination=k.dlq_topic)
    sm.RECORDS_SKIPPED.labels(topic=k.dlq_topic, destination=k.parked_topic)
    sm.RECORDS_SKIPPED.labels(topic=k.dlq_topic, destination=k.raw_topic)
    for stage, error_class in RECORD_DEAD_LETTERS:
        sm.DEAD_LETTERS.labels(stage=stage, provider="", retryable="false")
        for family in (sm.DLQ_RECEIVED, sm.DLQ_PARKED):
            family.labels(stage=stage, provider="", error_class=error_class)
    # A record no stage matched, dead-lettered for its second look (``agents.waterfall``): no
    # provider of its own, retried at the reprocessing agent.
    sm.DEAD_LETTERS.labels(stage=MATCH_STAGE, provider="", retryable="true")
    for family in (sm.DLQ_RECEIVED, sm.DLQ_PARKED):
        family.labels(stage=MATCH_STAGE, provider="", error_class=NO_SURE_MATCH)
    sm.DLQ_SCHEDULED.labels(provider="")
    sm.DLQ_REPLAYED.labels(provider="")
    for p in providers:
        for outcome in STAGE_OUTCOMES:
            sm.PROVIDER_STAGE_OUTCOMES.labels(provider=p, outcome=outcome)
        for error_class in STAGE_ERRORS:
            sm.PROVIDER_ERRORS.labels(provider=p, error_class=error_class)
        for retryable in ("true", "false"):
            sm.DEAD_LETTERS.labels(stage="provider", provider=p, retryable=retryable)
        for error_class, _ in PROVIDER_DEAD_LETTERS:
            for family in (sm.DLQ_RECEIVED, sm.DLQ_PARKED):
                family.labels(stage="provider", provider=p, error_class=error_class)
        sm.DLQ_SCHEDULED.labels(provider=p)
        sm.DLQ_REPLAYED.labels(provider=p)
        # The backlog's estimate (``agents.backlog``) and what it is made of.
        for estimate in (sm.BACKLOG_CALLS, sm.FRESH_CALL_DEMAND, sm.FRESH_CALLS,
                         sm.REFRESH_PENDING_STAGES, sm.REFRESH_STAGES):
            estimate.labels(provider=p)
        for priority in Priority:
            pm.RATELIMIT_SLOTS.labels(provider=p, priority=priority.name.lower())


def create_series(settings: Settings, providers: Iterable[str] = PROVIDER_NAMES) -> None:
    """Every series with known label values, at 0 (creating one twice changes nothing)."""
    names = tuple(providers)
    create_provider_series(settings, names)
    create_stream_series(settings, names)
