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
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
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




_MINUTE_MS = 60_000
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS


def compaction(*, segment_ms: int, max_lag_ms: int, min_lag_ms: int = 0) -> dict[str, str]:
    """Configs of a compacted topic whose bytes stay within a small factor of its live keys.

    A compacted topic is only cleaned in closed segments, and the broker closes one after
    ``segment.ms`` (7 days by default) or 1 GiB: a table written often would otherwise replay
    days of superseded records on every restart. ``min.cleanable.dirty.ratio`` 0.1 starts the
    cleaner once a tenth of the closed log is superseded (the default, half, lets the log reach
    twice its live data), ``max.compaction.lag.ms`` bounds how long a superseded record waits
    whatever the ratio, and ``delete.retention.ms`` keeps tombstones a day, long enough for a
    consumer that fell behind to see a key deleted. ``min.compaction.lag.ms`` keeps every
    record at least that long, superseded or not.
    """
    return {"cleanup.policy": "compact", "segment.ms": str(segment_ms),
            "min.cleanable.dirty.ratio": "0.1", "max.compaction.lag.ms": str(max_lag_ms),
            "min.compaction.lag.ms": str(min_lag_ms), "delete.retention.ms": str(_DAY_MS)}


#: The tables' changelogs: small live data, written all day; replayed by every worker that
#: takes a partition without a disk copy of it.
CHANGELOG_COMPACTION = compaction(segment_ms=10 * _MINUTE_MS, max_lag_ms=_HOUR_MS)
#: The refresh requests: a request replaced or deleted within minutes to hours. A track's last
#: round publishes its tombstone; a newer request of the same track (its input changed)
#: published before that tombstone must survive it until it has been read, so every request
#: stays a day (a refresh backlog a day deep would lose requests).
REFRESH_COMPACTION = compaction(segment_ms=_HOUR_MS, max_lag_ms=2 * _DAY_MS,
                                min_lag_ms=_DAY_MS)
#: The enriched tracks: the catalog itself, read whole by a new consumer.
ENRICHED_COMPACTION = compaction(segment_ms=6 * _HOUR_MS, max_lag_ms=_DAY_MS)


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
        TopicSpec(kafka.enriched_topic, p, {**ENRICHED_COMPACTION, **size}),
        TopicSpec(kafka.dlq_topic, p, size),
        # Compacted: a track's latest refresh request replaces its earlier ones, and a track
        # past its last round is deleted.
        TopicSpec(kafka.refresh_topic, p, {**REFRESH_COMPACTION, **size}),
        TopicSpec(kafka.parked_topic, p, {"retention.ms": str(30 * 24 * 3600 * 1000), **size}),
        # Faust would create these itself, but a consumer that subscribes before the creation
        # is visible ignores them until its next metadata refresh (minutes), and the first
        # table write then fails with PartitionsMismatch. Creating them first avoids the race.
        *(TopicSpec(changelog_topic(kafka.consumer_group, t), p,
                    {**CHANGELOG_COMPACTION, "min.insync.replicas": str(kafka.min_isr)})
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
        try:
            await reconcile_configs(admin, [s for s in specs if s.name in existing])
        except (KafkaToolError, KafkaError) as exc:
            # Without DescribeConfigs / AlterConfigs on its topics the pipeline still runs;
            # only their compaction stays the broker's default (README "State").
            log.warning("event=topic_configs_not_set error=%s fix=%r", str(exc)[:300],
                        "grant the worker AlterConfigs on its topics, or set the configs of "
                        "streams/topics.py with kafka-configs --alter")
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


#: DescribeConfigs' source of a value set on the topic itself.
_DYNAMIC_TOPIC_CONFIG = 1


async def topic_configs(admin: AIOKafkaAdminClient, names: list[str]
                        ) -> dict[str, dict[str, tuple[str | None, bool]]]:
    """Each topic's configs: name -> (value, set on the topic itself)."""
    if not names:
        return {}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    found: dict[str, dict[str, tuple[str | None, bool]]] = {}
    for response in responses:
        # Version 0 has "is default" where later versions name the value's source.
        v0 = response.API_VERSION == 0
        for error_code, message, _type, name, entries in response.resources:
            if error_code:
                raise KafkaToolError(f"cannot read the configs of topic {name}: {message}")
            found[name] = {entry[0]: (entry[1], not entry[3] if v0
                                      else entry[3] == _DYNAMIC_TOPIC_CONFIG)
                           for entry in entries}
    return found


def config_changes(spec: TopicSpec, have: dict[str, tuple[str | None, bool]]) -> dict[str, str]:
    """The configs of ``spec`` an existing topic does not have."""
    return {k: v for k, v in spec.config.items() if have.get(k, (None, False))[0] != v}


async def reconcile_configs(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Give existing topics the configs trackflow sets (a topic made by an older release has
    no compaction settings), keeping the other configs set on each topic: the broker's
    AlterConfigs replaces a topic's whole set, so the set sent is the topic's own plus ours."""
    current = await topic_configs(admin, [s.name for s in specs])
    resources = []
    for spec in specs:
        have = current.get(spec.name, {})
        changes = config_changes(spec, have)
        if not changes:
            continue
        own = {k: v for k, (v, dynamic) in have.items() if dynamic and v is not None}
        resources.append(ConfigResource(ConfigResourceType.TOPIC, spec.name,
                                        configs={**own, **spec.config}))
        log.warning("event=topic_configs_updated topic=%s configs=%s", spec.name,
                    ",".join(f"{k}={v}" for k, v in sorted(changes.items())))
    if resources:
        for response in await admin.alter_configs(resources):
            for error_code, message, _type, name in response.resources:
                if error_code:
                    raise KafkaToolError(f"cannot set the configs of topic {name}: {message}; "
                                         "trackflow needs AlterConfigs on its topics")


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
