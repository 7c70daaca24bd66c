"""The client API's pure parts: edge validation equals the worker's, typed enriched records."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from trackflow.agents.records import FieldValue, Outcome, build_enriched, validate_raw
from trackflow.schemas.codec import decode, decode_raw_track, encode
from trackflow.streams.client import EnrichedTrack, TrackRejected, prepare_track
from trackflow.streams.client.producer import encode_track
from trackflow.streams.ingest import row_to_raw, stable_track_id


def test_keyword_fields_become_a_valid_raw_track_with_the_stable_id() -> None:
    record = prepare_track({"artist": " Daft Punk ", "title": "One More Time",
                            "isrc": "gb-duw-00-00059", "duration": "5:20",
                            "observed_at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
                            "source_ref": "https://example.invalid/t/1", "label_hint": "Virgin"},
                           source="scraper")
    assert record["track_id"] == stable_track_id("Daft Punk", "One More Time", "GBDUW0000059")
    assert (record["artist"], record["isrc"], record["duration_ms"]) == (
        "Daft Punk", "GBDUW0000059", 320_000)
    assert record["observed_at"] == 1_767_312_000_000
    assert (record["source"], record["source_ref"]) == ("scraper", "https://example.invalid/t/1")
    assert record["attributes"] == {"label_hint": "Virgin"}


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"artist": "A", "title": "B", "isrc": "NOT-AN-ISRC"}, "invalid_isrc"),
        ({"artist": "A", "title": "B", "duration_ms": 10}, "duration_out_of_range"),
        ({"artist": "A" * 600, "title": "B"}, "artist_too_long"),
        ({"artist": "A\x1b[31m", "title": "B"}, "artist_control_chars"),
        ({"artist": "A", "title": "B", "album": "x\u200by"}, "album_control_chars"),
    ],
)
def test_rejections_carry_the_workers_reason_and_message(item: dict[str, Any],
                                                        reason: str) -> None:
    with pytest.raises(TrackRejected) as caught:
        prepare_track(item)
    # What the worker says about the same record once it arrives unvalidated.
    raw = prepare_track(item, validate=False)
    arrived = decode_raw_track(*encode_track(raw))
    with pytest.raises(ValueError) as worker:
        validate_raw(arrived)
    assert caught.value.rejected.reason == reason == getattr(worker.value, "reason", None)
    assert caught.value.rejected.message == str(worker.value)


@pytest.mark.parametrize(
    ("item", "reason"),
    [({"title": "B"}, "missing_artist"), ({"artist": "A"}, "missing_title"),
     ({"artist": "A", "title": "B", "duration": "long"}, "invalid_duration"),
     ({"artist": "A", "title": "B", "observed_at": "yesterday"}, "invalid_observed_at")],
)
def test_items_that_cannot_become_a_raw_track_are_rejected_with_a_code(
        item: dict[str, Any], reason: str) -> None:
    with pytest.raises(TrackRejected) as caught:
        prepare_track(item)
    assert caught.value.rejected.reason == reason


def test_a_valid_item_is_sent_as_the_worker_would_see_it() -> None:
    record = prepare_track({"artist": "A", "title": "B", "isrc": "us-rc1-76-07839"})
    value, headers = encode_track(record)
    assert validate_raw(decode_raw_track(value, headers)) == record
    json_value, json_headers = encode_track(record, "json")
    assert decode_raw_track(json_value, json_headers) == record


def test_row_to_raw_is_idempotent_so_parsed_rows_can_go_through_the_producer() -> None:
    once = row_to_raw({"Artist": "A", "Song": "B", "length": "200", "mood": "happy"},
                      source="file", source_ref="row:2")
    assert row_to_raw(once, source="other", source_ref="row:9") == once


def test_enriched_track_is_typed_with_provenance() -> None:
    raw = validate_raw(prepare_track({"artist": "A", "title": "B", "duration_ms": 200_000}))
    record = build_enriched(
        raw, attempt=2, enriched_at_ms=1_700_000_000_000,
        filled={"bpm": FieldValue(124.0, "deezer", 0.93),
                "genres": FieldValue(["house"], "lastfm", 0.9)},
        outcomes=[Outcome("musicbrainz", "not_found"),
                  Outcome("deezer", "matched", confidence=0.93)],
        targets=["bpm", "genres", "label", "duration_ms"])
    track = EnrichedTrack.from_record(decode("EnrichedTrack", encode("EnrichedTrack", record)))
    assert (track.bpm, track.genres, track.attempt, track.status) == (
        124.0, ("house",), 2, "partial")
    assert track.provenance("bpm") is not None
    assert (track.provenance("bpm").provider, track.provenance("bpm").confidence) == (  # type: ignore[union-attr]
        "deezer", 0.93)
    assert track.provenance("duration_ms").provider == "input"  # type: ignore[union-attr]
    assert track.provenance("label") is None
    assert [p.outcome for p in track.providers] == ["not_found", "matched"]
    assert track.input.duration_ms == 200_000 and "label" in track.missing
