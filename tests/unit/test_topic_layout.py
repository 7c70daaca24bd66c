"""A worker refuses an existing topic whose partitions or replication differ, naming the fix."""

from __future__ import annotations

from typing import Any

import pytest

from trackflow.providers.errors import ConfigError
from trackflow.streams.settings import KafkaSettings
from trackflow.streams.topics import check_layout, config_changes, topic_specs


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


def test_every_compacted_topic_is_cleaned_well_before_the_brokers_defaults() -> None:
    for spec in topic_specs(KafkaSettings()):
        if spec.config.get("cleanup.policy") != "compact":
            continue
        # Broker defaults: a 7-day segment (never cleaned while active), a ratio of 0.5.
        assert int(spec.config["segment.ms"]) <= 6 * 3600 * 1000, spec.name
        assert float(spec.config["min.cleanable.dirty.ratio"]) <= 0.1, spec.name
        assert int(spec.config["max.compaction.lag.ms"]) <= 2 * 24 * 3600 * 1000, spec.name
        assert int(spec.config["min.compaction.lag.ms"]) <= int(
            spec.config["max.compaction.lag.ms"]), spec.name
        assert "delete.retention.ms" in spec.config, spec.name
    compacted = {s.name for s in topic_specs(KafkaSettings())
                 if s.config.get("cleanup.policy") == "compact"}
    assert {"tracks.enriched", "tracks.enriched.refresh"} <= compacted
    refresh = next(s for s in topic_specs(KafkaSettings()) if s.name == "tracks.enriched.refresh")
    # A newer request published before a finished track's tombstone outlives it by a day.
    assert int(refresh.config["min.compaction.lag.ms"]) >= 24 * 3600 * 1000


def test_only_configs_that_differ_are_changed() -> None:
    spec = topic_specs(KafkaSettings())[1]
    have = {k: (v, True) for k, v in spec.config.items()}
    assert config_changes(spec, have) == {}
    have["segment.ms"] = ("604800000", False)
    assert config_changes(spec, have) == {"segment.ms": spec.config["segment.ms"]}


async def test_a_worker_without_the_right_to_alter_configs_starts_anyway(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import trackflow.streams.topics as topics

    kafka = KafkaSettings()
    names = [s.name for s in topic_specs(kafka)]

    class Admin:
        async def list_topics(self) -> list[str]:
            return names

        async def describe_topics(self, wanted: list[str]) -> list[dict[str, Any]]:
            return [described(n, kafka.partitions, 1) for n in wanted]

        async def describe_configs(self, resources: Any) -> Any:
            raise topics.KafkaToolError("TopicAuthorizationFailed")

        async def close(self) -> None:
            pass

    async def admin(_: Any) -> Admin:
        return Admin()

    monkeypatch.setattr(topics, "admin_client", admin)
    assert await topics.ensure_topics(kafka) == []
    assert "event=topic_configs_not_set" in caplog.text
