"""The Confluent wire format end to end, on a real schema registry (Apicurio Registry, as
``trackflow stack up`` runs it) and with clients trackflow does not use itself: confluent-kafka's
``AvroSerializer`` publishes raw tracks the worker enriches, and its ``AvroDeserializer`` reads
from ``tracks.enriched`` the same values trackflow's own consumer reads. A single-object record
is still read; a Confluent-framed record whose id the registry lacks is a dead letter."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient as ConfluentRegistry
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.integration.harness import TopicNames, collect, free_port, http_json, produce
from trackflow.schemas.codec import AVRO_CONTENT_TYPE, CONTENT_TYPE, confluent_schema_id, encode
from trackflow.schemas.registry import default_registry
from trackflow.streams.client import TrackConsumer, TrackProducer
from trackflow.streams.dlq_replay import letters_of
from trackflow.streams.ingest import stable_track_id
from trackflow.streams.kafka_security import client_security
from trackflow.streams.settings import load_settings
from trackflow.streams.stack.config import READY_TIMEOUT_S, REGISTRY_API, registry_home
from trackflow.streams.stack.prerequisites import ensure_registry, find_java
from trackflow.streams.stack.processes import (
    registry_answers,
    registry_marker,
    start_registry,
    stop_process,
    wait_ready,
)

pytestmark = pytest.mark.integration

NO_PROVIDERS = {"TRACKFLOW_WATERFALL__ORDER": "[]", "TRACKFLOW_WORKER__AGENTS": '["enrich"]'}
TRACKS = 30


@pytest.fixture(scope="module")
def registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry of this module's own, started the way the local stack starts one."""
    state = tmp_path_factory.mktemp("registry-stack")
    port = free_port()
    pid = start_registry(state, port, find_java(), ensure_registry(registry_home()))
    url = f"http://127.0.0.1:{port}{REGISTRY_API}"
    try:
        wait_ready("the schema registry", lambda: registry_answers(url), pid,
                   registry_marker(port), [state / "registry" / "registry.out"],
                   READY_TIMEOUT_S)
        yield url
    finally:
        stop_process(pid, registry_marker(port), "schema registry", 10.0)


def raw(i: int) -> dict[str, Any]:
    artist, title = f"Registry Artist {i % 7}", f"Registry Title {i}"
    return {"track_id": stable_track_id(artist, title), "artist": artist, "title": title,
            "isrc": None, "duration_ms": 200_000 + i, "album": None, "spotify_id": None,
            "source": "confluent-serializer", "source_ref": str(i), "observed_at": None,
            "attributes": {"crawl": "it"}}


def kafka_settings(bootstrap: str, names: TopicNames, registry: str | None) -> Any:
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, **names.env()}
    if registry is not None:
        env["SCHEMA_REGISTRY_URL"] = registry
    return load_settings(env=env).kafka


def confluent_produce(bootstrap: str, topic: str, registry: str,
                      records: list[dict[str, Any]]) -> None:
    """What a Java or Go scraper with Confluent's serializers does, in confluent-kafka."""
    security = client_security(load_settings().kafka.security).confluent_config()
    producer = Producer({"bootstrap.servers": bootstrap, **security, "acks": "all"})
    serializer = AvroSerializer(ConfluentRegistry({"url": registry}),
                                json.dumps(default_registry().latest("RawTrack").schema),
                                conf={"auto.register.schemas": False,
                                      "use.latest.version": True})
    context = SerializationContext(topic, MessageField.VALUE)
    for record in records:
        producer.produce(topic, key=record["track_id"].encode(),
                         value=serializer(record, context))
    assert producer.flush(30) == 0, "every record must be acknowledged"


