"""The trackflow alert rules as data, rendered to ``rules/trackflow.rules.yml``.

Regenerate with ``python deploy/prometheus/generate_rules.py`` (writes the file next to it, or
``--stdout``). ``tests/unit/test_alert_rules.py`` fails when the committed YAML differs from this
module, runs ``promtool check rules`` and the ``promtool test rules`` cases in ``tests/``; the
dashboard test parses every ``expr`` here with a PromQL parser and checks the metrics it names.
"""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES_FILE = HERE / "rules" / "trackflow.rules.yml"
#: A backlog that would take longer than this to drain at its current pace alerts
#: (``--drain-hours H`` renders the rules with another figure).
BACKLOG_DRAIN_HOURS = 4.0


@dataclass(frozen=True, slots=True)
class Alert:
    """One alerting rule."""

    name: str
    """Alert name (``Trackflow...``)."""
    expr: str
    """PromQL expression; the alert fires for every series it returns."""
    severity: str
    """``warning`` (look today) or ``critical`` (look now)."""
    summary: str
    """One line, with label templates."""
    description: str
    """What is happening, with the value."""
    runbook: str
    """What to check and do, as one paragraph."""
    for_: str | None = None
    """How long the condition must hold before firing (None: at once)."""


@dataclass(frozen=True, slots=True)
class Group:
    """A rule group (evaluated together)."""

    name: str
    alerts: tuple[Alert, ...]


def larger(a: str, b: str) -> str:
    """The larger of two vectors with the same labels, element by element."""
    return f"(({a}) > ({b}) or ({b}))"


def smaller(a: str, b: str) -> str:
    """The smaller of two vectors with the same labels, element by element."""
    return f"(({a}) < ({b}) or ({b}))"


def backlog_eta(where: str, window: str) -> str:
    """Per provider, how long the backlog still needs it: what ``trackflow top`` computes
    (``streams.top.backlog_demand``). The calls the workers estimate the backlog still needs
    (fresh records not finished, refresh stages to come: ``agents.backlog``) over the rate left
    for them: the paced rate less what fresh records arriving ask and what replays take up to
    their minimum share, at least the refreshes' own minimum share. ``where``: label matchers
    for every selector (may be empty); ``window``: the replays' rate's."""
    by = "sum by (provider)"

    def m(name: str, *labels: str) -> str:
        matchers = [label for label in (*labels, where) if label]
        return f"{name}{{{','.join(matchers)}}}" if matchers else name

    paced = f"max by (provider) ({m('trackflow_ratelimit_rate')})"
    fresh = f"({by} ({m('trackflow_fresh_call_demand')}) or 0 * {paced})"
    replay_slots = m("trackflow_ratelimit_slots_total", 'priority="replay"')
    replays = f"({by} (rate({replay_slots}[{window}])) or 0 * {paced})"

    def share(priority: str) -> str:
        return (f'{paced} * scalar(max(trackflow_ratelimit_min_share{{priority="{priority}"}}) '
                f"or vector(0))")

    left = f"{paced} - {fresh} - {smaller(replays, share('replay'))}"
    return f"{by} ({m('trackflow_backlog_calls')}) / {larger(left, share('refresh'))}"


