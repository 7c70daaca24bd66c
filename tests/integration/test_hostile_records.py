"""Hostile records from an independent client (librdkafka) never stop the worker.

Every record Kafka can hold goes in — tombstones with and without a key, empty values, random
bytes, damaged Avro, broken and hostile JSON, wrong and binary content types, duplicated and null
headers, values too large to dead-letter unchanged — and every one comes out exactly once, on
``tracks.enriched`` or ``tracks.dlq``, while the worker stays up.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

import pytest

from tests.integration.harness import TopicNames, collect, metric_value, scrape
from trackflow.agents.deadletter import H_OFFSET, H_PARTITION, H_VALUE_BYTES, H_VALUE_NULL
from trackflow.schemas.codec import AVRO_CONTENT_TYPE, JSON_CONTENT_TYPE, encode

pytestmark = pytest.mark.integration

confluent_kafka = pytest.importorskip("confluent_kafka")

TOTAL = 3_000
NO_PROVIDERS = {"TRACKFLOW_WATERFALL__ORDER": "[]"}
AVRO = ("content-type", AVRO_CONTENT_TYPE.encode())
JSON = ("content-type", JSON_CONTENT_TYPE.encode())
Headers = list[tuple[str, bytes | None]]


def _valid(i: int) -> dict[str, Any]:
    return {"track_id": f"ok-{i}", "artist": f"Artist {i % 89}", "title": f"Song {i}",
            "isrc": None, "duration_ms": 200_000 + i, "album": None, "spotify_id": None,
            "source": "fuzz", "source_ref": str(i), "observed_at": None, "attributes": {}}


def hostile(i: int, rng: random.Random) -> tuple[bytes | None, bytes | None, Headers, bool]:
    """(key, value, headers, should be enriched) for record ``i``: every kind, in turn."""
    good = _valid(i)
    avro = encode("RawTrack", good)
    kind = i % 17
    if i % 997 == 500:  # a few values that fit tracks.raw but not a dead letter beside them
        return f"big-{i}".encode(), rng.randbytes(1_048_100), [("x", b"y" * 100)], False
    cases: list[tuple[bytes | None, bytes | None, Headers, bool]] = [
        (None, None, [], False),                                        # a tombstone, no key
        (f"k{i}".encode(), None, [AVRO], False),                        # a tombstone with a key
        (None, rng.randbytes(rng.randint(1, 400)), [], False),          # random bytes, no key
        (f"k{i}".encode(), b"", [JSON], False),                         # an empty value
        (f"k{i}".encode(), avro[:rng.randint(0, len(avro) - 1)], [AVRO], False),  # truncated
        (f"k{i}".encode(), b'{"track_id": "x", "artist": ', [JSON], False),  # broken JSON
        (f"k{i}".encode(), b"[" * 50_000, [JSON], False),               # nested too deeply
        (f"k{i}".encode(), json.dumps({**good, "duration_ms": 10**30}).encode(), [JSON], False),
        (f"k{i}".encode(), json.dumps({**good, "artist": ["a"]}).encode(), [JSON], False),
        (f"k{i}".encode(), json.dumps(good).encode(), [("content-type", b"text/plain")], False),
        (f"k{i}".encode(), avro, [("content-type", b"\xff\xfe\x00")], False),  # binary type
        (f"k{i}".encode(), encode("RawTrack", {**good, "title": "t" * 20_000}), [AVRO], False),
        (f"k{i}".encode(), "\u0000\ud7ff".encode() + rng.randbytes(30), [JSON], False),
        # Valid records with odd headers: duplicated (the last content-type wins), binary, null.
        (good["track_id"].encode(), avro, [JSON, AVRO, ("x", b"\x00\xff"), ("x", b"\x01")], True),
        (good["track_id"].encode(), avro, [("trace", None), ("bin", rng.randbytes(64))], True),
        (None, json.dumps(good).encode(), [JSON], True),                # valid, no key
        (good["track_id"].encode(), avro, [], True),                    # plain valid Avro
    ]
    return cases[kind]


def produce_with_librdkafka(bootstrap: str, topic: str,
                            records: list[tuple[bytes | None, bytes | None, Headers, bool]]
                            ) -> list[tuple[int, int]]:
    """Produce with confluent-kafka (librdkafka); returns each record's (partition, offset)."""
    producer = confluent_kafka.Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
        "message.max.bytes": 1_048_576, "enable.idempotence": True})
    where: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def delivered(i: int) -> Any:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(f"record {i}: {err}")
            else:
                where[i] = (msg.partition(), msg.offset())
        return report

    for i, (key, value, headers, _) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers,
                                 on_delivery=delivered(i))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0, "librdkafka could not deliver every record"
    assert not errors, f"the broker refused records: {errors[:5]}"
    return [where[i] for i in range(len(records))]


