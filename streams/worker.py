"""The worker's composition root: :class:`TrackflowApp`, the Faust app with the agents, providers
and cache it owns."""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import IO, Any

import faust

from trackflow.agents.backlog import register_backlog_estimate
from trackflow.agents.enrich import ENRICH_AGENT, NoProviders, register_enrich_agent
from trackflow.agents.refresh import (
    declare_refresh_table,
    register_refresh_agent,
    revisions_view,
)
from trackflow.agents.reprocess import register_reprocess_agent
from trackflow.agents.results import ResultCache, result_fingerprint
from trackflow.agents.runner import (
    CrashWatchdog,
    RunningAgent,
    Topics,
    ack_guard,
    crash_handler,
    declare_table,
)
from trackflow.agents.stream_metrics import export_build_info, register_lag_metrics
from trackflow.agents.tables import RESILIENCE_TABLE
from trackflow.agents.waterfall import Waterfall
from trackflow.agents.wire import Schemas
from trackflow.providers.cache import ProviderCache
from trackflow.providers.errors import ConfigError
from trackflow.providers.gate import GateSet, ResilientGate
from trackflow.providers.limiter import GlobalLimiter
from trackflow.providers.redis_client import RedisMemory
from trackflow.providers.registry import build_providers
from trackflow.providers.specs import SPECS
from trackflow.schemas.codec import SINGLE_OBJECT, WireFormat
from trackflow.streams.app import (
    Rewind,
    committed_offsets,
    create_app,
    declare_topics,
    fence_seeks,
)
from trackflow.streams.faust_worker import TrackflowWorker
from trackflow.streams.health import Readiness, setup_health
from trackflow.streams.kafka_logs import OutageLogFilter
from trackflow.streams.schema_registry import SchemaRegistryClient
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


