"""The Faust application: configuration, topics, and the agents attached to them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import faust
from faust.types import TP

from trackflow.agents.runner import Topics
from trackflow.streams.faust_metrics import setup_faust_metrics
from trackflow.streams.kafka_security import client_security
from trackflow.streams.partitioner import KeyHashPartitioner
from trackflow.streams.settings import KafkaSettings, Settings

log = logging.getLogger("trackflow.streams.app")


def create_app(settings: Settings, *, name: str | None = None) -> faust.App:
    """A Faust app wired from ``settings`` (no agents yet)."""
    k, w = settings.kafka, settings.worker
    app = faust.App(
        name or k.consumer_group,
        broker=[f"kafka://{b.strip()}" for b in k.bootstrap_servers.split(",")],
        broker_credentials=client_security(k.security).faust_credentials(),
        # We decode values ourselves: a bad record must reach the DLQ, not crash a codec.
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        topic_allow_declare=True,
        topic_disable_leader=True,
        store=settings.tables.store_url,
        datadir=str(w.data_dir),
        web_enabled=True,
        web_host=w.web_host,
        web_port=w.web_port,
        web_bind=w.web_host,
        broker_commit_interval=k.commit_interval_s,
        broker_max_poll_records=k.max_poll_records,
        broker_session_timeout=k.session_timeout_s,
        consumer_group_instance_id=w.instance_id,
        broker_heartbeat_interval=min(3.0, k.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_request_size=k.max_message_bytes,
        producer_partitioner=KeyHashPartitioner(),
        # Do not wait for every unacked record before a rebalance or shutdown: a dead letter
        # waiting an hour for its retry would stall the group that long. Nothing is lost:
        # offsets are acked in order (agents.inflight), so the unfinished are re-delivered.
        stream_wait_empty=False,
        autodiscover=False,
    )
    # Not faust.sensors.prometheus: its sensor hooks cost ~20 µs per record (a no-op agent fell
    # from 16,000 to 12,000 records/s). This reads Faust's own Monitor when /metrics is scraped.
    setup_faust_metrics(app)
    return app


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    """The Faust topic objects the agents read (created beforehand by streams.topics)."""
    k = settings.kafka

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=k.partitions)

    return Topics(topic(k.raw_topic), topic(k.dlq_topic), topic(k.refresh_topic))


class Rewind:
    """After every rebalance, re-read what is not committed on ``topics``.

    Our agents forget in-flight records on a rebalance (their new owner processes them again).
    Faust seeks assigned partitions to their committed offsets, but a partition with no commit
    yet keeps its fetch position, so records that were in flight would never come back, and the
    next commit would skip them. Seeking such partitions to their beginning closes the gap.

    The seek is part of Faust's own seek to the committed offsets (``Consumer.perform_seek``),
    the last step before Faust resumes the flow after a rebalance. Anything earlier is too early:
    Faust's pause does not stop the consumer thread from fetching, and a fetch that returns while
    Faust's active-partition set (shared with that thread) is empty returns the records of every
    partition (aiokafka reads an empty set as "all"). Faust drops those of paused partitions, and
    the position has moved past them. That can happen after ``on_rebalance_complete`` too: Faust
    sends it before resuming the stream partitions, and its own seek leaves a partition without a
    commit where it is, so a dead letter at the head of such a partition was never re-read, and
    once the records behind it were acked Faust committed past it.

    :meth:`assigned` is called on every assignment (by the worker's application object), and
    the constructor installs the seek on ``consumer``.
    """

    def __init__(self, consumer: Any, topics: set[str], consumer_group: str,
                 kafka: KafkaSettings) -> None:
        self._consumer = consumer
        self._topics = topics
        self._group = consumer_group
        self._kafka = kafka
        self._lookup: asyncio.Task[list[Any]] | None = None
        """The latest assignment's partitions of ``topics`` without a committed offset."""
        self._seek_committed = consumer.perform_seek
        consumer.perform_seek = self.perform_seek

    def assigned(self, assigned: Any) -> None:
        """Look up the commits of the partitions just assigned."""
        tps = [tp for tp in assigned if tp.topic in self._topics]
        # Started now, awaited before the resume: the broker round trip overlaps the recovery.
        self._lookup = asyncio.ensure_future(self._uncommitted(tps)) if tps else None

    async def _uncommitted(self, tps: list[Any]) -> list[Any]:
        from aiokafka import TopicPartition

        from trackflow.streams.topics import admin_client

        admin = await admin_client(self._kafka)
        try:
            committed = await admin.list_consumer_group_offsets(
                self._group, partitions=[TopicPartition(tp.topic, tp.partition) for tp in tps])
        finally:
            await admin.close()
        return [tp for tp in tps
                if (meta := committed.get(TopicPartition(tp.topic, tp.partition))) is None
                or meta.offset < 0]

    async def perform_seek(self) -> None:
        await self._seek_committed()
        # Not consumed: Faust seeks again when a fetch finds the flow stopped, and the lookup
        # is replaced on the next assignment.
        if self._lookup is None:
            return
        assigned = self._consumer.assignment()
        for tp in await self._lookup:
            if tp in assigned:
                await self._consumer.seek(tp, 0)


class SeekFence:
    """Keeps the records fetched before a seek from being read after it.

    Faust reads a fetched batch record by record, and a seek can happen in the middle (after a
    rebalance Faust resumes the stream partitions, then seeks them to their committed offsets,
    while the fetcher is already running), or while the batch is being fetched. Faust's seek
    sets the partition's read offset back to the seek's offset, but the rest of the batch still
    comes from the position before it: its next record, several offsets past the seek's, is
    taken for a hole in the log (Faust tracks the holes that compaction leaves) and the offsets
    between, the record itself included, count as acked. Once the records before them are
    acked, Faust commits past records that are still being handled (a refresh request waits for
    its due time), and a kill then loses them. The same stale records also move the read offset
    past the seek's, so that Faust drops the records read again from the seek's offset.

    The fence drops the rest of such a batch for each partition seeked since the batch was
    requested, and seeks the partition again to the same offset: the fetch resumes there (a
    batch fetched just after the seek is dropped too, and read again), and the read offset is
    the seek's, whatever the record being handled during the seek set it to.
    """

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._seeks = 0
        """Seeks so far, all partitions together (a batch compares it before looking closer)."""
        self._seq: dict[Any, int] = {}
        """The number of the latest seek of each partition."""
        self._target: dict[Any, int] = {}
        """The offset of the latest seek of each partition."""
        self._seek = consumer.seek
        self._seek_to_committed = consumer.seek_to_committed
        self._wait_next_records = consumer._wait_next_records
        self._getmany = consumer.getmany
        self._requested: tuple[int, dict[Any, int]] = (0, {})
        consumer.seek = self.seek
        consumer.seek_to_committed = self.seek_to_committed
        consumer._wait_next_records = self.wait_next_records
        consumer.getmany = self.getmany

    def _seeked(self, tp: Any, offset: int) -> None:
        self._seeks += 1
        self._seq[tp] = self._seeks
        self._target[tp] = offset

    async def seek(self, tp: Any, offset: int) -> None:
        self._seeked(tp, offset)
        await self._seek(tp, offset)

    async def seek_to_committed(self) -> Any:
        # Counted before and after the seek: a batch requested meanwhile may come from either
        # position, and sees its partitions' numbers change.
        self._seeks += 1
        committed = await self._seek_to_committed()
        self._seeks += 1
        for tp, offset in committed.items():
            if offset is not None and offset >= 0:
                self._seq[tp] = self._seeks
                self._target[tp] = offset
        return committed

    async def wait_next_records(self, timeout: float) -> Any:  # noqa: ASYNC109 (Faust's)
        self._requested = (self._seeks, dict(self._seq))
        return await self._wait_next_records(timeout)

    def _moved(self, tps: Any, seen: dict[Any, int]) -> list[Any]:
        return [tp for tp in tps if self._seq.get(tp) != seen.get(tp)]

    async def getmany(self, timeout: float) -> Any:  # noqa: ASYNC109 (Faust's)
        """Faust's ``getmany`` without the records of a partition seeked since the fetch."""
        stale: set[Any] = set()
        tps: set[Any] = set()
        seen: dict[Any, int] = {}
        seeks = -1
        async for tp, message in self._getmany(timeout):
            if seeks < 0:  # the batch was requested by now
                seeks, seen = self._requested
            tps.add(tp)
            if self._seeks != seeks:
                await self._reseek(self._moved(tps - stale, seen), stale, seen)
            if tp in stale:
                continue
            yield tp, message
        if seeks >= 0 and self._seeks != seeks:
            # The last record handled may have set its partition's read offset after a seek.
            await self._reseek(self._moved(tps - stale, seen), stale, seen)

    async def _reseek(self, moved: list[Any], stale: set[Any], seen: dict[Any, int]) -> None:
        assigned = self._consumer.assignment()
        for tp in moved:
            stale.add(tp)
            target = self._target.get(tp)
            log.info("event=stale_fetch_dropped topic=%s partition=%s seek_offset=%s",
                     tp.topic, tp.partition, target)
            if target is not None and tp in assigned:
                await self.seek(tp, target)
            seen[tp] = self._seq.get(tp, 0)


def fence_seeks(app: faust.App) -> SeekFence:
    """Install a :class:`SeekFence` on the app's consumer (before the worker starts)."""
    return SeekFence(app.consumer)


def committed_offsets(app: faust.App, topic: str) -> Callable[[int], int | None]:
    """For the refresh agent: the offset the worker committed of a partition of ``topic`` (the
    offset after the last record done, 0 before any commit), or None if the worker does not
    consume that partition now."""

    def committed(partition: int) -> int | None:
        consumer: Any = app.consumer
        tp = TP(topic, partition)
        if tp not in consumer.assignment():
            return None
        # Faust's own record of what it committed, updated on every commit.
        return int(consumer._committed_offset.get(tp) or 0)

    return committed
