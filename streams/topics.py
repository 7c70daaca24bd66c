"""Create trackflow's topics with their partition counts and configs: the one place that does.

Broker auto-creation stays off, so a worker that started against a fresh cluster must create its
topics itself, before Faust subscribes to them. The replay ledger of ``trackflow dlq replay`` is
created here too, by the first replay rather than by the worker, which never reads it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from trackflow.agents.tables import TABLES
from trackflow.providers.errors import ConfigError
from trackflow.streams.kafka_probe import security_problem
from trackflow.streams.kafka_security import aiokafka_client_kwargs
from trackflow.streams.settings import KafkaSettings

log = logging.getLogger("trackflow.streams.topics")

UNREACHABLE_HINT = (
    "start a local broker with `eval \"$(trackflow stack up)\"` "
    "or point KAFKA_BOOTSTRAP_SERVERS at a running cluster"
)


class KafkaToolError(RuntimeError):
    """A Kafka operation of a command-line tool that cannot go on; the message says why and
    what to do. The CLI prints it; the Python API raises it."""


class KafkaUnavailable(KafkaToolError):
    """Kafka did not answer at the configured address, or refused our credentials."""

    def __init__(self, bootstrap: str, cause: BaseException, hint: str = UNREACHABLE_HINT
                 ) -> None:
        super().__init__(f"cannot reach Kafka at {bootstrap} ({type(cause).__name__}): {hint}")


async def unavailable(kafka: KafkaSettings, cause: BaseException) -> KafkaUnavailable:
    """The error for a client that could not start, naming the setting to fix when it was
    the security (a wrong password, an unknown CA) rather than the address."""
    problem = await security_problem(kafka)
    return KafkaUnavailable(kafka.bootstrap_servers, cause, problem or UNREACHABLE_HINT)


class TopicMissing(KafkaToolError):
    """A topic a tool reads or writes does not exist."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic} does not exist: start a worker once (it creates the "
                         "topics) or check the name")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic trackflow owns."""

    name: str
    partitions: int
    config: dict[str, str]




def changelog_topic(consumer_group: str, table: str) -> str:
    """The changelog topic Faust uses for ``table`` in an app whose id is ``consumer_group``."""
    return f"{consumer_group}-{table}-changelog"


def topic_specs(kafka: KafkaSettings) -> list[TopicSpec]:
    """The pipeline's topics and the tables' changelogs, with their configs."""
    p = kafka.partitions
    # Every topic takes what the worker publishes at most, so that a dead letter cut to
    # kafka.max_message_bytes always fits (the broker's default is a few bytes over 1 MiB).
    size = {"max.message.bytes": str(kafka.max_message_bytes),
            "min.insync.replicas": str(kafka.min_isr)}
    return [
        TopicSpec(kafka.raw_topic, p, size),
        # Compacted: the latest, most complete version of a track wins.
        TopicSpec(kafka.enriched_topic, p, {"cleanup.policy": "compact", **size}),
        TopicSpec(kafka.dlq_topic, p, size),
        # Compacted: a track's latest refresh request replaces its earlier ones.
        TopicSpec(kafka.refresh_topic, p, {"cleanup.policy": "compact", **size}),
        TopicSpec(kafka.parked_topic, p, {"retention.ms": str(30 * 24 * 3600 * 1000), **size}),
        # Faust would create these itself, but a consumer that subscribes before the creation
        # is visible ignores them until its next metadata refresh (minutes), and the first
        # table write then fails with PartitionsMismatch. Creating them first avoids the race.
        *(TopicSpec(changelog_topic(kafka.consumer_group, t), p,
                    {"cleanup.policy": "compact", "min.insync.replicas": str(kafka.min_isr)})
          for t in TABLES),
    ]


#: ``trackflow dlq replay`` records replays in ``<dlq topic>`` plus this.
LEDGER_SUFFIX = ".replays"


def replay_ledger_topic(kafka: KafkaSettings) -> str:
    """The replay ledger's name: ``tracks.dlq.replays`` by default."""
    return kafka.dlq_topic + LEDGER_SUFFIX


def replay_ledger_spec(kafka: KafkaSettings) -> TopicSpec:
    """The replay ledger: compacted, since only the latest replay of a dead letter counts."""
    # One partition: the ledger is small and always read whole, by one operator's command.
    return TopicSpec(replay_ledger_topic(kafka), 1, {"cleanup.policy": "compact"})