def budget_group(hours: float) -> Group:
    """Backlogs that will not drain within ``hours``: calls waiting for a provider's budget,
    and refresh requests."""
    secs = f"{hours * 3600:g}"
    return Group('trackflow.budget', (
        Alert(
            name='TrackflowProviderBacklogWontDrain',
            expr=(f'sum by (provider) (trackflow_ratelimit_waiting_calls) / max by (provider) '
                  f'(trackflow_ratelimit_rate) > {secs}'),
            for_='15m',
            severity='warning',
            summary='Calls waiting for {{ $labels.provider }} need more than '
                    f'{hours:g} h to drain',
            description=('{{ $value | printf "%.0f" }} s of calls are waiting for a '
                          '{{ $labels.provider }} rate-limit slot at its paced rate.'),
            runbook=('The provider is the bottleneck and records pile up in Kafka behind it '
                      '(consumer lag). Check whether the burst is expected (a new scraper, a '
                      'backfill); if the provider granted a higher limit, raise '
                      'providers.<name>.rate; otherwise make its fields optional so that '
                      'its stages are deferred and refreshed later.'),
        ),
        Alert(
            name='TrackflowRefreshBacklogWontDrain',
            expr=f'{backlog_eta("", "30m")} > {secs}',
            for_='15m',
            severity='warning',
            summary=(f'Refresh backlog needs more than {hours:g} h of '
                     '{{ $labels.provider }}'),
            description=('The backlog (fresh records not finished, refreshes to come) still '
                          'needs {{ $value | printf "%.0f" }} s of {{ $labels.provider }} calls '
                          'at the rate fresh records arriving and replays leave (the backlog '
                          'ETA of trackflow top and the pipeline dashboard).'),
            runbook=('Partial records wait for their deferred fields. Look at the Budget '
                      'row of the pipeline dashboard: which provider defers most '
                      '(trackflow_deferred_fields_total), and whether fresh traffic leaves '
                      'it any budget. Raise the provider rate if granted, or accept that '
                      'the records stay partial longer.'),
        ),
    ))


