"""Shared set-up of the pipeline benchmarks: services, simulator, workers, records, cache warm-up.

The scripts next to this file (``throughput_bench.py``, ``budget_bench.py``, ``latency_bench.py``)
run on the real local stack like the integration tests, and reuse their process and Kafka helpers
from :mod:`tests.integration.harness`. What is here is only what benchmarks add: padded records
with a sequence number, waiting on topic sizes instead of reading them, timestamp spans, the warm
cache, and one object (:class:`Bench`) that owns and stops everything a script started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # scripts run as `python tests/bench/x.py`
    sys.path.insert(0, str(REPO))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from tests.integration.harness import (  # noqa: E402
    PROVIDERS,
    SimulatorProcess,
    TopicNames,
    WorkerProcess,
    avro_records,
    catalog_records,
    create_topics,
    http_json,
    kafka_kwargs,
    sim_limits_toml,
    worker_rates_env,
)
from trackflow.providers.urls import mask_url  # noqa: E402

#: Limits of the cache warm-up: the integration tests' scaled-up limits. Not higher: at a few
#: thousand calls/s the gate's interval (1/rate) is below the event loop's wake-up jitter, and its
#: late-slot rule then re-queues nearly every call until it gives up after max_wait_s.
WARMUP_LIMITS: dict[str, tuple[int, float]] = {
    "musicbrainz": (100, 1.0), "spotify": (3000, 30.0), "deezer": (500, 5.0),
    "lastfm": (200, 1.0), "discogs": (6000, 60.0),
}
RECORD_BYTES = 300
#: Only the enrichment agent: the DLQ reprocessor would compete for the same two cores.
ENRICH_ONLY = {"TRACKFLOW_WORKER__AGENTS": '["enrich"]'}
NO_PROVIDERS = {"TRACKFLOW_WATERFALL__ORDER": "[]"}

_FILLER = ("chart scraped from the weekly top list; position and movement as published, "
           "artist credit and title copied verbatim from the page before normalisation ")


class _NewTopicRetries(logging.Filter):
    """Drop the producer's warning about a new topic's partition leader not being ready yet:
    the first sends to a topic created a moment ago bounce once, and the producer retries."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NotLeaderForPartitionError" not in record.getMessage()


logging.getLogger("aiokafka.producer.sender").addFilter(_NewTopicRetries())


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack-dir", type=Path, default=None,
                        help="state dir of the local stack to use or start when "
                             "KAFKA_BOOTSTRAP_SERVERS/REDIS_URL are unset [default: "
                             "$TRACKFLOW_STACK_DIR or ~/.cache/trackflow/stack]")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the worker and simulator logs (printed path)")


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the figures."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- records ---------------------------------------------------------------------------------


