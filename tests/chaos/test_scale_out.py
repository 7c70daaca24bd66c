"""Scale-out under chaos: three brokers, three workers, killed, restarted and a broker stopped.

On a three-node KRaft cluster of its own (``trackflow stack up --brokers 3``: replication 3,
min.insync.replicas 2) three worker processes enrich tracks from the simulator while:

1. a spotify outage opens the breakers, and the worker owning most open breakers is SIGKILLed:
   the partitions move, and their new owner must not call spotify (the breaker stays open);
2. a random worker is SIGKILLed and restarted every ``kill_every_s``;
3. every worker is restarted in turn (a rolling restart, SIGTERM and start);
4. the broker leading most partitions is stopped for ``broker_down_s`` and started again.

Afterwards every track is on the enriched topic or parked with a reason (0 lost), the
duplicates are printed, and the simulator saw no limit violation from the three workers pacing
together.

Each provider is served by a simulator process of its own (same catalog, same config), as each
real provider runs on its own servers: one Python process answering all five for three workers
is CPU-bound (~3 ms a request) and, on a loaded two-core machine, got a quarter of a core; its
queue grew past the breakers' slow-call threshold (5 s), every provider's breaker opened and most
tracks cycled through the dead-letter queue. A provider's limits and report stay whole, since
all of its traffic goes to its own process.

``TRACKFLOW_CHAOS_SCALE=full`` (``make chaos``) runs 20,000 tracks with a kill every 15 s and the
broker down 30 s; the default, compact scale runs in ``make test``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.harness import (
    SimulatorProcess,
    TopicNames,
    WorkerProcess,
    avro_records,
    catalog_records,
    http_json,
    kafka_kwargs,
    produce,
    scrape,
    sim_limits_toml,
    snapshot,
    worker_rates_env,
)
from trackflow.streams.kafka_io import seek_to
from trackflow.streams.stack import StackInfo, down, start_node, stop_node, up

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

# The integration tests' scaled-up limits: the three workers must share them.
LIMITS = {"musicbrainz": (150, 1.0), "spotify": (3000, 30.0), "deezer": (500, 5.0),
          "lastfm": (1000, 5.0), "discogs": (6000, 60.0)}
PARTITIONS = 6
#: the simulator's exported variables that point one provider's client at it
PROVIDER_URL_VARS = {
    "musicbrainz": ("TRACKFLOW_MUSICBRAINZ_URL",),
    "spotify": ("TRACKFLOW_SPOTIFY_API_URL", "TRACKFLOW_SPOTIFY_ACCOUNTS_URL"),
    "deezer": ("TRACKFLOW_DEEZER_URL",),
    "lastfm": ("TRACKFLOW_LASTFM_URL",),
    "discogs": ("TRACKFLOW_DISCOGS_URL",),
}


@dataclass(frozen=True)
class Scale:
    tracks: int
    kills: int  #: random SIGKILLs after the breaker one
    kill_every_s: float
    broker_down_s: float
    settle_s: float  #: how long the pipeline may go without output before the test gives up
    rolling: int  #: workers restarted in turn (SIGTERM, start, wait until ready)


SCALES = {
    # make test: each mechanism once, small (about two minutes on a loaded two-core machine).
    "compact": Scale(tracks=600, kills=0, kill_every_s=0, broker_down_s=5, settle_s=120,
                     rolling=1),
    "full": Scale(tracks=20_000, kills=6, kill_every_s=15, broker_down_s=30, settle_s=240,
                  rolling=3),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    state_dir = tmp_path_factory.mktemp("cluster")
    info = up(state_dir=state_dir, brokers=3)
    saved = {k: os.environ.get(k) for k in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    os.environ.update({"KAFKA_BOOTSTRAP_SERVERS": info.bootstrap_servers,
                       "REDIS_URL": info.redis_url})
    try:
        yield info
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        down(state_dir=state_dir, purge=True)


class Output:
    """Reads the enriched topic as it is written. The records' own timestamps (set by the
    workers' producers) give the pauses, so a stall of this reader does not count as one."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.keys: list[bytes] = []
        self.arrivals: list[float] = []
        self.events: list[tuple[float, str]] = []
        self.produced: list[tuple[float, set[bytes]]] = []
        self._task: asyncio.Task[None] | None = None

    def note(self, what: str) -> None:
        self.events.append((time.time(), what))
        print(f"[chaos {time.strftime('%H:%M:%S')}] {what}")

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(**kafka_kwargs(self.bootstrap), enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await seek_to(consumer, tps, "beginning")
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=2000)
                for msgs in batch.values():
                    for msg in msgs:
                        self.keys.append(msg.key)
                        self.arrivals.append(msg.timestamp / 1000)
        finally:
            await consumer.stop()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def sent(self, keys: set[bytes]) -> None:
        self.produced.append((time.time(), keys))

    def longest_pauses(self, n: int = 3) -> list[tuple[float, str]]:
        """The longest gaps between two output records while some produced track was not out
        yet (an idle pipeline is not a pause)."""
        gaps: list[tuple[float, float]] = []
        sent: set[bytes] = set()
        pending: set[bytes] = set()  # sent and not out yet
        batches = sorted(self.produced, key=lambda batch: batch[0])
        ordered = sorted(zip(self.arrivals, self.keys, strict=True))  # partitions interleave
        times = [at for at, _ in ordered]
        for i, (a, b) in enumerate(itertools.pairwise(times)):
            while batches and batches[0][0] <= a:
                fresh = batches.pop(0)[1] - sent
                sent |= fresh
                pending |= fresh
            pending.discard(ordered[i][1])
            if pending:
                gaps.append((b - a, a))
        gaps = sorted(gaps, reverse=True)[:n]
        out = []
        for gap, began in gaps:
            before = [what for at, what in self.events if at <= began + gap]
            out.append((gap, before[-1] if before else "start"))
        return out


