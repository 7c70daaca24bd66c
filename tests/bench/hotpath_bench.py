"""CPU per record of the worker's own warm path, without Kafka: in-flight tracker, pipeline, codec.

    python tests/bench/hotpath_bench.py [--records N] [--partitions P] [--tracks T]

N records (the throughput benchmark's records: about 300 bytes, drawn in turn from T tracks) are
handed to the enrichment agent's tracker and pipeline as Faust would hand them, with a real
:class:`~agents.waterfall.Waterfall` whose result cache already holds every track's result (the
warm path: no provider is asked), and a stand-in producer that acknowledges every queued record
each millisecond. What is measured is the process CPU time per record: what trackflow adds to
Faust's consume path and the producer, on one core, unaffected by what else the machine runs
(wall-clock rates on a shared machine are not). A script, not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_records, catalog_tracks

from trackflow.agents.enrich import (
    Enrichment,
    EnrichmentPipeline,
)
from trackflow.agents.inflight import InFlight
from trackflow.agents.records import FieldValue, Outcome, input_key, validate_raw
from trackflow.agents.results import ResultCache
from trackflow.agents.waterfall import Waterfall
from trackflow.agents.wire import Schemas
from trackflow.providers.context import AnswersUsed
from trackflow.schemas.codec import (
    AVRO_CONTENT_TYPE,
    CONTENT_TYPE,
    SINGLE_OBJECT,
    WireFormat,
    decode,
    encode,
)
from trackflow.schemas.registry import SchemaVersion, default_registry
from trackflow.streams.settings import Settings

PROVIDERS = ("musicbrainz", "spotify", "deezer", "lastfm", "discogs")


def result_for(raw: dict[str, Any], i: int) -> Enrichment:
    """A full waterfall result, as the warm-up leaves it for a matched track."""
    c = 0.93
    filled = {
        "isrc": FieldValue(f"GBAYE06{i:05d}", "musicbrainz", 0.97),
        "musicbrainz_recording_id": FieldValue(f"{i:08d}-0000-4000-8000-000000000000",
                                               "musicbrainz", 0.97),
        "release_date": FieldValue("2004-05-01", "musicbrainz", 0.97),
        "duration_ms": FieldValue(200_000 + i, "musicbrainz", 0.97),
        "album": FieldValue(f"Album {i}", "musicbrainz", 0.97),
        "spotify_id": FieldValue(f"{i:022d}", "spotify", 0.95),
        "popularity": FieldValue(i % 100, "spotify", 0.95),
        "bpm": FieldValue(120.0 + i % 10, "deezer", c), "key": FieldValue("Am", "deezer", c),
        "deezer_id": FieldValue(100_000 + i, "deezer", c),
        "deezer_rank": FieldValue(400_000 + i, "deezer", c),
        "tags": FieldValue(["electronic", "house", "club"], "lastfm", 0.9),
        "listeners": FieldValue(12_345 + i, "lastfm", 0.9),
        "playcount": FieldValue(999_999 + i, "lastfm", 0.9),
        "label": FieldValue("Some Label", "discogs", 0.9),
        "genres": FieldValue(["house", "dance"], "discogs", 0.9),
        "discogs_release_id": FieldValue(7_000 + i, "discogs", 0.9),
    }
    return Enrichment(filled, [Outcome(p, "matched", confidence=c) for p in PROVIDERS])


class KnownIds:
    """A schema registry whose ids were all looked up already."""

    def __init__(self, writers: dict[int, SchemaVersion | None]) -> None:
        self.writers = writers

    async def writer(self, schema_id: int) -> SchemaVersion | None:
        return self.writers.get(schema_id)


class Message:
    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "tp", "value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes,
                 headers: list[tuple[str, bytes]]) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value, self.headers = key, value, headers
        self.timestamp = time.time()
        self.tp = (topic, partition)


class Event:
    __slots__ = ("acked", "message")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.acked = False

    def ack(self) -> None:
        self.acked = True


class Producer:
    """Queues records and acknowledges all of them every millisecond, as a broker would."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[None]] = []
        self.sent = 0
        self.bytes = 0
        self.last: bytes | None = None

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   headers: Any) -> asyncio.Future[None]:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        self.sent += 1
        self.bytes += len(value or b"")
        self.last = value
        return fut

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.001)
            pending, self.pending = self.pending, []
            for fut in pending:
                if not fut.done():
                    fut.set_result(None)


