"""Validation rules for raw tracks and the shape of enriched records."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trackflow.agents.records import (
    FieldValue,
    InvalidRecord,
    Outcome,
    _has_control_chars,
    build_enriched,
    validate_raw,
)


def raw(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"track_id": "t1", "artist": "Daft Punk", "title": "One More Time",
                            "isrc": None, "duration_ms": 320_000, "attributes": {}}
    base.update(over)
    return base


def test_a_good_record_is_trimmed_and_its_isrc_normalised() -> None:
    out = validate_raw(raw(artist="  Daft Punk ", isrc="gb-duw-00-00059"))
    assert out["artist"] == "Daft Punk"
    assert out["isrc"] == "GBDUW0000059"


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"artist": "   "}, "empty_artist"),
        ({"title": None}, "missing_title"),
        ({"artist": "x" * 10_000}, "artist_too_long"),
        ({"title": "bad\x00title"}, "title_control_chars"),
        ({"artist": "esc\x1b[31m"}, "artist_control_chars"),
        ({"isrc": "NOTANISRC"}, "invalid_isrc"),
        ({"isrc": "U1ABC1234567"}, "invalid_isrc"),
        ({"duration_ms": 500}, "duration_out_of_range"),
        ({"duration_ms": 3 * 3600 * 1000 + 1}, "duration_out_of_range"),
        ({"track_id": ""}, "missing_track_id"),
    ],
)
def test_invalid_records_are_rejected_with_a_reason(over: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord) as err:
        validate_raw(raw(**over))
    assert err.value.reason == reason, f"expected reason {reason}, got {err.value.reason}"


def test_limits_are_inclusive() -> None:
    at_low = validate_raw(raw(artist="a" * 512, duration_ms=1000))
    assert (at_low["artist"], at_low["duration_ms"]) == ("a" * 512, 1000)
    at_high = validate_raw(raw(duration_ms=3 * 3600 * 1000))
    assert at_high["duration_ms"] == 3 * 3600 * 1000


def test_enriched_record_is_partial_with_missing_fields_and_provenance() -> None:
    rec = build_enriched(
        validate_raw(raw(isrc="GBDUW0000059")), attempt=2, enriched_at_ms=123,
        filled={"bpm": FieldValue(123.0, "deezer", 0.98)},
        outcomes=[Outcome("deezer", "matched", confidence=0.98)],
        targets=("isrc", "bpm", "label"))
    assert rec["status"] == "partial"
    assert rec["missing"] == ["label"]
    assert rec["isrc"] == "GBDUW0000059", "what the input knew counts as known"
    assert rec["sources"] == {"bpm": {"provider": "deezer", "confidence": 0.98}}
    assert rec["attempt"] == 2


def test_enriched_record_is_complete_when_nothing_is_missing() -> None:
    rec = build_enriched(validate_raw(raw(isrc="GBDUW0000059")), attempt=1, enriched_at_ms=0,
                         targets=("isrc", "duration_ms"))
    assert rec["status"] == "complete" and rec["missing"] == []


@given(st.text(alphabet=st.characters(codec=None), max_size=40))
@settings(max_examples=500, deadline=None)
def test_the_control_character_check_agrees_with_the_unicode_categories(text: str) -> None:
    expected = any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in text)
    assert _has_control_chars(text) is expected


@pytest.mark.parametrize("ch", ["\x00", "\x1b", "\x7f", "\x85", "\u200b", "\u2028", "\ufeff",
                                "\ud800", "\ue000", "\u00a0", "\u3000", "\U000e0001", "\u0378"])
def test_the_control_character_check_where_printable_and_allowed_differ(ch: str) -> None:
    expected = unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co")
    assert _has_control_chars(f"ok {ch} ok") is expected
