"""Spotify audio features are a setting (``providers.spotify.features``), off by default."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.fixtures.providers.helpers import Router, load, reply
from trackflow.providers.base import TrackQuery
from trackflow.providers.errors import ConfigError
from trackflow.providers.registry import build_providers
from trackflow.streams.settings import load_settings

ENV = {
    "TRACKFLOW_SPOTIFY_CLIENT_ID": "cid",
    "TRACKFLOW_SPOTIFY_CLIENT_SECRET": "csecret",
    "TRACKFLOW_SPOTIFY_API_URL": "https://api.spotify.test/v1",
    "TRACKFLOW_SPOTIFY_ACCOUNTS_URL": "https://accounts.spotify.test",
}
FEATURES_ON = {"TRACKFLOW_PROVIDERS__SPOTIFY__FEATURES": '["audio_features"]'}


def spotify_router(features_status: int = 200) -> Router:
    return Router({
        "/api/token": reply(200, load("spotify_token")),
        "/v1/search": reply(200, load("spotify_search")),
        "/v1/audio-features/": reply(features_status, load("spotify_audio_features")
                                     if features_status == 200 else {"error": {"status": 403}}),
    })


async def lookup(env: dict[str, str], router: Router, times: int = 1) -> Any:
    settings = load_settings(env=env)
    providers = build_providers(
        ENV, enabled=["spotify"], transport=router.transport,
        features={n: p.features for n, p in settings.providers.items()})
    try:
        for _ in range(times - 1):
            await providers["spotify"].lookup(TrackQuery("Daft Punk", "One More Time"))
        return await providers["spotify"].lookup(TrackQuery("Daft Punk", "One More Time"))
    finally:
        await providers["spotify"].aclose()


async def test_off_by_default_no_audio_features_call() -> None:
    assert load_settings(env={}).providers["spotify"].features == []
    router = spotify_router()
    candidates = await lookup({}, router)
    assert not router.calls("/v1/audio-features/"), "audio features must not be asked for"
    assert "bpm" not in candidates[0].fields and "key" not in candidates[0].fields


async def test_on_fills_bpm_and_key_of_the_first_candidate() -> None:
    router = spotify_router()
    candidates = await lookup(FEATURES_ON, router)
    assert len(router.calls("/v1/audio-features/")) == 1
    assert candidates[0].get("bpm") and candidates[0].get("key")


async def test_on_but_refused_for_a_new_app_is_remembered_not_a_failure() -> None:
    router = spotify_router(403)
    last = await lookup(FEATURES_ON, router, times=3)
    assert "bpm" not in last[0].fields
    assert len(router.calls("/v1/audio-features/")) == 1, "a 403 there is asked once, not again"


def test_a_feature_the_provider_does_not_have_stops_start_up() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(env={"TRACKFLOW_PROVIDERS__DEEZER__FEATURES": '["audio_features"]'})
    assert "providers" in str(raised.value) and "audio_features" in str(raised.value)
    with pytest.raises(ConfigError):
        build_providers(ENV, enabled=["spotify"], features={"spotify": ["lyrics"]})