async def test_every_hostile_record_ends_enriched_or_dead_lettered_once(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any) -> None:
    rng = random.Random(10)
    worker = worker_factory(partitions=4, extra_env=NO_PROVIDERS)
    await worker.wait_ready()  # the worker creates the topics, with their size limits
    records = [hostile(i, rng) for i in range(TOTAL)]
    positions = await asyncio.to_thread(produce_with_librdkafka, bootstrap, topic_names.raw,
                                        records)
    to_enrich = sum(1 for r in records if r[3])
    to_dlq = TOTAL - to_enrich

    await collect(bootstrap, topic_names.enriched, until=to_enrich, timeout=180)
    await collect(bootstrap, topic_names.dlq, until=to_dlq, timeout=120)
    parked = await collect(bootstrap, topic_names.parked, until=to_dlq, timeout=120)
    # Read again, waiting for one more than expected: a record published twice shows up here.
    enriched = await collect(bootstrap, topic_names.enriched, until=to_enrich + 1, timeout=5)
    dlq = await collect(bootstrap, topic_names.dlq, until=to_dlq + 1, timeout=5)

    assert worker.alive(), f"the worker stopped:\n{worker.log_text()[-3000:]}"
    # Enriched records by track_id (no key: the worker keys the output by the track_id).
    out_keys = Counter(m.key for m in enriched)
    expected = Counter(json.loads(r[1])["track_id"].encode() if r[0] is None else r[0]
                       for r in records if r[3] and r[1] is not None)
    assert out_keys == expected, (
        f"enriched: {sum(out_keys.values())} records for {len(out_keys)} keys, expected "
        f"{sum(expected.values())}; missing {list(expected - out_keys)[:5]}, "
        f"twice {[k for k, n in out_keys.items() if n > 1][:5]}")
    # Dead letters by the position of the record they stand for.
    by_position = Counter((int(dict(m.headers)[H_PARTITION]), int(dict(m.headers)[H_OFFSET]))
                          for m in dlq)
    want = Counter(pos for pos, r in zip(positions, records, strict=True) if not r[3])
    assert by_position == want, (
        f"dead letters: {sum(by_position.values())} for {len(by_position)} records, expected "
        f"{len(want)}; missing {list(want - by_position)[:5]}, "
        f"twice {[p for p, n in by_position.items() if n > 1][:5]}")
    tombstones = [m for m in dlq if dict(m.headers).get(H_VALUE_NULL) == b"true"]
    assert len(tombstones) == sum(1 for r in records if r[1] is None)
    assert all(m.value == b"" for m in tombstones)
    cut = [m for m in dlq if H_VALUE_BYTES in dict(m.headers)]
    assert len(cut) == sum(1 for r in records if r[1] is not None and len(r[1]) > 1_000_000)
    assert len(parked) == to_dlq, "every dead letter here is not retryable and must be parked"
    metrics = await scrape(worker.web_port)
    assert not metric_value(metrics, "trackflow_records_skipped_total"), "no record was skipped"
    print(f"{TOTAL} hostile records: {len(enriched)} enriched, {len(dlq)} dead-lettered "
          f"({len(tombstones)} tombstones, {len(cut)} cut to fit), {len(parked)} parked")
