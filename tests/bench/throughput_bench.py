"""Throughput of the trackflow worker against a plain aiokafka consume -> produce loop.

    python tests/bench/throughput_bench.py [--records N] [--partitions P]
                                           [--mode skeleton|warm|both|faust|peer|all]
                                           [--tracks T]

The same N RawTrack records (Avro, about 300 bytes, key = track_id, drawn in turn from T distinct
catalog tracks) are produced once to one raw topic on the local broker, then read by:

- plain loop: one AIOKafkaConsumer (own group, getmany, manual commit about every second) and one
  AIOKafkaProducer (acks=all, linger 5 ms, as the worker's) in this process, doing per record the
  worker's own non-provider work: decode the Avro, validate, build the EnrichedTrack, encode it,
  send it; each batch's sends are awaited before the next batch;
- skeleton: a `trackflow worker` with no provider stages (TRACKFLOW_WATERFALL__ORDER='[]');
- faust (only with --mode faust or all): faust_passthrough.py, a Faust app with the worker's
  consumer and producer settings whose agent passes every record through unchanged; Faust's
  own ceiling on this machine, with none of the work above;
- peer (only with --mode peer or all): quix_peer.py, the warm path written with quixstreams in
  a virtualenv of its own (.venv-peer, made on first use): decode, validate, look the track up
  in an in-memory cache of the warm-up's results, build the same EnrichedTrack, encode, produce
  with acks=all, commit every second;
- warm: a `trackflow worker` with all five providers, its cache namespace warmed beforehand by a
  worker run over the T tracks, so every provider lookup is a cache hit (the simulator's request
  counts during the measured run are printed to show it).

Each run's time is the span of the CreateTime stamps of its output topic (first to last output
record; the producer sets CreateTime at send), so worker start-up is not counted; records/s is
(outputs - 1) / span. Beside it, the CPU each process (all its threads) spent per record from
its first output to its last, and over the second half of its outputs alone (after the warm
worker has seen every track once): on a machine shared with other load, rates move with that
load, CPU per record much less. A script, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    NO_PROVIDERS,
    WARMUP_LIMITS,
    Bench,
    Cpu,
    Span,
    add_common_options,
    bench_records,
    calls,
    catalog_size,
    catalog_tracks,
    encoded,
    log,
    mean_size,
    measure_cpu,
    read_all,
    table,
    timestamp_span,
    warm_cache,
    warm_env,
)

from tests.integration.harness import (
    TopicNames,
    create_topics,
    free_port,
    kafka_kwargs,
    metric_value,
    produce,
    scrape,
)
from trackflow.schemas.codec import encode
from trackflow.streams.schema_registry import register_schemas, subject
from trackflow.streams.settings import KafkaSettings
from trackflow.streams.stack.config import READY_TIMEOUT_S, REGISTRY_API, registry_home
from trackflow.streams.stack.prerequisites import ensure_registry, find_java
from trackflow.streams.stack.processes import (
    registry_answers,
    registry_marker,
    start_registry,
    stop_process,
    wait_ready,
)

TARGET_WARM_RATIO = 0.6
"""The warm worker's records/s against Faust's pass-through in the same run."""
ROOT = Path(__file__).resolve().parents[2]
PEER_VENV = ROOT / ".venv-peer"


def peer_python() -> Path:
    """The peer's interpreter; its virtualenv is made on first use (quixstreams and trackflow
    itself, so the peer runs the same codec and record code)."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        log(f"making {PEER_VENV} for the quixstreams peer (once)")
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r",
                        str(ROOT / "tests/bench/peer-requirements.txt"), "-e", str(ROOT)],
                       check=True)
    return python


def write_peer_cache(path: Path, results: dict[str, dict[str, Any]]) -> None:
    """The warm-up's results as the peer's in-memory cache: per track the filled fields with
    their provenance and the stage outcomes, what the worker's result cache holds."""
    out = {tid: {"filled": {f: [rec[f], src["provider"], src["confidence"]]
                            for f, src in rec["sources"].items()},
                 "outcomes": rec["providers"]}
           for tid, rec in results.items()}
    path.write_text(json.dumps(out))