class TrackflowApp:
    """One worker: the Faust app, the agents, the provider clients, the cache and the limiter it
    owns, and the one place where its partitions' lifecycle is handled.

    - Assigned (:meth:`on_assigned`): one log line, the readiness count, the lookup of the
      partitions without a committed offset (:class:`~streams.app.Rewind` seeks those to their
      beginning as part of Faust's seek).
    - Revoked (:meth:`on_revoked`), which is also how a lost assignment arrives (aiokafka
      revokes everything before it rejoins after a session timeout): the gates forget the
      partitions' pacing and breaker state (the table has it for the next owner), then each
      agent its own state and its records in flight, which the next owner reads again.
    - Recovered (:meth:`on_rebalance_complete`): the worker is ready after the first one.
    - Stopping (:meth:`on_stop`, after the consumer stopped, before the producer does): the
      agents cancel what is in flight, then the clients close, so no record meets a closed
      client and turns that into a dead letter.

    The consumer is changed before it starts, here and nowhere else: the ack guard
    (``agents.runner.AckGuard``: only the agents' trackers ack their topics' records), aiokafka's
    retry backoff (:func:`back_off_consumer_retries`), the rewind's seek and the
    :class:`~streams.app.SeekFence`.
    """

    def __init__(self, settings: Settings, *, wire: WireFormat = SINGLE_OBJECT) -> None:
        """``wire`` is what ``streams.schema_registry.register_schemas`` gave (single-object
        Avro without a registry)."""
        self.settings = settings
        k = settings.kafka
        self.schema_registry: SchemaRegistryClient | None = None
        """Looks up the writer schemas of Confluent-framed inputs (None: no registry)."""
        if k.schema_registry.url is not None:
            self.schema_registry = SchemaRegistryClient(k.schema_registry)
            self.schema_registry.know(wire)
        self.schemas = Schemas(wire, self.schema_registry)
        app = self.faust = create_app(settings)
        self.readiness = Readiness()
        setup_health(app, self.readiness)  # /health/live and /health/ready beside /metrics
        # Every series alerts and dashboards query exists from the first scrape, at 0.
        create_series(settings)
        topics = declare_topics(app, settings)
        # Breaker state, rate-limit pauses and slots, one entry per provider and partition, in
        # a changelogged table: a restarted or rebalanced worker resumes where the last owner
        # was.
        state = declare_table(app, RESILIENCE_TABLE, settings)
        enabled = [n for n in settings.waterfall.order if settings.providers[n].enabled]
        self.cache = build_cache(settings)
        self.limiter = build_limiter(settings)
        watch_redis_memory(app, self.cache, self.limiter)
        self.gates = GateSet({
            name: ResilientGate(name, settings.providers[name], partitions=k.partitions,
                                state=state, cache=self.cache,
                                config_variables=SPECS[name].fix_variables,
                                limiter=self.limiter)
            for name in enabled
        })
        # Credentials and endpoints as the settings loader read them (``Settings.secrets``).
        self.providers = build_providers(settings.secrets, gate=self.gates,
                                         enabled=enabled,
                                         features={n: settings.providers[n].features
                                                   for n in enabled})
        enricher = self._enricher()
        log.info("event=waterfall_ready providers=%s", ",".join(self.providers) or "none")
        ack_guard(app)
        self.agents = self._register_agents(topics, enricher)
        back_off_consumer_retries(app, k.retry_backoff_ms)
        sources = {k.raw_topic, k.dlq_topic, k.refresh_topic}
        self.rewind = Rewind(app.consumer, sources, k.consumer_group, k)
        fence_seeks(app)
        lags = register_lag_metrics(app, sources)
        enrich = next((a for a in self.agents if a.name == ENRICH_AGENT), None)
        if enrich is not None:
            register_backlog_estimate(app, lags=lags, inflight=enrich.inflight,
                                      raw_topic=k.raw_topic, refresh_topic=k.refresh_topic)
        export_build_info()
        self.log_filter = OutageLogFilter(settings.worker.kafka_log_interval_s)

        async def summarise_kafka_logs() -> None:
            self.log_filter.flush()

        app.timer(min(10.0, settings.worker.kafka_log_interval_s),
                  name="trackflow.kafka_logs")(summarise_kafka_logs)
        app.on_partitions_assigned.connect(self.on_assigned)  # type: ignore[arg-type]
        app.on_partitions_revoked.connect(self.on_revoked)  # type: ignore[arg-type]
        app.on_rebalance_complete.connect(self.on_rebalance_complete)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self.on_stop)  # type: ignore[arg-type]

    def _enricher(self) -> Waterfall | NoProviders:
        settings, cache = self.settings, self.cache
        if not self.providers:
            return NoProviders()
        # Reusing results is only sound when they come from cached answers (see ResultCache).
        results = None
        if cache is not None:
            shared = cache if settings.cache.shared_results else None  # LRU-only: not shared
            order = [n for n in settings.waterfall.order if n in self.providers]
            results = ResultCache(settings.cache.result_cache_size, clock=cache.clock,
                                  shared=shared, fingerprint=result_fingerprint(settings, order))
        return Waterfall(self.providers, settings, results=results)

    def _register_agents(self, topics: Topics, enricher: Waterfall | NoProviders
                         ) -> list[RunningAgent]:
        app, settings = self.faust, self.settings
        on_fatal = crash_handler(app, CrashWatchdog(settings.worker.crash_grace_s))
        agents: list[RunningAgent] = []
        # Revisions refreshes published, per track being refreshed: written by the refresh
        # agent, read by both.
        refreshed = declare_refresh_table(app, settings)
        # The revisions the refresh agent is publishing and the table does not have yet.
        publishing: dict[str, Any] = {}
        if "enrich" in settings.worker.agents:
            agents.append(register_enrich_agent(
                app, topics, settings, enricher, on_fatal=on_fatal,
                refreshed=revisions_view(refreshed, publishing),
                kept_encodings=settings.cache.result_cache_size, schemas=self.schemas))
        if "refresh" in settings.worker.agents and isinstance(enricher, Waterfall):
            agents.append(register_refresh_agent(
                app, topics, settings, enricher, refreshed, on_fatal=on_fatal,
                publishing=publishing,
                committed=committed_offsets(app, settings.kafka.raw_topic),
                wire=self.schemas.wire))
        if "reprocess" in settings.worker.agents:
            # Retries wait while the failing provider's breaker (as this worker knows it) is
            # open.
            agents.append(register_reprocess_agent(app, topics, settings,
                                                   breaker_open_until=self.gates.open_until,
                                                   on_fatal=on_fatal))
        return agents

    async def on_assigned(self, sender: Any, assigned: Any, **_: Any) -> None:
        self.readiness.assigned(len(assigned))
        # One line per assignment: a rolling restart with static membership shows none on
        # the workers that kept running.
        log.info("event=partitions_assigned generation=%s partitions=%s topics=%d",
                 self.faust.consumer_generation_id,
                 ",".join(str(p) for p in sorted({tp.partition for tp in assigned})) or "-",
                 len({tp.topic for tp in assigned}))
        self.rewind.assigned(assigned)

    async def on_revoked(self, sender: Any, revoked: Any, **_: Any) -> None:
        revoked = set(revoked)
        raw = self.settings.kafka.raw_topic
        self.gates.forget({tp.partition for tp in revoked if tp.topic == raw})
        for agent in self.agents:
            agent.revoke(revoked)

    async def on_rebalance_complete(self, sender: Any, **_: Any) -> None:
        self.readiness.rebalance_complete()

    async def on_stop(self, sender: Any, **_: Any) -> None:
        # Whoever opens a resource closes it: the provider clients' HTTP pools and Redis. The
        # records in flight stop first, so that none of them meets a closed client.
        for agent in self.agents:
            await agent.close()
        for provider in self.providers.values():
            await provider.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        if self.limiter is not None:
            await self.limiter.aclose()
        if self.schema_registry is not None:
            await self.schema_registry.aclose()

    def run(self, loglevel: str | None = None) -> None:
        """Run the worker until it is stopped (SIGTERM, SIGINT, a crash); holds
        ``worker.data_dir`` meanwhile when the tables are on disk (RocksDB's rule: one process
        per database)."""
        w = self.settings.worker
        data_dir_lock = lock_data_dir(w.data_dir) if self.settings.tables.store == "rocksdb" \
            else None
        try:
            TrackflowWorker(self.faust, loglevel=loglevel or w.log_level,
                            log_filter=self.log_filter,
                            stop_grace_s=w.stop_grace_s).execute_from_commandline()
        finally:
            if data_dir_lock is not None:
                data_dir_lock.close()
