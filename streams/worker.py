"""The worker's composition root: the Faust app with the agents, providers and cache it owns."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Any

import faust

from trackflow.agents.enrich import NoProviders, register_enrich_agent
from trackflow.agents.inflight import InFlight
from trackflow.agents.refresh import (
    declare_refresh_table,
    register_refresh_agent,
    revisions_view,
)
from trackflow.agents.reprocess import register_reprocess_agent
from trackflow.agents.results import ResultCache, result_fingerprint
from trackflow.agents.runner import CrashWatchdog, crash_handler, declare_table
from trackflow.agents.stream_metrics import export_build_info, register_lag_metrics
from trackflow.agents.tables import RESILIENCE_TABLE
from trackflow.agents.waterfall import Waterfall
from trackflow.providers.cache import ProviderCache
from trackflow.providers.errors import ConfigError
from trackflow.providers.gate import GateSet, ResilientGate
from trackflow.providers.limiter import GlobalLimiter
from trackflow.providers.redis_client import RedisMemory
from trackflow.providers.registry import build_providers
from trackflow.providers.specs import SPECS
from trackflow.streams.app import (
    committed_offsets,
    create_app,
    declare_topics,
    fence_seeks,
    rewind_on_assignment,
)
from trackflow.streams.health import setup_health
from trackflow.streams.series import create_series
from trackflow.streams.settings import Settings

log = logging.getLogger("trackflow.streams.worker")


def build_cache(settings: Settings) -> ProviderCache | None:
    c = settings.cache
    if not c.enabled:
        return None
    return ProviderCache(settings.redis_url, namespace=c.namespace, lru_size=c.lru_size,
                         ttls=c.ttls())


def build_limiter(settings: Settings) -> GlobalLimiter | None:
    """One rate-limit queue per provider in Redis for all workers (see providers.limiter), on
    the limiter's own Redis when it has one; the namespace is the cache's, which already
    separates pipelines sharing a Redis."""
    lim = settings.limiter
    if not lim.enabled:
        return None
    return GlobalLimiter(lim.redis_url or settings.redis_url, namespace=settings.cache.namespace,
                         horizon_s=lim.horizon_s, timeout_s=lim.timeout_s,
                         outage_skip_s=lim.outage_skip_s, min_shares=lim.min_shares())


#: How often each Redis's memory is read for ``trackflow_redis_memory_*``.
REDIS_MEMORY_INTERVAL_S = 30.0


def watch_redis_memory(app: faust.App, cache: ProviderCache | None,
                       limiter: GlobalLimiter | None) -> RedisMemory:
    """Export the memory of the cache's and the limiter's Redis (the same one, twice, when they
    share it) on a timer."""
    clients = {role: c.client for role, c in (("cache", cache), ("limiter", limiter))
               if c is not None and c.client is not None}
    exporter = RedisMemory(clients)
    if clients:
        async def read_redis_memory() -> None:
            await exporter.tick()

        # Once at start (a timer's first run is an interval later), then on the timer.
        app.task(read_redis_memory)
        app.timer(REDIS_MEMORY_INTERVAL_S, name="trackflow.redis_memory")(read_redis_memory)
    return exporter


DATA_DIR_LOCK = "trackflow.lock"


def lock_data_dir(data_dir: Path) -> IO[bytes]:
    """Hold ``data_dir`` for this process (until it exits; the handle must be kept).

    RocksDB lets one process open a database; a second worker started on the same directory
    would retry Faust's open for 30 s and then stop with a RocksDB lock error. This says at once
    which setting to change."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = (data_dir / DATA_DIR_LOCK).open("a+b")
    except OSError as exc:
        raise ConfigError("worker.data_dir", f"{data_dir} is not a writable directory "
                          f"({exc.strerror}); set TRACKFLOW_WORKER__DATA_DIR") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError("worker.data_dir", f"{data_dir} is in use by another worker; give "
                          "each worker a directory of its own (TRACKFLOW_WORKER__DATA_DIR)"
                          ) from None
    return handle


