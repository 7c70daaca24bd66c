"""Waterfall planning and execution with fake providers (no I/O)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from prometheus_client import REGISTRY

from trackflow.agents.records import FieldValue
from trackflow.agents.results import ResultCache
from trackflow.agents.waterfall import Waterfall, convert, plan_stage
from trackflow.providers.base import CallSpec, Candidate, TrackQuery
from trackflow.providers.cache import ProviderCache
from trackflow.providers.context import enter_record, leave_record
from trackflow.providers.errors import TransientError
from trackflow.providers.policy import CacheTtls
from trackflow.streams.settings import load_settings

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
    result = await in_record(Waterfall({"musicbrainz": mb, "deezer": dz}, s).enrich(dict(RAW), 1))
    assert dz.queries[0].isrc == "GBDUW0000059", "Deezer must be asked with MusicBrainz's ISRC"
    assert result.filled["bpm"].value == 123.0 and result.filled["bpm"].provider == "deezer"
    assert result.filled["isrc"].provider == "musicbrainz"
    assert result.failure is None
    assert [o.outcome for o in result.outcomes] == ["matched", "matched"]


async def test_a_remix_is_not_accepted_for_the_original() -> None:
    s = load_settings(env={})
    mb = Fake("musicbrainz", [song(title="One More Time (Romanthony Remix)", isrc="GBDUW0000060")])
    result = await in_record(Waterfall({"musicbrainz": mb}, s).enrich(dict(RAW), 1))
    assert "isrc" not in result.filled
    assert result.outcomes[0].outcome == "not_found"
    assert result.failure is not None and not result.failure.retryable, (
        "no provider has the data: a dead letter that retrying cannot fix")


async def test_transient_failure_that_leaves_a_required_gap_is_retryable() -> None:
    s = load_settings(env={})
    mb = Fake("musicbrainz", TransientError("musicbrainz", "503", retry_after=3.0))
    result = await in_record(Waterfall({"musicbrainz": mb}, s).enrich(dict(RAW), 1))
    assert result.failure is not None and result.failure.retryable
    assert result.failure.stage == "provider:musicbrainz"
    assert result.outcomes[0].outcome == "failed"
    assert result.not_before_ms is not None


async def test_transient_failure_with_the_minimum_met_publishes_partial() -> None:
    s = load_settings(env={})
    mb = Fake("musicbrainz", [song(isrc="GBDUW0000059")])
    sp = Fake("spotify", TransientError("spotify", "503"))
    result = await in_record(Waterfall({"musicbrainz": mb, "spotify": sp}, s).enrich(dict(RAW), 1))
    assert result.failure is None
    assert [o.outcome for o in result.outcomes] == ["matched", "failed"]


# --- reusing results of repeated inputs ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CachedFake(Fake):
    """A provider whose answers go through a real (LRU-only) ProviderCache, like the clients'."""

    def __init__(self, name: str, answer: Any, cache: ProviderCache) -> None:
        super().__init__(name, answer)
        self.cache = cache
        self.fetches = 0

    async def lookup(self, query: TrackQuery) -> list[Candidate]:
        self.queries.append(query)

        async def fetch() -> Any:
            self.fetches += 1
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

        spec = CallSpec(self.name, "search", f"{query.artist}|{query.title}|{query.isrc}")
        answer = await self.cache.get_or_fetch(spec, fetch)
        return [Candidate(self.name, f, via="search") for f in answer or []]


T = TypeVar("T")


async def in_record(work: Awaitable[T]) -> T:
    """Run ``work`` as the worker runs a record's waterfall: in a record context of its own."""
    token = enter_record(0)
    try:
        return await work
    finally:
        leave_record(token)


def cached_waterfall(answers: dict[str, Any], *, size: int = 100,
                     ttls: CacheTtls | None = None) -> tuple[Waterfall, dict[str, CachedFake],
                                                             Clock]:
    clock = Clock()
    cache = ProviderCache(None, clock=clock, ttls=ttls)
    fakes = {name: CachedFake(name, answer, cache) for name, answer in answers.items()}
    waterfall = Waterfall(fakes, load_settings(env={}),
                          results=ResultCache(size, clock=cache.clock))
    return waterfall, fakes, clock


def hits() -> float:
    return REGISTRY.get_sample_value("trackflow_result_cache_requests_total",
                                     {"level": "process", "result": "hit"}) or 0.0


