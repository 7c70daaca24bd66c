"""Processes and Kafka helpers for integration tests (real broker, real worker processes)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from trackflow.providers.specs import PROVIDER_NAMES
from trackflow.streams.kafka_io import seek_to

REPO = Path(__file__).resolve().parents[2]
TRACKFLOW = str(Path(sys.executable).with_name("trackflow"))


LOOPBACK_ONLY_URLS = (
    "TRACKFLOW_MUSICBRAINZ_URL", "TRACKFLOW_SPOTIFY_API_URL", "TRACKFLOW_SPOTIFY_ACCOUNTS_URL",
    "TRACKFLOW_DEEZER_URL", "TRACKFLOW_LASTFM_URL", "TRACKFLOW_DISCOGS_URL",
)


def kafka_kwargs(bootstrap: str) -> dict[str, Any]:
    """``bootstrap_servers`` plus the security the environment configures (``[kafka.security]``
    and the SASL login), so tests and benchmarks run against a secured cluster too."""
    from trackflow.streams.kafka_security import aiokafka_client_kwargs
    from trackflow.streams.settings import load_settings

    kafka = load_settings().kafka.model_copy(update={"bootstrap_servers": bootstrap})
    return aiokafka_client_kwargs(kafka)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TopicNames:
    """One test's own topics and consumer group."""

    prefix: str
    raw: str
    enriched: str
    dlq: str
    parked: str
    group: str

    @classmethod
    def unique(cls, prefix: str) -> TopicNames:
        return cls(prefix, f"{prefix}.raw", f"{prefix}.enriched", f"{prefix}.dlq",
                   f"{prefix}.dlq.parked", f"{prefix}-group")

    def env(self) -> dict[str, str]:
        return {
            "TRACKFLOW_KAFKA__RAW_TOPIC": self.raw,
            "TRACKFLOW_KAFKA__ENRICHED_TOPIC": self.enriched,
            "TRACKFLOW_KAFKA__DLQ_TOPIC": self.dlq,
            "TRACKFLOW_KAFKA__PARKED_TOPIC": self.parked,
            "TRACKFLOW_KAFKA__CONSUMER_GROUP": self.group,
            # Each test starts with a cold cache, whatever earlier runs left in Redis.
            "TRACKFLOW_CACHE__NAMESPACE": self.prefix,
        }


class WorkerProcess:
    """A ``trackflow worker`` subprocess with its log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, web_port: int,
                 argv: list[str], env: dict[str, str]) -> None:
        self.proc, self.log, self.web_port = proc, log, web_port
        self._argv, self._env = argv, env

    @classmethod
    def start(cls, workdir: Path, topics: TopicNames, *, partitions: int,
              extra_env: dict[str, str]) -> WorkerProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        web_port = free_port()
        env = {
            **os.environ, **topics.env(),
            "TRACKFLOW_KAFKA__PARTITIONS": str(partitions),
            "TRACKFLOW_KAFKA__SESSION_TIMEOUT_S": "6",
            "TRACKFLOW_WORKER__WEB_PORT": str(web_port),
            "TRACKFLOW_WORKER__DATA_DIR": str(workdir / "data"),
            # Tests talk to loopback only: providers point at a closed port unless a test
            # passes the simulator's variables.
            **dict.fromkeys(LOOPBACK_ONLY_URLS, "http://127.0.0.1:9/closed"),
            **extra_env,
        }
        argv = [TRACKFLOW, "worker", "-l", "info"]
        log = workdir / "worker.log"
        proc = cls._spawn(argv, env, log)
        return cls(proc, log, web_port, argv, env)

    @staticmethod
    def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        out = log.open("ab")
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=REPO, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def env_vars(self) -> dict[str, str]:
        """The environment the worker runs with (for CLI commands against the same topics)."""
        return dict(self._env)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until the worker has joined its group and started its agents."""
        deadline = time.monotonic() + timeout
        seen = len(self.log_text())
        while time.monotonic() < deadline:
            text = self.log_text()
            if "Worker]: Ready" in text[seen:] or ("Worker]: Ready" in text and seen == 0):
                return
            if not self.alive():
                raise AssertionError(f"worker exited early:\n{text[-3000:]}")
            await asyncio.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout} s:\n{self.log_text()[-3000:]}")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def restart(self) -> None:
        assert not self.alive()
        self.proc = self._spawn(self._argv, self._env, self.log)

    def stop(self) -> None:
        stop_group(self.proc)


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """SIGTERM a process started in a session of its own and its children; SIGKILL them when
    they are not gone after ``grace_s``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


class SimulatorProcess:
    """``trackflow simulate`` in a subprocess; ``env`` holds the variables it printed."""

    def __init__(self, proc: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        self.proc, self.env = proc, env

    @classmethod
    def start(cls, log: Path, *args: str) -> SimulatorProcess:
        proc = subprocess.Popen([TRACKFLOW, "simulate", *args], stdout=subprocess.PIPE,
                                stderr=log.open("ab"), cwd=REPO, start_new_session=True)
        env: dict[str, str] = {}
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline().decode()
            if not line.startswith("export "):
                break
            key, _, value = line[len("export "):].strip().partition("=")
            env[key] = value.strip("'\"")
            if "TRACKFLOW_SIMULATOR_URL" in env and len(env) >= 11:
                break
        if not env:
            proc.kill()
            raise AssertionError(f"simulator printed no export lines:\n{log.read_text()}")
        return cls(proc, env)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a test's own, and the changelogs
    its workers created). Left in place, a broker reused run after run holds thousands of
    partitions, and every start of it loads them all."""
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if n.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str,
                  records: Iterable[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]) -> int:
    """Send (key, value, headers) triples and wait for every acknowledgement."""
    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), acks="all", linger_ms=5)
    await producer.start()
    n = 0
    try:
        futures = []
        for key, value, headers in records:
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
            n += 1
        await producer.flush()
        for fut in futures:
            await fut
    finally:
        await producer.stop()
    return n


