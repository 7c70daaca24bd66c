"""Discogs client against httpx.MockTransport."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.unit.fixtures.providers.helpers import Router, fail, load, reply
from trackflow.providers.base import TrackQuery
from trackflow.providers.discogs import DiscogsClient
from trackflow.providers.errors import PermanentError, TransientError

BASE = "https://discogs.test"


def client(router: Router) -> DiscogsClient:
    return DiscogsClient(
        token="dg-tok-xyz", contact="ops@example.org", base_url=BASE, transport=router.transport
    )


async def test_search_sends_token_agent_and_parses_results() -> None:
    headers = {"X-Discogs-Ratelimit": "60", "X-Discogs-Ratelimit-Remaining": "57"}
    router = Router({"/database/search": reply(200, load("discogs_search"), headers)})
    dg = client(router)
    got = await dg.lookup(TrackQuery("Daft Punk", "Harder, Better, Faster, Stronger"))
    req = router.requests[0]
    assert req.headers["Authorization"] == "Discogs token=dg-tok-xyz"
    assert req.headers["User-Agent"].startswith("trackflow/")
    assert dict(req.url.params) == {
        "type": "release",
        "artist": "Daft Punk",
        "track": "Harder, Better, Faster, Stronger",
        "per_page": "5",
    }
    first, second = got
    assert first.fields == {
        "discogs_release_id": "79",
        "artist": "Daft Punk",
        "album": "Discovery",
        "release_date": "2001",
        "label": "Virgin",
        "genres": ["Electronic", "House", "Disco"],
    }
    assert second.fields == {
        "discogs_release_id": "1234567",
        "album": "Harder Better Faster Stronger",
        "genres": ["Electronic"],
    }
    assert first.provider_score is None and second.provider_score is None
    assert dg.ratelimit_remaining == 57


async def test_no_results_is_empty() -> None:
    router = Router({"/database/search": reply(200, {"pagination": {}, "results": []})})
    assert await client(router).lookup(TrackQuery("nobody", "nothing")) == []


async def test_low_remaining_budget_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    router = Router(
        {"/database/search": reply(200, {"results": []}, {"X-Discogs-Ratelimit-Remaining": "2"})}
    )
    with caplog.at_level(logging.INFO, logger="trackflow.providers.discogs"):
        await client(router).lookup(TrackQuery("a", "b"))
    assert "event=ratelimit_low" in caplog.text and "remaining=2" in caplog.text


async def test_401_is_permanent() -> None:
    router = Router(
        {
            "/database/search": reply(
                401, {"message": "You must authenticate to access this resource."}
            )
        }
    )
    with pytest.raises(PermanentError):
        await client(router).lookup(TrackQuery("a", "b"))


async def test_429_is_rate_limited() -> None:
    router = Router(
        {"/database/search": reply(429, {"message": "You are making requests too quickly."})}
    )
    with pytest.raises(TransientError) as info:
        await client(router).lookup(TrackQuery("a", "b"))
    assert info.value.rate_limited


async def test_5xx_and_connection_errors_are_transient() -> None:
    for handler in (reply(500, {}), fail(httpx.ConnectError), fail(httpx.ReadTimeout)):
        router = Router({"/database/search": handler})
        with pytest.raises(TransientError):
            await client(router).lookup(TrackQuery("a", "b"))


async def test_hostile_text_is_sent_as_plain_parameters() -> None:
    router = Router({"/database/search": reply(200, {"results": []})})
    await client(router).lookup(TrackQuery("x&artist=y", 'AND (Remix) "Edit" OR artist:x'))
    params = router.requests[0].url.params
    assert params["artist"] == "x&artist=y" and params["track"] == 'AND (Remix) "Edit" OR artist:x'
    assert params.get_list("artist") == ["x&artist=y"]


def test_repr_hides_the_token() -> None:
    dg = DiscogsClient(token="dg-tok-xyz", contact="c")
    assert "dg-tok-xyz" not in repr(dg) and "dg-tok-xyz" not in str(vars(dg).get("_client"))
