"""Waterfall planning and execution with fake providers (no I/O)."""

from __future__ import annotations

from typing import Any

from agents.records import FieldValue
from agents.waterfall import Waterfall, convert, plan_stage
from providers.base import Candidate, TrackQuery
from providers.errors import TransientError
from streams.settings import load_settings

RAW = {"track_id": "t", "artist": "Daft Punk", "title": "One More Time", "isrc": None,
       "duration_ms": 320_000, "album": None, "spotify_id": None}


class Fake:
    def __init__(self, name: str, answer: Any) -> None:
        self.name = name
        self.answer = answer
        self.queries: list[TrackQuery] = []

    async def lookup(self, query: TrackQuery) -> list[Candidate]:
        self.queries.append(query)
        if isinstance(self.answer, Exception):
            raise self.answer
        return [Candidate(self.name, f, via="search") for f in self.answer]

    async def aclose(self) -> None:
        pass


def song(**extra: Any) -> dict[str, Any]:
    return {"artist": "Daft Punk", "title": "One More Time", "duration_ms": 320_500, **extra}


def test_deezer_waits_for_an_isrc_by_default() -> None:
    s = load_settings(env={})
    plan = plan_stage("deezer", {}, s, s.waterfall.targets)
    assert plan.skip_reason == "missing_isrc"
    plan = plan_stage("deezer", {"isrc": FieldValue("GBDUW0000059", "musicbrainz", 1.0)}, s,
                      s.waterfall.targets)
    assert "bpm" in plan.fillable


def test_a_stage_with_nothing_left_to_fill_is_skipped() -> None:
    s = load_settings(env={})
    known = {f: FieldValue(1, "x", 1.0) for f in s.waterfall.targets}
    assert plan_stage("spotify", known, s, s.waterfall.targets).skip_reason == "complete"


def test_convert_types_values_for_the_schema() -> None:
    assert convert("deezer_id", "3135556") == 3135556
    assert convert("bpm", 0) is None, "Deezer's bpm 0 means unknown"
    assert convert("genres", "house") == ["house"]
    assert convert("popularity", "n/a") is None


async def test_isrc_from_musicbrainz_feeds_deezer_and_fields_record_provenance() -> None:
    s = load_settings(env={})
    mb = Fake("musicbrainz", [song(isrc="GBDUW0000059", musicbrainz_recording_id="mbid")])
    dz = Fake("deezer", [song(isrc="GBDUW0000059", bpm=123.0, deezer_id="3135556")])
    result = await Waterfall({"musicbrainz": mb, "deezer": dz}, s).enrich(dict(RAW), 1)
    assert dz.queries[0].isrc == "GBDUW0000059", "Deezer must be asked with MusicBrainz's ISRC"
    assert result.filled["bpm"].value == 123.0 and result.filled["bpm"].provider == "deezer"
    assert result.filled["isrc"].provider == "musicbrainz"
    assert result.failure is None
    assert [o.outcome for o in result.outcomes] == ["matched", "matched"]


async def test_a_remix_is_not_accepted_for_the_original() -> None:
    s = load_settings(env={})
    mb = Fake("musicbrainz", [song(title="One More Time (Romanthony Remix)", isrc="GBDUW0000060")])
    result = await Waterfall({"musicbrainz": mb}, s).enrich(dict(RAW), 1)
    assert "isrc" not in result.filled
    assert result.outcomes[0].outcome == "not_found"
    assert result.failure is not None and not result.failure.retryable, (
        "no provider has the data: a dead letter that retrying cannot fix")


async def test_transient_failure_that_leaves_a_required_gap_is_retryable() -> None:
    s = load_settings(env={})
    mb = Fake("musicbrainz", TransientError("musicbrainz", "503", retry_after=3.0))
    result = await Waterfall({"musicbrainz": mb}, s).enrich(dict(RAW), 1)
    assert result.failure is not None and result.failure.retryable
    assert result.failure.stage == "provider:musicbrainz"
    assert result.outcomes[0].outcome == "failed"
    assert result.not_before_ms is not None


async def test_transient_failure_with_the_minimum_met_publishes_partial() -> None:
    s = load_settings(env={})
    mb = Fake("musicbrainz", [song(isrc="GBDUW0000059")])
    sp = Fake("spotify", TransientError("spotify", "503"))
    result = await Waterfall({"musicbrainz": mb, "spotify": sp}, s).enrich(dict(RAW), 1)
    assert result.failure is None
    assert [o.outcome for o in result.outcomes] == ["matched", "failed"]