async def test_a_repeated_input_reuses_the_result_without_asking_providers() -> None:
    waterfall, fakes, _ = cached_waterfall({
        "musicbrainz": [song(isrc="GBDUW0000059", musicbrainz_recording_id="mbid")],
        "deezer": [song(isrc="GBDUW0000059", bpm=123.0, deezer_id="3135556")]})
    first = await in_record(waterfall.enrich(dict(RAW), 1))
    before = hits()
    second = await in_record(waterfall.enrich({**RAW, "track_id": "other id, same input"}, 1))
    assert hits() == before + 1
    assert [len(f.queries) for f in fakes.values()] == [1, 1], "no stage ran the second time"
    assert second.filled == first.filled and second.outcomes == first.outcomes
    assert second.failure is None
    second.filled.clear()
    third = await in_record(waterfall.enrich(dict(RAW), 1))
    assert third.filled == first.filled, "a caller's changes must not reach the kept result"


async def test_a_kept_result_expires_with_the_earliest_answer_it_used() -> None:
    # MusicBrainz finds it (search TTL 100 s); Deezer finds nothing ("not found" TTL 10 s).
    waterfall, fakes, clock = cached_waterfall(
        {"musicbrainz": [song(isrc="GBDUW0000059")], "deezer": []},
        ttls=CacheTtls(by_kind={"search": 100.0}, not_found=10.0))
    await in_record(waterfall.enrich(dict(RAW), 1))
    clock.now += 9.0
    await in_record(waterfall.enrich(dict(RAW), 1))
    assert len(fakes["deezer"].queries) == 1
    clock.now += 2.0
    await in_record(waterfall.enrich(dict(RAW), 1))
    assert len(fakes["deezer"].queries) == 2, "Deezer's cached 'not found' expired: ask again"
    assert fakes["deezer"].fetches == 2 and fakes["musicbrainz"].fetches == 1


async def test_a_result_with_a_failed_stage_is_not_kept() -> None:
    waterfall, fakes, _ = cached_waterfall({
        "musicbrainz": [song(isrc="GBDUW0000059")],
        "spotify": TransientError("spotify", "503")})
    for _ in range(2):
        result = await in_record(waterfall.enrich(dict(RAW), 1))
        assert [o.outcome for o in result.outcomes] == ["matched", "failed"]
    assert len(fakes["spotify"].queries) == 2


async def test_results_from_answers_that_bypassed_the_cache_are_not_kept() -> None:
    mb = Fake("musicbrainz", [song(isrc="GBDUW0000059")])
    waterfall = Waterfall({"musicbrainz": mb}, load_settings(env={}), results=ResultCache(10))
    await in_record(waterfall.enrich(dict(RAW), 1))
    await in_record(waterfall.enrich(dict(RAW), 1))
    assert len(mb.queries) == 2


async def test_a_reused_result_still_counts_an_isrc_given_in_the_input() -> None:
    waterfall, fakes, _ = cached_waterfall({"spotify": [song(isrc="GBDUW0000059", popularity=7)]})
    raw = {**RAW, "isrc": "GBDUW0000059"}
    first = await in_record(waterfall.enrich(dict(raw), 1))
    second = await in_record(waterfall.enrich(dict(raw), 1))
    assert len(fakes["spotify"].queries) == 1
    assert first.failure is None and second.failure is None, "the required ISRC was given"


async def test_the_result_cache_keeps_the_most_recently_used_inputs() -> None:
    waterfall, fakes, _ = cached_waterfall({"musicbrainz": [song(isrc="GBDUW0000059")]}, size=2)
    inputs = [{**RAW, "title": f"One More Time {i}"} for i in range(3)]
    for raw in inputs:
        await in_record(waterfall.enrich(dict(raw), 1))
    await in_record(waterfall.enrich(dict(inputs[0]), 1))  # evicted by the third: computed again
    await in_record(waterfall.enrich(dict(inputs[2]), 1))  # still kept
    assert len(fakes["musicbrainz"].queries) == 4


class Deadlines(Fake):
    """A provider that records the call deadline each lookup ran under."""

    def __init__(self, name: str, answer: Any, busy_until_deadline: bool = False) -> None:
        super().__init__(name, answer)
        self.deadlines: list[float | None] = []
        self.busy = busy_until_deadline

    async def lookup(self, query: TrackQuery) -> list[Candidate]:
        from trackflow.providers.context import current_deadline
        from trackflow.providers.errors import RateLimitWait

        deadline = current_deadline()
        self.deadlines.append(deadline)
        if self.busy and deadline is not None:
            raise RateLimitWait(self.name, "no slot before the deadline")
        return await super().lookup(query)


