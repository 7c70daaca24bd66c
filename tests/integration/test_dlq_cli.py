"""``trackflow dlq`` against a real broker: stats, show filters, replay, its ledger, errors.

Each test gets its own raw and dead-letter topics (``topic_names``) and writes a few dead letters
with the headers the worker writes (``dead_letter_headers``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from click.testing import CliRunner, Result

from tests.integration.harness import TopicNames, collect, create_topics, produce
from trackflow.agents.deadletter import (
    ERROR_PREFIXES,
    H_RAW_ATTEMPT,
    Failure,
    Origin,
    dead_letter_headers,
)
from trackflow.schemas.codec import AVRO_CONTENT_TYPE, CONTENT_TYPE, JSON_CONTENT_TYPE, encode
from trackflow.streams.cli.dlq import dlq
from trackflow.streams.dlq_letters import H_REPLAY_OF
from trackflow.streams.topics import LEDGER_SUFFIX

pytestmark = pytest.mark.integration

MIN_MS = 60_000
SPOTIFY_503 = Failure("provider:spotify", "TransientError", "spotify: 503 Service Unavailable",
                      "provider_unavailable", True, "spotify")
BAD_ISRC = Failure("validate", "InvalidRecord", "isrc 'XX' is not 12 characters", "invalid_isrc",
                   False)
GARBAGE = Failure("decode", "DecodeError", "message does not start with the Avro marker",
                  "not_avro", False)


def _track(track_id: str) -> dict[str, Any]:
    return {"track_id": track_id, "artist": "Nina Simone", "title": f"Song {track_id}",
            "isrc": None, "duration_ms": 200_000, "album": None, "spotify_id": None,
            "source": "test", "source_ref": None, "observed_at": None, "attributes": {}}


def _letters(raw_topic: str) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """Four dead letters: two spotify 503s (5 min and 2 h old), an invalid record, garbage."""
    now = int(time.time() * 1000)
    json_ct = [(CONTENT_TYPE, JSON_CONTENT_TYPE.encode())]
    avro_ct = [(CONTENT_TYPE, AVRO_CONTENT_TYPE.encode())]
    specs = [
        (b"t-1", json.dumps(_track("t-1")).encode(), json_ct, SPOTIFY_503, 5 * MIN_MS),
        (b"t-2", encode("RawTrack", _track("t-2")), avro_ct, SPOTIFY_503, 120 * MIN_MS),
        # A record that was replayed before: its stale attempt header must not survive a replay.
        (b"t-3", json.dumps(_track("t-3")).encode(),
         [*json_ct, (H_RAW_ATTEMPT, b"3")], BAD_ISRC, 3 * 1_440 * MIN_MS),
        (None, b"\x00garbage", [], GARBAGE, 0),
    ]
    out = []
    for offset, (key, value, original, failure, age_ms) in enumerate(specs):
        headers = dead_letter_headers(original, failure,
                                      Origin(raw_topic, 0, offset, now - age_ms, "it-group"),
                                      attempt=1, now_ms=now - age_ms)
        out.append((key, value, headers))
    return out


@pytest.fixture
def kafka() -> str:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS is not set: the dlq CLI tests need a real broker")
    return bootstrap


@pytest.fixture
def dead_letters(kafka: str, topic_names: TopicNames
                 ) -> Iterator[tuple[TopicNames, list[tuple[bytes | None, bytes, Any]]]]:
    """The test's raw and dlq topics (2 partitions each) with four dead letters on the dlq."""
    letters = _letters(topic_names.raw)
    asyncio.run(create_topics(kafka, [topic_names.raw, topic_names.dlq], 2))
    asyncio.run(produce(kafka, topic_names.dlq, letters))
    yield topic_names, letters
    asyncio.run(_delete_topics(kafka, [topic_names.raw, topic_names.dlq,
                                       topic_names.dlq + LEDGER_SUFFIX]))


