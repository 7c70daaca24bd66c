"""The Python client API and the CLI built on it, against the real broker and a real worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.harness import (
    REPO,
    TRACKFLOW,
    TopicNames,
    collect,
    create_topics,
    kafka_kwargs,
    snapshot,
)
from trackflow.schemas.codec import decode_raw_track
from trackflow.streams.client import (
    Accepted,
    EnrichedTrack,
    Rejected,
    SyncTrackProducer,
    TrackConsumer,
    TrackProducer,
)
from trackflow.streams.ingest import stable_track_id
from trackflow.streams.settings import load_settings

pytestmark = pytest.mark.integration

NO_PROVIDERS = {"TRACKFLOW_WATERFALL__ORDER": "[]", "TRACKFLOW_WATERFALL__REQUIRED": "[]",
                "TRACKFLOW_WORKER__AGENTS": '["enrich"]'}


def kafka_settings(topics: TopicNames) -> Any:
    """The ``[kafka]`` section the CLI would load for this test's topics."""
    return load_settings(env={**os.environ, **topics.env()}).kafka


async def test_producer_validates_like_the_worker_and_consumer_yields_typed_tracks(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any) -> None:
    worker = worker_factory(partitions=4, extra_env=NO_PROVIDERS)
    await worker.wait_ready()
    kafka = kafka_settings(topic_names)
    async with TrackProducer(kafka, source="it-scraper") as producer:
        a = await producer.send(artist="Daft Punk", title="One More Time", duration="5:20",
                                isrc="gb-duw-00-00059", source_ref="https://example.invalid/1")
        b = await producer.send({"Artist Name": "Moby", "Song": "Porcelain", "length": "241",
                                 "chart_position": "12"})
        # A second version of the same track (same stable id): only the latest is kept below.
        b2 = await producer.send({"artist": "Moby", "title": "Porcelain", "album": "Play"})
        bad_isrc = await producer.send(artist="X", title="Y", isrc="NOT-AN-ISRC")
        no_title = await producer.send(artist="X")
        controls = await producer.send(artist="Bad\x1bArtist", title="T")
    assert isinstance(a, Accepted) and isinstance(b, Accepted) and isinstance(b2, Accepted)
    assert a.delivered.done() and a.delivered.exception() is None, "expected acks before exit"
    assert b.track_id == b2.track_id == stable_track_id("Moby", "Porcelain")
    assert isinstance(bad_isrc, Rejected) and bad_isrc.reason == "invalid_isrc"
    assert bad_isrc.message == "isrc 'NOT-AN-ISRC' does not match CC-XXX-YY-NNNNN"
    assert isinstance(no_title, Rejected) and no_title.reason == "missing_title"
    assert isinstance(controls, Rejected) and controls.reason == "artist_control_chars"
    assert (producer.report.sent, producer.report.rejected_total) == (3, 3)

    raw = await collect(bootstrap, topic_names.raw, until=3, timeout=30)
    assert len(raw) == 3, f"expected exactly the 3 accepted tracks on {topic_names.raw}"
    first = next(decode_raw_track(m.value, m.headers) for m in raw if m.key == a.track_id.encode())
    assert (first["isrc"], first["duration_ms"], first["source"]) == (
        "GBDUW0000059", 320_000, "it-scraper")

    enriched = await collect(bootstrap, topic_names.enriched, until=3, timeout=60)
    assert len(enriched) == 3, "expected the worker to publish every accepted track"
    dlq = await snapshot(bootstrap, topic_names.dlq)
    assert dlq == [], "expected nothing dead-lettered: invalid items never left the producer"

    async with TrackConsumer(kafka, from_beginning=True, latest_only=True,
                             idle_timeout_s=3) as consumer:
        tracks = [t async for t in consumer]
    assert sorted(t.track_id for t in tracks) == sorted({a.track_id, b.track_id})
    by_id = {t.track_id: t for t in tracks}
    moby = by_id[b.track_id]
    assert isinstance(moby, EnrichedTrack) and moby.input.album == "Play", (
        "expected the latest version of the twice-sent track")
    daft = by_id[a.track_id]
    assert daft.status == "partial" and daft.isrc == "GBDUW0000059"
    assert daft.provenance("isrc") is not None and daft.provenance("isrc").provider == "input"  # type: ignore[union-attr]
    assert daft.position is not None and daft.position.topic == topic_names.enriched

    async with TrackConsumer(kafka, from_beginning=True, idle_timeout_s=3) as consumer:
        every = [t async for t in consumer]
    assert len(every) == 3, "expected every version without latest_only"