async def test_a_busy_provider_of_optional_fields_is_deferred_and_the_record_published() -> None:
    s = load_settings(env={"TRACKFLOW_PROVIDERS__LASTFM__MAX_WAIT_S": "4"})
    mb = Deadlines("musicbrainz", [song(isrc="GBDUW0000059", musicbrainz_recording_id="m")])
    fm = Deadlines("lastfm", [song(tags=["house"])], busy_until_deadline=True)
    clock = [1000.0]
    result = await in_record(Waterfall({"musicbrainz": mb, "lastfm": fm}, s,
                                       clock=lambda: clock[0]).enrich(dict(RAW), 1))
    assert mb.deadlines == [None], "MusicBrainz can fill the required isrc: it must wait"
    assert fm.deadlines == [1004.0], "Last.fm fills optional fields: max_wait_s bounds its wait"
    assert [(o.provider, o.outcome, o.reason) for o in result.outcomes] == [
        ("musicbrainz", "matched", None), ("lastfm", "deferred", "RateLimitWait")]
    assert result.failure is None, "a deferred optional stage must not dead-letter the record"
    assert "tags" not in result.filled


async def test_an_open_breaker_defers_optional_fields_but_fails_required_ones() -> None:
    from trackflow.providers.errors import BreakerOpen

    s = load_settings(env={})
    mb = Fake("musicbrainz", BreakerOpen("musicbrainz", "circuit breaker open"))
    result = await in_record(Waterfall({"musicbrainz": mb}, s).enrich(dict(RAW), 1))
    assert result.outcomes[0].outcome == "failed"
    assert result.failure is not None and result.failure.retryable, \
        "an outage of the provider of a required field is a retryable dead letter"
    mb = Fake("musicbrainz", [song(isrc="GBDUW0000059")])
    dz = Fake("deezer", BreakerOpen("deezer", "circuit breaker open"))
    result = await in_record(Waterfall({"musicbrainz": mb, "deezer": dz}, s).enrich(dict(RAW), 1))
    assert [o.outcome for o in result.outcomes] == ["matched", "deferred"]
    assert result.failure is None


async def test_a_waiting_stage_asks_again_when_a_shared_lookup_gave_up() -> None:
    from trackflow.providers.errors import RateLimitWait

    s = load_settings(env={})
    answers: list[Any] = [RateLimitWait("musicbrainz", "shared call gave up"),
                          [song(isrc="GBDUW0000059")]]

    class Flaky(Fake):
        async def lookup(self, query: TrackQuery) -> list[Candidate]:
            self.answer = answers.pop(0)
            return await super().lookup(query)

    mb = Flaky("musicbrainz", None)
    result = await in_record(Waterfall({"musicbrainz": mb}, s).enrich(dict(RAW), 1))
    assert len(mb.queries) == 2 and result.failure is None
    assert result.filled["isrc"].value == "GBDUW0000059"


async def test_a_result_with_a_deferred_stage_is_not_kept() -> None:
    from trackflow.agents.enrich import Enrichment
    from trackflow.agents.records import Outcome
    from trackflow.providers.context import AnswersUsed

    results = ResultCache(10, clock=lambda: 0.0)
    deferred = Enrichment(outcomes=[Outcome("lastfm", "deferred", "RateLimitWait")])
    assert not results.put(("k",), deferred, AnswersUsed(answers=1, expires_at=100.0))


async def test_a_busy_provider_passes_a_required_field_on_to_a_later_stage() -> None:
    s = load_settings(env={"TRACKFLOW_PROVIDERS__MUSICBRAINZ__MAX_WAIT_S": "3"})
    mb = Deadlines("musicbrainz", [song(isrc="GBDUW0000059")], busy_until_deadline=True)
    sp = Deadlines("spotify", [song(isrc="GBDUW0000059", spotify_id="sp1")])
    clock = [1000.0]
    result = await in_record(Waterfall({"musicbrainz": mb, "spotify": sp}, s,
                                       clock=lambda: clock[0]).enrich(dict(RAW), 1))
    assert mb.deadlines == [1003.0], \
        "Spotify can fill the ISRC too: MusicBrainz waits max_wait_s at most"
    assert sp.deadlines == [None], "Spotify is the last that can fill the ISRC: it waits"
    assert [(o.provider, o.outcome) for o in result.outcomes] == [
        ("musicbrainz", "deferred"), ("spotify", "matched")]
    assert result.filled["isrc"].provider == "spotify"
    assert result.failure is None


