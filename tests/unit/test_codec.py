"""Wire format: single-object Avro, schema evolution, JSON input, independent decoding."""

from __future__ import annotations

import copy
import io
import json

import avro.io
import avro.schema
import pytest

from trackflow.schemas import codec
from trackflow.schemas.registry import SchemaRegistry, default_registry

RAW = {
    "track_id": "trk_1", "artist": "Daft Punk", "title": "One More Time", "isrc": "GBDUW0000059",
    "duration_ms": 320_357, "album": "Discovery", "spotify_id": None, "source": "test",
    "source_ref": "row:1", "observed_at": None, "attributes": {"playlist": "classics"},
}


def test_raw_track_round_trips_through_single_object_encoding() -> None:
    data = codec.encode("RawTrack", RAW)
    assert data[:2] == b"\xc3\x01", "single-object encoding starts with the C3 01 marker"
    assert data[2:10] == default_registry().latest("RawTrack").fingerprint
    assert codec.decode("RawTrack", data) == RAW


def test_apache_avro_decodes_our_bytes_and_agrees_on_the_fingerprint() -> None:
    sv = default_registry().latest("EnrichedTrack")
    record = {
        "track_id": "trk_1", "input": RAW, "artist": "Daft Punk", "title": "One More Time",
        "genres": ["house"], "tags": [], "sources": {"bpm": {"provider": "deezer",
                                                              "confidence": 0.97}},
        "providers": [{"provider": "deezer", "outcome": "matched", "reason": None,
                       "confidence": 0.97}],
        "status": "partial", "missing": ["label"], "attempt": 1, "enriched_at": 1_700_000_000_000,
        "bpm": 123.0,
    }
    data = codec.encode("EnrichedTrack", record)
    schema = avro.schema.parse(json.dumps(sv.schema))
    independent_fp = schema.fingerprint("CRC-64-AVRO")
    # Apache avro gives the fingerprint big-endian; single-object encoding is little-endian.
    assert bytes(independent_fp)[::-1] == sv.fingerprint, (
        "the Apache avro package must compute the same CRC-64-AVRO fingerprint we write")
    decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert decoded["track_id"] == "trk_1"
    assert decoded["bpm"] == 123.0
    assert decoded["sources"]["bpm"]["provider"] == "deezer"
    assert decoded["input"]["isrc"] == "GBDUW0000059"


def _registry_with_v2() -> SchemaRegistry:
    v1 = copy.deepcopy(default_registry().get("RawTrack", 1).schema)
    v2 = copy.deepcopy(v1)
    v2["fields"].append({"name": "bpm_hint", "type": ["null", "double"], "default": None})
    return SchemaRegistry.from_schemas({"RawTrack": {1: v1, 2: v2}})


def test_a_reader_on_version_2_reads_version_1_messages_with_the_new_field_defaulted() -> None:
    reg = _registry_with_v2()
    old = codec.encode("RawTrack", RAW, registry=reg, version=1)
    new = codec.encode("RawTrack", {**RAW, "bpm_hint": 124.0}, registry=reg, version=2)
    assert old[2:10] != new[2:10], "each version must carry its own fingerprint"
    assert codec.decode("RawTrack", old, registry=reg) == {**RAW, "bpm_hint": None}
    assert codec.decode("RawTrack", new, registry=reg)["bpm_hint"] == 124.0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x01" * 20, "not_avro"),
        (b"\x00" * 20, "unknown_schema_id"),  # a Confluent header: id 0, never looked up
        (b"\xc3\x01" + b"\x00" * 8 + b"xx", "unknown_schema"),
    ],
)
def test_undecodable_bytes_raise_decode_error_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(codec.DecodeError) as err:
        codec.decode("RawTrack", data)
    assert err.value.reason == reason


def test_truncated_avro_body_is_a_decode_error() -> None:
    data = codec.encode("RawTrack", RAW)
    with pytest.raises(codec.DecodeError) as err:
        codec.decode("RawTrack", data[:-15])
    assert err.value.reason in ("corrupt_avro", "truncated")


def test_an_enriched_track_is_not_accepted_as_a_raw_track() -> None:
    data = codec.encode("EnrichedTrack", {
        "track_id": "x", "input": RAW, "artist": "a", "title": "t", "status": "partial",
        "enriched_at": 0})
    with pytest.raises(codec.DecodeError) as err:
        codec.decode("RawTrack", data)
    assert err.value.reason == "wrong_schema"


def test_json_with_content_type_header_is_validated_against_the_schema() -> None:
    headers = [("content-type", b"application/json")]
    record = codec.decode_raw_track(
        json.dumps({"track_id": "t", "artist": "A", "title": "B"}).encode(), headers)
    assert record["isrc"] is None and record["attributes"] == {}, "defaults must be filled in"
    with pytest.raises(codec.DecodeError) as err:
        codec.decode_raw_track(json.dumps({"track_id": "t", "artist": "A"}).encode(), headers)
    assert err.value.reason == "schema_mismatch"
    assert "title" in str(err.value), "the message must name the missing field"
    with pytest.raises(codec.DecodeError) as err:
        codec.decode_raw_track(b"{not json", headers)
    assert err.value.reason == "invalid_json"


def test_unknown_content_type_is_rejected() -> None:
    with pytest.raises(codec.DecodeError) as err:
        codec.decode_raw_track(b"x", [("content-type", b"text/csv")])
    assert err.value.reason == "unsupported_content_type"


def _enriched(**extra: object) -> dict[str, object]:
    return {"track_id": "trk_1", "input": RAW, "artist": "Daft Punk", "title": "One More Time",
            "providers": [{"provider": "deezer", "outcome": "matched", "reason": None,
                           "confidence": 0.97}],
            "status": "partial", "missing": ["tags"], "attempt": 1,
            "enriched_at": 1_700_000_000_000, **extra}


def test_enriched_track_v1_messages_decode_as_the_first_revision() -> None:
    old = codec.encode("EnrichedTrack", _enriched(), version=1)
    assert old[2:10] == default_registry().get("EnrichedTrack", 1).fingerprint
    decoded = codec.decode("EnrichedTrack", old)
    assert decoded["revision"] == 1, "a record written before revisions existed is revision 1"
    assert decoded["providers"][0]["outcome"] == "matched"


def test_a_deferred_outcome_round_trips_and_an_independent_reader_reads_it() -> None:
    record = _enriched(revision=3, providers=[
        {"provider": "lastfm", "outcome": "deferred", "reason": "RateLimitWait",
         "confidence": None}])
    data = codec.encode("EnrichedTrack", record)
    decoded = codec.decode("EnrichedTrack", data)
    assert decoded["providers"][0]["outcome"] == "deferred" and decoded["revision"] == 3
    schema = avro.schema.parse(json.dumps(default_registry().latest("EnrichedTrack").schema))
    independent = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert independent["providers"][0]["outcome"] == "deferred"


def test_v1_records_without_a_deferred_outcome_are_readable_by_a_v1_reader() -> None:
    # An old reader (v1 schema) resolving a v2 record: the new field is ignored, and every
    # outcome symbol it knows keeps its meaning.
    v1 = avro.schema.parse(json.dumps(default_registry().get("EnrichedTrack", 1).schema))
    v2 = avro.schema.parse(json.dumps(default_registry().latest("EnrichedTrack").schema))
    data = codec.encode("EnrichedTrack", _enriched(revision=2))
    decoded = avro.io.DatumReader(v2, v1).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert decoded["providers"][0]["outcome"] == "matched" and "revision" not in decoded