async def test_latest_only_gives_each_key_of_the_backlog_once_then_every_later_record(
        bootstrap: str, topic_names: TopicNames) -> None:
    # Partitions 0 and 1 hold a backlog (50 keys each, 4 versions, interleaved, and unkeyed
    # records), partition 2 none. Records sent after the consumer started (its backlog's end is
    # fixed then) and before it reads anything land in the middle of its first pass over the
    # backlog, on every partition: they must all come, after the backlog's latest versions.
    topic = topic_names.enriched + ".latest"
    await create_topics(bootstrap, [topic], partitions=3)
    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), acks="all", linger_ms=5)
    await producer.start()

    async def send(records: list[tuple[int, bytes | None, bytes]]) -> None:
        acks = [await producer.send(topic, value=v, key=k, partition=p) for p, k, v in records]
        await asyncio.gather(*acks)

    backlog = [(p, f"k{p}-{i}".encode(), f"v{version}".encode())
               for version in range(4) for p in (0, 1) for i in range(50)]
    backlog += [(p, None, f"unkeyed-{p}-{n}".encode()) for p in (0, 1) for n in range(3)]
    later = [(p, key, b"later") for p in (0, 1, 2) for key in (f"k{p}-0".encode(), b"new")]
    try:
        await send(backlog)
        async with TrackConsumer(kafka_settings(topic_names), topic=topic, from_beginning=True,
                                 latest_only=True, idle_timeout_s=3) as consumer:
            await send(later)
            got = [m async for m in consumer.messages()]
    finally:
        await producer.stop()
    last = {(p, k): v for p, k, v in backlog if k is not None}
    expected = sorted([(p, k, v) for (p, k), v in last.items()]
                      + [r for r in backlog if r[1] is None] + later, key=repr)
    assert sorted([(m.partition, m.key, m.value) for m in got], key=repr) == expected, \
        "each backlog key once, at its last version; unkeyed and later records all"
    for p in (0, 1, 2):
        offsets = [m.offset for m in got if m.partition == p]
        assert offsets == sorted(offsets), f"partition {p} out of offset order"
        values = [m.value for m in got if m.partition == p]
        assert b"later" not in values or values.index(b"later") >= len(values) - 2, \
            f"partition {p}: a record newer than the backlog came before the backlog's end"


async def test_group_consumer_resumes_after_what_it_committed(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any) -> None:
    worker = worker_factory(partitions=2, extra_env=NO_PROVIDERS)
    await worker.wait_ready()
    kafka = kafka_settings(topic_names)
    async with TrackProducer(kafka) as producer:
        report = await producer.send_many(
            {"artist": f"Artist {i}", "title": f"Title {i}"} for i in range(10))
    assert (report.sent, report.rejected_total) == (10, 0)
    assert len(await collect(bootstrap, topic_names.enriched, until=10, timeout=60)) == 10

    group = f"{topic_names.group}-reader"
    async with TrackConsumer(kafka, group_id=group, from_beginning=True, max_records=4,
                             idle_timeout_s=15) as consumer:
        first = [t.track_id async for t in consumer]
    async with TrackConsumer(kafka, group_id=group, from_beginning=True,
                             idle_timeout_s=5) as consumer:
        rest = [t.track_id async for t in consumer]
    assert len(first) == 4 and len(rest) == 6, f"expected 4 then 6, read {first} then {rest}"
    assert not set(first) & set(rest), "expected the second reader to start after the commit"

    # Without a group and without from_beginning: only what arrives after the start.
    async with TrackConsumer(kafka, max_records=2, idle_timeout_s=60) as consumer:
        async def read() -> list[str]:
            return [t.input.title async for t in consumer]

        reader = asyncio.create_task(read())
        await asyncio.sleep(1)
        async with TrackProducer(kafka) as producer:
            await producer.send(artist="Late", title="First")
            await producer.send(artist="Late", title="Second")
        late = await asyncio.wait_for(reader, 60)
    assert sorted(late) == ["First", "Second"], f"expected only the new tracks, read {late}"


async def test_sync_producer_works_from_a_plain_thread(bootstrap: str,
                                                      topic_names: TopicNames) -> None:
    await create_topics(bootstrap, [topic_names.raw], 2)
    kafka = kafka_settings(topic_names)

    def scrape() -> list[Any]:
        with SyncTrackProducer(kafka, source="sync") as producer:
            results = [producer.send({"artist": "A", "title": f"T{i}"}) for i in range(5)]
            results.append(producer.send(artist="A", title="T", duration_ms=5))
        return results

    results = await asyncio.to_thread(scrape)
    assert [type(r).__name__ for r in results] == ["Accepted"] * 5 + ["Rejected"]
    assert results[-1].reason == "duration_out_of_range"
    raw = await collect(bootstrap, topic_names.raw, until=5, timeout=30)
    assert len(raw) == 5


