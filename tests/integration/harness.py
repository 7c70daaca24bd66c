"""Processes and Kafka helpers for integration tests (real broker, real worker processes)."""

from __future__ import annotations

import asyncio
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

REPO = Path(__file__).resolve().parents[2]
TRACKFLOW = str(Path(sys.executable).with_name("trackflow"))


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
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


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
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str,
                  records: Iterable[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]) -> int:
    """Send (key, value, headers) triples and wait for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
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
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
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
        await consumer.seek_to_beginning(*tps)
        while len(out) < until and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            for msgs in batch.values():
                out.extend(msgs)
            if stop_early is not None and stop_early(out):
                break
    finally:
        await consumer.stop()
    return out
