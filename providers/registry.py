"""Build the provider clients from environment variables.

Credentials come only from the environment. A provider whose credentials are missing is
disabled with one log line naming the missing variable; it never stops the worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence

import httpx

from trackflow.providers import deezer, discogs, lastfm, musicbrainz, spotify
from trackflow.providers.base import CallGate, DirectGate, Provider
from trackflow.providers.errors import ConfigError

PROVIDER_NAMES: tuple[str, ...] = ("musicbrainz", "spotify", "deezer", "lastfm", "discogs")
"""Every provider we have a client for, in the default waterfall order."""

DEFAULT_CONTACT = "https://github.com/trackflow/trackflow"
"""Used in User-Agent strings when ``TRACKFLOW_MUSICBRAINZ_CONTACT`` is not set."""

#: Environment variable names, so settings and docs use the same spelling.
ENV_URLS = {
    "musicbrainz": "TRACKFLOW_MUSICBRAINZ_URL",
    "spotify": "TRACKFLOW_SPOTIFY_API_URL",
    "spotify_accounts": "TRACKFLOW_SPOTIFY_ACCOUNTS_URL",
    "deezer": "TRACKFLOW_DEEZER_URL",
    "lastfm": "TRACKFLOW_LASTFM_URL",
    "discogs": "TRACKFLOW_DISCOGS_URL",
}
ENV_CREDENTIALS = {
    "spotify": ("TRACKFLOW_SPOTIFY_CLIENT_ID", "TRACKFLOW_SPOTIFY_CLIENT_SECRET"),
    "lastfm": ("TRACKFLOW_LASTFM_API_KEY",),
    "discogs": ("TRACKFLOW_DISCOGS_TOKEN",),
}
ENV_CONTACT = "TRACKFLOW_MUSICBRAINZ_CONTACT"

_Transport = httpx.AsyncBaseTransport | None


def _get(env: Mapping[str, str], name: str, default: str = "") -> str:
    return (env.get(name) or "").strip() or default


def _build_one(
    name: str, env: Mapping[str, str], gate: CallGate, transport: _Transport
) -> Provider:
    contact = _get(env, ENV_CONTACT, DEFAULT_CONTACT)
    builders: dict[str, Callable[[], Provider]] = {
        "musicbrainz": lambda: musicbrainz.MusicBrainzClient(
            contact=contact,
            base_url=_get(env, ENV_URLS["musicbrainz"], musicbrainz.DEFAULT_URL),
            gate=gate,
            transport=transport,
        ),
        "spotify": lambda: spotify.SpotifyClient(
            client_id=_get(env, "TRACKFLOW_SPOTIFY_CLIENT_ID"),
            client_secret=_get(env, "TRACKFLOW_SPOTIFY_CLIENT_SECRET"),
            base_url=_get(env, ENV_URLS["spotify"], spotify.DEFAULT_API_URL),
            accounts_url=_get(env, ENV_URLS["spotify_accounts"], spotify.DEFAULT_ACCOUNTS_URL),
            gate=gate,
            transport=transport,
        ),
        "deezer": lambda: deezer.DeezerClient(
            base_url=_get(env, ENV_URLS["deezer"], deezer.DEFAULT_URL),
            gate=gate,
            transport=transport,
        ),
        "lastfm": lambda: lastfm.LastfmClient(
            api_key=_get(env, "TRACKFLOW_LASTFM_API_KEY"),
            base_url=_get(env, ENV_URLS["lastfm"], lastfm.DEFAULT_URL),
            gate=gate,
            transport=transport,
        ),
        "discogs": lambda: discogs.DiscogsClient(
            token=_get(env, "TRACKFLOW_DISCOGS_TOKEN"),
            contact=contact,
            base_url=_get(env, ENV_URLS["discogs"], discogs.DEFAULT_URL),
            gate=gate,
            transport=transport,
        ),
    }
    return builders[name]()


def build_providers(
    env: Mapping[str, str] = os.environ,
    *,
    gate: CallGate | None = None,
    enabled: Sequence[str] | None = None,
    transport: _Transport = None,
) -> dict[str, Provider]:
    """The enabled providers whose credentials are present, keyed by name, in ``enabled`` order."""
    names = list(PROVIDER_NAMES if enabled is None else enabled)
    unknown = [n for n in names if n not in PROVIDER_NAMES]
    if unknown:
        raise ConfigError(
            "providers",
            f"unknown provider(s) {', '.join(unknown)}; known: {', '.join(PROVIDER_NAMES)}",
        )
    shared_gate: CallGate = gate or DirectGate()
    out: dict[str, Provider] = {}
    for name in names:
        if name in out:
            continue
        missing = [var for var in ENV_CREDENTIALS.get(name, ()) if not _get(env, var)]
        if missing:
            logging.getLogger(f"trackflow.providers.{name}").warning(
                "event=provider_disabled provider=%s reason=missing_credentials missing=%s",
                name,
                ",".join(missing),
            )
            continue
        out[name] = _build_one(name, env, shared_gate, transport)
    return out
