"""Last.fm client against httpx.MockTransport: getInfo, getTopTags, error codes in bodies."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.unit.fixtures.providers.helpers import Router, fail, load, reply
from trackflow.providers.base import TrackQuery
from trackflow.providers.errors import PermanentError, TransientError
from trackflow.providers.lastfm import LastfmClient

BASE = "https://lastfm.test/2.0/"
INFO = "?method=track.getInfo"
TAGS = "?method=track.getTopTags"


def client(router: Router, **kw: Any) -> LastfmClient:
    return LastfmClient(api_key="lfm-key-123", base_url=BASE, transport=router.transport, **kw)


def _without_toptags() -> dict[str, Any]:
    body: dict[str, Any] = load("lastfm_track_getinfo")
    del body["track"]["toptags"]
    return body


async def test_get_info_then_top_tags_when_asked_for() -> None:
    router = Router(
        {
            INFO: reply(200, _without_toptags()),
            TAGS: reply(200, load("lastfm_track_gettoptags")),
        }
    )
    (c,) = await client(router, top_tags=True).lookup(TrackQuery("Cher", "Believe"))
    info = router.requests[0].url.params
    assert router.requests[0].url.path == "/2.0/"
    assert (
        info["method"] == "track.getInfo"
        and info["autocorrect"] == "1"
        and info["format"] == "json"
    )
    assert (
        info["artist"] == "Cher" and info["track"] == "Believe" and info["api_key"] == "lfm-key-123"
    )
    assert router.requests[1].url.params["method"] == "track.getTopTags"
    assert c.fields == {
        "title": "Believe",
        "artist": "Cher",
        "album": "Believe",
        "duration_ms": 240000,
        "listeners": 1028764,
        "playcount": 8731432,
        "tags": ["pop", "dance", "90s"],
    }
    assert "musicbrainz_recording_id" not in c.fields, 'an empty mbid "" is unknown'
    assert c.via == "search"


async def test_by_mbid_when_known() -> None:
    router = Router(
        {
            INFO: reply(200, load("lastfm_track_getinfo")),
            TAGS: reply(200, load("lastfm_track_gettoptags")),
        }
    )
    (c,) = await client(router).lookup(
        TrackQuery("Cher", "Believe", musicbrainz_recording_id="ABC-123")
    )
    params = router.requests[0].url.params
    assert params["mbid"] == "abc-123" and "artist" not in params
    assert c.via == "id"


async def test_unknown_mbid_falls_back_to_names() -> None:
    router = Router(
        {
            INFO: [reply(200, load("lastfm_error_6")), reply(200, load("lastfm_track_getinfo"))],
            TAGS: reply(200, load("lastfm_track_gettoptags")),
        }
    )
    (c,) = await client(router).lookup(
        TrackQuery("Cher", "Believe", musicbrainz_recording_id="abc")
    )
    assert "mbid" in router.requests[0].url.params and "artist" in router.requests[1].url.params
    assert c.via == "search"


async def test_error_6_is_not_found() -> None:
    router = Router({INFO: reply(200, load("lastfm_error_6"))})
    assert await client(router).lookup(TrackQuery("nobody", "nothing")) == []
    assert len(router.requests) == 1, "no tag lookup for a track that is not there"


async def test_the_infos_own_toptags_spare_the_tag_call() -> None:
    router = Router(
        {INFO: reply(200, load("lastfm_track_getinfo")),
         TAGS: reply(200, load("lastfm_track_gettoptags"))}
    )
    (c,) = await client(router).lookup(TrackQuery("Cher", "Believe"))
    assert c.fields["tags"] == ["pop", "dance"]
    assert [r.url.params["method"] for r in router.requests] == ["track.getInfo"], (
        "getInfo carried the top tags: a getTopTags call would spend budget for nothing")


@pytest.mark.parametrize(
    ("code", "rate_limited"), [(29, True), (11, False), (16, False), (8, False)]
)
async def test_transient_codes(code: int, rate_limited: bool) -> None:
    router = Router({INFO: reply(200, {"error": code, "message": "busy"})})
    with pytest.raises(TransientError) as info:
        await client(router).lookup(TrackQuery("a", "b"))
    assert info.value.rate_limited is rate_limited


@pytest.mark.parametrize("code", [10, 26])
async def test_key_problems_are_permanent(code: int) -> None:
    # Last.fm sends these with HTTP 403 as well as 200: the body decides.
    for status in (200, 403):
        router = Router({INFO: reply(status, {"error": code, "message": "Invalid API key"})})
        with pytest.raises(PermanentError):
            await client(router).lookup(TrackQuery("a", "b"))


async def test_5xx_429_and_timeouts_are_transient() -> None:
    for handler in (
        reply(500, None),
        reply(429, None, {"Retry-After": "9"}),
        fail(httpx.ReadTimeout),
    ):
        router = Router({INFO: handler})
        with pytest.raises(TransientError):
            await client(router).lookup(TrackQuery("a", "b"))


async def test_tolerates_sparse_answers() -> None:
    body = {
        "track": {
            "name": "X",
            "artist": "Plain String Artist",
            "duration": "0",
            "listeners": "",
            "mbid": "",
        }
    }
    router = Router(
        {
            INFO: reply(200, body),
            TAGS: reply(200, {"toptags": {"tag": {"name": "solo", "count": 5}}}),
        }
    )
    (c,) = await client(router, top_tags=True).lookup(TrackQuery("a", "b"))
    assert c.fields == {"title": "X", "artist": "Plain String Artist", "tags": ["solo"]}


async def test_no_tag_call_by_default_even_for_a_track_whose_info_has_no_tags() -> None:
    router = Router({INFO: reply(200, _without_toptags())})
    (c,) = await client(router).lookup(TrackQuery("Cher", "Believe"))
    assert len(router.requests) == 1
    assert "tags" not in c.fields


def test_repr_hides_the_key() -> None:
    assert "lfm-key-123" not in repr(LastfmClient(api_key="lfm-key-123"))


async def test_error_29_with_429_keeps_retry_after() -> None:
    router = Router({INFO: reply(429, load("lastfm_error_29"), {"Retry-After": "5"})})
    with pytest.raises(TransientError) as info:
        await client(router).lookup(TrackQuery("a", "b"))
    assert info.value.rate_limited and info.value.retry_after == 5.0