async def leaders(bootstrap: str, topics: list[str]) -> dict[int, int]:
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        counts: dict[int, int] = {}
        for topic in await admin.describe_topics(topics):
            for part in topic.get("partitions", []):
                counts[part["leader"]] = counts.get(part["leader"], 0) + 1
        return counts
    finally:
        await admin.close()


@dataclass(frozen=True)
class Simulators:
    """One simulator process per provider: the workers' environment and each one's URL."""

    env: dict[str, str]
    urls: dict[str, str]  #: provider -> base URL of the simulator serving it

    async def report(self) -> dict[str, Any]:
        """Each provider's part of its own simulator's report."""
        return {name: (await http_json(f"{url}/_sim/report"))[name]
                for name, url in self.urls.items()}


async def spotify_calls(sims: Simulators) -> int:
    """Spotify API calls so far (token requests are counted apart): the report, since the
    request log of a long run is too large to fetch quickly."""
    report = await http_json(f"{sims.urls['spotify']}/_sim/report")
    return int(report["spotify"]["requests"])


async def open_breakers(worker: WorkerProcess) -> float:
    try:
        text = await scrape(worker.web_port)
    except OSError:
        return 0.0
    return sum(1.0 for line in text.splitlines()
               if line.startswith("trackflow_breaker_state{") and 'provider="spotify"' in line
               and line.rstrip().endswith(" 2.0"))