GROUPS: tuple[Group, ...] = (
    Group('trackflow.resilience', (
        Alert(
            name='TrackflowBreakerOpen',
            expr='max by (provider) (trackflow_breaker_state) == 2',
            severity='warning',
            summary='Circuit breaker for {{ $labels.provider }} is open',
            description=('At least one worker has opened the circuit breaker of {{ '
                          '$labels.provider }}: calls to it are refused and records '
                          'needing it are published partial or dead-lettered.'),
            runbook=("Check the provider's status page and the Resilience dashboard "
                      '(failure rate vs threshold, error classes in '
                      'trackflow_provider_errors_total). An outage on their side needs no '
                      'action: the breaker probes in half-open and closes by itself, and '
                      'retryable dead letters are replayed by the reprocessing agent. If '
                      'only our calls fail (401/403, bad request), fix the credentials or '
                      'configuration and restart the workers. If it stays open for more '
                      'than an hour, tell the data consumers that records are partial for '
                      'this provider.'),
        ),
        Alert(
            name='TrackflowBreakerFlapping',
            expr=(
                'sum by (provider) '
                '(increase(trackflow_breaker_transitions_total{to_state="open"}[15m])) >= 4'
            ),
            for_='5m',
            severity='warning',
            summary='Circuit breaker for {{ $labels.provider }} is flapping',
            description=('The breaker of {{ $labels.provider }} opened {{ $value | printf'
                          ' "%.0f" }} times in 15 minutes: the provider answers '
                          'intermittently.'),
            runbook=('A flapping breaker means half-open probes succeed and then the '
                      "window fills with failures again. Look at the provider's error "
                      'ratio and latency p95 on the Resilience dashboard. If the provider '
                      'is degraded, consider a longer open duration or a larger count '
                      'window in the breaker settings so probes are rarer; if its latency '
                      'sits near our timeout, raise the timeout. Nothing is lost '
                      'meanwhile: failures go to the DLQ.'),
        ),
        Alert(
            name='TrackflowRateLimiterExhausted',
            expr=(
                'sum by (provider) (rate(trackflow_ratelimit_waits_total[5m]))\n'
                '  / sum by (provider) (rate(trackflow_provider_calls_total[5m])) > 0.5'
            ),
            for_='10m',
            severity='warning',
            summary='Rate limiter of {{ $labels.provider }} is exhausted',
            description=('{{ $value | humanizePercentage }} of calls to {{ '
                          "$labels.provider }} wait for a rate-limit slot: the provider's"
                          " quota is the pipeline's bottleneck."),
            runbook=('Calls wait for their rate-limit slot most of the time, so throughput is '
                      "capped by the provider's quota and consumer lag will grow. Check permits "
                      'vs capacity and limit waits on the Resilience dashboard and the '
                      'cache hit ratio (a cold or failing cache multiplies calls). '
                      'Options: wait for the backlog to drain, raise the quota with the '
                      'provider and then the configured rate, or skip this provider for '
                      'low-value fields. Do not raise the configured rate above the '
                      "provider's documented limit."),
        ),
        Alert(
            name='TrackflowProviderLimitExceeded',
            expr='sum by (provider) (increase(trackflow_ratelimit_limited_answers_total[5m])) > 0',
            severity='warning',
            summary='{{ $labels.provider }} answered that we exceeded its rate limit',
            description=('{{ $labels.provider }} sent {{ $value | printf "%.0f" }} limit '
                          'answers (429, 503 or quota) in 5 minutes. Our limiter should '
                          'prevent this entirely.'),
            runbook=("This should never happen: the limiter's configured rate is above "
                      'what the provider accepts, several deployments share one API key, '
                      'or the provider lowered our quota. Compare the configured rate with'
                      " the provider's documented limit and with the number of workers "
                      '(the configured rate is for all workers together). Lower the '
                      'rate and restart. Repeated violations can get the API key '
                      'suspended, so act the same day. A 503 with Retry-After during an '
                      'outage may count too: check TrackflowBreakerOpen first.'),
        ),
        Alert(
            name='TrackflowRetryStorm',
            expr=(
                'sum by (provider) (rate(trackflow_retries_total[5m]))\n'
                '  / sum by (provider) (rate(trackflow_provider_calls_total[5m])) > 0.25'
            ),
            for_='10m',
            severity='warning',
            summary='Retry storm against {{ $labels.provider }}',
            description=('Retries are {{ $value | humanizePercentage }} of calls to {{ '
                          '$labels.provider }}.'),
            runbook=('Many transient failures are being retried. Retries add load to a '
                      'provider that is already struggling; the retry budget should cap '
                      'them. Check the retry distribution by attempt and the backoff '
                      'percentiles on the Resilience dashboard: if most retries are at the'
                      ' last attempt, the provider is effectively down and the breaker '
                      'should open; if backoff is near zero, check the backoff settings. '
                      'Lower max attempts or the retry budget ratio if the provider stays '
                      'degraded.'),
        ),
        Alert(
            name='TrackflowRetryBudgetExhausted',
            expr='sum by (provider) (increase(trackflow_retry_budget_exhausted_total[5m])) > 0',
            for_='5m',
            severity='warning',
            summary='Retry budget for {{ $labels.provider }} is spent',
            description=('{{ $value | printf "%.0f" }} retries to {{ $labels.provider }} '
                          'were not made in 5 minutes because the retry budget was spent.'),
            runbook=('The budget stopped a retry storm: records whose retry was refused '
                      'go to the DLQ as retryable and will be replayed later. Find why so '
                      'many calls fail transiently (error ratio, latency, breaker state of'
                      ' the provider). Raise the budget only if the provider is healthy '
                      'and the failures are isolated blips.'),
        ),
        Alert(
            name='TrackflowProviderDisabled',
            expr='max by (provider) (trackflow_provider_disabled) == 1',
            severity='critical',
            summary='{{ $labels.provider }} is disabled: it rejected our credentials',
            description=('At least one worker disabled {{ $labels.provider }} after it '
                          'rejected our credentials or app: records skip it '
                          '(skipped: provider_disabled) and are published without its '
                          'fields.'),
            runbook=('The provider said our configuration is wrong (an invalid Spotify '
                      'client, an invalid or suspended Last.fm key, a Discogs token it '
                      'refuses). The worker logged one line event=provider_disabled naming '
                      'the provider and the environment variable to fix (fix=...). Check the '
                      "key in the provider's developer console, set the variable, and "
                      'restart the workers: a restart enables the provider again. Records '
                      'published meanwhile say skipped: provider_disabled and lack its '
                      'fields; nothing was dead-lettered for it. A suspended Last.fm key '
                      'usually means we exceeded its terms: check the rate first.'),
        ),
    )),
    Group('trackflow.providers', (
        Alert(
            name='TrackflowProviderErrorRatioHigh',
            expr=(
                'sum by (provider) '
                '(rate(trackflow_provider_calls_total{outcome=~"transient|permanent"}[5m]))\n'
                '  / sum by (provider) '
                '(rate(trackflow_provider_calls_total{outcome!~"rejected|deferred"}[5m])) > 0.1'
            ),
            for_='10m',
            severity='warning',
            summary='{{ $labels.provider }} error ratio above 10%',
            description=('{{ $value | humanizePercentage }} of calls to {{ '
                          '$labels.provider }} failed over the last 5 minutes.'),
            runbook=('Split the failures by error class (trackflow_provider_errors_total)'
                      ' and by outcome on the Enrichment pipeline dashboard. Transient '
                      'errors (timeouts, 5xx) are retried and dead-lettered; permanent '
                      'ones (4xx other than 404/429) usually mean a changed API or bad '
                      'credentials and need a code or configuration fix. Check the '
                      "provider's status page before changing anything."),
        ),
        Alert(
            name='TrackflowProviderErrorRatioCritical',
            expr=(
                'sum by (provider) '
                '(rate(trackflow_provider_calls_total{outcome=~"transient|permanent"}[5m]))\n'
                '  / sum by (provider) '
                '(rate(trackflow_provider_calls_total{outcome!~"rejected|deferred"}[5m])) > 0.5'
            ),
            for_='5m',
            severity='critical',
            summary='{{ $labels.provider }} error ratio above 50%',
            description=('{{ $value | humanizePercentage }} of calls to {{ '
                          '$labels.provider }} failed over the last 5 minutes.'),
            runbook=('Most calls fail: the breaker should be open or about to open. If it'
                      ' is not, the breaker threshold or window is misconfigured. If the '
                      'errors are permanent (401/403), rotate or fix the credentials now; '
                      'every record needing this provider is otherwise published partial '
                      'or dead-lettered. Then follow TrackflowProviderErrorRatioHigh.'),
        ),
        Alert(
            name='TrackflowProviderLatencyHigh',
            expr=(
                'histogram_quantile(0.95,\n'
                '  sum by (provider, le) '
                '(rate(trackflow_provider_call_duration_seconds_bucket[5m]))) > 2'
            ),
            for_='10m',
            severity='warning',
            summary='{{ $labels.provider }} p95 latency above 2 s',
            description=('The 95th percentile of calls to {{ $labels.provider }} is {{ '
                          '$value | humanizeDuration }}.'),
            runbook=('Slow answers hold in-flight slots and cut throughput. Check the '
                      "provider's status and whether latency is high for one kind of call "
                      'only (kind label). Check our side too: CPU of the workers, DNS, and'
                      ' the HTTP connection pool. If the provider is slow for long, lower '
                      'the timeout so the breaker can act, or lower concurrency to it.'),
        ),
    )),
    Group('trackflow.cache', (
        Alert(
            name='TrackflowCacheHitRatioLow',
            expr=(
                'sum by (provider) (rate(trackflow_cache_requests_total{result="hit"}[15m]))\n'
                '  / sum by (provider) '
                '(rate(trackflow_cache_requests_total{level="lru"}[15m])) < 0.5\n'
                'and sum by (provider) '
                '(rate(trackflow_cache_requests_total{level="lru"}[15m])) > 0.1'
            ),
            for_='15m',
            severity='warning',
            summary='Cache hit ratio for {{ $labels.provider }} below 50%',
            description=('Only {{ $value | humanizePercentage }} of {{ $labels.provider '
                          '}} lookups were answered by the cache (LRU, Redis or a lookup '
                          'in flight) over 15 minutes.'),
            runbook=('A low hit ratio multiplies provider calls and eats the rate limit. '
                      'Expected after a deploy that bumped the cache key version or a '
                      'Redis flush, and while new catalog data flows in. Otherwise check '
                      'Redis (TrackflowRedisErrors, skipped reads on the Cache performance'
                      ' dashboard), Redis memory and eviction policy, and the TTL '
                      'settings.'),
        ),
        Alert(
            name='TrackflowCacheHitRatioCritical',
            expr=(
                'sum by (provider) (rate(trackflow_cache_requests_total{result="hit"}[15m]))\n'
                '  / sum by (provider) '
                '(rate(trackflow_cache_requests_total{level="lru"}[15m])) < 0.2\n'
                'and sum by (provider) '
                '(rate(trackflow_cache_requests_total{level="lru"}[15m])) > 0.1'
            ),
            for_='10m',
            severity='critical',
            summary='Cache hit ratio for {{ $labels.provider }} below 20%',
            description=('Only {{ $value | humanizePercentage }} of {{ $labels.provider '
                          '}} lookups were answered by the cache over 15 minutes.'),
            runbook=('The cache is nearly useless: Redis is probably down, skipped, '
                      'evicting everything or keyed wrongly. Check TrackflowRedisErrors '
                      'and `redis-cli info memory` / `info stats` (evicted_keys). If Redis'
                      ' is healthy, check that all workers run the same version (key '
                      'format) and the LRU size. Expect rate-limit waits and lag to grow '
                      'until fixed.'),
        ),
        Alert(
            name='TrackflowRedisErrors',
            expr='sum by (operation) (rate(trackflow_cache_errors_total[5m])) > 0',
            for_='5m',
            severity='warning',
            summary='Redis {{ $labels.operation }} operations are failing',
            description=('{{ $value | printf "%.2f" }} Redis {{ $labels.operation }} '
                          'errors per second over 5 minutes; lookups carry on without the '
                          'cache.'),
            runbook=('The pipeline keeps running without Redis but calls providers more. '
                      'Check that Redis is up and reachable from the workers (`redis-cli '
                      '-u $REDIS_URL ping`), its memory (maxmemory reached with noeviction'
                      ' rejects writes) and the worker logs (event=cache_error). decode '
                      'errors mean corrupt or foreign values under our keys: bump the '
                      'cache key version or delete the keys.'),
        ),
        Alert(
            name='TrackflowRedisMemoryHigh',
            expr=('max by (role) (trackflow_redis_memory_used_bytes\n'
                  '  / (trackflow_redis_memory_max_bytes > 0)) > 0.9'),
            for_='15m',
            severity='warning',
            summary='The {{ $labels.role }} Redis is above 90% of its maxmemory',
            description=('{{ $value | humanizePercentage }} of the {{ $labels.role }} '
                          "Redis's maxmemory is in use."),
            runbook=('A full cache Redis with allkeys-lru evicts old answers (the hit ratio '
                      'falls and provider calls grow); with noeviction it refuses writes '
                      "(TrackflowRedisErrors). The limiter's keys are a few KB per provider: "
                      "if its Redis fills, it is shared with the cache; give it one of its own"
                      ' (TRACKFLOW_LIMITER__REDIS_URL). Raise maxmemory or shorten the cache '
                      'TTLs (README "State").'),
        ),
        Alert(
            name='TrackflowLimiterRedisEvicts',
            expr='max(trackflow_redis_evicting{role="limiter"}) > 0',
            for_='10m',
            severity='warning',
            summary="The rate limiter's Redis may evict its keys",
            description=('The Redis behind the global rate limiter has a maxmemory-policy '
                          'that evicts keys once it is full.'),
            runbook=("Full, it may evict a provider's log of calls sent, and the next calls "
                      "go over the provider's limit (429s; MusicBrainz blocks clients). Give "
                      'the limiter a Redis of its own with maxmemory-policy noeviction '
                      '(TRACKFLOW_LIMITER__REDIS_URL; the Compose file and the Helm value '
                      'limiterRedisUrlSecret show how).'),
        ),
    )),
    Group('trackflow.deadletters', (
        Alert(
            name='TrackflowDeadLettersGrowing',
            expr=('sum by (stage, provider) '
                  '(rate(trackflow_dead_letters_total{stage!="match"}[10m])) * 60 > 1'),
            for_='15m',
            severity='warning',
            summary=('Dead letters growing at stage {{ $labels.stage }} ({{ '
                      '$labels.provider }})'),
            description=('{{ $value | printf "%.1f" }} records per minute go to the '
                          'dead-letter topic from stage {{ $labels.stage }}.'),
            runbook=('Inspect them with `trackflow dlq inspect` / `trackflow dlq count` '
                      'grouped by reason. Retryable provider failures are replayed by the '
                      'reprocessing agent and need no action beyond fixing the provider '
                      'issue. decode/validate failures come from a producer sending bad '
                      'records: contact the producing team with a sample. After a fix, '
                      'replay with `trackflow dlq replay`. Stage `match` is left out: those '
                      'records await a second look, which their replay makes.'),
        ),
        Alert(
            name='TrackflowParkedGrowing',
            expr='sum by (provider, error_class) (increase(trackflow_dlq_parked_total[15m])) > 0',
            for_='15m',
            severity='warning',
            summary=('Dead letters are being parked ({{ $labels.provider }}, {{ '
                      '$labels.error_class }})'),
            description=('{{ $value | printf "%.0f" }} dead letters were parked in 15 '
                          'minutes: their retries are exhausted or they are not retryable.'),
            runbook=('Parked records need a human: nothing retries them. Inspect the '
                      'parked topic with `trackflow dlq inspect --topic <parked topic>`, '
                      'fix the cause (provider outage longer than the retry schedule, bad '
                      'input, a bug), then replay them with `trackflow dlq replay`. A '
                      'sudden burst usually follows a long outage.'),
        ),
        Alert(
            name='TrackflowRecordsSkipped',
            expr='sum by (topic, destination) (increase(trackflow_records_skipped_total[15m])) > 0',
            severity='critical',
            summary='Records of {{ $labels.topic }} were skipped: Kafka refused them',
            description=('{{ $value | printf "%.0f" }} records of {{ $labels.topic }} could '
                          'not be published to {{ $labels.destination }}, not even as dead '
                          'letters, and were skipped so that the worker keeps running.'),
            runbook=('Each skipped record is one ERROR log line (event=record_skipped) with '
                      'its topic, partition and offset and the error Kafka gave. Read the '
                      'record with `kafka-console-consumer --partition P --offset O`; the '
                      'usual cause is a topic whose max.message.bytes is lower than '
                      'kafka.max_message_bytes. Fix the limit, then re-produce the record '
                      'from its original topic.'),
        ),
    )),
    Group('trackflow.stream', (
        Alert(
            name='TrackflowEndToEndLatencyBudgetFastBurn',
            expr=(
                '(1 - sum(rate(trackflow_end_to_end_latency_seconds_bucket{le="30.0"}[1h]))\n'
                '     / sum(rate(trackflow_end_to_end_latency_seconds_count[1h]))) > 14.4 * 0.01\n'
                'and\n'
                '(1 - sum(rate(trackflow_end_to_end_latency_seconds_bucket{le="30.0"}[5m]))\n'
                '     / sum(rate(trackflow_end_to_end_latency_seconds_count[5m]))) > 14.4 * 0.01'
            ),
            for_='2m',
            severity='critical',
            summary='End-to-end latency objective burning fast',
            description=('Objective: 99% of records enriched within 30 s of their Kafka '
                          'timestamp. The error budget burns more than 14.4 times too fast'
                          ' (2% of a 30-day budget per hour).'),
            runbook=('Records take too long from raw to enriched. Look at consumer lag, '
                      'in-flight records, provider latency p95 and rate-limit waits on the'
                      ' Enrichment pipeline dashboard. Lag with idle providers points at '
                      'the workers (too few, crashed, rebalancing): scale out or restart. '
                      'Lag with saturated limiters points at quotas. A slow provider can '
                      'be skipped temporarily by opening its breaker (configuration) to '
                      'protect the objective.'),
        ),
        Alert(
            name='TrackflowEndToEndLatencyBudgetSlowBurn',
            expr=(
                '(1 - sum(rate(trackflow_end_to_end_latency_seconds_bucket{le="30.0"}[6h]))\n'
                '     / sum(rate(trackflow_end_to_end_latency_seconds_count[6h]))) > 6 * 0.01\n'
                'and\n'
                '(1 - sum(rate(trackflow_end_to_end_latency_seconds_bucket{le="30.0"}[30m]))\n'
                '     / sum(rate(trackflow_end_to_end_latency_seconds_count[30m]))) > 6 * 0.01'
            ),
            for_='15m',
            severity='warning',
            summary='End-to-end latency objective burning',
            description=('Objective: 99% of records enriched within 30 s. The error '
                          'budget burns more than 6 times too fast (5% of a 30-day budget '
                          'in 6 hours).'),
            runbook=('Same investigation as TrackflowEndToEndLatencyBudgetFastBurn but '
                      'with time to plan: compare input rate with output rate over the '
                      "day, check whether a provider's latency or quota is the bottleneck,"
                      ' and add workers or partitions before the budget is gone.'),
        ),
        Alert(
            name='TrackflowConsumerLagHigh',
            expr='sum by (topic) (trackflow_consumer_lag_records) > 10000',
            for_='10m',
            severity='warning',
            summary='Consumer lag on {{ $labels.topic }} above 10000 records',
            description=('The workers are {{ $value | printf "%.0f" }} records behind on '
                          '{{ $labels.topic }}.'),
            runbook=('A backlog after a burst of input or an outage is normal and drains '
                      'by itself: check that TrackflowConsumerLagGrowing is not firing. '
                      'Otherwise look at records/s in vs out, rate-limit waits (quota '
                      'bound) and in-flight records (slot bound). Add workers up to the '
                      'number of partitions; beyond that, raise max_in_flight or '
                      'partitions.'),
        ),
        Alert(
            name='TrackflowConsumerLagGrowing',
            expr=(
                'sum by (topic) (delta(trackflow_consumer_lag_records[15m])) > 0\n'
                'and sum by (topic) (trackflow_consumer_lag_records) > 1000'
            ),
            for_='15m',
            severity='warning',
            summary='Consumer lag on {{ $labels.topic }} keeps growing',
            description=('Lag on {{ $labels.topic }} grew for 15 minutes and is now above'
                          ' 1000 records.'),
            runbook=('Input arrives faster than the workers enrich. Compare records/s in '
                      'and out on the Enrichment pipeline dashboard. If providers are the '
                      'bottleneck (limit waits, latency), the backlog will only drain when'
                      ' input slows: raise quotas or accept partial records. If workers '
                      'are the bottleneck (CPU, in-flight slots), scale out. Check for a '
                      'worker stuck in rebalancing (Faust logs).'),
        ),
        Alert(
            name='TrackflowNoRecordsProcessed',
            expr=(
                'sum by (job, instance) (trackflow_consumer_lag_records) > 0\n'
                'unless on (job, instance)\n'
                'sum by (job, instance) (rate(trackflow_records_in_total[5m])) > 0'
            ),
            for_='5m',
            severity='critical',
            summary='{{ $labels.instance }} processes nothing while input waits',
            description=('{{ $labels.instance }} has {{ $value | printf "%.0f" }} records'
                          ' of lag but read none in 5 minutes.'),
            runbook=('The worker is alive (it exports metrics) but its agent is stuck: a '
                      'hung provider call without timeout, a crashed agent, a partition '
                      'stuck behind an unacked record, or an endless rebalance. Take a '
                      'thread dump (`py-spy dump --pid`), check the worker log for the '
                      'last event, then restart the worker; the uncommitted records are '
                      're-delivered. File a bug with the dump.'),
        ),
        Alert(
            name='TrackflowWorkerDown',
            expr='up{job=~"trackflow.*"} == 0',
            for_='1m',
            severity='critical',
            summary='{{ $labels.job }} target {{ $labels.instance }} is down',
            description=('Prometheus could not scrape {{ $labels.instance }} for a '
                          'minute.'),
            runbook=('Check the process (systemd status / container state) and its last '
                      'log lines. A crash loop usually means Kafka is unreachable or the '
                      'configuration is invalid (the worker prints the reason before '
                      'exiting). Its partitions move to the other workers after the '
                      'session timeout, so the pipeline keeps running with less capacity.'),
        ),
        Alert(
            name='TrackflowWorkerMetricsAbsent',
            expr='absent(trackflow_build_info)',
            for_='2m',
            severity='critical',
            summary='No trackflow worker exports metrics',
            description=('Prometheus has no trackflow_build_info series from any target: '
                          'every worker is gone or service discovery lost them.'),
            runbook=('Nothing is being enriched. Check that the workers run and that '
                      'Prometheus still has them as targets (Status > Targets). If the '
                      'workers run but are not targets, fix the scrape configuration; if '
                      'none run, start them (`trackflow worker`) and look at why they '
                      'stopped (deploy, Kafka down, crash loop).'),
        ),
    )),
)


