"""State as the catalog grows: a worker's start, restart and partition move at N tracks.

The largest table is the refresh table (``trackflow-refresh-revisions``, one entry per track
with refreshes to come: a track leaves it after its last round). For each N the script preloads
it as if N distinct tracks were being refreshed at once, the worst case a burst that defers
every track leaves behind: N entries produced to the table's changelog topic on the
broker, in the layout the refresh agent writes (JSON key, JSON ``{"revision", "input"}``),
each key written twice (two revisions an hour apart, derived from the time as the agent derives
them) so that half the changelog is superseded. Then, for each table store (``--stores``,
RocksDB and the in-process memory store):

- cold start: a worker with an empty data directory, from process start to ready;
- warm restart: SIGTERM, and the same worker started again on its data directory;
- partition move: a second worker joins (empty directory) and takes half of the partitions;
  time from its start until it is ready;
- peak RSS of the first worker after its warm restart (VmHWM), and of the second worker;
- changelog bytes on the broker's disk: as written, and after the log cleaner had its chance
  (the bench shortens the changelog's ``segment.ms`` to 10 s for that: trackflow's own is 10 min),
  against the live data (N keys and their latest values);
- Redis bytes per cached track, from a real warm-up of ``--cache-tracks`` tracks through the
  waterfall, extrapolated linearly to N (labelled so).

Figures go to stdout, one table; ``--png`` draws the times and RSS against N (matplotlib, the
``bench`` extra). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from common import REPO, Bench, add_common_options, log, table  # type: ignore[import-not-found]

from tests.integration.harness import WorkerProcess, kafka_kwargs
from trackflow.agents.refresh_schedule import input_digest, next_revision
from trackflow.agents.tables import REFRESH_TABLE
from trackflow.streams.partitioner import KeyHashPartitioner
from trackflow.streams.settings import KafkaSettings
from trackflow.streams.stack.config import default_state_dir
from trackflow.streams.topics import changelog_topic, ensure_topics

#: Only what the measurement needs: no provider calls, the refresh table declared.
QUIET = {"TRACKFLOW_WATERFALL__ORDER": "[]", "TRACKFLOW_WORKER__AGENTS": '["enrich"]',
         "TRACKFLOW_KAFKA__SESSION_TIMEOUT_S": "10"}


def peak_rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else None


def topic_bytes(stack_dir: Path, topic: str) -> int:
    """Bytes of ``topic``'s log segments on the local broker's disk (every node's log dir;
    the index files are preallocated and say nothing of the data)."""
    total = 0
    for part in stack_dir.rglob(f"{topic}-[0-9]*"):
        if part.is_dir() and re.fullmatch(re.escape(topic) + r"-\d+", part.name):
            total += sum(f.stat().st_size for f in part.glob("*.log"))
    return total


async def preload(bootstrap: str, topic: str, n: int, partitions: int) -> int:
    """N refresh-table entries, each written twice; returns the live bytes (keys + values)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), acks="all", linger_ms=20,
                                max_batch_size=256 * 1024, compression_type=None)
    await producer.start()
    partitioner = KeyHashPartitioner()
    live = 0
    first = next_revision(time.time(), None)
    try:
        for revision in (first, first + 3600):
            pending = []
            for i in range(n):
                track_id = f"bench-track-{i:08d}"
                raw = {"track_id": track_id, "artist": f"Artist {i % 5000}",
                       "title": f"Title {i}", "isrc": None, "duration_ms": 200_000 + i % 1000}
                key = json.dumps(track_id).encode()
                value = json.dumps({"revision": revision, "input": input_digest(raw)}).encode()
                # The table is co-partitioned with tracks.raw by track_id.
                p = partitioner(track_id.encode(), list(range(partitions)), [])
                pending.append(await producer.send(topic, value, key=key, partition=p))
                if revision != first:
                    live += len(key) + len(value)
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            log(f"  preloaded revision {revision} of {n} entries")
    finally:
        await producer.stop()
    return live