async def wait_until(predicate: Any, timeout: float, poll: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(poll)
    return False


def chosen_scale() -> Scale:
    """``TRACKFLOW_CHAOS_SCALE`` (compact or full); ``TRACKFLOW_CHAOS_TRACKS`` overrides the
    number of tracks (a full choreography on fewer tracks, for a smaller machine)."""
    scale = SCALES[os.environ.get("TRACKFLOW_CHAOS_SCALE", "compact")]
    tracks = os.environ.get("TRACKFLOW_CHAOS_TRACKS")
    return replace(scale, tracks=int(tracks)) if tracks else scale


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[Simulators]:
    size = chosen_scale().tracks * 2
    cfg = tmp_path / "sim.toml"
    cfg.write_text(sim_limits_toml(LIMITS))

    def start(name: str) -> SimulatorProcess:
        return SimulatorProcess.start(tmp_path / f"sim-{name}.log", "--config", str(cfg),
                                      "--size", str(size))

    with ThreadPoolExecutor(len(PROVIDER_URL_VARS)) as pool:  # each builds its own catalog
        started = list(pool.map(start, PROVIDER_URL_VARS))
    sims = dict(zip(PROVIDER_URL_VARS, started, strict=True))
    try:
        env = {k: v for k, v in started[0].env.items() if k != "TRACKFLOW_SIMULATOR_URL"}
        for name, sim in sims.items():
            env.update({var: sim.env[var] for var in PROVIDER_URL_VARS[name]})
        yield Simulators(env, {name: sim.env["TRACKFLOW_SIMULATOR_URL"]
                               for name, sim in sims.items()})
    finally:
        for sim in started:
            sim.stop()


async def test_three_workers_survive_kills_a_rolling_restart_and_a_broker_stop(
        cluster: StackInfo, simulator: Simulators, tmp_path: Path) -> None:
    scale = chosen_scale()
    rng = random.Random(14)
    bootstrap = cluster.bootstrap_servers
    topics = TopicNames.unique(f"chaos{int(time.time())}")
    env = {**cluster.env(), **simulator.env, **worker_rates_env(LIMITS),
           "TRACKFLOW_PROVIDERS__SPOTIFY__BREAKER__OPEN_BASE_S": "60"}
    workers = [WorkerProcess.start(tmp_path / f"w{i}", topics, partitions=PARTITIONS,
                                   extra_env=env) for i in range(3)]
    began = time.monotonic()
    records = catalog_records(scale.tracks * 2, count=scale.tracks)
    assert len(records) == scale.tracks
    wanted = {r["track_id"].encode() for r in records}
    out = Output(bootstrap, topics.enriched)
    try:
        # Together: wait_ready looks for a Ready line written after it was called.
        await asyncio.gather(*(w.wait_ready(timeout=180) for w in workers))
        out.start()
        # Records in flight at every step: a small share around the breaker (during the
        # outage every track relies on the other providers), the bulk during the kills.
        small = min(len(records) // 3, 400)
        parts = [records[:small], records[small:2 * small], records[2 * small:]]
        out.sent({r["track_id"].encode() for r in parts[0]})
        await produce(bootstrap, topics.raw, avro_records(parts[0]))
        out.note(f"produced {len(parts[0])}")

        # 1. The breaker moves with its partition.
        await http_json(f"{simulator.urls['spotify']}/_sim/outage", "POST",
                        {"provider": "spotify", "status": 503, "duration_s": 45})
        out.note("spotify outage (45 s)")
        assert await wait_until(lambda: _any_open(workers), 60), \
            "the spotify outage must open a breaker"
        await asyncio.sleep(3)
        counts = [await open_breakers(w) for w in workers]
        victim = workers[counts.index(max(counts))]
        victim.kill9()
        out.note(f"SIGKILL worker with {max(counts):.0f} open spotify breakers")
        calls_at_kill = await spotify_calls(simulator)
        out.sent({r["track_id"].encode() for r in parts[1]})
        await produce(bootstrap, topics.raw, avro_records(parts[1]))
        out.note(f"produced {len(parts[1])}")
        victim.restart()
        # The partitions have moved once the restarted worker is ready (its first assignment
        # comes after the killed member's 6 s session ran out) and the group is settled, and
        # their new owners have published records of the second part meanwhile.
        await victim.wait_ready(timeout=180)
        second = {r["track_id"].encode() for r in parts[1]}
        assert await wait_until(lambda: _settled(workers), 60), "the group did not settle"
        assert await wait_until(lambda: _published(out, second, len(second) // 4), 120), \
            "the new owners published nothing of what arrived after the kill"
        moved_calls = await spotify_calls(simulator) - calls_at_kill

        # 2. Random SIGKILLs while the last third arrives.
        out.sent({r["track_id"].encode() for r in parts[2]})
        await produce(bootstrap, topics.raw, avro_records(parts[2]))
        out.note(f"produced {len(parts[2])}")
        for _ in range(scale.kills):
            await asyncio.sleep(scale.kill_every_s)
            w = rng.choice(workers)
            if w.alive():
                w.kill9()
            out.note(f"SIGKILL worker {workers.index(w)}")
            w.restart()

        # 3. Rolling restart.
        for i, w in enumerate(workers[:scale.rolling]):
            w.stop()
            out.note(f"rolling restart: worker {i} stopped")
            w.restart()
            await w.wait_ready(timeout=180)

        # 4. The broker leading most partitions stops for a while.
        lead = await leaders(bootstrap, [topics.raw, topics.enriched])
        node = max(lead, key=lambda n: lead[n])
        await asyncio.to_thread(stop_node, node, state_dir=cluster.state_dir)
        out.note(f"broker {node} (leader of {lead[node]} partitions) stopped")
        await asyncio.sleep(scale.broker_down_s)
        await asyncio.to_thread(start_node, node, state_dir=cluster.state_dir)
        out.note(f"broker {node} started again")
        back = time.time()

        # Wait until every track is out, or nothing moved for settle_s.
        last, last_count = time.monotonic(), -1
        while not wanted <= set(out.keys):
            if len(out.keys) != last_count:
                last, last_count = time.monotonic(), len(out.keys)
            parked = await snapshot(bootstrap, topics.parked)
            if wanted <= set(out.keys) | {m.key for m in parked}:
                break
            if time.monotonic() - last > scale.settle_s:
                break
            await asyncio.sleep(2)
        resumed = min((t - back for t in out.arrivals if t >= back), default=None)
        await out.stop()

        parked = await snapshot(bootstrap, topics.parked)
        dlq = await snapshot(bootstrap, topics.dlq)
        parked_reasons = {m.key: dict(m.headers).get("trackflow.errors.reason") for m in parked}
        report = await simulator.report()
        enriched = set(out.keys)
        lost = wanted - enriched - {k for k, reason in parked_reasons.items() if reason}
        duplicates = len(out.keys) - len(enriched)
        pauses = out.longest_pauses()
        violations = {p: r["violations"] for p, r in report.items()}
        print(f"\nchaos scale={os.environ.get('TRACKFLOW_CHAOS_SCALE', 'compact')} "
              f"tracks={len(wanted)} enriched={len(enriched & wanted)} parked={len(parked)} "
              f"dlq={len(dlq)} lost={len(lost)} duplicates={duplicates} "
              f"({duplicates / max(1, len(out.keys)):.1%} of {len(out.keys)} records out) "
              f"run {time.monotonic() - began:.0f}s")
        print("longest output pauses: " + "; ".join(f"{gap:.1f}s after '{what}'"
                                                    for gap, what in pauses))
        back_text = ("no output after the broker came back (nothing was outstanding)"
                     if resumed is None else
                     f"first output {resumed:.1f}s after the broker came back")
        print(f"{back_text}; spotify calls from the kill of the breaker's worker until "
              f"its partitions had moved and published: {moved_calls}; violations={violations}")
        assert not lost, f"{len(lost)} tracks neither enriched nor parked with a reason"
        assert all(v == 0 for v in violations.values()), f"limits exceeded: {report}"
        assert moved_calls == 0, (
            f"{moved_calls} spotify calls after the partitions moved: an open breaker must stay "
            "open on its new owner")
    finally:
        await out.stop()
        for w in workers:
            w.stop()


async def _settled(workers: list[WorkerProcess]) -> bool:
    """Every worker has partitions and none is rebalancing."""
    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        for w in workers:
            try:
                facts = (await client.get(f"http://127.0.0.1:{w.web_port}/health/ready")).json()
            except (httpx.HTTPError, ValueError):
                return False
            if facts.get("rebalancing") or not facts.get("partitions_assigned"):
                return False
    return True


async def _published(out: Output, keys: set[bytes], at_least: int) -> bool:
    return len(keys.intersection(out.keys)) >= at_least


async def _any_open(workers: list[WorkerProcess]) -> bool:
    return any([await open_breakers(w) > 0 for w in workers])