async def test_confluent_clients_and_trackflow_read_and_write_the_same_records(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any, registry_url: str,
        tmp_path: Path) -> None:
    worker = worker_factory(partitions=2, extra_env={**NO_PROVIDERS,
                                                     "SCHEMA_REGISTRY_URL": registry_url})
    await worker.wait_ready()
    # The worker registered both subjects, BACKWARD compatible.
    subjects = await http_json(f"{registry_url}/subjects")
    assert {f"{topic_names.raw}-value", f"{topic_names.enriched}-value"} <= set(subjects)
    config = await http_json(f"{registry_url}/config/{topic_names.enriched}-value")
    assert config["compatibilityLevel"] == "BACKWARD"

    from_java = [raw(i) for i in range(TRACKS)]
    invalid = {**raw(2000), "artist": ""}  # framed right, refused by validation
    await asyncio.to_thread(confluent_produce, bootstrap, topic_names.raw, registry_url,
                            [*from_java, invalid])
    # trackflow's own producer, with the registry: Confluent framing too.
    async with TrackProducer(kafka_settings(bootstrap, topic_names, registry_url),
                             source="client-api") as producer:
        sent = await producer.send(artist="Client Artist", title="Client Title")
        await producer.flush()
    # A producer without a registry (single-object Avro), and a stranger's id.
    legacy = raw(1000)
    unknown = b"\x00" + (987_654).to_bytes(4, "big") + b"\x02"
    await produce(bootstrap, topic_names.raw, [
        (legacy["track_id"].encode(), encode("RawTrack", legacy),
         [(CONTENT_TYPE, AVRO_CONTENT_TYPE.encode())]),
        (b"stranger", unknown, [])])

    expected = {r["track_id"] for r in from_java} | {sent.track_id, legacy["track_id"]}
    enriched = await collect(bootstrap, topic_names.enriched, until=len(expected), timeout=90)
    dlq = await collect(bootstrap, topic_names.dlq, until=2, timeout=30)
    assert {m.key.decode() for m in enriched} == expected
    enriched_id = (await http_json(
        f"{registry_url}/subjects/{topic_names.enriched}-value/versions/latest"))["id"]
    assert {confluent_schema_id(m.value) for m in enriched} == {enriched_id}, \
        "every enriched record is in the Confluent wire format under the subject's id"

    # confluent-kafka's deserializer and trackflow's consumer read the same values.
    deserializer = AvroDeserializer(ConfluentRegistry({"url": registry_url}))
    context = SerializationContext(topic_names.enriched, MessageField.VALUE)
    theirs = {m.key.decode(): deserializer(m.value, context) for m in enriched}
    ours: dict[str, Any] = {}
    async with TrackConsumer(kafka_settings(bootstrap, topic_names, registry_url),
                             from_beginning=True, idle_timeout_s=3) as consumer:
        async for track in consumer:
            ours[track.track_id] = track
    assert set(ours) == set(theirs) == expected
    for track_id, value in theirs.items():
        assert (value["title"], value["status"], value["input"]["source"]) == \
            (ours[track_id].title, ours[track_id].status, ours[track_id].input.source)
    assert {theirs[r["track_id"]]["input"]["attributes"]["crawl"] for r in from_java} == {"it"}

    reasons = {m.key: dict(m.headers)["trackflow.errors.reason"] for m in dlq}
    assert reasons == {b"stranger": b"unknown_schema_id",
                       invalid["track_id"].encode(): b"empty_artist"}
    stranger = next(m for m in dlq if m.key == b"stranger")
    assert dict(stranger.headers)["trackflow.errors.retryable"] == b"false"
    assert stranger.value == unknown, "the dead letter keeps the original bytes"
    # The dead-letter tools read a Confluent-framed letter through the registry.
    letters = {letter.key: letter async for letter in letters_of(
        kafka_settings(bootstrap, topic_names, registry_url), topic_names.dlq,
        enriched_topic=topic_names.enriched)}
    shown = letters[invalid["track_id"].encode()].decoded
    assert shown is not None and shown["value"]["title"] == invalid["title"], shown
    assert worker.alive()
