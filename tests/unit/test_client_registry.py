"""build_providers: environment variables in, enabled clients out; missing credentials disable."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.unit.fixtures.providers.helpers import Router, load, reply
from trackflow.providers.base import TrackQuery
from trackflow.providers.errors import ConfigError
from trackflow.providers.registry import PROVIDER_NAMES, build_providers

FULL_ENV = {
    "TRACKFLOW_SPOTIFY_CLIENT_ID": "cid",
    "TRACKFLOW_SPOTIFY_CLIENT_SECRET": "csecret",
    "TRACKFLOW_LASTFM_API_KEY": "lkey",
    "TRACKFLOW_DISCOGS_TOKEN": "dtok",
}


def test_all_providers_with_full_credentials() -> None:
    providers = build_providers(FULL_ENV)
    assert list(providers) == list(PROVIDER_NAMES)
    assert all(p.name == n for n, p in providers.items())


@pytest.mark.parametrize(
    ("missing", "provider"),
    [
        ("TRACKFLOW_SPOTIFY_CLIENT_SECRET", "spotify"),
        ("TRACKFLOW_LASTFM_API_KEY", "lastfm"),
        ("TRACKFLOW_DISCOGS_TOKEN", "discogs"),
    ],
)
def test_missing_credential_disables_with_one_log_line(
    missing: str, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = {k: v for k, v in FULL_ENV.items() if k != missing}
    with caplog.at_level(logging.DEBUG, logger="trackflow.providers"):
        providers = build_providers(env)
    assert provider not in providers
    lines = [r.getMessage() for r in caplog.records if "provider_disabled" in r.getMessage()]
    assert len(lines) == 1, f"expected exactly one disable line, got {lines}"
    assert missing in lines[0] and f"provider={provider}" in lines[0]
    assert caplog.records[0].name == f"trackflow.providers.{provider}"


def test_empty_environment_keeps_keyless_providers() -> None:
    assert list(build_providers({})) == ["musicbrainz", "deezer"]


def test_blank_values_count_as_missing() -> None:
    assert "discogs" not in build_providers({**FULL_ENV, "TRACKFLOW_DISCOGS_TOKEN": "  "})


def test_enabled_selects_and_orders() -> None:
    assert list(build_providers(FULL_ENV, enabled=["deezer", "spotify"])) == ["deezer", "spotify"]


def test_unknown_provider_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="beatport"):
        build_providers(FULL_ENV, enabled=["beatport"])


async def test_base_urls_contact_and_transport_come_through() -> None:
    router = Router({"/mb/isrc/": reply(200, load("musicbrainz_isrc"))})
    env = {
        "TRACKFLOW_MUSICBRAINZ_URL": "http://127.0.0.1:9/mb",
        "TRACKFLOW_MUSICBRAINZ_CONTACT": "me@example.org",
    }
    mb = build_providers(env, enabled=["musicbrainz"], transport=router.transport)["musicbrainz"]
    await mb.lookup(TrackQuery("a", "b", isrc="GBDUW0000059"))
    req = router.requests[0]
    assert str(req.url).startswith("http://127.0.0.1:9/mb/isrc/GBDUW0000059")
    assert "me@example.org" in req.headers["User-Agent"]
    await mb.aclose()


async def test_gate_is_shared() -> None:
    calls: list[str] = []

    class Gate:
        async def run(self, spec, fetch):  # type: ignore[no-untyped-def]
            calls.append(spec.provider)
            return await fetch()

    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"data": []}))
    dz = build_providers({}, gate=Gate(), enabled=["deezer"], transport=transport)["deezer"]
    await dz.lookup(TrackQuery("a", "b"))
    assert calls == ["deezer"]