async def test_cli_produce_and_consume_use_the_client_api(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any, tmp_path: Path) -> None:
    worker = worker_factory(partitions=2, extra_env=NO_PROVIDERS)
    await worker.wait_ready()
    csv = tmp_path / "tracks.csv"
    csv.write_text("artist,title,isrc\nMoby,Porcelain,\nMoby,Porcelain,\nX,Y,NOT-AN-ISRC\n"
                   "Air,Sexy Boy,FR-ZA9-98-00001\n")
    env = worker.env_vars()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TRACKFLOW, *args], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=120)

    produced = await asyncio.to_thread(run, "produce", str(csv))
    assert produced.returncode == 0, produced.stderr
    assert "sent 3 records" in produced.stdout and "rejected 1 rows" in produced.stdout
    assert "does not match CC-XXX-YY-NNNNN" in produced.stdout
    assert len(await collect(bootstrap, topic_names.enriched, until=3, timeout=60)) == 3
    consumed = await asyncio.to_thread(run, "consume", "--from-beginning", "--latest-only",
                                       "--format", "jsonl", "--timeout", "3")
    assert consumed.returncode == 0, consumed.stderr
    lines = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert sorted(line["value"]["title"] for line in lines) == ["Porcelain", "Sexy Boy"]
    # --no-validate sends the invalid row on: the worker dead-letters it with the same reason.
    unvalidated = await asyncio.to_thread(run, "produce", "--no-validate", str(csv))
    assert unvalidated.returncode == 0 and "sent 4 records" in unvalidated.stdout
    dlq = await collect(bootstrap, topic_names.dlq, until=1, timeout=60)
    assert len(dlq) == 1 and dict(dlq[0].headers)["trackflow.errors.reason"] == b"invalid_isrc"
    missing = await asyncio.to_thread(run, "consume", "--topic", "no.such.topic")
    assert missing.returncode != 0 and "does not exist" in missing.stderr


def _readme_block(marker: str) -> str:
    """The README's Python example that contains ``marker``."""
    text = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    (block,) = [b for b in blocks if marker in b]
    return block


async def test_the_readme_scrapy_pipeline_works(bootstrap: str, topic_names: TopicNames,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Scrapy is not a dependency: a stand-in for the one name the example imports from it.
    class DropItem(Exception):
        pass

    scrapy = types.ModuleType("scrapy")
    exceptions = types.ModuleType("scrapy.exceptions")
    exceptions.DropItem = DropItem  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "scrapy", scrapy)
    monkeypatch.setitem(sys.modules, "scrapy.exceptions", exceptions)
    for name, value in topic_names.env().items():
        monkeypatch.setenv(name, value)
    await create_topics(bootstrap, [topic_names.raw], 2)
    namespace: dict[str, Any] = {}
    exec(_readme_block("class TrackflowPipeline"), namespace)

    def crawl() -> list[str]:
        spider = types.SimpleNamespace(name="chart-spider")
        pipeline = namespace["TrackflowPipeline"]()
        pipeline.open_spider(spider)
        outcomes = []
        for item in ({"artist": "Moby", "song": "Porcelain", "url": "https://example.invalid/1"},
                     {"artist": "Moby", "title": "Natural Blues", "isrc": "bad"}):
            try:
                pipeline.process_item(item, spider)
                outcomes.append("kept")
            except DropItem as exc:
                outcomes.append(f"dropped: {exc}")
        pipeline.close_spider(spider)
        return outcomes

    outcomes = await asyncio.to_thread(crawl)
    assert outcomes[0] == "kept" and outcomes[1].startswith("dropped: invalid_isrc"), outcomes
    (msg,) = await collect(bootstrap, topic_names.raw, until=1, timeout=30)
    record = decode_raw_track(msg.value, msg.headers)
    assert (record["title"], record["source"], record["source_ref"]) == (
        "Porcelain", "chart-spider", "https://example.invalid/1")


async def test_the_readme_producer_and_consumer_examples_work(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in topic_names.env().items():
        monkeypatch.setenv(name, value)
    worker = worker_factory(partitions=2, extra_env=NO_PROVIDERS)
    await worker.wait_ready()
    namespace: dict[str, Any] = {}
    exec(_readme_block("async def publish"), namespace)
    exec(_readme_block("async def snapshot"), namespace)
    await namespace["publish"]([{"artist_name": "Air", "song": "Sexy Boy", "duration": "4:58"},
                                {"artist": "Air", "title": "x" * 600}])
    published = capsys.readouterr().out
    assert "rejected: title_too_long" in published and "2 sent, 1 rejected" in published
    assert len(await collect(bootstrap, topic_names.enriched, until=2, timeout=60)) == 2
    await namespace["snapshot"](kafka_settings(topic_names))
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[1:3] for line in lines) == [
        ["Air", "Sexy"], ["Daft", "Punk"]], lines
