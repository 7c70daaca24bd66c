"""End-to-end latency on the warm path at half the worker's maximum rate.

    python tests/bench/latency_bench.py [--duration S] [--max-rate R] [--fraction F]
                                        [--probe-records M] [--tracks T] [--partitions P]

A worker runs with all five providers on a cache warmed beforehand (a worker run over T distinct
catalog tracks, as in throughput_bench.py), so no provider is called. Unless --max-rate is given,
M pre-produced records measure the worker's maximum warm rate first (outputs - 1 over the span of
their CreateTimes). Then this script produces records at F (default 0.5) times that rate, paced
in 5 ms steps, for S seconds, to the same worker. Every record carries a sequence number in its
attributes, which the enriched record keeps in its ``input``; per record, latency = CreateTime of
the enriched record (set by the worker's producer at send) - CreateTime of the raw record (set
by this script's producer at send), both on this machine's clock. Prints the count, p50, p90,
p99 (nearest rank) and max. A script, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    WARMUP_LIMITS,
    Bench,
    Message,
    add_common_options,
    bench_records,
    calls,
    catalog_size,
    catalog_tracks,
    encoded,
    log,
    read_all,
    table,
    timestamp_span,
    wait_for_records,
    warm_cache,
    warm_env,
)

from tests.integration.harness import kafka_kwargs, produce


async def paced_produce(bootstrap: str, topic: str, messages: list[Message], rate: float
                        ) -> tuple[int, float]:
    """Send ``messages`` at ``rate`` per second; return how many and the seconds it took."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), acks="all", linger_ms=5)
    await producer.start()
    futures = []
    try:
        started = time.monotonic()
        sent = 0
        while sent < len(messages):
            due = min(len(messages), int((time.monotonic() - started) * rate) + 1)
            while sent < due:
                key, value, headers = messages[sent]
                futures.append(await producer.send(topic, key=key, value=value, headers=headers))
                sent += 1
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent, elapsed


def seq_of(value: dict[str, Any]) -> int:
    return int(value["attributes"]["bench_seq"])


def nearest_rank(sorted_values: list[float], q: float) -> float:
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


async def latencies(bootstrap: str, raw_topic: str, enriched_topic: str, *, first_seq: int,
                    raw_count: int, enriched_count: int) -> tuple[list[float], int]:
    """Latency in ms of every enriched record numbered ``first_seq`` or later, and how many of
    those raw records found no enriched one."""
    from trackflow.schemas.codec import decode

    raw = await read_all(bootstrap, raw_topic, expect=raw_count)
    out = await read_all(bootstrap, enriched_topic, expect=enriched_count)
    sent_at = {}
    for m in raw:
        seq = seq_of(decode("RawTrack", m.value))
        if seq >= first_seq:
            sent_at[seq] = m.timestamp
    result = []
    matched = set()
    for m in out:
        seq = seq_of(decode("EnrichedTrack", m.value)["input"])
        if seq in sent_at and seq not in matched:  # a redelivered duplicate counts once
            matched.add(seq)
            result.append(float(m.timestamp - sent_at[seq]))
    return sorted(result), len(sent_at) - len(matched)


async def main(args: argparse.Namespace) -> None:
    p = args.partitions
    async with Bench("latency", keep_logs=args.keep_logs, stack_dir=args.stack_dir) as bench:
        print(__doc__.split("\n\n", 2)[2].strip())
        print(f"\nrun: {bench.describe()}")
        tracks = catalog_tracks(args.tracks, args.seed)
        sim = bench.simulator(WARMUP_LIMITS, latency_ms=(5, 20), size=catalog_size(args.tracks),
                              seed=args.seed)
        log(f"warming the cache with {len(tracks):,} tracks")
        cache = await warm_cache(bench, sim, tracks, partitions=p)
        print(f"warm-up: {len(tracks):,} tracks in {cache.seconds:.1f} s, "
              f"{len(cache.tracks):,} published with every stage answered and used below "
              f"({cache.dead_lettered} dead-lettered, {cache.failed_stage} with a failed stage)")
        topics = await bench.topics(p)
        probe = 0 if args.max_rate else args.probe_records
        if probe:
            await produce(bench.bootstrap, topics.raw, encoded(bench_records(cache.tracks, probe)))
        await sim.reset()
        worker = bench.worker(topics, partitions=p, env=warm_env(sim, cache), name="warm")
        await worker.wait_ready()
        if probe:
            log(f"measuring the maximum warm rate with {probe:,} pre-produced records")
            await wait_for_records(bench.bootstrap, [topics.enriched, topics.dlq], probe,
                                   worker=worker)
            log("probe records processed")
            span = await timestamp_span(bench.bootstrap, topics.enriched, expect=probe)
            max_rate = span.rate
            print(f"maximum warm rate: {max_rate:,.0f} records/s ({span.count:,} records in "
                  f"{span.seconds:.2f} s)")
        else:
            max_rate = args.max_rate
            print(f"maximum warm rate: {max_rate:,.0f} records/s (given by --max-rate)")
        rate = max_rate * args.fraction
        n = int(rate * args.duration)
        messages = encoded(bench_records(cache.tracks, n, start=probe))
        log(f"producing {n:,} records at {rate:,.0f}/s for {args.duration:.0f} s")
        sent, elapsed = await paced_produce(bench.bootstrap, topics.raw, messages, rate)
        total = await wait_for_records(bench.bootstrap, [topics.enriched, topics.dlq],
                                       probe + sent, worker=worker, stall_s=30)
        report = await sim.report()
        enriched = await timestamp_span(bench.bootstrap, topics.enriched, expect=total)
        values, unmatched = await latencies(bench.bootstrap, topics.raw, topics.enriched,
                                            first_seq=probe, raw_count=probe + sent,
                                            enriched_count=enriched.count)
        print(f"paced run: {sent:,} records in {elapsed:.1f} s = {sent / elapsed:,.0f}/s "
              f"({args.fraction:g} x the maximum); provider requests meanwhile {calls(report)}; "
              f"{unmatched} records without an enriched output")
        if not values:
            print("no latencies measured")
            return
        print("\nlatency = enriched CreateTime - raw CreateTime, ms")
        print(table(("records", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"),
                    [(len(values), nearest_rank(values, 0.5), nearest_rank(values, 0.9),
                      nearest_rank(values, 0.99), values[-1], sum(values) / len(values))]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="End-to-end p50/p99 latency on the warm path at a fraction of the max rate.")
    parser.add_argument("--duration", type=float, default=30, help="seconds of paced traffic")
    parser.add_argument("--max-rate", type=float, default=None,
                        help="the worker's maximum warm records/s (e.g. from throughput_bench.py); "
                             "measured first when omitted")
    parser.add_argument("--fraction", type=float, default=0.5, help="share of the maximum rate")
    parser.add_argument("--probe-records", type=int, default=30_000,
                        help="records of the maximum-rate measurement")
    parser.add_argument("--tracks", type=int, default=2000,
                        help="distinct catalog tracks the records are drawn from (and warmed)")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of every topic")
    parser.add_argument("--seed", type=int, default=0, help="simulator catalog seed")
    add_common_options(parser)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