async def admin_client(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    """A started admin client, or KafkaUnavailable with a hint."""
    admin = AIOKafkaAdminClient(**aiokafka_client_kwargs(kafka), request_timeout_ms=10_000)
    try:
        await admin.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await admin.close()
        raise await unavailable(kafka, exc) from None
    return admin


async def topic_partitions(kafka: KafkaSettings, topic: str) -> set[int]:
    """The partition ids of ``topic`` as the broker knows them now; empty when it does not exist."""
    admin = await admin_client(kafka)
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["partition"] for t in described if t.get("error_code", 0) == 0
            for p in t.get("partitions", [])}


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], partitions: int,
                            timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        ready = [t for t in described if t.get("error_code", 0) == 0
                 and len(t.get("partitions", [])) >= partitions
                 and all(p.get("leader", -1) >= 0 for p in t["partitions"])]
        if len(ready) == len(names):
            return
        if time.monotonic() > deadline:
            log.warning("event=topics_not_ready topics=%s", ",".join(names))
            return
        await asyncio.sleep(0.2)


async def ensure_topics(kafka: KafkaSettings) -> list[str]:
    """Create missing topics; return the names created. Refuses topics with fewer partitions."""
    admin = await admin_client(kafka)
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        specs = topic_specs(kafka)
        missing = [s for s in specs if s.name not in existing]
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(s.name, s.partitions, kafka.replication_factor, topic_configs=s.config)
                    for s in missing
                ])
            except TopicAlreadyExistsError:
                pass  # another worker won the race
            created = [s.name for s in missing]
            log.info("event=topics_created topics=%s partitions=%d", ",".join(created),
                     kafka.partitions)
            # Creation returns before every partition has a leader; a consumer that subscribes
            # earlier ignores the topic until its next metadata refresh, minutes later.
            await _wait_for_leaders(admin, created, kafka.partitions)
        described = await admin.describe_topics([s.name for s in specs if s.name in existing])
        for topic in described:
            check_layout(topic, kafka)
    finally:
        await admin.close()
    return created


def check_layout(topic: dict[str, Any], kafka: KafkaSettings) -> None:
    """ConfigError naming the topic and the fix when an existing topic's partition count or
    replication differs from the settings: the tables' changelogs must match the sources
    partition for partition, and a topic with fewer replicas than asked for is not as durable
    as the operator believes."""
    name, partitions = topic["topic"], topic.get("partitions", [])
    have = len(partitions)
    if not have:
        return
    if have < kafka.partitions:
        raise ConfigError(
            "kafka.partitions",
            f"topic {name} has {have} partitions, fewer than the configured {kafka.partitions}; "
            f"add partitions with `kafka-topics --alter --topic {name} --partitions "
            f"{kafka.partitions}` or set TRACKFLOW_KAFKA__PARTITIONS={have}")
    if have > kafka.partitions:
        raise ConfigError(
            "kafka.partitions",
            f"topic {name} has {have} partitions, more than the configured {kafka.partitions} "
            f"(partitions cannot be removed); set TRACKFLOW_KAFKA__PARTITIONS={have}")
    replicas = {len(p.get("replicas", [])) for p in partitions}
    if replicas != {kafka.replication_factor}:
        shown = ",".join(str(r) for r in sorted(replicas))
        raise ConfigError(
            "kafka.replication_factor",
            f"topic {name} has replication factor {shown}, not the configured "
            f"{kafka.replication_factor}; change it with kafka-reassign-partitions, or set "
            f"TRACKFLOW_KAFKA__REPLICATION_FACTOR={shown} to accept it")


async def ensure_replay_ledger(kafka: KafkaSettings) -> bool:
    """Create the replay ledger topic when missing; True when this call created it."""
    spec = replay_ledger_spec(kafka)
    admin = await admin_client(kafka)
    try:
        if spec.name in set(await admin.list_topics()):
            return False
        try:
            await admin.create_topics([NewTopic(spec.name, spec.partitions,
                                                kafka.replication_factor,
                                                topic_configs=spec.config)])
        except TopicAlreadyExistsError:
            return False  # another operator's replay created it first
        log.info("event=topics_created topics=%s partitions=%d", spec.name, spec.partitions)
        return True
    finally:
        await admin.close()
