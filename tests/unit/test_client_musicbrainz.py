"""MusicBrainz client against httpx.MockTransport."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.unit.fixtures.providers.helpers import Router, fail, load, reply
from trackflow.providers.base import CallSpec, TrackQuery
from trackflow.providers.errors import TransientError
from trackflow.providers.musicbrainz import MusicBrainzClient, build_search_query, escape_lucene

BASE = "https://mb.test/ws/2"


def client(router: Router, **kw: Any) -> MusicBrainzClient:
    return MusicBrainzClient(
        contact="ops@example.org",
        base_url=BASE,
        transport=router.transport,
        **kw,
    )


async def test_isrc_lookup_uses_documented_path_and_user_agent() -> None:
    router = Router({"/ws/2/isrc/": reply(200, load("musicbrainz_isrc"))})
    mb = client(router)
    got = await mb.lookup(
        TrackQuery("Daft Punk", "Harder Better Faster Stronger", isrc="GBDUW0000059")
    )
    req = router.requests[0]
    assert req.url.path == "/ws/2/isrc/GBDUW0000059"
    assert req.url.query == b"fmt=json&inc=artist-credits+releases"
    assert req.headers["User-Agent"].startswith("trackflow/")
    assert req.headers["User-Agent"].endswith("( ops@example.org )")
    assert len(got) == 1
    c = got[0]
    assert c.via == "isrc" and c.provider == "musicbrainz"
    assert c.fields["musicbrainz_recording_id"] == "8a9d6d6b-4b1c-4e39-9d0e-3f2a6c1b7e55"
    assert c.fields["isrc"] == "GBDUW0000059"
    assert c.fields["artist"] == "Daft Punk"
    assert c.fields["duration_ms"] == 224693
    assert c.fields["album"] == "Discovery"
    assert c.fields["release_date"] == "2001-03-07"
    await mb.aclose()


async def test_unknown_isrc_falls_back_to_search() -> None:
    router = Router(
        {
            "/ws/2/isrc/": reply(404, load("musicbrainz_not_found")),
            "/ws/2/recording": reply(200, load("musicbrainz_recording_search")),
        }
    )
    got = await client(router).lookup(TrackQuery("deadmau5", "Strobe", isrc="USUS10900123"))
    assert router.paths() == ["/ws/2/isrc/USUS10900123", "/ws/2/recording"]
    assert [c.via for c in got] == ["search", "search"]


async def test_search_parses_scores_credits_and_tags() -> None:
    router = Router({"/ws/2/recording": reply(200, load("musicbrainz_recording_search"))})
    got = await client(router).lookup(TrackQuery("deadmau5", "Strobe", duration_ms=637000))
    params = router.requests[0].url.params
    assert params["fmt"] == "json"
    assert params["query"] == 'recording:"Strobe" AND artist:"deadmau5" AND dur:[627000 TO 647000]'
    first, second = got
    assert first.provider_score == 1.0
    assert first.fields["tags"] == ["progressive house", "electronic"]
    assert first.fields["isrc"] == "USUS10900123"
    # score as a string, null length, joinphrases
    assert second.provider_score == pytest.approx(0.87)
    assert "duration_ms" not in second.fields
    assert second.fields["artist"] == "deadmau5 feat. Someone"


async def test_search_without_results_is_empty() -> None:
    router = Router({"/ws/2/recording": reply(200, {"count": 0, "offset": 0, "recordings": []})})
    assert await client(router).lookup(TrackQuery("nobody", "nothing")) == []


async def test_tolerates_missing_fields() -> None:
    body = {
        "recordings": [{"id": "x"}, {"title": "no id"}, "junk", {"id": "y", "artist-credit": None}]
    }
    router = Router({"/ws/2/recording": reply(200, body)})
    got = await client(router).lookup(TrackQuery("a", "b"))
    assert [c.fields["musicbrainz_recording_id"] for c in got] == ["x", "y"]
    assert got[0].provider_score is None


def test_lucene_specials_are_escaped() -> None:
    assert escape_lucene('AND (Remix) "Edit" OR artist:x') == r"AND \(Remix\) \"Edit\" OR artist\:x"
    for ch in '+-&|!(){}[]^"~*?:\\/':
        assert escape_lucene(ch) == "\\" + ch, f"{ch!r} should be escaped"


def test_hostile_title_stays_inside_its_phrase() -> None:
    q = build_search_query(TrackQuery("AC/DC", 'AND (Remix) "Edit" OR artist:x'))
    assert q == r'recording:"AND \(Remix\) \"Edit\" OR artist\:x" AND artist:"AC\/DC"'


async def test_503_is_rate_limited_transient() -> None:
    router = Router({"/ws/2/recording": reply(503, load("musicbrainz_rate_limited"))})
    with pytest.raises(TransientError) as info:
        await client(router).lookup(TrackQuery("a", "b"))
    assert info.value.rate_limited


async def test_429_carries_retry_after() -> None:
    router = Router({"/ws/2/recording": reply(429, {}, {"Retry-After": "3"})})
    with pytest.raises(TransientError) as info:
        await client(router).lookup(TrackQuery("a", "b"))
    assert info.value.retry_after == 3.0 and info.value.rate_limited


@pytest.mark.parametrize("status", [500, 502])
async def test_5xx_is_transient(status: int) -> None:
    router = Router({"/ws/2/recording": reply(status, {})})
    with pytest.raises(TransientError):
        await client(router).lookup(TrackQuery("a", "b"))


async def test_timeout_is_transient() -> None:
    router = Router({"/ws/2/recording": fail(httpx.ReadTimeout)})
    with pytest.raises(TransientError, match="timeout"):
        await client(router).lookup(TrackQuery("a", "b"))


async def test_calls_go_through_the_gate_with_json_results() -> None:
    seen: list[CallSpec] = []

    class RecordingGate:
        async def run(self, spec, fetch):  # type: ignore[no-untyped-def]
            seen.append(spec)
            value = await fetch()
            import json

            json.dumps(value)  # must be cacheable
            return value

    router = Router({"/ws/2/recording": reply(200, load("musicbrainz_recording_search"))})
    await client(router, gate=RecordingGate()).lookup(TrackQuery("Deadmau5 ", " STROBE"))
    assert [s.kind for s in seen] == ["search"]
    assert seen[0].provider == "musicbrainz" and seen[0].cacheable
    assert "strobe" in seen[0].key and "deadmau5" in seen[0].key


def test_contact_is_required_and_repr_is_plain() -> None:
    with pytest.raises(ValueError):
        MusicBrainzClient(contact=" ")
    assert (
        repr(MusicBrainzClient(contact="x"))
        == "MusicBrainzClient(base_url='https://musicbrainz.org/ws/2')"
    )


def test_a_second_look_makes_the_title_and_artist_words_fuzzy() -> None:
    from trackflow.providers.musicbrainz import build_fuzzy_query

    q = build_fuzzy_query(TrackQuery("Vampire Weekend", "Hodl On (Live)", duration_ms=200_000))
    assert q == ('(recording:hodl~1 OR recording:on) AND (artist:"Vampire Weekend" OR '
                 "artist:vampire~2 OR artist:weekend~2) AND dur:[190000 TO 210000]")
    assert build_fuzzy_query(TrackQuery("", "Telephnoe")) is None, "no artist: nothing to scope"
    split = build_fuzzy_query(TrackQuery("", "Sia - Chandelirr")) or ""
    assert split.startswith('(recording:chandelirr~2) AND (artist:"Sia" OR artist:sia~1)'), (
        "an 'Artist - Title' input with no artist is read as such")
    assert "recording:telephnoe~2" in (build_fuzzy_query(TrackQuery("Lady Gaga", "Telephnoe"))
                                       or "")