async def set_segment_ms(bootstrap: str, topic: str, segment_ms: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from trackflow.streams.topics import CHANGELOG_COMPACTION, topic_configs

    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        have = (await topic_configs(admin, [topic]))[topic]
        own = {k: v for k, (v, dynamic) in have.items() if dynamic and v is not None}
        await admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, topic,
            configs={**own, **CHANGELOG_COMPACTION, "segment.ms": str(segment_ms),
                     "max.compaction.lag.ms": str(segment_ms)})])
    finally:
        await admin.close()


async def timed_start(worker: WorkerProcess, *, restart: bool) -> float:
    started = time.monotonic()
    if restart:
        worker.restart()
    await worker.wait_ready(timeout=900)
    return time.monotonic() - started


async def run_one(bench: Bench, stack_dir: Path, n: int, store: str, partitions: int,
                  settle_s: float) -> dict[str, Any]:
    topics = await bench.topics(partitions)
    kafka = KafkaSettings(bootstrap_servers=bench.bootstrap, raw_topic=topics.raw,
                          enriched_topic=topics.enriched, dlq_topic=topics.dlq,
                          parked_topic=topics.parked, consumer_group=topics.group,
                          partitions=partitions)
    await ensure_topics(kafka)
    changelog = changelog_topic(topics.group, REFRESH_TABLE)
    log(f"N={n} store={store}: preloading {changelog}")
    live = await preload(bench.bootstrap, changelog, n, partitions)
    await asyncio.sleep(2)
    written = topic_bytes(stack_dir, changelog)
    env = {**QUIET, "TRACKFLOW_TABLES__STORE": store}
    # Static members: the warm restart comes back under its name without a rebalance.
    first = WorkerProcess.start(bench.workdir / f"{store}-{n}-a", topics, partitions=partitions,
                                extra_env={**env, "TRACKFLOW_WORKER__INSTANCE_ID": "a"})
    second = None
    try:
        t0 = time.monotonic()
        await first.wait_ready(timeout=900)
        cold = time.monotonic() - t0
        cold_rss = peak_rss_mb(first.proc.pid)
        log(f"  cold start {cold:.1f} s, peak RSS {cold_rss} MB")
        first.stop()
        warm = await timed_start(first, restart=True)
        await asyncio.sleep(settle_s)
        warm_rss = peak_rss_mb(first.proc.pid)
        log(f"  warm restart {warm:.1f} s, peak RSS {warm_rss} MB")
        second = WorkerProcess.start(bench.workdir / f"{store}-{n}-b", topics,
                                     partitions=partitions,
                                     extra_env={**env, "TRACKFLOW_WORKER__INSTANCE_ID": "b"})
        move = await timed_start(second, restart=False)
        await asyncio.sleep(settle_s)
        second_rss = peak_rss_mb(second.proc.pid)
        log(f"  partition move {move:.1f} s, new owner's peak RSS {second_rss} MB")
    finally:
        first.stop()
        if second is not None:
            second.stop()
    await set_segment_ms(bench.bootstrap, changelog, 10_000)
    # A segment rolls on the first write after segment.ms (as the worker's own writes do); the
    # cleaner then runs within log.cleaner.backoff.ms (15 s).
    await asyncio.sleep(11)
    await preload(bench.bootstrap, changelog, partitions * 4, partitions)
    compacted = written
    for _ in range(24):
        await asyncio.sleep(5)
        compacted = topic_bytes(stack_dir, changelog)
        if compacted < written * 0.75:
            break
    return {"n": n, "store": store, "cold_s": cold, "warm_s": warm, "move_s": move,
            "cold_rss": cold_rss, "warm_rss": warm_rss, "move_rss": second_rss,
            "live": live, "written": written, "compacted": compacted}


async def redis_bytes_per_track(bench: Bench, tracks: int) -> float | None:
    """used_memory growth per track of a real warm-up through the waterfall."""
    import redis.asyncio as redis
    from common import (  # type: ignore[import-not-found]
        WARMUP_LIMITS,
        catalog_size,
        catalog_tracks,
        warm_cache,
    )

    client = redis.from_url(bench.redis_url)
    try:
        before = int((await client.info("memory"))["used_memory"])
        sim = bench.simulator(WARMUP_LIMITS, latency_ms=(1, 3), size=catalog_size(tracks))
        cached = await warm_cache(bench, sim, catalog_tracks(tracks), partitions=4)
        after = int((await client.info("memory"))["used_memory"])
        del cached
    except Exception as exc:  # a figure the table can go without
        log(f"  Redis warm-up failed: {type(exc).__name__}: {exc}")
        return None
    finally:
        await client.aclose()
    return (after - before) / tracks


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}" if value > 1e4 else f"{value:.0f}"


