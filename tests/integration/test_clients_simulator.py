"""The five provider clients, unchanged, against the provider simulator on a loopback port.

Each client is built the way production builds it (``build_providers`` from ``TRACKFLOW_*``
variables), pointed at the simulator's base URLs with its dummy credentials.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from trackflow.providers.base import Provider, SecondLook, TrackQuery
from trackflow.providers.errors import TransientError
from trackflow.providers.matching import best_match
from trackflow.providers.registry import build_providers
from trackflow.providers.simulator.catalog import Catalog, Track
from trackflow.providers.simulator.config import SimConfig
from trackflow.providers.simulator.generate import generate_catalog
from trackflow.providers.simulator.server import RunningSimulator, start_simulator
from trackflow.providers.spotify import SpotifyClient

pytestmark = pytest.mark.integration

NAMES = ("musicbrainz", "spotify", "deezer", "lastfm", "discogs")
NOWHERE = TrackQuery("Qxzv Plorkt Wunderbaum", "Zzyzx Quibble Frobnication")


@pytest.fixture(autouse=True)
def _integration_services() -> None:
    """Overrides the package's autouse Kafka/Redis fixture: these tests need only the simulator."""


@functools.cache
def catalog() -> Catalog:
    return generate_catalog(300, seed=11)


def relaxed() -> SimConfig:
    """Real answer formats, but limits wide enough for a quick test run."""
    config = SimConfig(seed=1)
    for name in NAMES:
        config = config.with_provider(name, rate_limit=1000, rate_window_s=1.0)
    return config


def sample(pred: Any = lambda t: True) -> Track:
    return next(t for t in catalog().tracks if pred(t))


async def started(config: SimConfig) -> tuple[RunningSimulator, dict[str, Provider]]:
    sim = await start_simulator(catalog=catalog(), config=config)
    return sim, build_providers(sim.env)


@pytest.fixture
async def sim_and_clients() -> AsyncIterator[tuple[RunningSimulator, dict[str, Provider]]]:
    sim, clients = await started(relaxed())
    try:
        yield sim, clients
    finally:
        for c in clients.values():
            await c.aclose()
        await sim.stop()


async def test_all_five_are_built_from_the_simulator_env(sim_and_clients: Any) -> None:
    _, clients = sim_and_clients
    assert sorted(clients) == sorted(NAMES)


async def test_found_by_isrc(sim_and_clients: Any) -> None:
    _, clients = sim_and_clients
    t = sample(lambda t: t.bpm > 0)
    q = TrackQuery(t.artist, t.title, isrc=t.isrc, duration_ms=t.duration_ms)

    mb = await clients["musicbrainz"].lookup(q)
    assert t.mbid in [c.get("musicbrainz_recording_id") for c in mb]
    assert mb[0].via == "isrc"

    sp = await clients["spotify"].lookup(q)
    assert sp and all(c.get("isrc") == t.isrc for c in sp), "an isrc: search returns that ISRC"

    dz = await clients["deezer"].lookup(q)
    assert dz[0].via == "isrc" and dz[0].get("isrc") == t.isrc
    assert dz[0].get("bpm") == pytest.approx(t.bpm, abs=0.5)


async def test_found_by_search(sim_and_clients: Any) -> None:
    _, clients = sim_and_clients
    t = sample()
    q = TrackQuery(t.artist, t.title, duration_ms=t.duration_ms)

    mb = await clients["musicbrainz"].lookup(q)
    assert t.mbid in [c.get("musicbrainz_recording_id") for c in mb]
    assert all(c.provider_score is not None for c in mb)

    sp = await clients["spotify"].lookup(q)
    assert t.isrc in [c.get("isrc") for c in sp]

    dz = await clients["deezer"].lookup(q)
    assert t.isrc in [c.get("isrc") for c in dz], "details fetched for the best search items"

    (lf,) = await clients["lastfm"].lookup(q)
    assert lf.get("title") and lf.get("listeners") is not None
    assert isinstance(lf.get("tags", []), list)

    dg = await clients["discogs"].lookup(q)
    assert str(t.discogs_release_id) in [c.get("discogs_release_id") for c in dg]


async def test_found_by_ids(sim_and_clients: Any) -> None:
    _, clients = sim_and_clients
    t = sample()
    sp = await clients["spotify"].lookup(TrackQuery(t.artist, t.title, spotify_id=t.spotify_id))
    assert sp[0].via == "id" and sp[0].get("spotify_id") == t.spotify_id
    lf = await clients["lastfm"].lookup(
        TrackQuery(t.artist, t.title, musicbrainz_recording_id=t.mbid)
    )
    assert len(lf) == 1


async def test_not_found_is_empty_everywhere(sim_and_clients: Any) -> None:
    _, clients = sim_and_clients
    for name, client in clients.items():
        assert await client.lookup(NOWHERE) == [], f"{name} should find nothing"
    unknown_isrc = TrackQuery("x", "", isrc="ZZ0000000001")
    assert await clients["musicbrainz"].lookup(unknown_isrc) == []
    assert await clients["deezer"].lookup(unknown_isrc) == []
    assert await clients["spotify"].lookup(unknown_isrc) == []


