"""Read trackflow topics and decode their records (used by ``trackflow consume`` and ``dlq``)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

import click
from aiokafka import AIOKafkaConsumer, TopicPartition

from trackflow.agents.deadletter import error_facts
from trackflow.schemas.codec import DecodeError, decode, decode_raw_track
from trackflow.streams.kafka_io import start_consumer
from trackflow.streams.settings import KafkaSettings
from trackflow.streams.topics import topic_partitions


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)


def decode_message(msg: Any, *, enriched_topic: str) -> dict[str, Any]:
    """A displayable dict for one message: its decoded value, or error headers and raw value."""
    headers = list(msg.headers or ())
    out: dict[str, Any] = {
        "topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
        "timestamp": msg.timestamp,
        "key": msg.key.decode("utf-8", "replace") if msg.key is not None else None,
    }
    try:
        if msg.topic == enriched_topic:
            out["value"] = decode("EnrichedTrack", msg.value)
        else:
            out["value"] = decode_raw_track(msg.value, headers)
    except DecodeError as exc:
        out["value"] = None
        out["undecodable"] = f"{exc.reason}: {exc}"
        out["raw_value"] = (msg.value or b"")[:200].decode("utf-8", "replace")
    errors = error_facts(headers)
    if errors:
        out["errors"] = dict(errors)
    return out


async def assigned_consumer(kafka: KafkaSettings, topic: str, *, from_beginning: bool
                            ) -> AIOKafkaConsumer:
    """A group-less consumer on every partition of ``topic``, at its beginning or its end."""
    consumer = await start_consumer(kafka)
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        # The metadata fetched at start may predate the topic: ask the broker now.
        try:
            partitions = await topic_partitions(kafka, topic)
        except BaseException:
            await consumer.stop()
            raise
    if not partitions:
        await consumer.stop()
        raise click.ClickException(
            f"topic {topic} does not exist: start a worker once (it creates the topics) or "
            "check the name")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if from_beginning:
        await consumer.seek_to_beginning(*tps)
    else:
        await consumer.seek_to_end(*tps)
    return consumer


async def read_messages(consumer: AIOKafkaConsumer, *, max_messages: int | None,
                        idle_timeout: float | None) -> AsyncIterator[Any]:
    """Messages until ``max_messages``, or until nothing arrived for ``idle_timeout`` seconds."""
    seen = 0
    last = time.monotonic()
    while max_messages is None or seen < max_messages:
        batch = await consumer.getmany(timeout_ms=500, max_records=500)
        if not batch:
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                return
            continue
        last = time.monotonic()
        for records in batch.values():
            for msg in records:
                yield msg
                seen += 1
                if max_messages is not None and seen >= max_messages:
                    return
