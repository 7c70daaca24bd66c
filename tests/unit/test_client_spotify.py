"""Spotify client against httpx.MockTransport: token life cycle, search, track, features."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.unit.fixtures.providers.helpers import Handler, Router, fail, load, reply
from trackflow.providers.base import CallSpec, TrackQuery
from trackflow.providers.errors import PermanentError, TransientError
from trackflow.providers.spotify import SpotifyClient, build_search_q, key_name

API = "https://api.spotify.test/v1"
ACCOUNTS = "https://accounts.spotify.test"
TRACK_ID = "6WsfRqRrcTLnIqrCzjGDle"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tokens() -> Handler:
    """Token endpoint handing out tok-1, tok-2, ... and checking Basic auth."""
    n = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal n
        expected = "Basic " + base64.b64encode(b"cid:csecret").decode()
        if request.headers.get("Authorization") != expected:
            return httpx.Response(400, json={"error": "invalid_client"})
        assert request.content == b"grant_type=client_credentials"
        n += 1
        return httpx.Response(
            200, json={"access_token": f"tok-{n}", "token_type": "Bearer", "expires_in": 3600}
        )

    return handle


def bearer(expected: str, ok: Handler) -> Handler:
    """Answers 401 unless the request carries ``Bearer expected``."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {expected}":
            return httpx.Response(
                401, json={"error": {"status": 401, "message": "The access token expired"}}
            )
        return ok(request)

    return handle


def client(router: Router, **kw: Any) -> SpotifyClient:
    return SpotifyClient(
        client_id="cid",
        client_secret="csecret",
        base_url=API,
        accounts_url=ACCOUNTS,
        transport=router.transport,
        **kw,
    )


async def test_search_by_artist_and_track_gets_token_first() -> None:
    router = Router(
        {"/api/token": tokens(), "/v1/search": bearer("tok-1", reply(200, load("spotify_search")))}
    )
    got = await client(router).lookup(TrackQuery("deadmau5", "Strobe"))
    assert router.paths() == ["/api/token", "/v1/search"]
    params = router.requests[1].url.params
    assert params["q"] == 'artist:"deadmau5" track:"Strobe"'
    assert params["type"] == "track" and int(params["limit"]) <= 10
    first, second = got
    assert first.fields == {
        "spotify_id": TRACK_ID,
        "title": "Strobe",
        "artist": "deadmau5",
        "album": "For Lack Of A Better Name",
        "release_date": "2009-10-06",
        "duration_ms": 637000,
        "isrc": "USUS10900123",
    }
    assert "popularity" not in first.fields  # development-mode apps do not get it
    assert second.fields["popularity"] == 44
    assert first.via == "search"
    assert first.provider_score is None, "Spotify gives no score; the order is its ranking"


async def test_a_second_look_asks_for_the_artist_and_for_the_title_apart() -> None:
    router = Router({"/api/token": tokens(), "/v1/search": reply(200, load("spotify_search"))})
    got = await client(router).lookup_again(TrackQuery("", "deadmau5 - Strobe (Radio Edit)"))
    assert [r.url.params["q"] for r in router.requests[1:]] == ['artist:"deadmau5"',
                                                                'track:"strobe"']
    ids = [c.get("spotify_id") for c in got]
    assert len(ids) == len(set(ids)) == 2, "the same track from both answers is kept once"
    assert all(c.via == "again" for c in got)
    assert await client(router).lookup_again(TrackQuery("", "Strobe")) == [], "no artist"


async def test_search_by_isrc_when_known() -> None:
    router = Router({"/api/token": tokens(), "/v1/search": reply(200, load("spotify_search"))})
    got = await client(router).lookup(TrackQuery("x", "y", isrc="USUS10900123"))
    assert router.requests[1].url.params["q"] == "isrc:USUS10900123"
    assert got[0].via == "isrc"


async def test_track_by_id_when_known() -> None:
    router = Router({"/api/token": tokens(), "/v1/tracks/": reply(200, load("spotify_track"))})
    got = await client(router).lookup(TrackQuery("x", "y", spotify_id=TRACK_ID))
    assert router.paths()[-1] == f"/v1/tracks/{TRACK_ID}"
    assert got[0].via == "id" and got[0].fields["popularity"] == 61


async def test_missing_track_is_empty() -> None:
    router = Router({"/api/token": tokens(), "/v1/search": reply(200, load("spotify_missing"))})
    assert await client(router).lookup(TrackQuery("nobody", "nothing")) == []


async def test_limit_is_capped_at_ten() -> None:
    router = Router({"/api/token": tokens(), "/v1/search": reply(200, load("spotify_missing"))})
    await client(router, search_limit=50).lookup(TrackQuery("a", "b"))
    assert router.requests[1].url.params["limit"] == "10"


async def test_token_is_reused_then_refreshed_60s_before_expiry() -> None:
    clock = Clock()
    router = Router({"/api/token": tokens(), "/v1/search": reply(200, load("spotify_missing"))})
    sp = client(router, clock=clock)
    await sp.lookup(TrackQuery("a", "b"))
    clock.now += 3000  # 3540 s is the refresh point
    await sp.lookup(TrackQuery("a", "b"))
    assert len(router.calls("/api/token")) == 1, "token should be reused while fresh"
    clock.now += 541
    await sp.lookup(TrackQuery("a", "b"))
    assert len(router.calls("/api/token")) == 2, "token should be refreshed 60 s before expiry"
    assert router.requests[-1].headers["Authorization"] == "Bearer tok-2"