async def collect(bootstrap: str, topic: str, *, until: int, timeout: float,
                  stop_early: Any = None) -> list[Any]:
    """Read ``topic`` from the beginning until ``until`` messages arrived or ``timeout`` passed."""
    consumer = AIOKafkaConsumer(**kafka_kwargs(bootstrap), enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        parts: set[int] | None = None
        while not parts and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                await asyncio.sleep(0.5)
        if not parts:
            return out
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await seek_to(consumer, tps, "beginning")
        while len(out) < until and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            for msgs in batch.values():
                out.extend(msgs)
            if stop_early is not None and stop_early(out):
                break
    finally:
        await consumer.stop()
    return out


async def snapshot(bootstrap: str, topic: str, *, timeout: float = 60.0) -> list[Any]:
    """Every message ``topic`` holds now: read from the beginning up to the end offsets of
    this moment, without waiting for more (a topic that does not exist holds none). For
    checks of what a finished run left behind; :func:`collect` waits for what is to come."""
    consumer = AIOKafkaConsumer(**kafka_kwargs(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            return []
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await seek_to(consumer, tps, "beginning")
        out: list[Any] = []
        left = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout
        while left:
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
            if not left:
                break
            assert time.monotonic() < deadline, f"{topic} was not read to its end in {timeout} s"
            batch = await consumer.getmany(*left, timeout_ms=500, max_records=5000)
            for tp, msgs in batch.items():
                out.extend(m for m in msgs if m.offset < ends[tp])
    finally:
        await consumer.stop()
    return out


async def table_state(bootstrap: str, topics: TopicNames, table: str) -> dict[str, Any]:
    """What a worker's changelogged table holds now, as a restarted worker would restore it:
    the latest JSON value per key of ``<consumer group>-<table>-changelog`` (deleted keys
    left out)."""
    latest: dict[str, Any] = {}
    for m in await snapshot(bootstrap, f"{topics.group}-{table}-changelog"):
        key = json.loads(m.key)
        if m.value is None:
            latest.pop(key, None)
        else:
            latest[key] = json.loads(m.value)
    return latest


PROVIDERS = PROVIDER_NAMES


def sim_limits_toml(limits: dict[str, tuple[int, float]], *, latency_ms: tuple[int, int] = (5, 20),
                    extra: str = "") -> str:
    """A simulator config with the given (limit, window_s) per provider and a latency range."""
    lines = []
    for name, (limit, window) in limits.items():
        lines += [f"[providers.{name}]", f"rate_limit = {limit}", f"rate_window_s = {window}",
                  f'latency = {{ dist = "uniform", min_ms = {latency_ms[0]}, '
                  f"max_ms = {latency_ms[1]} }}", ""]
    return "\n".join(lines) + extra


def worker_rates_env(limits: dict[str, tuple[int, float]]) -> dict[str, str]:
    """Tell the worker each provider's allowed rate (calls per second) to match the simulator."""
    env = {}
    for name, (limit, window) in limits.items():
        env[f"TRACKFLOW_PROVIDERS__{name.upper()}__RATE"] = str(limit / window)
        env[f"TRACKFLOW_PROVIDERS__{name.upper()}__WINDOW_S"] = str(window)
    return env


def catalog_records(size: int, seed: int = 0, *, count: int | None = None
                    ) -> list[dict[str, Any]]:
    """RawTrack dicts for distinct tracks of the simulator's generated catalog."""
    from trackflow.providers.simulator.generate import generate_catalog
    from trackflow.streams.ingest import stable_track_id

    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for t in generate_catalog(size, seed).tracks:
        tid = stable_track_id(t.artist, t.title)
        if tid in seen:
            continue
        seen.add(tid)
        out.append({"track_id": tid, "artist": t.artist, "title": t.title, "isrc": None,
                    "duration_ms": t.duration_ms, "album": None, "spotify_id": None,
                    "source": "it", "source_ref": None, "observed_at": None, "attributes": {}})
        if count is not None and len(out) >= count:
            break
    return out


def avro_records(records: Iterable[dict[str, Any]]
                 ) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    from trackflow.schemas.codec import AVRO_CONTENT_TYPE, encode

    return [(r["track_id"].encode(), encode("RawTrack", r),
             [("content-type", AVRO_CONTENT_TYPE.encode())]) for r in records]


async def http_json(url: str, method: str = "GET", body: Any = None) -> Any:
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.request(method, url, json=body)
        response.raise_for_status()
        return response.json()


async def scrape(port: int) -> str:
    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
        return response.text


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (sum over unmatched labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total = (total or 0.0) + sample.value
    return total
