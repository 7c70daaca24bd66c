"""The local stack for real: a Kafka broker and a Redis server in a private state dir.

The stack lives in tmp_path, so this test neither reuses nor disturbs a stack someone else runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from click.testing import CliRunner

from trackflow.streams import stack
from trackflow.streams.stack import cli, processes

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_up_reuse_auto_create_off_and_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "stack"
    started = time.monotonic()
    info = stack.up(state_dir=state_dir)
    try:
        cold_s = time.monotonic() - started
        assert cold_s < 60, f"expected the stack up within 60 s, took {cold_s:.1f}s"

        current = stack.status(state_dir)
        assert current.running, f"expected Kafka and Redis to answer right after up: {current}"
        assert current.info == info

        again = stack.up(state_dir=state_dir)
        assert (again.kafka_pid, again.redis_pid) == (info.kafka_pid, info.redis_pid), (
            "expected a second up to reuse the running broker and Redis, not start new ones"
        )

        # The CLI prints nothing but `export` lines on stdout, so `eval "$(...)"` works.
        result = CliRunner().invoke(cli.stack, ["up", "--state-dir", str(state_dir)])
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == [
            f"export KAFKA_BOOTSTRAP_SERVERS={info.bootstrap_servers}",
            f"export REDIS_URL={info.redis_url}",
        ]

        await _unknown_topics_are_not_created(info.bootstrap_servers)
        await _declared_topics_take_records(info.bootstrap_servers)

        client = aioredis.from_url(info.redis_url)
        try:
            assert await client.set("trackflow:stack-test", "ok")
            assert await client.get("trackflow:stack-test") == b"ok"
        finally:
            await client.aclose()
    finally:
        stack.down(state_dir=state_dir)

    current = stack.status(state_dir)
    assert current.info is None and not current.running, f"expected a stopped stack: {current}"
    assert not processes.pid_alive(info.kafka_pid), "expected the broker process to be gone"
    assert not processes.pid_alive(info.redis_pid), "expected the Redis process to be gone"
    assert (state_dir / "kafka" / "data" / "meta.properties").exists(), "expected data kept"

    stack.down(state_dir=state_dir, purge=True)
    assert not state_dir.exists(), "expected --purge to remove the state dir"


async def _unknown_topics_are_not_created(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await producer.start()
    try:
        with pytest.raises(KafkaError):
            await producer.send_and_wait("trackflow.no-such-topic", b"lost")
    finally:
        await producer.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = await admin.list_topics()
    finally:
        await admin.close()
    assert "trackflow.no-such-topic" not in topics, "expected broker auto-creation to be off"


async def _declared_topics_take_records(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("trackflow.stack-test", 3, 1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        metadata = await producer.send_and_wait("trackflow.stack-test", b"hello", key=b"t1")
    finally:
        await producer.stop()
    assert metadata.offset == 0
