"""``make demo``: the whole pipeline on this machine, from raw tracks to enriched ones.

Brings up Kafka and Redis (the local stack), the provider simulator with a generated catalog,
and one worker; produces about 200 tracks the way scrapers publish them (noisy names, some
unknown tracks, some invalid records); waits until every one is enriched or dead-lettered; prints
what happened; and shuts down what it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from trackflow.agents.deadletter import error_facts
from trackflow.providers.simulator.generate import generate_catalog
from trackflow.schemas.codec import AVRO_CONTENT_TYPE, JSON_CONTENT_TYPE, decode, encode
from trackflow.streams.ingest import stable_track_id
from trackflow.streams.kafka_io import start_producer
from trackflow.streams.kafka_security import aiokafka_client_kwargs
from trackflow.streams.settings import KafkaSettings, load_settings
from trackflow.streams.stack import StackInfo, down, ensure_running

REPO = Path(__file__).resolve().parents[2]
TRACKFLOW = str(Path(sys.executable).with_name("trackflow"))
CATALOG_SIZE, CATALOG_SEED = 600, 7
console = Console()

# The real limits, 20 times faster, so the demo takes seconds rather than minutes; the worker is
# told the same rates and paces itself to them (the simulator reports any excess).
SIM_LIMITS = {"musicbrainz": (20, 1.0), "spotify": (3600, 30.0), "deezer": (1000, 5.0),
              "lastfm": (100, 1.0), "discogs": (1200, 60.0)}


def sim_config() -> str:
    return "\n".join(
        f"[providers.{name}]\nrate_limit = {limit}\nrate_window_s = {window}\n"
        'latency = { dist = "uniform", min_ms = 20, max_ms = 80 }\n'
        for name, (limit, window) in SIM_LIMITS.items())


def noisy(artist: str, title: str, rng: random.Random) -> tuple[str, str]:
    """What a scraper makes of a track name."""
    roll = rng.random()
    if roll < 0.2:
        return artist.lower(), title.upper()
    if roll < 0.3 and " feat. " in artist:
        main, feat = artist.split(" feat. ", 1)
        return main, f"{title} (feat. {feat})"
    if roll < 0.4 and "(" not in title:
        return artist, f"{title} - Radio Edit" if rng.random() < 0.5 else f"{title} (Original Mix)"
    return artist, title


def sample(rng: random.Random) -> tuple[list[tuple[bytes | None, bytes, list[Any]]], int]:
    """About 200 records: catalog tracks with noise, unknown tracks, invalid records."""
    records: list[tuple[bytes | None, bytes, list[Any]]] = []
    seen: set[str] = set()
    for t in generate_catalog(CATALOG_SIZE, CATALOG_SEED).tracks:
        if len(records) >= 180:
            break
        artist, title = noisy(t.artist, t.title, rng)
        tid = stable_track_id(t.artist, t.title)
        if tid in seen:
            continue
        seen.add(tid)
        raw: dict[str, Any] = {"track_id": tid, "artist": artist, "title": title,
               "duration_ms": t.duration_ms + rng.randint(-2000, 2000) if rng.random() < 0.8
               else None, "source": "demo", "attributes": {}}
        records.append(_avro(raw))
    for i in range(10):  # tracks no provider knows
        raw = {"track_id": f"demo-unknown-{i}", "artist": f"Garage Band {i}",
               "title": f"Basement Tape {i}", "source": "demo", "attributes": {}}
        records.append(_avro(raw))
    bad = {"track_id": "demo-bad", "artist": "Someone", "title": "Something", "attributes": {}}
    invalid: list[tuple[bytes | None, bytes, list[Any]]] = [
        (b"demo-invalid-isrc", encode("RawTrack", _full({**bad, "isrc": "NOT-AN-ISRC"})),
         [("content-type", AVRO_CONTENT_TYPE.encode())]),
        (b"demo-empty-title", json.dumps({**bad, "title": "  "}).encode(),
         [("content-type", JSON_CONTENT_TYPE.encode())]),
        (b"demo-no-title", json.dumps({"track_id": "x", "artist": "A"}).encode(),
         [("content-type", JSON_CONTENT_TYPE.encode())]),
        (b"demo-control-chars", encode("RawTrack", _full({**bad, "title": "Bad\x07Title"})),
         [("content-type", AVRO_CONTENT_TYPE.encode())]),
        (b"demo-huge-artist", encode("RawTrack", _full({**bad, "artist": "x" * 10_000})),
         [("content-type", AVRO_CONTENT_TYPE.encode())]),
        (b"demo-garbage", os.urandom(64), []),
        (b"demo-short-duration", encode("RawTrack", _full({**bad, "duration_ms": 10})),
         [("content-type", AVRO_CONTENT_TYPE.encode())]),
    ]
    return records + invalid, len(invalid)


def _full(raw: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {"isrc": None, "duration_ms": None, "album": None, "spotify_id": None,
                            "source": None, "source_ref": None, "observed_at": None,
                            "attributes": {}}
    return {**base, **raw}


def _avro(raw: dict[str, Any]) -> tuple[bytes, bytes, list[Any]]:
    return (raw["track_id"].encode(), encode("RawTrack", _full(raw)),
            [("content-type", AVRO_CONTENT_TYPE.encode())])


def start(argv: list[str], env: dict[str, str], log: Path,
          stdout: Any = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, cwd=REPO, stdout=stdout or log.open("ab"),
                            stderr=log.open("ab"), start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def end_offsets(kafka: KafkaSettings, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**aiokafka_client_kwargs(kafka))
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # the worker just created the topics
        tps = [TopicPartition(t, p) for t in topics
               for p in (consumer.partitions_for_topic(t) or set())]
        consumer.assign(tps)
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def read_from(kafka: KafkaSettings, start_at: dict[TopicPartition, int], keys: set[bytes],
                    wait_s: float) -> tuple[list[Any], list[Any]]:
    """Records after ``start_at`` until every key is enriched or dead-lettered."""
    consumer = AIOKafkaConsumer(**aiokafka_client_kwargs(kafka))
    await consumer.start()
    enriched: list[Any] = []
    dead: list[Any] = []
    try:
        consumer.assign(list(start_at))
        for tp, offset in start_at.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                (enriched if tp.topic == "tracks.enriched" else dead).extend(msgs)
            done = {m.key for m in enriched} | {m.key for m in dead}
            if keys <= done:
                break
    finally:
        await consumer.stop()
    return enriched, dead


def metric_sums(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def report(enriched: list[Any], dead: list[Any], produced: int, metrics_text: str,
           sim_report: dict[str, Any], elapsed: float) -> None:
    values = {m.key: decode("EnrichedTrack", m.value) for m in enriched}
    table = Table(title="A few enriched tracks (field <- provider, confidence)")
    for col in ("input", "isrc", "bpm", "label", "genres", "filled by"):
        table.add_column(col, overflow="fold")
    for v in list(values.values())[:6]:
        sources = v["sources"]
        table.add_row(f"{v['input']['artist']} - {v['input']['title']}", v["isrc"] or "-",
                      f"{v['bpm']:.1f}" if v["bpm"] else "-", v["label"] or "-",
                      ", ".join(v["genres"][:2]) or "-",
                      ", ".join(sorted({s["provider"] for s in sources.values()})))
    console.print(table)
    statuses = Counter(v["status"] for v in values.values())
    reasons = Counter((error_facts(m.headers).get("__connect.errors.stage", "?"),
                       error_facts(m.headers).get("trackflow.errors.reason", "?"))
                      for m in dead)
    summary = Table(title=f"{produced} records in {elapsed:.0f} s")
    summary.add_column("outcome")
    summary.add_column("records", justify="right")
    summary.add_row("enriched, complete", str(statuses["complete"]))
    summary.add_row("enriched, partial", str(statuses["partial"]))
    for (stage, reason), n in reasons.most_common():
        summary.add_row(f"dead-lettered: {stage} / {reason}", str(n))
    console.print(summary)
    m = metric_sums(metrics_text)
    hits = sum(v for (n, labels), v in m.items()
               if n == "trackflow_cache_requests_total" and ("result", "hit") in labels)
    misses = sum(v for (n, labels), v in m.items()
                 if n == "trackflow_cache_requests_total" and ("result", "miss") in labels)
    calls = Table(title="Provider calls (simulator's count) and limits")
    for col in ("provider", "calls", "most in one window", "limit", "violations"):
        calls.add_column(col, justify="right")
    for name, r in sim_report.items():
        calls.add_row(name, str(r["requests"]), str(r["max_in_window"]),
                      f"{r['limit']} per {r['window_s']:g} s", str(r["violations"]))
    console.print(calls)
    ratio = hits / (hits + misses) if hits + misses else 0.0
    console.print(f"cache: {hits:.0f} hits, {misses:.0f} misses (hit rate {ratio:.0%}); "
                  "every track is new to this run, so hits are lookups shared between tracks")


def stack_or_env() -> tuple[str, str, StackInfo | None]:
    """Kafka and Redis from KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when both are set, else the local
    stack; the StackInfo is returned only when this run started the stack, so it stops it."""
    env_kafka, env_redis = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("REDIS_URL")
    if env_kafka and env_redis:
        return env_kafka, env_redis, None
    info, started = ensure_running()
    # One variable alone still overrides its half, as it did for the test suite's lookup.
    return (env_kafka or info.bootstrap_servers, env_redis or info.redis_url,
            info if started else None)


async def main() -> int:
    bootstrap, redis_url, started_stack = await asyncio.to_thread(stack_or_env)
    procs: list[subprocess.Popen[bytes]] = []
    workdir = Path(tempfile.mkdtemp(prefix="trackflow-demo-"))
    try:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": redis_url}
        cfg = workdir / "sim.toml"
        cfg.write_text(sim_config())
        console.print(f"[bold]simulator[/] with a generated catalog of {CATALOG_SIZE} tracks")
        sim = start([TRACKFLOW, "simulate", "--size", str(CATALOG_SIZE), "--seed",
                     str(CATALOG_SEED), "--config", str(cfg)], env, workdir / "sim.log",
                    stdout=subprocess.PIPE)
        procs.append(sim)
        assert sim.stdout is not None
        for _ in range(11):
            key, _, value = sim.stdout.readline().decode().removeprefix("export ").strip() \
                .partition("=")
            env[key] = value.strip("'\"")
        for name, (limit, window) in SIM_LIMITS.items():
            env[f"TRACKFLOW_PROVIDERS__{name.upper()}__RATE"] = str(limit / window)
            env[f"TRACKFLOW_PROVIDERS__{name.upper()}__WINDOW_S"] = str(window)
        env["TRACKFLOW_WORKER__DATA_DIR"] = str(workdir / "worker")
        env["TRACKFLOW_WORKER__WEB_PORT"] = str(web_port := free_port())
        env["TRACKFLOW_CACHE__NAMESPACE"] = f"demo-{uuid.uuid4().hex[:8]}"
        console.print("[bold]worker[/] starting (creates the topics, joins the group)")
        worker = start([TRACKFLOW, "worker", "-l", "warning"], env, workdir / "worker.log")
        procs.append(worker)
        if not await wait_ready(web_port, worker, workdir):
            return 1
        kafka = load_settings(env=env).kafka
        start_at = await end_offsets(kafka,
                                     ["tracks.enriched", "tracks.dlq"])
        records, invalid = sample(random.Random(1))
        producer = await start_producer(kafka)
        try:
            for rec_key, rec_value, rec_headers in records:
                await producer.send("tracks.raw", value=rec_value, key=rec_key, headers=rec_headers)
            await producer.flush()
        finally:
            await producer.stop()
        began = time.monotonic()
        console.print(f"[bold]produced[/] {len(records)} records to tracks.raw "
                      f"({invalid} of them invalid on purpose); enriching...")
        keys = {k for k, _, _ in records if k is not None}
        enriched, dead = await read_from(kafka, start_at, keys, 180)
        elapsed = time.monotonic() - began
        async with httpx.AsyncClient(timeout=5) as client:
            metrics_text = (await client.get(f"http://127.0.0.1:{web_port}/metrics")).text
            sim_report = (await client.get(env["TRACKFLOW_SIMULATOR_URL"]
                                           + "/_sim/report")).json()
        report(enriched, dead, len(records), metrics_text, sim_report, elapsed)
        missing = keys - {m.key for m in enriched} - {m.key for m in dead}
        if missing:
            console.print(f"[red]{len(missing)} records not accounted for after 180 s[/]")
            return 1
        return 0
    finally:
        for proc in reversed(procs):
            stop(proc)
        if started_stack is not None:
            down(state_dir=started_stack.state_dir)
            console.print("local stack stopped")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(web_port: int, worker: subprocess.Popen[bytes], workdir: Path) -> bool:
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                break
            try:
                if (await client.get(f"http://127.0.0.1:{web_port}/metrics")).status_code == 200:
                    await asyncio.sleep(5)  # let the group settle before producing
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    log = (workdir / "worker.log").read_text()[-3000:]
    console.print(f"[red]worker did not start[/]; its log:\n{log}")
    return False


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
