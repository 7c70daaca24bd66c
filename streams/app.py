"""The Faust application: configuration, topics, and the agents attached to them."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from trackflow.agents.runner import Topics
from trackflow.streams.faust_metrics import setup_faust_metrics
from trackflow.streams.kafka_security import client_security
from trackflow.streams.partitioner import KeyHashPartitioner
from trackflow.streams.settings import KafkaSettings, Settings


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
        store="memory://",
        datadir=str(w.data_dir),
        web_enabled=True,
        web_host=w.web_host,
        web_port=w.web_port,
        web_bind=w.web_host,
        broker_commit_interval=k.commit_interval_s,
        broker_max_poll_records=k.max_poll_records,
        broker_session_timeout=k.session_timeout_s,
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


def rewind_on_assignment(app: faust.App, topics: set[str], consumer_group: str,
                         kafka: KafkaSettings) -> None:
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
    """
    from aiokafka import TopicPartition

    from trackflow.streams.topics import admin_client

    lookup: asyncio.Task[list[Any]] | None = None
    """The latest assignment's partitions of ``topics`` without a committed offset."""

    async def uncommitted(tps: list[Any]) -> list[Any]:
        admin = await admin_client(kafka)
        try:
            committed = await admin.list_consumer_group_offsets(
                consumer_group, partitions=[TopicPartition(tp.topic, tp.partition) for tp in tps])
        finally:
            await admin.close()
        return [tp for tp in tps
                if (meta := committed.get(TopicPartition(tp.topic, tp.partition))) is None
                or meta.offset < 0]

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def look_up_commits(sender: Any, assigned: Any, **_: Any) -> None:
        nonlocal lookup
        tps = [tp for tp in assigned if tp.topic in topics]
        # Started now, awaited before the resume: the broker round trip overlaps the recovery.
        lookup = asyncio.ensure_future(uncommitted(tps)) if tps else None

    consumer = app.consumer
    seek_committed = consumer.perform_seek

    async def perform_seek() -> None:
        await seek_committed()
        # Not consumed: Faust seeks again when a fetch finds the flow stopped, and the lookup
        # is replaced on the next assignment.
        if lookup is None:
            return
        assigned = consumer.assignment()
        for tp in await lookup:
            if tp in assigned:
                await consumer.seek(tp, 0)

    consumer.perform_seek = perform_seek  # type: ignore[method-assign]
