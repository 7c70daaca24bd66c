"""The walking skeleton on a real broker: every record ends enriched or dead-lettered."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tests.integration.harness import TopicNames, collect, create_topics, produce
from trackflow.schemas.codec import AVRO_CONTENT_TYPE, JSON_CONTENT_TYPE, decode, encode
from trackflow.streams.ingest import stable_track_id

pytestmark = pytest.mark.integration

# The skeleton path: no provider stage, every valid record is published as partial.
NO_PROVIDERS = {"TRACKFLOW_WATERFALL__ORDER": "[]", "TRACKFLOW_WORKER__AGENTS": '["enrich"]'}
AVRO_H = [("content-type", AVRO_CONTENT_TYPE.encode())]
JSON_H = [("content-type", JSON_CONTENT_TYPE.encode())]


def raw_record(i: int) -> dict[str, Any]:
    artist, title = f"Artist {i % 97}", f"Title number {i}"
    return {"track_id": stable_track_id(artist, title), "artist": artist, "title": title,
            "isrc": None, "duration_ms": 180_000 + i, "album": None, "spotify_id": None,
            "source": "it", "source_ref": str(i), "observed_at": None, "attributes": {}}


def malformed(i: int, rng: random.Random) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Fifty ways to be wrong, each with its own key so it can be accounted for."""
    key = f"bad-{i}".encode()
    good = {**raw_record(100_000 + i), "track_id": key.decode()}
    kind = i % 6
    if kind == 0:
        return key, rng.randbytes(rng.randint(1, 300)), []
    if kind == 1:
        return key, encode("RawTrack", good)[:-7], AVRO_H
    if kind == 2:
        obj = {k: v for k, v in good.items() if k != "title"}
        return key, json.dumps(obj).encode(), JSON_H
    if kind == 3:
        return key, encode("RawTrack", {**good, "artist": "x" * 10_240}), AVRO_H
    if kind == 4:
        return key, encode("RawTrack", {**good, "title": "Bad\x07Title\x1b"}), AVRO_H
    return key, encode("RawTrack", {**good, "isrc": "NOT-AN-ISRC"}), AVRO_H


async def test_2000_tracks_50_malformed_all_accounted_for(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any) -> None:
    rng = random.Random(2)
    worker = worker_factory(partitions=4, extra_env=NO_PROVIDERS)
    await worker.wait_ready()
    good = [raw_record(i) for i in range(1950)]
    records = [(r["track_id"].encode(),
                json.dumps(r).encode() if i % 10 == 0 else encode("RawTrack", r),
                JSON_H if i % 10 == 0 else AVRO_H) for i, r in enumerate(good)]
    bad = [malformed(i, rng) for i in range(50)]
    mixed = records + bad
    rng.shuffle(mixed)
    await produce(bootstrap, topic_names.raw, mixed)

    enriched = await collect(bootstrap, topic_names.enriched, until=1950, timeout=120)
    dlq = await collect(bootstrap, topic_names.dlq, until=50, timeout=60)

    assert len(enriched) == 1950, f"expected exactly 1950 enriched records, got {len(enriched)}"
    assert len(dlq) == 50, f"expected exactly 50 dead letters, got {len(dlq)}"
    assert {m.key for m in enriched} == {r["track_id"].encode() for r in good}
    assert {m.key for m in dlq} == {k for k, _, _ in bad}, "every malformed key must be in the DLQ"
    originals = {k: v for k, v, _ in bad}
    for msg in dlq:
        headers = dict(msg.headers)
        assert headers.get("trackflow.errors.reason"), f"dead letter {msg.key!r} has no reason"
        assert headers["trackflow.errors.retryable"] == b"false"
        assert msg.value == originals[msg.key], "a dead letter must keep the original bytes"
    statuses = {decode("EnrichedTrack", m.value)["status"] for m in enriched}
    assert statuses == {"partial"}
    reasons = sorted({dict(m.headers)["trackflow.errors.reason"].decode() for m in dlq})
    print(f"dead-letter reasons: {reasons}")
    assert worker.alive(), "the worker must survive every malformed record"


@pytest.mark.chaos
async def test_sigkill_mid_run_loses_nothing(bootstrap: str, topic_names: TopicNames,
                                              worker_factory: Any) -> None:
    total = 20_000
    await create_topics(bootstrap, [topic_names.raw], partitions=4)
    good = [raw_record(i) for i in range(total)]
    await produce(bootstrap, topic_names.raw,
                  ((r["track_id"].encode(), encode("RawTrack", r), AVRO_H) for r in good))
    worker = worker_factory(partitions=4, extra_env=NO_PROVIDERS)
    await worker.wait_ready()
    progress = await collect(bootstrap, topic_names.enriched, until=total // 5, timeout=120)
    assert len(progress) < total, "the kill must land mid-run; make the run longer"
    worker.kill9()
    killed_at = len(progress)
    worker.restart()
    await worker.wait_ready()
    out = await collect(bootstrap, topic_names.enriched, until=10 * total, timeout=240,
                        stop_early=lambda msgs: len({m.key for m in msgs}) >= total)
    keys = [m.key for m in out]
    missing = {r["track_id"].encode() for r in good} - set(keys)
    print(f"killed after >= {killed_at} outputs; {len(keys)} outputs for {total} tracks, "
          f"{len(keys) - len(set(keys))} duplicates")
    assert not missing, f"{len(missing)} track_ids never reached tracks.enriched after the crash"
