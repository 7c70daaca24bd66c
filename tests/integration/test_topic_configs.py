"""Topic configs on the real broker: created with trackflow's compaction settings, and an
existing topic from an older release brought up to them without losing its own settings."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import TopicNames, kafka_kwargs
from trackflow.agents.tables import TABLES
from trackflow.streams.settings import KafkaSettings
from trackflow.streams.topics import (
    CHANGELOG_COMPACTION,
    ENRICHED_COMPACTION,
    changelog_topic,
    ensure_topics,
    topic_configs,
)


def settings(bootstrap: str, names: TopicNames) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, raw_topic=names.raw,
                         enriched_topic=names.enriched, dlq_topic=names.dlq,
                         parked_topic=names.parked, consumer_group=names.group, partitions=2)


async def configs(bootstrap: str, names: list[str]) -> dict[str, dict[str, str | None]]:
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        found = await topic_configs(admin, names)
    finally:
        await admin.close()
    return {n: {k: v for k, (v, _) in c.items()} for n, c in found.items()}


async def test_new_and_old_topics_get_the_compaction_configs_and_keep_their_own(
        bootstrap: str, topic_names: TopicNames) -> None:
    kafka = settings(bootstrap, topic_names)
    changelog = changelog_topic(kafka.consumer_group, TABLES[0])
    # As an older release made them: compacted, nothing more, and one setting of the operator's.
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([
            NewTopic(kafka.enriched_topic, 2, 1, topic_configs={
                "cleanup.policy": "compact", "retention.bytes": "123456789"}),
            NewTopic(changelog, 2, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    before = await configs(bootstrap, [kafka.enriched_topic])
    assert before[kafka.enriched_topic]["segment.ms"] != ENRICHED_COMPACTION["segment.ms"]

    created = await ensure_topics(kafka)
    assert kafka.enriched_topic not in created and changelog not in created

    # The broker applies a config change through its metadata log: visible a moment later.
    names = [kafka.enriched_topic, changelog, kafka.raw_topic, kafka.refresh_topic]
    for _ in range(100):
        after = await configs(bootstrap, names)
        if after[kafka.enriched_topic]["segment.ms"] == ENRICHED_COMPACTION["segment.ms"]:
            break
        await asyncio.sleep(0.1)
    for key, value in ENRICHED_COMPACTION.items():
        assert after[kafka.enriched_topic][key] == value, key
    assert after[kafka.enriched_topic]["retention.bytes"] == "123456789", \
        "the operator's own setting survives the update"
    for key, value in CHANGELOG_COMPACTION.items():
        assert after[changelog][key] == value, key
    assert after[kafka.refresh_topic]["cleanup.policy"] == "compact"
    assert after[kafka.refresh_topic]["min.cleanable.dirty.ratio"] == "0.1"
    assert after[kafka.raw_topic]["cleanup.policy"] == "delete"
    # A second start finds nothing to change.
    assert await ensure_topics(kafka) == []
    assert await configs(bootstrap, [kafka.enriched_topic]) == {
        kafka.enriched_topic: after[kafka.enriched_topic]}
