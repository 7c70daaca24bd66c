"""EnrichedTrack values written from kept result bytes equal a full encode, byte for byte."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trackflow.agents.encoded import PER_RECORD_FIELDS, EnrichedEncoder
from trackflow.agents.records import FieldValue, Outcome, build_enriched
from trackflow.agents.settings import WaterfallSettings
from trackflow.schemas.codec import SegmentedWriter, decode, encode

TARGETS = WaterfallSettings().targets
_text = st.text(min_size=1, max_size=12)
_opt_text = st.none() | _text
_raw = st.fixed_dictionaries({
    "track_id": _text, "artist": _text, "title": _text, "isrc": _opt_text,
    "duration_ms": st.none() | st.integers(1_000, 10_000_000), "album": _opt_text,
    "spotify_id": _opt_text, "source": _opt_text, "source_ref": _opt_text,
    "observed_at": st.none() | st.integers(0, 2**60),
    "attributes": st.dictionaries(_text, _text, max_size=3),
})
_providers = st.sampled_from(["musicbrainz", "spotify", "deezer", "lastfm", "discogs"])
_confidence = st.floats(0, 1, allow_nan=False)
_values: dict[str, Any] = {
    "isrc": _text, "spotify_id": _text, "musicbrainz_recording_id": _text, "album": _text,
    "release_date": _text, "label": _text, "key": _text, "artist": _text, "title": _text,
    "duration_ms": st.integers(0, 2**40), "deezer_id": st.integers(0, 2**40),
    "discogs_release_id": st.integers(0, 2**40), "popularity": st.integers(0, 100),
    "listeners": st.integers(0, 2**40), "playcount": st.integers(0, 2**40),
    "deezer_rank": st.integers(0, 2**40), "bpm": st.floats(1, 300),
    "genres": st.lists(_text, max_size=3), "tags": st.lists(_text, max_size=3),
}
_filled = st.fixed_dictionaries({}, optional={
    name: st.builds(FieldValue, value, _providers, _confidence) for name, value in _values.items()})
_outcomes = st.lists(st.builds(
    Outcome, _providers, st.sampled_from(["matched", "not_found", "skipped", "failed", "deferred"]),
    _opt_text, st.none() | _confidence), max_size=5)
_own = st.fixed_dictionaries({"attempt": st.integers(1, 100), "enriched_at_ms": st.integers(
    0, 2**50), "revision": st.integers(1, 1000)})


def _full(raw: dict[str, Any], filled: dict[str, FieldValue], outcomes: list[Outcome],
          own: dict[str, int]) -> bytes:
    return encode("EnrichedTrack", build_enriched(raw, filled=filled, outcomes=outcomes,
                                                  targets=TARGETS, **own))


@given(raw=_raw, filled=_filled, outcomes=_outcomes, own=_own)
@settings(max_examples=200, deadline=None)
def test_a_segmented_write_is_the_full_encoding(raw: dict[str, Any],
                                                filled: dict[str, FieldValue],
                                                outcomes: list[Outcome],
                                                own: dict[str, int]) -> None:
    writer = SegmentedWriter("EnrichedTrack", ["artist", "attempt"])
    assert writer.segments[0] == ("track_id", "input")
    record = build_enriched(raw, filled=filled, outcomes=outcomes, targets=TARGETS, **own)
    joined = writer.header + b"".join(writer.encode_segment(i, record)
                                      for i in range(len(writer.segments)))
    assert joined == encode("EnrichedTrack", record)


@given(raws=st.lists(_raw, min_size=1, max_size=4), filled=_filled, outcomes=_outcomes,
       owns=st.lists(_own, min_size=2, max_size=4))
@settings(max_examples=200, deadline=None)
def test_kept_bytes_give_the_full_encoding_for_every_record_of_an_input(
        raws: list[dict[str, Any]], filled: dict[str, FieldValue], outcomes: list[Outcome],
        owns: list[dict[str, int]]) -> None:
    encoder = EnrichedEncoder(TARGETS, max_entries=10)
    for own in owns:
        for raw in raws:
            # Another record of the same input: its own id, attributes and times.
            again = {**raw, "track_id": raw["track_id"] + "x", "attributes": {"n": str(own)},
                     "observed_at": own["enriched_at_ms"]}
            for record in (raw, again):
                value, status = encoder.encode(record, filled=dict(filled),
                                               outcomes=list(outcomes), **own)
                assert value == _full(record, filled, outcomes, own)
                assert status == decode("EnrichedTrack", value)["status"]


def test_a_changed_result_for_the_same_input_is_encoded_anew() -> None:
    raw = {"track_id": "t1", "artist": "A", "title": "T", "isrc": None, "duration_ms": None,
           "album": None, "spotify_id": None, "source": None, "source_ref": None,
           "observed_at": None, "attributes": {}}
    own = {"attempt": 1, "enriched_at_ms": 5, "revision": 1}
    first = {"isrc": FieldValue("GBAAA0000001", "musicbrainz", 0.9)}
    second = {"isrc": FieldValue("GBAAA0000002", "musicbrainz", 0.9)}
    encoder = EnrichedEncoder(TARGETS, max_entries=10)
    for filled in (first, second, first):
        value, _ = encoder.encode(raw, filled=filled, outcomes=[], **own)
        assert decode("EnrichedTrack", value)["isrc"] == filled["isrc"].value
    changed = [Outcome("musicbrainz", "matched", None, 0.9)]
    value, _ = encoder.encode(raw, filled=first, outcomes=changed, **own)
    assert decode("EnrichedTrack", value)["providers"][0]["outcome"] == "matched"


def test_kept_inputs_are_bounded_and_none_are_kept_at_zero() -> None:
    own = {"attempt": 1, "enriched_at_ms": 5, "revision": 1}
    encoder = EnrichedEncoder(TARGETS, max_entries=3)
    idle = EnrichedEncoder(TARGETS, max_entries=0)
    for i in range(10):
        raw = {"track_id": f"t{i}", "artist": f"A{i}", "title": "T", "attributes": {}}
        for enc in (encoder, idle):
            value, _ = enc.encode(raw, filled={}, outcomes=[], **own)
            assert decode("EnrichedTrack", value)["artist"] == f"A{i}"
    assert len(encoder) == 3
    assert len(idle) == 0


def test_every_per_record_field_is_an_enriched_track_field() -> None:
    fields = set(SegmentedWriter("EnrichedTrack", ()).segments[0])
    assert PER_RECORD_FIELDS <= fields, "a per-record field the schema does not have"