@pytest.fixture
def run(kafka: str, topic_names: TopicNames) -> Any:
    """Invoke ``trackflow dlq ARGS`` with this test's topics."""
    env = {**topic_names.env(), "KAFKA_BOOTSTRAP_SERVERS": kafka, "COLUMNS": "200",
           "TRACKFLOW_KAFKA__BOOTSTRAP_SERVERS": kafka}

    def invoke(*args: str, bootstrap: str | None = None) -> Result:
        if bootstrap:
            env["TRACKFLOW_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
        return CliRunner().invoke(dlq, list(args), env=env, catch_exceptions=False)

    return invoke


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        gone = [n for n in names if n in existing]
        if gone:
            await admin.delete_topics(gone)
    finally:
        await admin.close()


async def _record_count(bootstrap: str, topic: str) -> int:
    """Records on ``topic`` by end offsets (0 when it does not exist)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        return sum((await consumer.end_offsets(tps)).values()) if tps else 0
    finally:
        await consumer.stop()


def _jsonl(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_stats_counts_every_dimension(dead_letters: Any, run: Any) -> None:
    result = run("stats", "--format", "json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["total"] == 4
    assert stats["stage"] == {"provider:spotify": 2, "validate": 1, "decode": 1}
    assert stats["provider"] == {"spotify": 2, "(none)": 2}
    assert stats["retryable"] == {"true": 2, "false": 2}
    assert stats["age"] == {"<1 m": 1, "<10 m": 1, "<1 d": 1, "older": 1}

    table = run("stats")
    assert table.exit_code == 0, table.output
    assert "4 dead letters in" in table.stdout
    for title in ("by stage", "by provider", "by error class", "by reason", "by retryable",
                  "by age"):
        assert title in table.stdout, f"expected a table titled {title!r}:\n{table.stdout}"


def test_show_filters(dead_letters: Any, run: Any) -> None:
    def keys(*args: str) -> list[str | None]:
        result = run("show", "--format", "jsonl", *args)
        assert result.exit_code == 0, result.output
        return sorted((item["key"] for item in _jsonl(result)), key=str)

    assert keys() == [None, "t-1", "t-2", "t-3"]
    assert keys("--provider", "spotify") == ["t-1", "t-2"]
    assert keys("--provider", "spotify", "--since", "1h") == ["t-1"]
    assert keys("--stage", "provider") == ["t-1", "t-2"]
    assert keys("--not-retryable", "--error-class", "InvalidRecord") == ["t-3"]
    assert keys("--reason", "invalid_isrc", "--reason", "not_avro") == [None, "t-3"]
    assert keys("--track-id", "t-2") == ["t-2"]

    item = _jsonl(run("show", "--format", "jsonl", "--track-id", "t-2"))[0]
    assert item["value"]["title"] == "Song t-2", "expected the Avro value decoded"
    assert item["errors"]["trackflow.errors.reason"] == "provider_unavailable"
    assert item["headers"] == {"content-type": AVRO_CONTENT_TYPE}

    table = run("show", "--stage", "decode")
    assert table.exit_code == 0, table.output
    assert "not_avro" in table.stdout

    none = run("show", "--provider", "nobody", "--retryable")
    assert none.exit_code == 0, none.output
    assert "no dead letters match provider=nobody retryable=true" in none.output


def test_replay_publishes_matching_records_once(dead_letters: Any, run: Any, kafka: str) -> None:
    names, letters = dead_letters
    dry = run("replay", "--provider", "spotify", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would replay 2" in dry.output
    assert asyncio.run(_record_count(kafka, names.raw)) == 0, "a dry run must publish nothing"

    first = run("replay", "--provider", "spotify", "--yes")
    assert first.exit_code == 0, first.output
    assert "matched 2, replayed 2" in first.output
    replayed = asyncio.run(collect(kafka, names.raw, until=2, timeout=10))
    assert len(replayed) == 2
    originals = {key: (value, headers) for key, value, headers in letters}
    for msg in replayed:
        value, headers = originals[msg.key]
        assert msg.value == value, "expected the original value bytes"
        out = dict(msg.headers)
        assert out[CONTENT_TYPE] == dict(headers)[CONTENT_TYPE], "content-type must be kept"
        assert out[H_RAW_ATTEMPT] == b"1"
        assert out[H_REPLAY_OF].decode().startswith(f"{names.dlq}/")
        assert not [k for k, _ in msg.headers if k.startswith(ERROR_PREFIXES)], (
            "expected no error headers on the replayed record")

    second = run("replay", "--provider", "spotify", "--yes")
    assert second.exit_code == 0, second.output
    assert "replayed 0" in second.output and "skipped 2 already replayed" in second.output
    assert "already replayed" in second.output
    assert asyncio.run(_record_count(kafka, names.raw)) == 2, "a second replay republished"

    stale = run("replay", "--track-id", "t-3", "--yes")
    assert "replayed 1" in stale.output, stale.output
    t3 = [m for m in asyncio.run(collect(kafka, names.raw, until=3, timeout=10))
          if m.key == b"t-3"]
    assert [v for k, v in t3[0].headers if k == H_RAW_ATTEMPT] == [b"1"], (
        "expected exactly one attempt header, reset to 1")

    forced = run("replay", "--provider", "spotify", "--yes", "--force")
    assert "replayed 2" in forced.output, forced.output
    assert asyncio.run(_record_count(kafka, names.raw)) == 5


def test_missing_topic_is_named(run: Any, kafka: str) -> None:
    missing = f"it.missing.{uuid.uuid4().hex[:8]}"
    for args in (["stats"], ["show"], ["replay", "--yes"]):
        result = run(*args, "--topic", missing)
        assert result.exit_code != 0, f"expected {args[0]} to fail on a missing topic"
        assert f"topic {missing} does not exist" in result.output
        assert "worker" in result.output, "expected the hint that a worker creates the topics"


def test_unreachable_broker_gives_the_hint(run: Any) -> None:
    result = run("stats", bootstrap="127.0.0.1:1")
    assert result.exit_code != 0
    assert "cannot reach Kafka at 127.0.0.1:1" in result.output
