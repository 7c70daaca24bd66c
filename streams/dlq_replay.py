"""Dead letters on Kafka: read a dead-letter or parked topic to its end, replay, keep the ledger.

Replays are recorded in a small compacted ledger topic (``topics.replay_ledger_topic``,
``tracks.dlq.replays`` by default) keyed by ``<topic>/<partition>/<offset>`` of the dead letter, so
running the same replay twice does not republish what was already replayed. What to replay and
with which headers is decided in ``dlq_letters.py``; this module only does the I/O.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer

from trackflow.schemas.registry import SchemaVersion
from trackflow.streams.consume import assigned_consumer, decode_message
from trackflow.streams.dlq_letters import (
    DeadLetter,
    LetterFilter,
    count_into,
    ledger_value,
    matches,
    operator_replay_headers,
    tally,
)
from trackflow.streams.kafka_io import start_consumer, start_producer
from trackflow.streams.settings import KafkaSettings, Settings
from trackflow.streams.topics import (
    KafkaToolError,
    TopicMissing,
    admin_client,
    ensure_replay_ledger,
)


def letter_of(msg: Any, *, enriched_topic: str | None = None,
              writers: Mapping[int, SchemaVersion | None] | None = None) -> DeadLetter:
    """A DeadLetter from a consumer record; decoded (via decode_message) when a topic is given
    (``writers``: the schema registry's ids looked up, for Confluent-framed values)."""
    decoded = decode_message(msg, enriched_topic=enriched_topic, writers=writers) \
        if enriched_topic else None
    return DeadLetter(msg.topic, msg.partition, msg.offset, msg.key, msg.value,
                      tuple((k, bytes(v)) for k, v in (msg.headers or ()) if v is not None),
                      decoded)


async def read_to_end(consumer: AIOKafkaConsumer) -> AsyncIterator[Any]:
    """Every record of the assigned partitions up to their end offsets as of now, then stop."""
    tps = sorted(consumer.assignment())
    ends = await consumer.end_offsets(tps)
    remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=500)
        for tp, records in batch.items():
            for msg in records:
                if msg.offset < ends[tp]:
                    yield msg
        # position, not the last offset seen: compaction and transaction markers leave gaps.
        remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}


async def read_topic(kafka: KafkaSettings, topic: str, *, enriched_topic: str | None = None
                     ) -> list[DeadLetter]:
    """All dead letters of ``topic``; TopicMissing when it does not exist."""
    return [letter async for letter in letters_of(kafka, topic, enriched_topic=enriched_topic)]


async def letters_of(kafka: KafkaSettings, topic: str, *, enriched_topic: str | None = None
                     ) -> AsyncIterator[DeadLetter]:
    """The dead letters of ``topic`` one at a time, to its end (a DLQ burst of millions is
    counted or searched without holding it); TopicMissing when it does not exist."""
    consumer = await assigned_consumer(kafka, topic, from_beginning=True)
    registry = None
    if enriched_topic is not None and kafka.schema_registry.url is not None:
        from trackflow.streams.schema_registry import SchemaRegistryClient

        registry = SchemaRegistryClient(kafka.schema_registry)
    try:
        async for msg in read_to_end(consumer):
            if registry is not None:
                await registry.prepare(msg.value)  # a Confluent-framed letter's writer, once
            yield letter_of(msg, enriched_topic=enriched_topic,
                            writers=None if registry is None else registry.writers)
    finally:
        await consumer.stop()
        if registry is not None:
            await registry.aclose()


async def count_topic(kafka: KafkaSettings, topic: str, *, now_ms: int
                      ) -> tuple[int, dict[str, Counter[str]]]:
    """How many dead letters ``topic`` holds and their :func:`~dlq_letters.tally`, read once."""
    counts = tally((), now_ms=now_ms)
    total = 0
    async for letter in letters_of(kafka, topic):
        count_into(counts, letter, now_ms=now_ms)
        total += 1
    return total, counts


async def find_letters(kafka: KafkaSettings, topic: str, flt: LetterFilter, *, limit: int,
                       enriched_topic: str | None = None
                       ) -> tuple[list[DeadLetter], int, int]:
    """The first ``limit`` (0: all) dead letters of ``topic`` matching ``flt``, how many match
    and how many were read: only those shown are kept."""
    shown: list[DeadLetter] = []
    found = read = 0
    async for letter in letters_of(kafka, topic, enriched_topic=enriched_topic):
        read += 1
        if matches(letter, flt):
            found += 1
            if limit <= 0 or len(shown) < limit:
                shown.append(letter)
    return shown, found, read


async def read_ledger(kafka: KafkaSettings, ledger_topic: str) -> dict[str, dict[str, Any]]:
    """Dead-letter ref -> its last replay record; empty when the ledger does not exist yet."""
    consumer = await start_consumer(kafka)
    try:
        # topics() asks the broker now: the metadata fetched at start may predate the ledger.
        if ledger_topic not in await consumer.topics():
            return {}
    finally:
        await consumer.stop()
    consumer = await assigned_consumer(kafka, ledger_topic, from_beginning=True)
    ledger: dict[str, dict[str, Any]] = {}
    try:
        async for msg in read_to_end(consumer):
            if msg.key is None:
                continue
            ref = msg.key.decode("utf-8", "replace")
            if msg.value is None:
                ledger.pop(ref, None)  # a tombstone forgets a replay
                continue
            try:
                ledger[ref] = json.loads(msg.value)
            except ValueError:
                ledger[ref] = {}
    finally:
        await consumer.stop()
    return ledger


async def prepare_replay(settings: Settings) -> None:
    """Check the raw topic exists and have topics.py create the replay ledger when missing."""
    kafka = settings.kafka
    admin = await admin_client(kafka)
    try:
        if kafka.raw_topic not in set(await admin.list_topics()):
            raise TopicMissing(kafka.raw_topic)
    finally:
        await admin.close()
    await ensure_replay_ledger(kafka)


class ReplayIncomplete(KafkaToolError):
    """Some replays were not acknowledged; those that were are recorded in the ledger."""


async def publish_replays(settings: Settings, letters: Sequence[DeadLetter], ledger_topic: str,
                          *, by: str, on_sent: Callable[[], None] = lambda: None) -> int:
    """Republish ``letters`` to the raw topic, then record each acknowledged one in the ledger.
    ``on_sent`` is called once per letter handed to the producer (a progress bar)."""
    producer = await start_producer(settings.kafka)
    sent: list[tuple[DeadLetter, asyncio.Future[Any]]] = []
    try:
        for letter in letters:
            fut = await producer.send(settings.kafka.raw_topic, value=letter.value,
                                      key=letter.key,
                                      headers=operator_replay_headers(letter.headers, letter.ref))
            sent.append((letter, fut))
            on_sent()
        results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        now = dt.datetime.now(dt.UTC)
        acked = [letter for (letter, _), r in zip(sent, results, strict=True)
                 if not isinstance(r, BaseException)]
        for letter in acked:
            await producer.send(ledger_topic, key=letter.ref.encode(),
                                value=ledger_value(now=now, by=by))
        await producer.flush()
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise ReplayIncomplete(
                f"{len(failed)} of {len(letters)} replays failed ({type(failed[0]).__name__}: "
                f"{failed[0]}); {len(acked)} were replayed and recorded, run again to retry")
    finally:
        await producer.stop()
    return len(acked)
