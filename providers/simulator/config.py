"""Behaviour configuration: latency, faults, outages and rate limits per provider.

Read from TOML (``trackflow simulate --config sim.toml``) or built in code with
:meth:`SimConfig.from_dict`, which takes the same structure::

    token_ttl_s = 3600          # Spotify access-token lifetime
    audio_features = false      # true: serve /v1/audio-features instead of the real 403
    quirks = true               # the real APIs' quirks (providers/simulator/quirks.py)
    seed = 1                    # seeds the fault dice (omit for random)

    [providers.spotify]
    latency = { dist = "uniform", min_ms = 20, max_ms = 80 }   # or "lognormal", "none"
    error_rate = 0.01           # share of requests answered with a random 5xx
    error_statuses = [500, 502, 503]
    timeout_rate = 0.005        # share of requests that hang for timeout_s, then 504
    timeout_s = 30
    malformed_rate = 0.0        # share of 200 answers whose JSON body is cut in half
    freeze_every_s = 0          # the whole simulator stops for freeze_ms this often (0: never)
    freeze_ms = 0
    rate_limit = 180            # requests allowed per rate_window_s
    rate_window_s = 30
    outages = [ { start_s = 60, end_s = 90, status = 503 } ]   # seconds since start
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from trackflow.providers.specs import PROVIDER_NAMES

PROVIDERS = PROVIDER_NAMES

SPOTIFY_CLIENT_ID = "trackflow-sim-client-id"
SPOTIFY_CLIENT_SECRET = "trackflow-sim-client-secret"  # dummy, loopback only
LASTFM_API_KEY = "0123456789abcdef0123456789abcdef"
DISCOGS_TOKEN = "trackflow-sim-discogs-token"  # dummy, loopback only


@dataclass(frozen=True, slots=True)
class Latency:
    """A response-time distribution."""

    dist: str = "none"
    """``none``, ``uniform`` (min_ms..max_ms) or ``lognormal`` (median_ms, sigma)."""
    min_ms: float = 0.0
    """Uniform lower bound; also a floor for lognormal."""
    max_ms: float = 0.0
    """Uniform upper bound; also a cap for lognormal when > 0."""
    median_ms: float = 0.0
    """Lognormal median."""
    sigma: float = 0.5
    """Lognormal shape."""

    def sample_s(self, rng: random.Random) -> float:
        """One delay in seconds."""
        if self.dist == "uniform":
            return rng.uniform(self.min_ms, max(self.min_ms, self.max_ms)) / 1000
        if self.dist == "lognormal":
            ms = rng.lognormvariate(math.log(max(self.median_ms, 0.001)), self.sigma)
            ms = max(ms, self.min_ms)
            return (min(ms, self.max_ms) if self.max_ms > 0 else ms) / 1000
        if self.dist == "none":
            return 0.0
        raise ValueError(f"unknown latency distribution {self.dist!r}")


@dataclass(frozen=True, slots=True)
class Outage:
    """A window during which every request to a provider gets ``status``."""

    start_s: float
    """Seconds since the simulator started."""
    end_s: float
    """Seconds since the simulator started (exclusive)."""
    status: int = 503
    """HTTP status answered during the outage."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """How one provider behaves."""

    rate_limit: int
    """Requests allowed per window."""
    rate_window_s: float
    """Window length in seconds (rolling/moving, as the provider does it)."""
    count_rejected: bool = False
    """Whether rejected requests fill the window too (MusicBrainz: "until the rate drops")."""
    latency: Latency = field(default_factory=Latency)
    """Response time added to every answer."""
    error_rate: float = 0.0
    """Share of requests answered with one of ``error_statuses``."""
    error_statuses: tuple[int, ...] = (500, 502, 503)
    """Statuses used for injected errors."""
    timeout_rate: float = 0.0
    """Share of requests that hang for ``timeout_s`` before a 504."""
    timeout_s: float = 30.0
    """How long a "timeout" hangs: longer than any client waits."""
    malformed_rate: float = 0.0
    """Share of successful answers whose JSON body is truncated."""
    outages: tuple[Outage, ...] = ()
    """Scheduled outage windows."""
    freeze_every_s: float = 0.0
    """How often a request of this provider freezes the whole simulator (0: never)."""
    freeze_ms: float = 0.0
    """How long a freeze blocks the simulator's event loop: what arrives meanwhile is read,
    stamped and counted when it ends, as a provider stalled by its host would."""


DEFAULT_PROVIDERS: dict[str, ProviderConfig] = {
    # Spotify publishes no number; ~180 per rolling 30 s is what developers observe.
    "spotify": ProviderConfig(rate_limit=180, rate_window_s=30.0),
    "musicbrainz": ProviderConfig(rate_limit=1, rate_window_s=1.0, count_rejected=True),
    "deezer": ProviderConfig(rate_limit=50, rate_window_s=5.0),
    "lastfm": ProviderConfig(rate_limit=5, rate_window_s=1.0),
    "discogs": ProviderConfig(rate_limit=60, rate_window_s=60.0),
}


def _provider_from_dict(base: ProviderConfig, data: dict[str, Any]) -> ProviderConfig:
    known = {f.name for f in fields(ProviderConfig)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown provider settings: {sorted(unknown)}")
    changes: dict[str, Any] = dict(data)
    if "latency" in changes and isinstance(changes["latency"], dict):
        changes["latency"] = Latency(**changes["latency"])
    if "outages" in changes:
        changes["outages"] = tuple(
            o if isinstance(o, Outage) else Outage(**o) for o in changes["outages"]
        )
    if "error_statuses" in changes:
        changes["error_statuses"] = tuple(changes["error_statuses"])
    return replace(base, **changes)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The whole simulator's behaviour."""

    providers: dict[str, ProviderConfig] = field(default_factory=lambda: dict(DEFAULT_PROVIDERS))
    """Per-provider behaviour, keyed by provider name."""
    token_ttl_s: float = 3600.0
    """Lifetime of Spotify access tokens."""
    audio_features: bool = False
    """Serve Spotify audio features instead of the 403 new apps get."""
    quirks: bool = True
    """Answer with the real services' quirks (:mod:`providers.simulator.quirks`)."""
    search_default_limit: int = 5
    """Spotify search ``limit`` when the client sends none."""
    search_max_limit: int = 10
    """Largest Spotify search ``limit`` accepted (development-mode apps since Feb 2026)."""
    seed: int | None = None
    """Seed of the fault dice; None for a random seed."""
    spotify_client_id: str = SPOTIFY_CLIENT_ID
    """Accepted Spotify client id."""
    spotify_client_secret: str = SPOTIFY_CLIENT_SECRET
    """Accepted Spotify client secret."""
    lastfm_api_key: str = LASTFM_API_KEY
    """Accepted Last.fm API key."""
    discogs_token: str = DISCOGS_TOKEN
    """Accepted Discogs personal token."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        """A config from the TOML structure; unspecified settings keep their defaults."""
        data = dict(data)
        providers = dict(DEFAULT_PROVIDERS)
        for name, settings in (data.pop("providers", None) or {}).items():
            if name not in providers:
                raise ValueError(f"unknown provider {name!r}; expected one of {PROVIDERS}")
            providers[name] = _provider_from_dict(providers[name], settings)
        known = {f.name for f in fields(cls)} - {"providers"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown simulator settings: {sorted(unknown)}")
        return cls(providers=providers, **data)

    @classmethod
    def from_toml(cls, path: str | Path) -> SimConfig:
        """A config read from a TOML file."""
        with open(path, "rb") as fh:
            return cls.from_dict(tomllib.load(fh))

    def provider(self, name: str) -> ProviderConfig:
        """Behaviour of provider ``name``."""
        return self.providers[name]

    def with_provider(self, name: str, **changes: Any) -> SimConfig:
        """A copy with some settings of one provider changed."""
        providers = dict(self.providers)
        providers[name] = _provider_from_dict(providers[name], changes)
        return replace(self, providers=providers)
