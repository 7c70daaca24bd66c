"""Read tracks.enriched (or any trackflow topic) as typed records.

Two ways to read:

- with a consumer group (``group_id=``): partitions are shared with the group's other members,
  and offsets are committed after the records handed out were processed, so a restarted reader
  goes on where it stopped (at-least-once: a record may come again after a crash);
- without one: every partition, from the beginning or from the end, nothing committed.

``latest_only=True`` reads the topic as the compacted table it is: records already in the topic
when ``start()`` returns are collapsed to the last version of each track before any is handed out,
and after that each new version is handed out as it arrives (it is always the newest: the
worker never publishes an older version after a newer one under the same key). The backlog is
read twice for that (first where each track's last version is, then those versions), so what
it holds in memory is a key and an offset per track, not the records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from trackflow.schemas.codec import DecodeError
from trackflow.schemas.registry import SchemaVersion
from trackflow.streams.client.records import EnrichedTrack
from trackflow.streams.kafka_io import Kafka, kafka_settings, seek_to, start_consumer
from trackflow.streams.topics import TopicMissing, topic_partitions

if TYPE_CHECKING:  # made on start when a registry is configured: httpx stays out otherwise
    from trackflow.streams.schema_registry import SchemaRegistryClient

log = logging.getLogger("trackflow.streams.client")


class TrackConsumer:
    """``async with TrackConsumer(settings.kafka, from_beginning=True) as c:
    async for track in c: ...`` yields :class:`EnrichedTrack` objects.

    Stops after ``max_records`` records, or after ``idle_timeout_s`` seconds without one (None:
    wait for ever). ``on_undecodable="skip"`` logs and counts (``skipped``) a record that is
    not an EnrichedTrack; ``"raise"`` raises its :class:`DecodeError`.
    """

    def __init__(self, kafka: Kafka, *, topic: str | None = None, group_id: str | None = None,
                 from_beginning: bool = False, latest_only: bool = False,
                 max_records: int | None = None, idle_timeout_s: float | None = None,
                 on_undecodable: Literal["skip", "raise"] = "skip") -> None:
        self._kafka = kafka
        if topic is None:
            topic = "tracks.enriched" if isinstance(kafka, str) else kafka.enriched_topic
        self.topic = topic
        self._group = group_id
        self._from_beginning = from_beginning
        self._latest_only = latest_only
        self._max = max_records
        self._idle = idle_timeout_s
        self._on_undecodable = on_undecodable
        self._consumer: AIOKafkaConsumer | None = None
        self._ends: dict[TopicPartition, int] = {}
        """With ``latest_only``: per partition, where the backlog ends (fetched by start())."""
        self._handed: dict[TopicPartition, int] = {}
        """Per partition, the offset after the last record handed out and not yet committed."""
        self.skipped = 0
        """Records that were not EnrichedTracks (with ``on_undecodable="skip"``)."""
        self._registry: SchemaRegistryClient | None = None

    async def start(self) -> None:
        if self._consumer is not None:
            return
        if self._group is None:
            consumer = await _assigned(self._kafka, self.topic,
                                       from_beginning=self._from_beginning)
        else:
            consumer = await start_consumer(
                self._kafka, group_id=self._group,
                auto_offset_reset="earliest" if self._from_beginning else "latest")
        try:
            partitions = await _partitions(consumer, self._kafka, self.topic)
            if self._group is not None:
                if not partitions:
                    raise TopicMissing(self.topic)
                consumer.subscribe([self.topic], listener=_CommitOnRevoke(self))
            if self._latest_only:
                # The backlog is what the topic holds when start() returns.
                self._ends = await _end_offsets(consumer, self.topic, partitions)
        except BaseException:
            await consumer.stop()
            raise
        if not isinstance(self._kafka, str) and self._kafka.schema_registry.url is not None:
            from trackflow.streams.schema_registry import SchemaRegistryClient

            self._registry = SchemaRegistryClient(self._kafka.schema_registry)
        self._consumer = consumer

    @property
    def writers(self) -> Mapping[int, SchemaVersion | None] | None:
        """The schema registry's ids looked up so far (None without a registry): what
        :func:`~schemas.codec.decode` needs for Confluent-framed values."""
        return None if self._registry is None else self._registry.writers

    async def stop(self) -> None:
        """Commit what was handed out (with a group) and close the connection."""
        if self._consumer is None:
            return
        consumer, self._consumer = self._consumer, None
        try:
            await self._commit(consumer)
        finally:
            await consumer.stop()
            if self._registry is not None:
                registry, self._registry = self._registry, None
                await registry.aclose()

    async def __aenter__(self) -> TrackConsumer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def commit(self) -> None:
        """Commit the position after the records handed out so far (with a group only)."""
        if self._consumer is not None:
            await self._commit(self._consumer)

    def __aiter__(self) -> AsyncIterator[EnrichedTrack]:
        return self.tracks()

    async def tracks(self) -> AsyncIterator[EnrichedTrack]:
        """Decoded EnrichedTrack records (see the class docstring for when it stops)."""
        async for msg in self.messages():
            try:
                yield EnrichedTrack.from_message(msg, writers=self.writers)
            except DecodeError as exc:
                if self._on_undecodable == "raise":
                    raise
                self.skipped += 1
                log.warning("event=undecodable topic=%s partition=%s offset=%s reason=%s",
                            msg.topic, msg.partition, msg.offset, exc.reason)

    async def messages(self) -> AsyncIterator[Any]:
        """The Kafka messages themselves (aiokafka ``ConsumerRecord``), undecoded."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("TrackConsumer is not started: use `async with` or start()")
        seen = 0
        source = self._latest_first(consumer) if self._latest_only else _fetch(consumer)
        last = time.monotonic()
        async for batch in source:
            if not batch:
                if self._idle is not None and time.monotonic() - last > self._idle:
                    return
                continue
            # Committed before the next fetch: the records of this batch were processed by the
            # caller by the time it asks for more (at-least-once).
            for msg in batch:
                if self._registry is not None:
                    await self._registry.prepare(msg.value)  # its writer's id, once
                yield msg
                seen += 1
                self._handed[TopicPartition(msg.topic, msg.partition)] = msg.offset + 1
                if self._max is not None and seen >= self._max:
                    return
            last = time.monotonic()
            await self._commit(consumer)

    async def _latest_first(self, consumer: AIOKafkaConsumer) -> AsyncIterator[list[Any]]:
        """The backlog collapsed to the last message per key, then new messages as they come.

        Two passes over the backlog: the first keeps only where each key's last message is
        (the key and an offset, about a tenth of the message itself), the second reads the
        backlog again and hands out those messages, in offset order per partition. So the
        memory this takes grows with the distinct keys, not with the records kept.
        """
        ends = self._ends
        last: dict[TopicPartition, dict[bytes, int]] = {}
        starts: dict[TopicPartition, int] = {}
        fetch = _fetch(consumer)
        async for batch in fetch:
            for msg in batch:
                tp = TopicPartition(msg.topic, msg.partition)
                if msg.offset >= ends.get(tp, 0):
                    continue  # newer than the backlog: read again after it
                starts.setdefault(tp, msg.offset)
                if msg.key is not None:
                    last.setdefault(tp, {})[msg.key] = msg.offset
            # Every partition, not just one: a partition past its end while another is still
            # in its backlog goes on with the second pass only once all are indexed.
            if await _reached(consumer, ends):
                break
            if not batch and not starts:
                yield []  # nothing read yet: the idle timeout may count
        # Back to where the backlog began; a partition without one, to where it ended (what
        # came after it in the first pass is read again).
        assigned = consumer.assignment()
        for tp in assigned:
            if tp in starts or tp in ends:
                consumer.seek(tp, starts.get(tp, ends.get(tp, 0)))
        left = {tp for tp in starts if tp in assigned}
        while left:
            batch = await anext(fetch)
            out = []
            for msg in batch:
                tp = TopicPartition(msg.topic, msg.partition)
                if msg.offset >= ends.get(tp, 0):
                    out.append(msg)  # a new version: always the newest
                elif msg.key is None:
                    out.append(msg)
                elif last.get(tp, {}).get(msg.key) == msg.offset:
                    del last[tp][msg.key]  # its last message: nothing later to skip for
                    out.append(msg)
            if out or not batch:  # a batch of superseded versions is no idle time
                yield out
            left = {tp for tp in left if tp in consumer.assignment()
                    and await consumer.position(tp) < ends.get(tp, 0)}
        async for batch in fetch:
            yield batch

    async def _commit(self, consumer: AIOKafkaConsumer,
                      only: set[TopicPartition] | None = None) -> None:
        # Only what was handed out: the fetch position may be far ahead of it.
        if self._group is None or not self._handed:
            return
        assigned = consumer.assignment()
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in self._handed.items()
                   if tp in assigned and (only is None or tp in only)}
        for tp in offsets:
            del self._handed[tp]
        if offsets:
            await consumer.commit(offsets)
        if only is None:
            self._handed.clear()  # partitions no longer assigned: their new owner re-reads


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what was handed out from partitions that are about to move to another member."""

    def __init__(self, owner: TrackConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        consumer = self._owner._consumer
        if consumer is not None:
            await self._owner._commit(consumer, set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


async def _fetch(consumer: AIOKafkaConsumer) -> AsyncIterator[list[Any]]:
    while True:
        batch = await consumer.getmany(timeout_ms=500, max_records=500)
        yield [msg for records in batch.values() for msg in records]


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether every assigned partition was read up to the end it had when reading started."""
    assigned = consumer.assignment()
    if not assigned:
        return False  # a group member before its first assignment
    for tp in assigned:
        if await consumer.position(tp) < ends.get(tp, 0):
            return False
    return True


async def _end_offsets(consumer: AIOKafkaConsumer, topic: str, partitions: set[int]
                       ) -> dict[TopicPartition, int]:
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    return dict(await consumer.end_offsets(tps)) if tps else {}


async def _partitions(consumer: AIOKafkaConsumer, kafka: Kafka, topic: str) -> set[int]:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        # The metadata fetched at start may predate the topic: ask the broker now.
        partitions = await topic_partitions(kafka_settings(kafka), topic)
    return set(partitions or ())


async def _assigned(kafka: Kafka, topic: str, *, from_beginning: bool) -> AIOKafkaConsumer:
    """A group-less consumer on every partition of ``topic``, at its beginning or its end."""
    consumer = await start_consumer(kafka)
    try:
        partitions = await _partitions(consumer, kafka, topic)
        if not partitions:
            raise TopicMissing(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        # The offsets are fetched now: "the end" is the end when start() returned, not
        # whenever the first fetch happens to run.
        await seek_to(consumer, tps, "beginning" if from_beginning else "end")
    except BaseException:
        await consumer.stop()
        raise
    return consumer


assigned_consumer = _assigned
