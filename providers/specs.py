"""One :class:`ProviderSpec` per provider: the only list of providers.

Settings (names, default limits and field rules), the client registry (environment variables and
builders), the waterfall (what a stage can fill, its quirks), the simulator and the tests all read
:data:`SPECS`. Adding a provider is one client module plus one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # the clients are imported by their builders: settings read no HTTP client
    import httpx

    from trackflow.providers.base import CallGate, Provider

Env = Mapping[str, str]
Transport: TypeAlias = "httpx.AsyncBaseTransport | None"

DEFAULT_CONTACT = "https://github.com/trackflow/trackflow"
"""Used in User-Agent strings when ``TRACKFLOW_MUSICBRAINZ_CONTACT`` is not set."""
ENV_CONTACT = "TRACKFLOW_MUSICBRAINZ_CONTACT"


def env_value(env: Env, name: str, default: str = "") -> str:
    """A variable's trimmed value, or ``default`` when it is unset or blank."""
    return (env.get(name) or "").strip() or default


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Everything the pipeline knows about one provider."""

    name: str
    """The provider's name in settings, metrics and outcomes."""
    provides: frozenset[str]
    """EnrichedTrack fields its candidates can carry (by default it may fill all of them)."""
    rate: float
    """Default calls per second for the whole application."""
    window_s: float
    """The window the provider counts calls in."""
    build: Callable[[Env, CallGate, Transport, frozenset[str]], Provider]
    """The client, from environment variables, a gate, an optional transport (tests) and the
    optional features switched on."""
    requires: tuple[str, ...] = ()
    """Fields that must be known before its stage runs, by default."""
    credentials: tuple[str, ...] = ()
    """Environment variables without which it is disabled."""
    url_variables: Mapping[str, str] = field(default_factory=dict)
    """Environment variables of its base URLs (what the simulator prints)."""
    release_level: bool = False
    """Its answers are releases found by a track filter, not recordings: they carry no track
    title, so the title comes from the query, and their confidence is capped."""
    confidence_cap: float = 1.0
    """The highest match confidence its answers get."""
    kinds: tuple[str, ...] = ("search",)
    """The kinds of lookup its client makes (``CallSpec.kind``): the metric series created at
    start for it."""
    features: frozenset[str] = frozenset()
    """Optional lookups its client can make, off unless ``providers.<name>.features`` lists
    them."""
    config_variables: tuple[str, ...] = ()
    """What an operator fixes when the provider rejects our configuration (the log line names
    them); by default its credentials."""

    @property
    def fix_variables(self) -> tuple[str, ...]:
        """The variables named when the provider rejects our configuration."""
        return self.config_variables or self.credentials


AUDIO_FEATURES = "audio_features"
"""Spotify's ``/v1/audio-features`` (BPM and key); apps created after November 2024 get 403."""


def _musicbrainz(env: Env, gate: CallGate, transport: Transport, features: frozenset[str]
                 ) -> Provider:
    from trackflow.providers import musicbrainz

    return musicbrainz.MusicBrainzClient(
        contact=env_value(env, ENV_CONTACT, DEFAULT_CONTACT),
        base_url=env_value(env, "TRACKFLOW_MUSICBRAINZ_URL", musicbrainz.DEFAULT_URL),
        gate=gate, transport=transport)


def _spotify(env: Env, gate: CallGate, transport: Transport, features: frozenset[str]
             ) -> Provider:
    from trackflow.providers import spotify

    return spotify.SpotifyClient(
        client_id=env_value(env, "TRACKFLOW_SPOTIFY_CLIENT_ID"),
        client_secret=env_value(env, "TRACKFLOW_SPOTIFY_CLIENT_SECRET"),
        base_url=env_value(env, "TRACKFLOW_SPOTIFY_API_URL", spotify.DEFAULT_API_URL),
        accounts_url=env_value(env, "TRACKFLOW_SPOTIFY_ACCOUNTS_URL",
                               spotify.DEFAULT_ACCOUNTS_URL),
        audio_features=AUDIO_FEATURES in features, gate=gate, transport=transport)


def _deezer(env: Env, gate: CallGate, transport: Transport, features: frozenset[str]
            ) -> Provider:
    from trackflow.providers import deezer

    return deezer.DeezerClient(
        base_url=env_value(env, "TRACKFLOW_DEEZER_URL", deezer.DEFAULT_URL),
        gate=gate, transport=transport)