def start_peer(python: Path, env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    with (workdir / "quix-peer.log").open("wb") as out:
        return subprocess.Popen([str(python), str(Path(__file__).with_name("quix_peer.py"))],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)


async def peer_run(bench: Bench, raw: str, n: int, partitions: int,
                   results: dict[str, dict[str, Any]]) -> tuple[Span, Cpu]:
    """Run quix_peer.py on ``raw`` until it has published ``n`` records; its span and CPU
    microseconds per record."""
    python = await asyncio.to_thread(peer_python)
    topics = await bench.topics(partitions, raw=raw)
    cache_file = bench.workdir / "peer-cache.json"
    write_peer_cache(cache_file, results)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bench.bootstrap, "BENCH_SOURCE": raw,
           "BENCH_SINK": topics.enriched, "BENCH_GROUP": topics.group, "BENCH_COUNT": str(n),
           "BENCH_CACHE": str(cache_file)}
    proc = start_peer(python, env, bench.workdir)
    try:
        _, cpu = await measure_cpu(proc.pid, bench.bootstrap, [topics.enriched], n)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
    await report_parity(bench, topics.enriched, results)
    return await timestamp_span(bench.bootstrap, topics.enriched, expect=n), cpu


async def report_parity(bench: Bench, topic: str, results: dict[str, dict[str, Any]],
                        sample: int = 2000) -> None:
    """Print how many of the peer's first records equal what the worker published for the
    same track (all but ``enriched_at``): the peer must do the same work to be a fair peer."""
    from trackflow.schemas.codec import decode

    same, differ = 0, Counter[str]()
    out = await read_all(bench.bootstrap, topic, expect=sample)
    for m in out:
        peer = decode("EnrichedTrack", m.value)
        worker = results.get(peer["track_id"], {})
        # The input (its attributes and observed_at vary per record) and the time are the
        # record's own; everything the enrichment decided must be the same.
        keys = [k for k in peer if k not in ("enriched_at", "input", "attempt")
                and peer[k] != worker.get(k)]
        same += not keys
        differ.update(keys)
    print(f"quixstreams peer: {same:,} of {len(out):,} records sampled equal the worker's "
          f"output for the same track (input and enriched_at aside); differing fields: "
          f"{dict(differ) or 'none'}")