def groups(hours: float = BACKLOG_DRAIN_HOURS) -> tuple[Group, ...]:
    return (*GROUPS, budget_group(hours))


def alerts() -> list[Alert]:
    """Every alert, in file order."""
    return [a for g in groups() for a in g.alerts]


_PLAIN_UNSAFE = (": ", " #", "'", '"')


def _scalar(text: str, indent: int) -> str:
    """A YAML scalar: plain when safe and on one line, else a literal block."""
    if "\n" not in text and not any(s in text for s in _PLAIN_UNSAFE) and text[0].isalnum():
        return " " + text
    pad = " " * indent
    return " |-\n" + "\n".join(pad + line for line in text.splitlines())


def _folded(text: str, indent: int) -> str:
    """A folded block: wrapped lines that YAML joins back with single spaces."""
    pad = " " * indent
    lines = textwrap.wrap(text, 100 - indent, break_long_words=False, break_on_hyphens=False)
    return " >-\n" + "\n".join(pad + line for line in lines)


def render(hours: float = BACKLOG_DRAIN_HOURS) -> str:
    """The YAML of ``rules/trackflow.rules.yml``."""
    out = [
        "# Generated by deploy/prometheus/generate_rules.py; edit that file, not this one.",
        "# Every metric named here is defined in agents/metrics.py or providers/metrics.py",
        "# (docs/metrics.md).",
        "groups:",
    ]
    for group in groups(hours):
        out += [f"  - name: {group.name}", "    rules:"]
        for a in group.alerts:
            out += [f"      - alert: {a.name}", f"        expr:{_scalar(a.expr, 10)}"]
            if a.for_:
                out.append(f"        for: {a.for_}")
            out += ["        labels:", f"          severity: {a.severity}", "        annotations:",
                    f"          summary: {json.dumps(a.summary)}",
                    f"          description:{_folded(a.description, 12)}",
                    f"          runbook:{_folded(a.runbook, 12)}"]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    """Write the rules file (or print it with ``--stdout``)."""
    hours = BACKLOG_DRAIN_HOURS
    if "--drain-hours" in argv:
        hours = float(argv[argv.index("--drain-hours") + 1])
    if "--stdout" in argv:
        sys.stdout.write(render(hours))
    else:
        RULES_FILE.write_text(render(hours))


if __name__ == "__main__":
    main(sys.argv[1:])