async def test_401_refreshes_once_then_succeeds() -> None:
    # The server revoked tok-1 early (token expiry mid-run): the client must recover by itself.
    router = Router(
        {"/api/token": tokens(), "/v1/search": bearer("tok-2", reply(200, load("spotify_search")))}
    )
    got = await client(router).lookup(TrackQuery("deadmau5", "Strobe"))
    assert router.paths() == ["/api/token", "/v1/search", "/api/token", "/v1/search"]
    assert got and got[0].fields["spotify_id"] == TRACK_ID


async def test_second_401_is_permanent() -> None:
    router = Router({"/api/token": tokens(), "/v1/search": bearer("never", reply(200, {}))})
    with pytest.raises(PermanentError):
        await client(router).lookup(TrackQuery("a", "b"))
    assert len(router.calls("/api/token")) == 2, "refresh exactly once on a 401"


async def test_bad_credentials_are_permanent() -> None:
    router = Router(
        {
            "/api/token": reply(
                400, {"error": "invalid_client", "error_description": "Invalid client"}
            )
        }
    )
    with pytest.raises(PermanentError, match="invalid_client"):
        await client(router).lookup(TrackQuery("a", "b"))


async def test_audio_features_fill_bpm_and_key() -> None:
    router = Router(
        {
            "/api/token": tokens(),
            "/v1/search": reply(200, load("spotify_search")),
            "/v1/audio-features/": reply(200, load("spotify_audio_features")),
        }
    )
    got = await client(router, audio_features=True).lookup(TrackQuery("deadmau5", "Strobe"))
    assert got[0].fields["bpm"] == pytest.approx(128.011)
    assert got[0].fields["key"] == "C# minor"
    assert "bpm" not in got[1].fields, "features are fetched for the best candidate only"


async def test_audio_features_403_is_remembered_and_never_fails_lookup() -> None:
    router = Router(
        {
            "/api/token": tokens(),
            "/v1/search": reply(200, load("spotify_search")),
            "/v1/audio-features/": reply(403, {"error": {"status": 403}}),
        }
    )
    sp = client(router, audio_features=True)
    got = await sp.lookup(TrackQuery("deadmau5", "Strobe"))
    assert got and "bpm" not in got[0].fields
    assert sp.features_unavailable
    await sp.lookup(TrackQuery("deadmau5", "Strobe"))
    assert len(router.calls("/v1/audio-features/")) == 1, (
        "a refused feature must not be asked again"
    )


async def test_features_not_requested_unless_enabled() -> None:
    router = Router({"/api/token": tokens(), "/v1/search": reply(200, load("spotify_search"))})
    await client(router).lookup(TrackQuery("deadmau5", "Strobe"))
    assert not router.calls("/v1/audio-features/")


async def test_429_carries_retry_after() -> None:
    router = Router(
        {
            "/api/token": tokens(),
            "/v1/search": reply(
                429,
                {"error": {"status": 429, "message": "Too many requests"}},
                {"Retry-After": "4"},
            ),
        }
    )
    with pytest.raises(TransientError) as info:
        await client(router).lookup(TrackQuery("a", "b"))
    assert info.value.rate_limited and info.value.retry_after == 4.0


async def test_5xx_and_timeouts_are_transient() -> None:
    for handler in (reply(502, {}), fail(httpx.ConnectTimeout), fail(httpx.ConnectError)):
        router = Router({"/api/token": tokens(), "/v1/search": handler})
        with pytest.raises(TransientError):
            await client(router).lookup(TrackQuery("a", "b"))


async def test_token_call_is_not_cacheable() -> None:
    specs: list[CallSpec] = []

    class Gate:
        async def run(self, spec, fetch):  # type: ignore[no-untyped-def]
            specs.append(spec)
            return await fetch()

    router = Router({"/api/token": tokens(), "/v1/search": reply(200, load("spotify_missing"))})
    await client(router, gate=Gate()).lookup(TrackQuery("a", "b"))
    # The token is fetched in its own gate call, never nested inside the search's fetch.
    assert [(s.kind, s.cacheable) for s in specs] == [("token", False), ("search", True)]
    assert all("csecret" not in s.key and "tok-" not in s.key for s in specs)


def test_hostile_title_is_one_quoted_phrase() -> None:
    q, via = build_search_q(TrackQuery('x" OR artist:"y', 'AND (Remix) "Edit" OR artist:x'))
    assert q == 'artist:"x OR artist: y" track:"AND (Remix) Edit OR artist:x"'
    assert via == "search"


def test_invalid_ids_are_not_put_in_paths() -> None:
    _, via = build_search_q(TrackQuery("a", "b", isrc="../../me"))
    assert via == "search"


def test_key_names() -> None:
    assert key_name(0, 1) == "C major"
    assert key_name(-1, 1) is None
    assert key_name("9", "0") == "A minor"


async def test_short_lived_token_is_used_for_half_its_life() -> None:
    clock = Clock()

    def short(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "tok-s", "expires_in": 30})

    router = Router({"/api/token": short, "/v1/search": reply(200, load("spotify_missing"))})
    sp = client(router, clock=clock)
    await sp.lookup(TrackQuery("a", "b"))
    clock.now += 14
    await sp.lookup(TrackQuery("a", "b"))
    assert len(router.calls("/api/token")) == 1, "one token per lookup pair, not per request"
    clock.now += 2
    await sp.lookup(TrackQuery("a", "b"))
    assert len(router.calls("/api/token")) == 2