def catalog_tracks(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` distinct RawTrack dicts of the simulator's catalog (size 1.25x ``count``),
    with the catalog's ISRC kept aside under ``_isrc`` (the raw records do not carry it)."""
    from trackflow.providers.simulator.generate import generate_catalog
    from trackflow.streams.ingest import stable_track_id

    size = catalog_size(count)
    tracks = catalog_records(size, seed, count=count)
    isrc = {stable_track_id(t.artist, t.title): t.isrc
            for t in generate_catalog(size, seed).tracks}
    for t in tracks:
        t["_isrc"] = isrc[t["track_id"]]
    if len(tracks) < count:
        raise SystemExit(f"the catalog of {size} tracks has only {len(tracks)} distinct ones")
    return tracks


def catalog_size(count: int) -> int:
    return max(100, count * 5 // 4)


def padded(track: dict[str, Any], seq: int, *, with_isrc: bool = False) -> dict[str, Any]:
    """A RawTrack of about RECORD_BYTES encoded bytes: what a chart scraper would send.

    ``attributes["bench_seq"]`` numbers the record; the enriched record keeps its input, so an
    output can be matched to its input exactly even when track ids repeat.
    """
    from trackflow.schemas.codec import encode

    record = {k: v for k, v in track.items() if not k.startswith("_")}
    if with_isrc:
        record["isrc"] = track["_isrc"]
    record.update(
        source="bench-chart-scraper",
        source_ref=f"https://charts.example.org/weekly/2024-{seq % 52 + 1:02d}#row-{seq % 200}",
        observed_at=1_717_000_000_000 + seq * 1000,
        attributes={"bench_seq": str(seq), "chart": "weekly-top-200", "country": "GB",
                    "position": str(seq % 200 + 1), "movement": "+3", "weeks_on_chart": "7"},
    )
    size = len(encode("RawTrack", record))
    if size < RECORD_BYTES:
        pad = (_FILLER * 4)[: max(0, RECORD_BYTES - size - 8)]
        record["attributes"]["notes"] = pad
    return record


def bench_records(tracks: Sequence[dict[str, Any]], n: int, *, start: int = 0,
                  with_isrc: bool = False) -> list[dict[str, Any]]:
    """``n`` padded records drawn in turn (repeating) from ``tracks``, numbered from ``start``."""
    cycle = itertools.cycle(tracks)
    return [padded(next(cycle), start + i, with_isrc=with_isrc) for i in range(n)]


Message = tuple[bytes, bytes, list[tuple[str, bytes]]]


def encoded(records: Iterable[dict[str, Any]]) -> list[Message]:
    """(key, Avro value, headers) triples, as the harness's ``produce`` takes them."""
    return avro_records(records)


def mean_size(batch: Sequence[tuple[bytes, bytes, Any]]) -> float:
    return sum(len(v) for _, v, _ in batch) / max(1, len(batch))


# --- Kafka helpers a benchmark needs beyond the harness -----------------------------------------


async def topic_size(consumer: AIOKafkaConsumer, topic: str) -> int:
    """Records in ``topic`` (sum of end offsets; topics here are never compacted or trimmed)."""
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    if not parts:
        return 0
    ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
    return sum(ends.values())


async def wait_for_records(bootstrap: str, topics: Sequence[str], n: int, *, stall_s: float = 60,
                           poll_s: float = 0.5, worker: WorkerProcess | None = None) -> int:
    """Wait until ``topics`` together hold ``n`` records; give up after ``stall_s`` s without
    progress (or when ``worker`` died). Returns how many there are. Reads offsets, not records,
    so the wait costs the machine next to nothing."""
    consumer = AIOKafkaConsumer(**kafka_kwargs(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        seen, last_change = -1, time.monotonic()
        while True:
            total = 0
            for topic in topics:
                total += await topic_size(consumer, topic)
            if total >= n:
                return total
            if total != seen:
                seen, last_change = total, time.monotonic()
            if time.monotonic() - last_change > stall_s:
                log(f"no progress for {stall_s:.0f} s at {total}/{n} records in {topics}")
                return total
            if worker is not None and not worker.alive():
                log(f"worker exited:\n{worker.log_text()[-2000:]}")
                return total
            await asyncio.sleep(poll_s)
    finally:
        await consumer.stop()


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of process ``pid`` (all its threads) so far, or None where
    /proc is not there. On a machine shared with other load a wall-clock rate moves with that
    load; the CPU a process spends per record moves much less."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of proc(5) (utime, stime), counted after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Cpu = tuple[float | None, float | None]
"""CPU microseconds per record from the first output to the last, and over the second half of
the outputs only (after what a worker does once per track it has not seen yet)."""


async def measure_cpu(pid: int, bootstrap: str, topics: Sequence[str], n: int, *,
                      worker: WorkerProcess | None = None) -> tuple[int, Cpu]:
    """Wait until ``topics`` hold ``n`` records; return how many they hold and the CPU process
    ``pid`` spent per record meanwhile (see :data:`Cpu`)."""
    first = await wait_for_records(bootstrap, topics, 1, poll_s=0.05, worker=worker)
    at_first = cpu_seconds(pid)
    half = await wait_for_records(bootstrap, topics, n // 2, poll_s=0.1, worker=worker)
    at_half = cpu_seconds(pid)
    total = await wait_for_records(bootstrap, topics, n, worker=worker)
    at_end = cpu_seconds(pid)

    def per_record(start: float | None, count: int) -> float | None:
        if start is None or at_end is None or total <= count:
            return None
        return (at_end - start) / (total - count) * 1e6

    return total, (per_record(at_first, first), per_record(at_half, half))


@dataclass(frozen=True)
class Span:
    """Records of a topic and the first and last CreateTime among them (epoch ms)."""

    count: int
    first_ms: int
    last_ms: int

    @property
    def seconds(self) -> float:
        return max(1e-3, (self.last_ms - self.first_ms) / 1000)

    @property
    def rate(self) -> float:
        """Records per second between the first and the last record (n - 1 intervals)."""
        return (self.count - 1) / self.seconds if self.count > 1 else 0.0


async def timestamp_span(bootstrap: str, topic: str, *, expect: int, timeout: float = 120) -> Span:
    """Read ``topic`` once from the beginning and return its CreateTime span."""
    msgs = await read_all(bootstrap, topic, expect=expect, timeout=timeout)
    if not msgs:
        return Span(0, 0, 0)
    stamps = [m.timestamp for m in msgs]
    return Span(len(msgs), min(stamps), max(stamps))


async def read_all(bootstrap: str, topic: str, *, expect: int, timeout: float = 120) -> list[Any]:
    """The first ``expect`` records of ``topic`` (harness ``collect``)."""
    from tests.integration.harness import collect

    return await collect(bootstrap, topic, until=expect, timeout=timeout)


# --- processes -------------------------------------------------------------------------------


class Bench:
    """Everything one benchmark run starts, stopped again by ``async with``.

    Kafka and Redis come from ``KAFKA_BOOTSTRAP_SERVERS``/``REDIS_URL`` when set, else the local
    stack (``tests.services.resolve_services``), which is stopped at the end if this run started it.
    """

    def __init__(self, name: str, *, keep_logs: bool = False,
                 stack_dir: Path | None = None) -> None:
        self.name = name
        self.stack_dir = stack_dir
        self.run_id = f"bench{name[:4]}{uuid.uuid4().hex[:8]}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"trackflow-{name}-bench-"))
        self.keep_logs = keep_logs
        self.bootstrap = ""
        self.redis_url = ""
        self.source = ""
        self._stop_services: Any = None
        self._workers: list[WorkerProcess] = []
        self._sims: list[SimulatorProcess] = []
        self._closers: list[Any] = []
        self._topic_sets = 0

    async def __aenter__(self) -> Bench:
        from tests.services import resolve_services

        services, started = await asyncio.to_thread(resolve_services, state_dir=self.stack_dir)
        self.bootstrap, self.redis_url = services.bootstrap_servers, services.redis_url
        self.source = services.source + (" (started by this run)" if started else "")
        self._stop_services = services.stop if started else None
        # Workers inherit os.environ (WorkerProcess.start), as in the integration tests.
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap
        os.environ["REDIS_URL"] = self.redis_url
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in self._workers:
            with contextlib.suppress(Exception):
                worker.stop()
        for sim in self._sims:
            with contextlib.suppress(Exception):
                sim.stop()
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                close()
        if self._stop_services is not None:
            log("stopping the local stack this run started")
            await asyncio.to_thread(self._stop_services)
        if self.keep_logs or exc[0] is not None:
            log(f"logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def on_close(self, close: Any) -> None:
        """Call ``close()`` when the bench ends (before the stack stops)."""
        self._closers.append(close)

    def describe(self) -> str:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        return (f"Kafka {self.bootstrap}, Redis {mask_url(self.redis_url)} ({self.source}); "
                f"{os.cpu_count()} CPUs, load average {load}")

    async def topics(self, partitions: int, *, raw: str | None = None) -> TopicNames:
        """Fresh topics and group for one worker; ``raw`` shares an existing input topic."""
        self._topic_sets += 1
        names = TopicNames.unique(f"{self.run_id}-{self._topic_sets}")
        if raw is not None:
            names = replace(names, raw=raw)
        await create_topics(self.bootstrap, [names.raw, names.enriched, names.dlq, names.parked],
                            partitions)
        return names

    def worker(self, topics: TopicNames, *, partitions: int, env: dict[str, str],
               name: str = "worker") -> WorkerProcess:
        proc = WorkerProcess.start(self.workdir / f"{name}{len(self._workers)}", topics,
                                   partitions=partitions, extra_env={**ENRICH_ONLY, **env})
        self._workers.append(proc)
        return proc

    def stop_worker(self, worker: WorkerProcess) -> None:
        worker.stop()

    def simulator(self, limits: dict[str, tuple[int, float]], *, latency_ms: tuple[int, int],
                  size: int, seed: int = 0, extra_toml: str = "",
                  catalog: Path | None = None) -> Simulator:
        """A simulator with these limits and a generated catalog of ``size`` tracks, or the
        catalog CSV ``catalog``."""
        n = len(self._sims)
        cfg = self.workdir / f"sim{n}.toml"
        cfg.write_text(sim_limits_toml(limits, latency_ms=latency_ms, extra=extra_toml))
        source = (["--catalog", str(catalog)] if catalog is not None
                  else ["--size", str(size), "--seed", str(seed)])
        proc = SimulatorProcess.start(self.workdir / f"sim{n}.log", "--config", str(cfg),
                                      *source)
        self._sims.append(proc)
        return Simulator(proc.env, limits)


@dataclass(frozen=True)
class Simulator:
    """A running simulator: the variables that point a worker at it, and its limits."""

    env: dict[str, str]
    limits: dict[str, tuple[int, float]]

    @property
    def url(self) -> str:
        return self.env["TRACKFLOW_SIMULATOR_URL"]

    def worker_env(self) -> dict[str, str]:
        """Provider URLs and credentials, and the worker's rates set to the simulator's limits."""
        return {**self.env, **worker_rates_env(self.limits)}

    async def report(self) -> dict[str, dict[str, Any]]:
        report: dict[str, dict[str, Any]] = await http_json(f"{self.url}/_sim/report")
        return report

    async def reset(self) -> None:
        await http_json(f"{self.url}/_sim/reset", "POST")

    async def requests(self, provider: str) -> list[dict[str, Any]]:
        """The simulator's request log of ``provider`` (the log keeps the last 10,000 of all)."""
        entries: list[dict[str, Any]] = await http_json(
            f"{self.url}/_sim/requests?provider={provider}&limit=100000")
        return entries


def calls(report: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {p: int(report[p]["requests"]) for p in PROVIDERS if p in report}


# --- the warm cache --------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmCache:
    """A cache namespace holding every provider answer for ``tracks``."""

    namespace: str
    tracks: list[dict[str, Any]]
    """The tracks the warm-up published with no failed stage (every answer is cached)."""
    dead_lettered: int
    failed_stage: int
    """Tracks published with a failed stage (an answer not cached): left out too."""
    seconds: float
    calls: dict[str, int]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    """track_id -> the EnrichedTrack the warm-up published for it (tracks above only)."""


async def warm_cache(bench: Bench, sim: Simulator, tracks: Sequence[dict[str, Any]], *,
                     partitions: int, passes: int = 3) -> WarmCache:
    """Run workers over ``tracks`` in a cache namespace of their own until every track came out
    with no failed stage (at most ``passes`` passes; later passes take only the tracks with a
    failed stage, whose other answers are cached by then). Returns the namespace and the tracks
    whose every lookup is now cached."""
    from tests.integration.harness import produce
    from trackflow.schemas.codec import decode

    namespace = f"{bench.run_id}-warm"
    await sim.reset()
    started = time.monotonic()
    todo, complete = list(tracks), set()
    results: dict[str, dict[str, Any]] = {}
    failed = dead = 0
    for _ in range(passes):
        topics = await bench.topics(partitions)
        # Few records in flight: the warm-up only fills the cache, and long rate-limit queues
        # make the gate give calls up (RateLimitWait), which leaves answers uncached.
        worker = bench.worker(topics, partitions=partitions, name="warmup",
                              env={**sim.worker_env(), "TRACKFLOW_CACHE__NAMESPACE": namespace,
                                   "TRACKFLOW_WORKER__MAX_IN_FLIGHT": "8"})
        await worker.wait_ready()
        # One record per track, same content as the measured records (so the same cache keys).
        await produce(bench.bootstrap, topics.raw, encoded(bench_records(todo, len(todo))))
        done = await wait_for_records(bench.bootstrap, [topics.enriched, topics.dlq], len(todo),
                                      worker=worker)
        out = await read_all(bench.bootstrap, topics.enriched, expect=done, timeout=60)
        bench.stop_worker(worker)
        failed_keys = set()
        for m in out:
            record = decode("EnrichedTrack", m.value)
            if any(p["outcome"] == "failed" for p in record["providers"]):
                failed_keys.add(m.key)
            else:
                complete.add(m.key)
                results[record["track_id"]] = record
        published = {m.key for m in out}
        dead += sum(1 for t in todo if t["track_id"].encode() not in published)
        failed = len(failed_keys)
        todo = [t for t in todo if t["track_id"].encode() in failed_keys]
        log(f"warm-up pass: {len(out):,} published, {failed:,} with a failed stage, "
            f"{dead:,} dead-lettered")
        if not todo:
            break
    report = await sim.report()
    kept = [t for t in tracks if t["track_id"].encode() in complete]
    return WarmCache(namespace, kept, dead, failed, time.monotonic() - started, calls(report),
                     {t["track_id"]: results[t["track_id"]] for t in kept})


def warm_env(sim: Simulator, cache: WarmCache) -> dict[str, str]:
    """A worker on the warmed cache, with every provider enabled."""
    return {**sim.worker_env(), "TRACKFLOW_CACHE__NAMESPACE": cache.namespace}


# --- output ----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