async def plain_loop(bootstrap: str, raw_topic: str, out_topic: str, group: str, n: int
                     ) -> tuple[float, float]:
    """Consume ``n`` records, enrich them without providers, produce them; return the seconds
    from the first record read to the last record acknowledged, and the CPU microseconds per
    record this process spent meanwhile."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from trackflow.agents.deadletter import attempt_of
    from trackflow.agents.records import build_enriched, validate_raw
    from trackflow.schemas.codec import AVRO_CONTENT_TYPE, CONTENT_TYPE, decode_raw_track, encode
    from trackflow.streams.settings import Settings

    targets = Settings().waterfall.targets
    out_headers = [(CONTENT_TYPE, AVRO_CONTENT_TYPE.encode())]
    consumer = AIOKafkaConsumer(raw_topic, **kafka_kwargs(bootstrap), group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        done, first_read, first_cpu, last_commit = 0, 0.0, 0.0, time.monotonic()
        deadline = time.monotonic() + 600
        while done < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            if not batch:
                continue
            if not first_read:
                first_read, first_cpu = time.monotonic(), time.process_time()
            futures = []
            for msgs in batch.values():
                for msg in msgs:
                    headers = list(msg.headers or ())
                    raw = validate_raw(decode_raw_track(msg.value, headers))
                    record = build_enriched(raw, attempt=attempt_of(headers),
                                            enriched_at_ms=int(time.time() * 1000),
                                            targets=targets)
                    futures.append(await producer.send(
                        out_topic, key=raw["track_id"].encode(),
                        value=encode("EnrichedTrack", record), headers=out_headers))
            await asyncio.gather(*futures)
            done += len(futures)
            if time.monotonic() - last_commit >= 1.0:
                await consumer.commit()
                last_commit = time.monotonic()
        last_ack, cpu = time.monotonic(), time.process_time() - first_cpu
        await consumer.commit()
        return last_ack - first_read, cpu / done * 1e6
    finally:
        await producer.stop()
        await consumer.stop()


async def worker_run(bench: Bench, raw: str, n: int, partitions: int, env: dict[str, str],
                     name: str) -> tuple[Span, int, str, Cpu]:
    """Start a worker on the pre-produced ``raw`` topic; return its output span, its dead
    letters, its metrics text (scraped before it is stopped) and its CPU microseconds per
    record."""
    topics = await bench.topics(partitions, raw=raw)
    worker = bench.worker(topics, partitions=partitions, env=env, name=name)
    await worker.wait_ready()
    log(f"{name}: worker ready, processing {n:,} records")
    outputs = [topics.enriched, topics.dlq]
    total, cpu = await measure_cpu(worker.proc.pid, bench.bootstrap, outputs, n, worker=worker)
    metrics = await scrape(worker.web_port)
    bench.stop_worker(worker)
    dlq = total - int(metric_value(metrics, "trackflow_enriched_total") or 0)
    span = await timestamp_span(bench.bootstrap, topics.enriched, expect=total - dlq)
    return span, dlq, metrics, cpu


def bench_registry(bench: Bench) -> str:
    """A schema registry of this run's own, started as the local stack starts one; stopped
    with the bench."""
    state = bench.workdir / "registry-stack"
    port = free_port()
    pid = start_registry(state, port, find_java(), ensure_registry(registry_home()))
    url = f"http://127.0.0.1:{port}{REGISTRY_API}"
    bench.on_close(lambda: stop_process(pid, registry_marker(port), "schema registry", 10.0))
    wait_ready("the schema registry", lambda: registry_answers(url), pid, registry_marker(port),
               [state / "registry" / "registry.out"], READY_TIMEOUT_S)
    return url


def start_passthrough(bench: Bench, raw: str, sink: str, group: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_SOURCE": raw, "BENCH_SINK": sink, "BENCH_GROUP": group,
           "BENCH_WEB_PORT": str(free_port())}
    with (bench.workdir / "faust-passthrough.log").open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("faust_passthrough.py")), "worker",
             "-l", "warn"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=bench.workdir)


async def passthrough_run(bench: Bench, raw: str, n: int, partitions: int
                          ) -> tuple[Span, Cpu]:
    """Run faust_passthrough.py on ``raw`` until it has passed ``n`` records on; its span and
    CPU microseconds per record."""
    topics = await bench.topics(partitions, raw=raw)
    proc = start_passthrough(bench, raw, topics.enriched, topics.group)
    try:
        _, cpu = await measure_cpu(proc.pid, bench.bootstrap, [topics.enriched], n)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
    return await timestamp_span(bench.bootstrap, topics.enriched, expect=n), cpu


def cache_line(metrics: str) -> str:
    parts = []
    for level in ("lru", "redis"):
        hits = metric_value(metrics, "trackflow_cache_requests_total", level=level,
                            result="hit") or 0
        misses = metric_value(metrics, "trackflow_cache_requests_total", level=level,
                              result="miss") or 0
        parts.append(f"{level} hits {hits:,.0f} misses {misses:,.0f}")
    inflight = metric_value(metrics, "trackflow_cache_requests_total", level="inflight",
                            result="hit") or 0
    parts.append(f"coalesced {inflight:,.0f}")
    results = []
    for level in ("process", "redis"):
        for result in ("hit", "miss"):
            count = metric_value(metrics, "trackflow_result_cache_requests_total", level=level,
                                 result=result) or 0
            results.append(f"{level} {result} {count:,.0f}")
    parts.append(f"results: {', '.join(results)}")
    return "; ".join(parts)


async def main(args: argparse.Namespace) -> None:
    modes = {"both": ["skeleton", "warm"], "all": ["faust", "skeleton", "warm", "peer"],
             "warm+registry": ["warm", "registry", "warm", "registry"]}.get(args.mode,
                                                                            [args.mode])
    n, p = args.records, args.partitions
    async with Bench("throughput", keep_logs=args.keep_logs,
                     stack_dir=args.stack_dir) as bench:
        print(__doc__.split("\n\n", 2)[2].strip())
        print(f"\nrun: {n:,} records, {p} partitions, modes {', '.join(modes)}; "
              f"{bench.describe()}")
        tracks = catalog_tracks(args.tracks, args.seed)
        cache = sim = None
        if {"warm", "registry", "peer"} & set(modes):
            sim = bench.simulator(WARMUP_LIMITS, latency_ms=(5, 20),
                                  size=catalog_size(args.tracks), seed=args.seed)
            log(f"warming the cache with {len(tracks):,} tracks")
            cache = await warm_cache(bench, sim, tracks, partitions=p)
            print(f"warm-up: {len(tracks):,} distinct tracks in {cache.seconds:.1f} s, "
                  f"{len(cache.tracks):,} published with every stage answered "
                  f"({cache.dead_lettered} dead-lettered and {cache.failed_stage} with a failed "
                  f"stage left out), "
                  f"provider calls {cache.calls}")
            tracks = cache.tracks
        raw_records = bench_records(tracks, n)
        records = encoded(raw_records)
        base = TopicNames.unique(f"{bench.run_id}-plain")
        await create_topics(bench.bootstrap, [base.raw, base.enriched], p)
        log(f"producing {n:,} records to {base.raw}")
        started = time.monotonic()
        await produce(bench.bootstrap, base.raw, records)
        print(f"records: {n:,} from {len(tracks):,} distinct tracks, mean value "
              f"{mean_size(records):.0f} bytes, produced in {time.monotonic() - started:.1f} s")

        registry_url = confluent_raw = None
        if "registry" in modes:
            registry_url = bench_registry(bench)
            confluent_raw = f"{base.raw}-confluent"
            await create_topics(bench.bootstrap, [confluent_raw], p)
            kafka = KafkaSettings(bootstrap_servers=bench.bootstrap,
                                  schema_registry={"url": registry_url})
            wire = await register_schemas(kafka, {subject(confluent_raw): "RawTrack"})
            framed = [(k, encode("RawTrack", r, wire=wire), h)
                      for (k, _, h), r in zip(records, raw_records, strict=True)]
            log(f"producing the same {n:,} records in the Confluent wire format")
            await produce(bench.bootstrap, confluent_raw, framed)

        rows = []
        cpu: dict[str, Cpu] = {}
        log("plain loop")
        wall, plain_cpu = await plain_loop(bench.bootstrap, base.raw, base.enriched, base.group,
                                           n)
        cpu["plain aiokafka loop"] = (plain_cpu, None)
        plain = await timestamp_span(bench.bootstrap, base.enriched, expect=n)
        print(f"plain loop: {wall:.2f} s from first record read to last acknowledged "
              f"({(n / wall):,.0f} records/s by that clock)")
        rows.append(("plain aiokafka loop", plain.count, plain.seconds, plain.rate, 1.0))
        for mode in modes:
            if mode == "faust":
                log("faust pass-through")
                span, cpu["faust pass-through"] = await passthrough_run(bench, base.raw, n, p)
                rows.append(("faust pass-through", span.count, span.seconds, span.rate,
                             span.rate / plain.rate if plain.rate else 0.0))
                continue
            if mode == "peer":
                assert cache is not None
                log("quixstreams peer")
                span, cpu["quixstreams peer (warm)"] = await peer_run(bench, base.raw, n, p,
                                                                      cache.results)
                rows.append(("quixstreams peer (warm)", span.count, span.seconds, span.rate,
                             span.rate / plain.rate if plain.rate else 0.0))
                continue
            source = base.raw
            if mode == "skeleton":
                env = dict(NO_PROVIDERS)
            else:
                assert sim is not None and cache is not None
                await sim.reset()
                env = warm_env(sim, cache)
            if mode == "registry":
                assert registry_url is not None and confluent_raw is not None
                env["SCHEMA_REGISTRY_URL"] = registry_url
                source = confluent_raw
            name = "worker warm, Confluent wire format" if mode == "registry" else f"worker {mode}"
            if name in cpu:  # warm+registry runs each twice, alternating
                name += " (2)"
            log(name)
            span, dlq, metrics, cpu[name] = await worker_run(bench, source, n, p, env, mode)
            rows.append((name, span.count, span.seconds, span.rate,
                         span.rate / plain.rate if plain.rate else 0.0))
            if dlq:
                print(f"worker {mode}: {dlq} records dead-lettered (not counted above)")
            if mode in ("warm", "registry"):
                assert sim is not None
                report = await sim.report()
                tokens = report.get("spotify", {}).get("token_requests", 0)
                print(f"worker warm: provider requests during the measured run {calls(report)} "
                      f"(+{tokens} Spotify token requests, not cacheable); "
                      f"cache {cache_line(metrics)}")
        print("\nrecords/s = (outputs - 1) / (last - first output CreateTime); CPU us/record = "
              "user + system CPU of the process (all threads) from its first output to its "
              "last, per record; 2nd half: the same over the second half of the outputs only")
        by_name = {r[0]: r[3] for r in rows}
        faust_rate = by_name.get("faust pass-through")
        peer_rate = by_name.get("quixstreams peer (warm)")
        header = ["mode", "records", "seconds", "records/s", "ratio to plain loop"]
        if faust_rate:
            header.append("ratio to faust")
        if peer_rate:
            header.append("ratio to peer")
        header += ["CPU us/record", "2nd half"]
        full = [(*r, *([r[3] / faust_rate] if faust_rate else []),
                 *([r[3] / peer_rate] if peer_rate else []),
                 *(f"{c:.0f}" if c is not None else "-" for c in cpu.get(r[0], (None, None))))
                for r in rows]
        print(table(tuple(header), full))
        warm_rate = by_name.get("worker warm")
        framed_rates = [r for name, r in by_name.items() if "Confluent" in name]
        if warm_rate and framed_rates:
            warm_rates = [r for name, r in by_name.items()
                          if name.startswith("worker warm") and "Confluent" not in name]
            ratio = (sum(framed_rates) / len(framed_rates)) / (sum(warm_rates) / len(warm_rates))
            print(f"\nConfluent wire format / single-object, warm worker (mean of the runs): "
                  f"{ratio:.3f} (target >= 0.97)")
        if warm_rate and faust_rate:
            ratio = warm_rate / faust_rate
            verdict = "meets" if ratio >= TARGET_WARM_RATIO else "misses"
            print(f"\nwarm / faust pass-through {ratio:.3f} {verdict} the target "
                  f">= {TARGET_WARM_RATIO}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Records/s of the trackflow worker vs a plain aiokafka loop, same broker.")
    parser.add_argument("--records", type=int, default=100_000, help="records per run")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of every topic")
    parser.add_argument("--mode", choices=("skeleton", "warm", "both", "faust", "peer", "all",
                                           "registry", "warm+registry"),
                        default="both",
                        help="worker without providers, with a warm cache, both, Faust's "
                             "pass-through ceiling, the quixstreams peer, or all of them")
    parser.add_argument("--tracks", type=int, default=2000,
                        help="distinct catalog tracks the records are drawn from (and warmed)")
    parser.add_argument("--seed", type=int, default=0, help="simulator catalog seed")
    add_common_options(parser)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