def _lastfm(env: Env, gate: CallGate, transport: Transport, features: frozenset[str]
            ) -> Provider:
    from trackflow.providers import lastfm

    return lastfm.LastfmClient(
        api_key=env_value(env, "TRACKFLOW_LASTFM_API_KEY"),
        base_url=env_value(env, "TRACKFLOW_LASTFM_URL", lastfm.DEFAULT_URL),
        gate=gate, transport=transport)


def _discogs(env: Env, gate: CallGate, transport: Transport, features: frozenset[str]
             ) -> Provider:
    from trackflow.providers import discogs

    return discogs.DiscogsClient(
        token=env_value(env, "TRACKFLOW_DISCOGS_TOKEN"),
        contact=env_value(env, ENV_CONTACT, DEFAULT_CONTACT),
        base_url=env_value(env, "TRACKFLOW_DISCOGS_URL", discogs.DEFAULT_URL),
        gate=gate, transport=transport)


#: Every provider, in the default waterfall order.
SPECS: Mapping[str, ProviderSpec] = {spec.name: spec for spec in (
    ProviderSpec(
        "musicbrainz", frozenset({"musicbrainz_recording_id", "isrc", "release_date",
                                  "duration_ms", "album", "genres", "tags"}),
        rate=1.0, window_s=1.0, build=_musicbrainz, kinds=("isrc", "search", "again"),
        # MusicBrainz answers 403 to User-Agents it blocks: the contact is what to fix.
        config_variables=(ENV_CONTACT,),
        url_variables={"musicbrainz": "TRACKFLOW_MUSICBRAINZ_URL"}),
    ProviderSpec(
        "spotify", frozenset({"spotify_id", "isrc", "popularity", "album", "release_date",
                              "duration_ms", "label", "bpm", "key"}),
        rate=5.0, window_s=30.0, build=_spotify,
        kinds=("token", "id", "search", "again", "features"),
        features=frozenset({AUDIO_FEATURES}),
        credentials=("TRACKFLOW_SPOTIFY_CLIENT_ID", "TRACKFLOW_SPOTIFY_CLIENT_SECRET"),
        url_variables={"spotify": "TRACKFLOW_SPOTIFY_API_URL",
                       "spotify_accounts": "TRACKFLOW_SPOTIFY_ACCOUNTS_URL"}),
    ProviderSpec(
        "deezer", frozenset({"deezer_id", "bpm", "isrc", "duration_ms", "album",
                             "release_date", "deezer_rank"}),
        # Deezer's BPM is reliable only by ISRC; a search costs two calls per track.
        rate=10.0, window_s=5.0, build=_deezer, requires=("isrc",),
        kinds=("isrc", "id", "search"),
        url_variables={"deezer": "TRACKFLOW_DEEZER_URL"}),
    ProviderSpec(
        "lastfm", frozenset({"tags", "listeners", "playcount", "musicbrainz_recording_id"}),
        rate=5.0, window_s=1.0, build=_lastfm, credentials=("TRACKFLOW_LASTFM_API_KEY",),
        kinds=("id", "search", "tags"),
        url_variables={"lastfm": "TRACKFLOW_LASTFM_URL"}),
    ProviderSpec(
        "discogs", frozenset({"discogs_release_id", "label", "genres", "release_date"}),
        rate=1.0, window_s=60.0, build=_discogs, credentials=("TRACKFLOW_DISCOGS_TOKEN",),
        url_variables={"discogs": "TRACKFLOW_DISCOGS_URL"},
        # A release-level answer is weaker evidence than a recording match.
        release_level=True, confidence_cap=0.9),
)}

PROVIDER_NAMES: tuple[str, ...] = tuple(SPECS)
"""Every provider we have a client for, in the default waterfall order."""


PROVIDER_VARIABLES: tuple[str, ...] = tuple(dict.fromkeys(
    [ENV_CONTACT, *(var for spec in SPECS.values()
                    for var in (*spec.credentials, *spec.url_variables.values()))]))
"""Every environment variable a provider client is built from: credentials, base URLs, the
contact in User-Agent strings. Read once, by the settings loader (``Settings.secrets``)."""
