"""A worker refuses an existing topic whose partitions or replication differ, naming the fix."""

from __future__ import annotations

from typing import Any

import pytest

from trackflow.providers.errors import ConfigError
from trackflow.streams.settings import KafkaSettings
from trackflow.streams.topics import check_layout, topic_specs


def described(name: str, partitions: int, replicas: int) -> dict[str, Any]:
    return {"topic": name, "error_code": 0,
            "partitions": [{"partition": p, "leader": 1, "replicas": list(range(1, replicas + 1))}
                           for p in range(partitions)]}


def test_a_matching_topic_passes() -> None:
    check_layout(described("tracks.raw", 8, 3), KafkaSettings(replication_factor=3))


@pytest.mark.parametrize(("have", "fix"), [
    (4, "kafka-topics --alter --topic tracks.raw --partitions 8"),
    (16, "TRACKFLOW_KAFKA__PARTITIONS=16"),
])
def test_another_partition_count_is_refused_naming_topic_and_fix(have: int, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_layout(described("tracks.raw", have, 1), KafkaSettings())
    assert "tracks.raw" in str(err.value) and fix in str(err.value)


def test_another_replication_factor_is_refused_naming_topic_and_fix() -> None:
    with pytest.raises(ConfigError) as err:
        check_layout(described("tracks.enriched", 8, 1), KafkaSettings(replication_factor=3))
    message = str(err.value)
    assert "tracks.enriched" in message and "replication factor 1" in message
    assert "TRACKFLOW_KAFKA__REPLICATION_FACTOR=1" in message


def test_created_topics_carry_min_insync_replicas() -> None:
    specs = topic_specs(KafkaSettings(replication_factor=3))
    assert {s.config["min.insync.replicas"] for s in specs} == {"2"}