async def test_a_required_field_nobody_later_filled_makes_the_busy_stage_wait_after_all(
) -> None:
    s = load_settings(env={})
    mb = Deadlines("musicbrainz", [song(isrc="GBDUW0000059")], busy_until_deadline=True)
    sp = Deadlines("spotify", [])
    dz = Deadlines("deezer", [song(isrc="GBDUW0000059", deezer_id="3135556")])
    result = await in_record(Waterfall({"musicbrainz": mb, "spotify": sp, "deezer": dz}, s,
                                       clock=lambda: 1000.0).enrich(dict(RAW), 1))
    assert len(mb.deadlines) == 2 and mb.deadlines[1] is None, \
        "Spotify had no match: MusicBrainz must be asked again, waiting for its slot"
    assert dz.queries and dz.queries[0].isrc == "GBDUW0000059", \
        "Deezer, skipped for want of an ISRC, runs once MusicBrainz found one"
    assert [(o.provider, o.outcome) for o in result.outcomes] == [
        ("musicbrainz", "matched"), ("spotify", "not_found"), ("deezer", "matched")]
    assert result.failure is None, "a busy provider must never make a dead letter"


async def test_no_later_provider_of_the_field_means_no_passing_on() -> None:
    s = load_settings(env={"TRACKFLOW_WATERFALL__FIELDS__ISRC__PROVIDERS": '["musicbrainz"]'})
    mb = Deadlines("musicbrainz", [song(isrc="GBDUW0000059")], busy_until_deadline=True)
    sp = Deadlines("spotify", [song(isrc="GBDUW0000060", spotify_id="sp1")])
    result = await in_record(Waterfall({"musicbrainz": mb, "spotify": sp}, s,
                                       clock=lambda: 1000.0).enrich(dict(RAW), 1))
    assert mb.deadlines == [None], "only MusicBrainz may fill the ISRC: it waits"
    assert result.filled["isrc"].provider == "musicbrainz"


class Looker(Fake):
    """A fake that answers a second look (``lookup_again``) with ``again``."""

    def __init__(self, name: str, answer: Any, again: Any) -> None:
        super().__init__(name, answer)
        self.again = again
        self.again_queries: list[TrackQuery] = []

    async def lookup_again(self, query: TrackQuery) -> list[Candidate]:
        self.again_queries.append(query)
        return [Candidate(self.name, f, via="again") for f in self.again]


TYPO = {**RAW, "title": "One Mroe Time"}


async def test_a_first_look_miss_asks_for_a_second_look_and_the_replay_takes_it() -> None:
    s = load_settings(env={})
    wider = [song(isrc="GBDUW0000059"), song(title="Digital Love", isrc="GBDUW0000061",
                                             duration_ms=298_000)]
    mb = Looker("musicbrainz", [], wider)
    dz = Fake("deezer", [song(isrc="GBDUW0000059", bpm=123.0, deezer_id="3135556")])
    fall = Waterfall({"musicbrainz": mb, "deezer": dz}, s)

    first = await in_record(fall.enrich(dict(TYPO), 1))
    assert first.failure is not None and first.failure.reason == "second_look"
    assert first.failure.retryable, "the replay is what makes the second look"
    assert not mb.again_queries, "a fresh record never spends budget on a second look"

    replay = await in_record(fall.enrich(dict(TYPO), 2))
    assert replay.failure is None
    assert replay.filled["isrc"].value == "GBDUW0000059"
    assert replay.filled["bpm"].value == 123.0, "Deezer runs with the ISRC the second look found"
    assert {o.provider: o.reason for o in replay.outcomes}["musicbrainz"] == "second_look"


async def test_a_second_look_that_misses_too_parks_the_record_as_not_found() -> None:
    s = load_settings(env={})
    mb = Looker("musicbrainz", [], [song(title="Digital Love", isrc="GBDUW0000061")])
    replay = await in_record(Waterfall({"musicbrainz": mb}, s).enrich(dict(TYPO), 2))
    assert len(mb.again_queries) == 1
    assert replay.failure is not None and replay.failure.reason == "not_found"
    assert not replay.failure.retryable


async def test_no_provider_able_to_look_again_means_not_found_at_once() -> None:
    s = load_settings(env={})
    result = await in_record(Waterfall({"musicbrainz": Fake("musicbrainz", [])}, s)
                             .enrich(dict(TYPO), 1))
    assert result.failure is not None and result.failure.reason == "not_found"