async def found_only_by_a_second_look(clients: dict[str, Provider], typo: TrackQuery,
                                      isrc: str) -> None:
    """Both clients able to look again miss ``typo`` at the first look and find ``isrc`` at the
    second."""
    for name in ("musicbrainz", "spotify"):
        client = clients[name]
        assert isinstance(client, SecondLook)
        first = await client.lookup(typo)
        assert best_match(typo, first) is None, f"{name}: a strict search should miss {typo}"
        match = best_match(typo, await client.lookup_again(typo), second_look=True)
        assert match is not None and match.candidate.get("isrc") == isrc, name


async def test_a_title_with_a_typo_is_found_only_by_a_second_look(sim_and_clients: Any) -> None:
    _, clients = sim_and_clients
    t = sample(lambda t: " " not in t.title and len(t.title) >= 6 and t.title.isalpha()
               and " feat. " not in t.artist)
    swapped = t.title[0] + t.title[2] + t.title[1] + t.title[3:]
    await found_only_by_a_second_look(
        clients, TrackQuery(t.artist, swapped, duration_ms=t.duration_ms), t.isrc)


async def test_an_artist_with_a_typo_is_found_only_by_a_second_look(sim_and_clients: Any
                                                                   ) -> None:
    _, clients = sim_and_clients
    t = sample(lambda t: 1 <= len(t.artist.split()) <= 2
               and all(len(w) >= 4 and w.isalpha() for w in t.artist.split()))
    doubled = " ".join(w + w[-1] for w in t.artist.split())  # no word of it spelt right
    await found_only_by_a_second_look(
        clients, TrackQuery(doubled, t.title, duration_ms=t.duration_ms), t.isrc)


@pytest.mark.parametrize("name", NAMES)
async def test_rate_limit_answers_are_transient_rate_limited(name: str) -> None:
    config = relaxed().with_provider(name, rate_limit=1, rate_window_s=30.0)
    sim, clients = await started(config)
    try:
        t = sample()
        q = TrackQuery(t.artist, t.title)
        with pytest.raises(TransientError) as info:
            for _ in range(4):  # Deezer's search makes detail calls: the limit bites early
                await clients[name].lookup(q)
        assert info.value.rate_limited, f"{name}: {info.value}"
    finally:
        for c in clients.values():
            await c.aclose()
        await sim.stop()


@pytest.mark.parametrize("name", NAMES)
async def test_outage_is_transient(sim_and_clients: Any, name: str) -> None:
    sim, clients = sim_and_clients
    if name == "spotify":
        await clients[name].lookup(NOWHERE)  # token first: the accounts service stays up
    await sim.set_outage(name, 503, duration_s=30)
    with pytest.raises(TransientError):
        await clients[name].lookup(TrackQuery("a", "b"))
    await sim.reset()


async def test_spotify_token_expiry_mid_run_refreshes_once() -> None:
    sim = await start_simulator(catalog=catalog(), config=SimConfig(seed=1, token_ttl_s=1.0))
    frozen = 0.0  # the client believes its token is fresh; the server expires it
    client = SpotifyClient(
        client_id=sim.env["TRACKFLOW_SPOTIFY_CLIENT_ID"],
        client_secret=sim.env["TRACKFLOW_SPOTIFY_CLIENT_SECRET"],
        base_url=sim.env["TRACKFLOW_SPOTIFY_API_URL"],
        accounts_url=sim.env["TRACKFLOW_SPOTIFY_ACCOUNTS_URL"],
        clock=lambda: frozen,
    )
    try:
        t = sample()
        assert await client.lookup(TrackQuery(t.artist, t.title, isrc=t.isrc))
        await asyncio.sleep(1.2)
        found = await client.lookup(TrackQuery(t.artist, t.title, isrc=t.isrc))
        assert found and found[0].get("isrc") == t.isrc
        log = [(e.endpoint, e.status) for e in sim.state.recorder.log if e.provider == "spotify"]
        assert [e for e in log if e[0] == "token"] == [("token", 200)] * 2, log
        assert ("search", 401) in log, f"the stale token should have been refused once: {log}"
    finally:
        await client.aclose()
        await sim.stop()


async def test_spotify_audio_features_403_then_served_when_enabled() -> None:
    t = sample(lambda t: t.bpm > 0)
    q = TrackQuery(t.artist, t.title, isrc=t.isrc)
    for enabled in (False, True):
        sim = await start_simulator(
            catalog=catalog(), config=SimConfig(seed=1, audio_features=enabled)
        )
        env = sim.env
        client = SpotifyClient(
            client_id=env["TRACKFLOW_SPOTIFY_CLIENT_ID"],
            client_secret=env["TRACKFLOW_SPOTIFY_CLIENT_SECRET"],
            base_url=env["TRACKFLOW_SPOTIFY_API_URL"],
            accounts_url=env["TRACKFLOW_SPOTIFY_ACCOUNTS_URL"],
            audio_features=True,
        )
        try:
            (first, *_) = await client.lookup(q)
            if enabled:
                assert first.get("bpm") == pytest.approx(t.bpm, abs=0.5)
                assert not client.features_unavailable
            else:
                assert first.get("bpm") is None and client.features_unavailable
        finally:
            await client.aclose()
            await sim.stop()