def back_off_consumer_retries(app: faust.App, retry_backoff_ms: int) -> None:
    """Give Faust's aiokafka consumer our ``retry_backoff_ms``: Faust has no setting for it, and
    at aiokafka's 100 ms an outage costs ten failing rounds a second per fetcher, coordinator
    and metadata loop. Set on the consumer Faust builds, before it starts (the fetcher and the
    coordinator take the value at start)."""
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]
    create = thread._create_consumer

    def create_with_backoff(loop: Any) -> Any:
        consumer = create(loop)
        consumer._retry_backoff_ms = retry_backoff_ms
        consumer._client._retry_backoff = retry_backoff_ms / 1000
        return consumer

    thread._create_consumer = create_with_backoff


def build_worker_app(settings: Settings, env: dict[str, str] | None = None) -> faust.App:
    """The Faust app with every trackflow agent attached."""
    app = create_app(settings)
    setup_health(app)  # /health/live and /health/ready beside /metrics
    # Every series alerts and dashboards query exists from the first scrape, at 0.
    create_series(settings)
    topics = declare_topics(app, settings)
    # Breaker state, rate-limit pauses and slots, one entry per provider and partition, in a
    # changelogged table: a restarted or rebalanced worker resumes where the last owner was.
    state = declare_table(app, RESILIENCE_TABLE, settings)
    enabled = [n for n in settings.waterfall.order if settings.providers[n].enabled]
    cache = build_cache(settings)
    limiter = build_limiter(settings)
    watch_redis_memory(app, cache, limiter)
    gates = GateSet({
        name: ResilientGate(name, settings.providers[name],
                            partitions=settings.kafka.partitions, state=state, cache=cache,
                            config_variables=SPECS[name].fix_variables, limiter=limiter)
        for name in enabled
    })
    providers = build_providers(os.environ if env is None else env, gate=gates, enabled=enabled,
                                features={n: settings.providers[n].features for n in enabled})
    # Reusing results is only sound when they come from cached answers (see ResultCache).
    results = None
    if cache is not None:
        shared = cache if settings.cache.shared_results else None  # LRU-only: not shared
        order = [n for n in settings.waterfall.order if n in providers]
        results = ResultCache(settings.cache.result_cache_size, clock=cache.clock,
                              shared=shared, fingerprint=result_fingerprint(settings, order))
    enricher = (Waterfall(providers, settings, results=results)
                if providers else NoProviders())
    log.info("event=waterfall_ready providers=%s", ",".join(providers) or "none")
    on_fatal = crash_handler(app, CrashWatchdog(settings.worker.crash_grace_s))
    trackers: list[InFlight[Any]] = []
    # Revisions refreshes published, per track being refreshed: written by the refresh agent,
    # read by both.
    refreshed = declare_refresh_table(app, settings)
    # The revisions the refresh agent is publishing and the table does not have yet.
    publishing: dict[str, Any] = {}
    if "enrich" in settings.worker.agents:
        trackers.append(register_enrich_agent(app, topics, settings, enricher,
                                              on_fatal=on_fatal, on_revoke=gates.forget,
                                              refreshed=revisions_view(refreshed, publishing),
                                              kept_encodings=settings.cache.result_cache_size))
    if "refresh" in settings.worker.agents and isinstance(enricher, Waterfall):
        trackers.append(register_refresh_agent(
            app, topics, settings, enricher, refreshed, on_fatal=on_fatal,
            publishing=publishing,
            committed=committed_offsets(app, settings.kafka.raw_topic)))
    if "reprocess" in settings.worker.agents:
        # Retries wait while the failing provider's breaker (as this worker knows it) is open.
        trackers.append(register_reprocess_agent(app, topics, settings,
                                                 breaker_open_until=gates.open_until,
                                                 on_fatal=on_fatal))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_clients(sender: Any, **_: Any) -> None:
        # Whoever opens a resource closes it: the provider clients' HTTP pools and Redis. The
        # records in flight stop first (closing twice is harmless), so that none of them meets
        # a closed client and turns that into a dead letter.
        for tracker in trackers:
            await tracker.close()
        for provider in providers.values():
            await provider.aclose()
        if cache is not None:
            await cache.aclose()
        if limiter is not None:
            await limiter.aclose()
    back_off_consumer_retries(app, settings.kafka.retry_backoff_ms)
    sources = {settings.kafka.raw_topic, settings.kafka.dlq_topic, settings.kafka.refresh_topic}
    rewind_on_assignment(app, sources, settings.kafka.consumer_group, settings.kafka)
    fence_seeks(app)
    register_lag_metrics(app, sources)
    export_build_info()
    return app