async def main(args: argparse.Namespace) -> None:
    stack_dir = args.stack_dir or default_state_dir()
    async with Bench("state", keep_logs=args.keep_logs, stack_dir=args.stack_dir) as bench:
        print(__doc__.split("\n\n", 1)[0])
        print(f"\nrun: {bench.describe()}; partitions {args.partitions}")
        rows: list[dict[str, Any]] = []
        for n in args.tracks:
            for store in args.stores:
                rows.append(await run_one(bench, stack_dir, n, store, args.partitions,
                                          args.settle))
        per_track = await redis_bytes_per_track(bench, args.cache_tracks) \
            if args.cache_tracks else None
        print()
        print(table(
            ["N", "store", "cold start s", "warm restart s", "partition move s",
             "peak RSS cold MB", "peak RSS warm MB", "new owner RSS MB", "live MB",
             "changelog MB", "after compaction MB", "Redis MB (extrapolated)"],
            [[r["n"], r["store"], f"{r['cold_s']:.1f}", f"{r['warm_s']:.1f}",
              f"{r['move_s']:.1f}", f"{r['cold_rss']:.0f}", f"{r['warm_rss']:.0f}",
              f"{r['move_rss']:.0f}", mb(r["live"]), mb(r["written"]), mb(r["compacted"]),
              "-" if per_track is None else mb(per_track * r["n"])] for r in rows]))
        if per_track is not None:
            print(f"Redis: {per_track:.0f} bytes per track (used_memory growth over a warm-up of "
                  f"{args.cache_tracks} tracks through the five providers), times N")
        for store in args.stores:
            mine = [r for r in rows if r["store"] == store]
            if len(mine) >= 2:
                lo, hi = mine[0], mine[-1]
                print(f"{store}: N x{hi['n'] / lo['n']:.0f} -> warm restart "
                      f"x{hi['warm_s'] / lo['warm_s']:.2f}, cold start "
                      f"x{hi['cold_s'] / lo['cold_s']:.2f}, partition move "
                      f"x{hi['move_s'] / lo['move_s']:.2f}, peak RSS (warm) "
                      f"x{hi['warm_rss'] / lo['warm_rss']:.2f}, changelog after compaction / "
                      f"live x{hi['compacted'] / hi['live']:.2f}")
        if args.png:
            draw(rows, args.stores, Path(args.png))


def draw(rows: list[dict[str, Any]], stores: list[str], png: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log('no matplotlib: pip install -e ".[bench]" for the chart')
        return
    fig, (times, rss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for store in stores:
        mine = [r for r in rows if r["store"] == store]
        ns = [r["n"] for r in mine]
        for key, label, style in (("cold_s", "cold start", "-"), ("warm_s", "warm restart", "--"),
                                  ("move_s", "partition move", ":")):
            times.plot(ns, [r[key] for r in mine], style, marker="o", label=f"{store}: {label}")
        rss.plot(ns, [r["warm_rss"] for r in mine], marker="o", label=f"{store}: after restart")
    for ax, ylabel in ((times, "seconds to ready"), (rss, "peak RSS, MB")):
        ax.set_xscale("log")
        ax.set_xlabel("tracks in the refresh table (N)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("trackflow worker state against catalog size")
    fig.tight_layout()
    fig.savefig(png)
    print(f"chart: {png}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Worker state against catalog size.")
    parser.add_argument("--tracks", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--stores", nargs="+", default=["rocksdb", "memory"],
                        choices=["rocksdb", "memory"])
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds after ready before reading the peak RSS")
    parser.add_argument("--cache-tracks", type=int, default=300,
                        help="tracks of the Redis warm-up (0: no Redis figure)")
    parser.add_argument("--png", default="state_scale.png")
    add_common_options(parser)
    return parser.parse_args()


if __name__ == "__main__":
    os.chdir(REPO)
    asyncio.run(main(parse_args()))