async def run(args: argparse.Namespace) -> None:
    settings = Settings()
    tracks = catalog_tracks(args.tracks)
    records = bench_records(tracks, args.records)
    headers = [(CONTENT_TYPE, AVRO_CONTENT_TYPE.encode())]
    registry = default_registry()
    # --wire confluent: the raw records and the outputs in the Confluent wire format, the ids
    # already looked up (as a running worker has them after its first record of each).
    raw_wire = WireFormat({registry.latest("RawTrack").fingerprint: 1}) \
        if args.wire == "confluent" else SINGLE_OBJECT
    out_wire = WireFormat({registry.latest("EnrichedTrack").fingerprint: 2}) \
        if args.wire == "confluent" else SINGLE_OBJECT
    values = [encode("RawTrack", r, wire=raw_wire) for r in records]
    results = ResultCache(args.tracks * 2)
    for i in range(len(tracks)):
        raw = validate_raw(records[i])
        results.put(input_key(raw), result_for(raw, i), AnswersUsed(5, time.monotonic() + 3600))
    waterfall = Waterfall(dict.fromkeys(PROVIDERS), settings,  # type: ignore[arg-type]
                          results=results)
    producer = Producer()
    lookup = KnownIds({1: registry.latest("RawTrack"), 2: registry.latest("EnrichedTrack")})
    schemas = Schemas(out_wire, lookup) if args.wire == "confluent" else Schemas()
    pipeline = EnrichmentPipeline(send=producer.send, settings=settings, enricher=waterfall,
                                  kept_encodings=settings.cache.result_cache_size,
                                  schemas=schemas)
    fatal: list[BaseException] = []

    async def on_fatal(exc: BaseException) -> None:
        fatal.append(exc)

    inflight: InFlight[Any] = InFlight(pipeline.handle, lambda e: e.ack(),
                                       max_in_flight=settings.worker.max_in_flight,
                                       max_queued=settings.worker.max_queued, on_fatal=on_fatal,
                                       inline=None if args.tasks else pipeline.handle_inline,
                                       recover=None if args.tasks else pipeline.recover_inline)
    events = [Event(Message(settings.kafka.raw_topic, i % args.partitions, i // args.partitions,
                            r["track_id"].encode(), v, headers))
              for i, (r, v) in enumerate(zip(records, values, strict=True))]
    acker = asyncio.ensure_future(producer.run())
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    for i, event in enumerate(events):
        msg = event.message
        await inflight.submit(msg.tp, msg.offset, msg.key, event)
        if i % args.partitions == 0:
            await asyncio.sleep(0)  # Faust's stream yields to the loop between fetches
    await inflight.drain()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    acker.cancel()
    if fatal:
        raise fatal[0]
    acked = sum(e.acked for e in events)
    assert producer.last is not None
    sample = decode("EnrichedTrack", producer.last, writers=lookup.writers)
    print(f"{args.records:,} records, {args.partitions} partitions, {args.tracks:,} tracks, "
          f"{args.wire} wire format: "
          f"acked {acked:,}, published {producer.sent:,} (mean {producer.bytes / producer.sent:.0f}"
          f" bytes, status {sample['status']})")
    print(f"CPU {cpu:.2f} s = {cpu / args.records * 1e6:.1f} us per record "
          f"(wall {wall:.2f} s, {args.records / wall:,.0f} records/s)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--tracks", type=int, default=2000)
    parser.add_argument("--wire", choices=("single-object", "confluent"),
                        default="single-object", help="the wire format in and out")
    parser.add_argument("--tasks", action="store_true",
                        help="one task per record, as before records were finished inline")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(run(parse_args()))
