"""Behaviour configuration: latency, faults, outages and rate limits per provider.

Read from TOML (``trackflow simulate --config sim.toml``) or built in code with
:meth:`SimConfig.from_dict`, which takes the same structure (pydantic models: an unknown key or
a value of the wrong type is refused, naming its place in the structure)::

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
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trackflow.providers.specs import PROVIDER_NAMES

PROVIDERS = PROVIDER_NAMES

SPOTIFY_CLIENT_ID = "trackflow-sim-client-id"
SPOTIFY_CLIENT_SECRET = "trackflow-sim-client-secret"  # dummy, loopback only
LASTFM_API_KEY = "0123456789abcdef0123456789abcdef"
DISCOGS_TOKEN = "trackflow-sim-discogs-token"  # dummy, loopback only


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latency(_Section):
    """A response-time distribution."""

    dist: Literal["none", "uniform", "lognormal"] = "none"
    """``none``, ``uniform`` (min_ms..max_ms) or ``lognormal`` (median_ms, sigma)."""
    min_ms: float = Field(0.0, ge=0)
    """Uniform lower bound; also a floor for lognormal."""
    max_ms: float = Field(0.0, ge=0)
    """Uniform upper bound; also a cap for lognormal when > 0."""
    median_ms: float = Field(0.0, ge=0)
    """Lognormal median."""
    sigma: float = Field(0.5, ge=0)
    """Lognormal shape."""

    def sample_s(self, rng: random.Random) -> float:
        """One delay in seconds."""
        if self.dist == "uniform":
            return rng.uniform(self.min_ms, max(self.min_ms, self.max_ms)) / 1000
        if self.dist == "lognormal":
            ms = rng.lognormvariate(math.log(max(self.median_ms, 0.001)), self.sigma)
            ms = max(ms, self.min_ms)
            return (min(ms, self.max_ms) if self.max_ms > 0 else ms) / 1000
        return 0.0


class Outage(_Section):
    """A window during which every request to a provider gets ``status``."""

    start_s: float
    """Seconds since the simulator started."""
    end_s: float
    """Seconds since the simulator started (exclusive)."""
    status: int = Field(503, ge=100, le=599)
    """HTTP status answered during the outage."""


class ProviderConfig(_Section):
    """How one provider behaves."""

    rate_limit: int = Field(ge=1)
    """Requests allowed per window."""
    rate_window_s: float = Field(gt=0)
    """Window length in seconds (rolling/moving, as the provider does it)."""
    count_rejected: bool = False
    """Whether rejected requests fill the window too (MusicBrainz: "until the rate drops")."""
    latency: Latency = Latency()
    """Response time added to every answer."""
    error_rate: float = Field(0.0, ge=0, le=1)
    """Share of requests answered with one of ``error_statuses``."""
    error_statuses: tuple[int, ...] = (500, 502, 503)
    """Statuses used for injected errors."""
    timeout_rate: float = Field(0.0, ge=0, le=1)
    """Share of requests that hang for ``timeout_s`` before a 504."""
    timeout_s: float = Field(30.0, ge=0)
    """How long a "timeout" hangs: longer than any client waits."""
    malformed_rate: float = Field(0.0, ge=0, le=1)
    """Share of successful answers whose JSON body is truncated."""
    outages: tuple[Outage, ...] = ()
    """Scheduled outage windows."""
    freeze_every_s: float = Field(0.0, ge=0)
    """How often a request of this provider freezes the whole simulator (0: never)."""
    freeze_ms: float = Field(0.0, ge=0)
    """How long a freeze blocks the simulator's event loop: what arrives meanwhile is read,
    stamped and counted when it ends, as a provider stalled by its host would."""

    def changed(self, changes: dict[str, Any]) -> ProviderConfig:
        """A copy with ``changes`` (the TOML structure) validated over these values."""
        return ProviderConfig.model_validate({**self.model_dump(), **changes})


DEFAULT_PROVIDERS: dict[str, ProviderConfig] = {
    # Spotify publishes no number; ~180 per rolling 30 s is what developers observe.
    "spotify": ProviderConfig(rate_limit=180, rate_window_s=30.0),
    "musicbrainz": ProviderConfig(rate_limit=1, rate_window_s=1.0, count_rejected=True),
    "deezer": ProviderConfig(rate_limit=50, rate_window_s=5.0),
    "lastfm": ProviderConfig(rate_limit=5, rate_window_s=1.0),
    "discogs": ProviderConfig(rate_limit=60, rate_window_s=60.0),
}


class SimConfig(_Section):
    """The whole simulator's behaviour."""

    providers: dict[str, ProviderConfig] = Field(default_factory=lambda: dict(DEFAULT_PROVIDERS))
    """Per-provider behaviour, keyed by provider name; a provider given in part keeps its other
    defaults, one not given keeps all of them."""
    token_ttl_s: float = Field(3600.0, gt=0)
    """Lifetime of Spotify access tokens."""
    audio_features: bool = False
    """Serve Spotify audio features instead of the 403 new apps get."""
    quirks: bool = True
    """Answer with the real services' quirks (:mod:`providers.simulator.quirks`)."""
    search_default_limit: int = Field(5, ge=1)
    """Spotify search ``limit`` when the client sends none."""
    search_max_limit: int = Field(10, ge=1)
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

    @field_validator("providers", mode="before")
    @classmethod
    def _over_the_defaults(cls, given: Any) -> Any:
        if not isinstance(given, dict):
            return given
        merged: dict[str, Any] = dict(DEFAULT_PROVIDERS)
        for name, settings in given.items():
            if name not in DEFAULT_PROVIDERS:
                raise ValueError(f"unknown provider {name!r}; expected one of {PROVIDERS}")
            merged[name] = settings if isinstance(settings, ProviderConfig) else \
                {**DEFAULT_PROVIDERS[name].model_dump(), **settings}
        return merged

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        """A config from the TOML structure; unspecified settings keep their defaults. A bad
        one raises ValueError naming the key (``providers.spotify.error_rate: ...``)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "simulator settings"
            raise ValueError(f"{key}: {err['msg']}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> SimConfig:
        """A config read from a TOML file."""
        with open(path, "rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path} is not valid TOML: {exc}") from None
        return cls.from_dict(data)

    def provider(self, name: str) -> ProviderConfig:
        """Behaviour of provider ``name``."""
        return self.providers[name]

    def with_provider(self, name: str, **changes: Any) -> SimConfig:
        """A copy with some settings of one provider changed."""
        return self.model_copy(update={
            "providers": {**self.providers, name: self.providers[name].changed(changes)}})
