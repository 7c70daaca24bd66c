"""The Confluent wire format: our bytes are what confluent-kafka's own Avro serializer and
deserializer write and read (against its in-process mock registry), both formats are told apart by
the first byte, and a registry id nobody looked up is a clear decode error."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from trackflow.schemas import codec
from trackflow.schemas.codec import DecodeError, SegmentedWriter, WireFormat
from trackflow.schemas.registry import default_registry

RAW = {
    "track_id": "trk_1", "artist": "Daft Punk", "title": "One More Time", "isrc": "GBDUW0000059",
    "duration_ms": 320_357, "album": "Discovery", "spotify_id": None, "source": "test",
    "source_ref": "row:1", "observed_at": None, "attributes": {"playlist": "classics"},
}
CONTEXT = SerializationContext("tracks.raw", MessageField.VALUE)


def mock_registry(name: str) -> Any:
    """confluent-kafka's in-process registry (a ``mock://`` URL): no server, the same API."""
    return SchemaRegistryClient.new_client({"url": f"mock://{name}"})


@pytest.fixture
def registry(request: pytest.FixtureRequest) -> Any:
    return mock_registry(request.node.name)


def register(client: Any, name: str) -> int:
    sv = default_registry().latest(name)
    return int(client.register_schema(f"tracks.{name}-value",
                                      Schema(json.dumps(sv.schema), "AVRO")))


def test_confluent_kafka_reads_what_we_write(registry: Any) -> None:
    schema_id = register(registry, "RawTrack")
    sv = default_registry().latest("RawTrack")
    data = codec.encode("RawTrack", RAW, wire=WireFormat({sv.fingerprint: schema_id}))
    assert data[:1] == b"\x00" and int.from_bytes(data[1:5], "big") == schema_id
    assert codec.confluent_schema_id(data) == schema_id
    assert AvroDeserializer(registry)(data, CONTEXT) == RAW


def test_we_read_what_confluent_kafka_writes_with_the_same_or_another_schema(
        registry: Any) -> None:
    ours = default_registry().latest("RawTrack")
    serializer = AvroSerializer(registry, json.dumps(ours.schema),
                                conf={"auto.register.schemas": True})
    data = serializer(RAW, CONTEXT)
    schema_id = codec.confluent_schema_id(data)
    assert schema_id is not None
    fetched = json.loads(registry.get_schema(schema_id).schema_str)
    writer = default_registry().adopt(fetched)
    assert writer is ours, "the registry's copy of our schema is our version, not a stranger"
    assert codec.decode("RawTrack", data, writers={schema_id: writer}) == RAW
    # A Java scraper's own copy of the schema: fields documented and reordered, one extra
    # field ours does not know. Avro resolution reads it into our shape.
    theirs = copy.deepcopy(ours.schema)
    theirs["doc"] = "written by another team"
    theirs["fields"] = [*reversed(theirs["fields"]),
                        {"name": "crawler", "type": "string", "default": ""}]
    other = AvroSerializer(mock_registry("trackflow-other"),
                           json.dumps(theirs), conf={"auto.register.schemas": True})
    data = other({**RAW, "crawler": "scrapy-7"}, CONTEXT)
    stranger = default_registry().adopt(theirs)
    assert stranger is not ours and stranger.name == "RawTrack"
    assert codec.decode_raw_track(data, writers={codec.confluent_schema_id(data) or 0: stranger}
                                  ) == RAW


def test_an_id_not_looked_up_or_unknown_is_a_clear_decode_error() -> None:
    data = b"\x00" + (4242).to_bytes(4, "big") + b"\x02"
    with pytest.raises(DecodeError) as err:
        codec.decode("RawTrack", data)
    assert err.value.reason == "unknown_schema_id" and err.value.schema_id == 4242
    assert "no registry configured" in str(err.value)
    with pytest.raises(DecodeError) as err:
        codec.decode("RawTrack", data, writers={4242: None})  # looked up: the registry lacks it
    assert err.value.reason == "unknown_schema_id" and "no registry" not in str(err.value)
    with pytest.raises(DecodeError) as err:
        codec.decode("RawTrack", b"\x00\x00\x01")
    assert err.value.reason == "truncated"
    with pytest.raises(DecodeError) as err:
        codec.decode("RawTrack", b"\x7bnot avro at all")
    assert err.value.reason == "not_avro"


def test_a_record_of_the_wrong_type_under_a_known_id_is_refused() -> None:
    enriched = default_registry().latest("EnrichedTrack")
    data = b"\x00" + (7).to_bytes(4, "big") + b"\x00"
    with pytest.raises(DecodeError) as err:
        codec.decode("RawTrack", data, writers={7: enriched})
    assert err.value.reason == "wrong_schema"


def test_the_segmented_writer_frames_like_encode() -> None:
    sv = default_registry().latest("EnrichedTrack")
    wire = WireFormat({sv.fingerprint: 12})
    writer = SegmentedWriter("EnrichedTrack", ["status"], wire=wire)
    assert writer.header == b"\x00" + (12).to_bytes(4, "big")
    assert SegmentedWriter("EnrichedTrack", ["status"]).header == codec.MAGIC + sv.fingerprint
    # A version that is not registered keeps the single-object header.
    raw_v1 = default_registry().latest("RawTrack")
    assert wire.header(raw_v1) == codec.MAGIC + raw_v1.fingerprint


def test_adopt_refuses_what_is_not_an_avro_record() -> None:
    for bad in ({"type": "string"}, {"type": "record", "name": "X", "fields": [{"name": 1}]}):
        with pytest.raises(ValueError):
            default_registry().adopt(bad)
