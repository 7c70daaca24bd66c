"""Deezer client against httpx.MockTransport: ISRC lookups, search + details, errors in 200s."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.unit.fixtures.providers.helpers import Router, fail, load, reply
from trackflow.providers.base import TrackQuery
from trackflow.providers.deezer import DeezerClient, build_search_q
from trackflow.providers.errors import PermanentError, TransientError

BASE = "https://deezer.test"


def client(router: Router, **kw: Any) -> DeezerClient:
    return DeezerClient(base_url=BASE, transport=router.transport, **kw)


def by_id(request: httpx.Request) -> httpx.Response:
    tid = request.url.path.rsplit("/", 1)[-1]
    if tid == "3135556":
        return httpx.Response(200, json=load("deezer_track_isrc"))
    if tid == "67238735":
        return httpx.Response(200, json=load("deezer_track_nobpm"))
    return httpx.Response(200, json=load("deezer_error_nodata"))


async def test_isrc_lookup_gives_bpm() -> None:
    router = Router({"/track/isrc:": reply(200, load("deezer_track_isrc"))})
    got = await client(router).lookup(TrackQuery("Daft Punk", "HBFS", isrc="GBDUW0000059"))
    assert router.paths() == ["/track/isrc:GBDUW0000059"]
    (c,) = got
    assert c.via == "isrc"
    assert c.fields["bpm"] == pytest.approx(123.4)
    assert c.fields["isrc"] == "GBDUW0000059"
    assert c.fields["deezer_id"] == "3135556"
    assert c.fields["duration_ms"] == 224_000
    assert c.fields["album"] == "Discovery" and c.fields["artist"] == "Daft Punk"


async def test_isrc_no_data_in_200_falls_back_to_search() -> None:
    router = Router(
        {
            "/track/isrc:": reply(200, load("deezer_error_nodata")),
            "/search": reply(200, load("deezer_search")),
            "/track/": by_id,
        }
    )
    got = await client(router).lookup(TrackQuery("Daft Punk", "HBFS", isrc="GBDUW0000059"))
    assert router.paths()[:2] == ["/track/isrc:GBDUW0000059", "/search"]
    assert [c.fields["deezer_id"] for c in got] == ["3135556", "67238735"]


async def test_search_then_details_for_isrc_and_bpm() -> None:
    router = Router({"/search": reply(200, load("deezer_search")), "/track/": by_id})
    got = await client(router).lookup(TrackQuery("Daft Punk", "Harder Better Faster Stronger"))
    assert (
        router.requests[0].url.params["q"]
        == 'artist:"Daft Punk" track:"Harder Better Faster Stronger"'
    )
    assert router.paths()[1:] == ["/track/3135556", "/track/67238735"]
    first, second = got
    assert first.via == "search" and first.fields["bpm"] == pytest.approx(123.4)
    assert second.fields["isrc"] == "GBDUW0700112"
    assert "bpm" not in second.fields, "bpm 0 means unknown and must be omitted"
    assert second.fields["duration_ms"] == 316_000  # numbers as strings


async def test_detail_limit_bounds_extra_calls() -> None:
    router = Router({"/search": reply(200, load("deezer_search")), "/track/": by_id})
    got = await client(router, detail_limit=1).lookup(TrackQuery("Daft Punk", "HBFS"))
    assert router.paths() == ["/search", "/track/3135556"]
    assert len(got) == 2 and "isrc" not in got[1].fields


async def test_empty_search_is_not_found() -> None:
    router = Router({"/search": reply(200, {"data": [], "total": 0})})
    assert await client(router).lookup(TrackQuery("nobody", "nothing")) == []


async def test_quota_code_4_in_200_is_rate_limited_transient() -> None:
    router = Router({"/search": reply(200, load("deezer_error_quota"))})
    with pytest.raises(TransientError) as info:
        await client(router).lookup(TrackQuery("a", "b"))
    assert info.value.rate_limited and info.value.retry_after is None


async def test_permission_error_code_is_permanent() -> None:
    body = {
        "error": {
            "type": "OAuthException",
            "message": "An active access token must be used",
            "code": 300,
        }
    }
    router = Router({"/search": reply(200, body)})
    with pytest.raises(PermanentError):
        await client(router).lookup(TrackQuery("a", "b"))


async def test_invalid_query_code_is_not_found_not_an_outage() -> None:
    body = {"error": {"type": "DataException", "message": "invalid query", "code": 600}}
    router = Router({"/search": reply(200, body)})
    assert await client(router).lookup(TrackQuery("a", "b")) == []


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_is_transient(status: int) -> None:
    router = Router({"/search": reply(status, None)})
    with pytest.raises(TransientError):
        await client(router).lookup(TrackQuery("a", "b"))


async def test_429_and_timeout_are_transient() -> None:
    router = Router({"/search": reply(429, {}, {"Retry-After": "2"})})
    with pytest.raises(TransientError) as info:
        await client(router).lookup(TrackQuery("a", "b"))
    assert info.value.retry_after == 2.0
    router = Router({"/search": fail(httpx.ReadTimeout)})
    with pytest.raises(TransientError):
        await client(router).lookup(TrackQuery("a", "b"))


async def test_html_error_page_is_classified_by_status() -> None:
    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    router = Router({"/search": html})
    with pytest.raises(TransientError):
        await client(router).lookup(TrackQuery("a", "b"))


async def test_tolerates_odd_items() -> None:
    body = {
        "data": [{"id": "12", "title": "t", "bpm": "0", "duration": ""}, {"title": "no id"}, None]
    }
    router = Router(
        {"/search": reply(200, body), "/track/": reply(200, load("deezer_error_nodata"))}
    )
    (c,) = await client(router).lookup(TrackQuery("a", "b"))
    assert c.fields == {"deezer_id": "12", "title": "t"}


def test_hostile_title_is_one_quoted_phrase() -> None:
    q = build_search_q(TrackQuery("AC/DC", 'AND (Remix) "Edit" OR artist:x'))
    assert q == 'artist:"AC/DC" track:"AND (Remix) Edit OR artist:x"'


async def test_5xx_status_wins_over_body_code() -> None:
    body = {"error": {"type": "Exception", "message": "An internal error occurred", "code": 100}}
    router = Router({"/search": reply(500, body)})
    with pytest.raises(TransientError):
        await client(router).lookup(TrackQuery("a", "b"))


async def test_unknown_body_code_is_transient_not_a_silent_miss() -> None:
    router = Router({"/search": reply(200, {"error": {"type": "Exception", "code": 12345}})})
    with pytest.raises(TransientError):
        await client(router).lookup(TrackQuery("a", "b"))
