"""The warm path written with quixstreams (librdkafka underneath): the peer the worker is held to.

    .venv-peer/bin/python tests/bench/quix_peer.py

Run by ``throughput_bench.py --mode peer`` (or ``all``) in a virtualenv of its own
(``.venv-peer``, from ``tests/bench/peer-requirements.txt``): quixstreams is a benchmark peer,
never a dependency of trackflow. Environment: KAFKA_BOOTSTRAP_SERVERS, BENCH_SOURCE, BENCH_SINK,
BENCH_GROUP, BENCH_COUNT (stop after this many outputs) and BENCH_CACHE, a JSON file of the warm
results (track_id -> the fields the providers filled, with provenance, and the stage outcomes),
read into memory before the first record.

Per record it does what the warm worker does for a track it knows: decode the single-object
Avro (trackflow's codec), validate as ``validate_raw``, look the track up in the in-memory cache,
build the same EnrichedTrack with ``build_enriched``, encode it, produce it with acks=all under
the same key and content-type header; offsets are committed every second (at-least-once).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from quixstreams import Application

from trackflow.agents.deadletter import attempt_of
from trackflow.agents.records import FieldValue, Outcome, build_enriched, validate_raw
from trackflow.schemas.codec import AVRO_CONTENT_TYPE, CONTENT_TYPE, decode_raw_track, encode
from trackflow.streams.settings import Settings

OUT_HEADERS = [(CONTENT_TYPE, AVRO_CONTENT_TYPE.encode())]


def load_cache(path: str) -> dict[str, tuple[dict[str, FieldValue], list[Outcome]]]:
    """track_id -> (filled fields, outcomes), as the warm worker's result cache holds them."""
    raw = json.loads(open(path, encoding="utf-8").read())
    return {tid: ({f: FieldValue(v[0], v[1], v[2]) for f, v in entry["filled"].items()},
                  [Outcome(o["provider"], o["outcome"], o["reason"], o["confidence"])
                   for o in entry["outcomes"]])
            for tid, entry in raw.items()}


def main() -> None:
    cache = load_cache(os.environ["BENCH_CACHE"])
    targets = Settings().waterfall.targets
    app = Application(
        broker_address=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        consumer_group=os.environ.get("BENCH_GROUP", "bench-quix-peer"),
        auto_offset_reset="earliest", commit_interval=1.0, use_changelog_topics=False,
        auto_create_topics=False,
        producer_extra_config={"acks": "all", "linger.ms": 5, "enable.idempotence": True},
    )
    source = app.topic(os.environ["BENCH_SOURCE"], value_deserializer="bytes",
                       key_deserializer="bytes")
    sink = app.topic(os.environ["BENCH_SINK"], value_serializer="bytes", key_serializer="bytes")

    def enrich(value: bytes, key: Any, timestamp: int, headers: Any) -> bytes:
        hdrs = [(k, bytes(v)) for k, v in (headers or ()) if v is not None]
        raw = validate_raw(decode_raw_track(value, hdrs))
        filled, outcomes = cache.get(raw["track_id"], ({}, []))
        record = build_enriched(raw, attempt=attempt_of(hdrs), filled=filled,
                                outcomes=outcomes, enriched_at_ms=int(time.time() * 1000),
                                targets=targets)
        return encode("EnrichedTrack", record)

    sdf = app.dataframe(source)
    sdf = sdf.apply(enrich, metadata=True)
    sdf = sdf.set_headers(lambda value, key, timestamp, headers: OUT_HEADERS)
    sdf.to_topic(sink)
    app.run(count=int(os.environ.get("BENCH_COUNT", "0")), collect=False)


if __name__ == "__main__":
    main()
