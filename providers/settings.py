"""The provider layer's configuration sections: how each provider is called, and the cache.

Part of the one settings object (``streams.settings``). A provider's section *is* the policy its
gate takes (``providers.policy``), so a default or bound is written once.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from trackflow.providers.context import Priority
from trackflow.providers.policy import BreakerConfig, CacheTtls, ProviderPolicy, Section
from trackflow.providers.specs import SPECS

__all__ = ["BreakerSettings", "CacheSettings", "LimiterSettings", "ProviderSettings", "Section",
           "default_providers"]


#: ``[providers.<name>.breaker]``: the breaker's own configuration object.
BreakerSettings = BreakerConfig


class ProviderSettings(ProviderPolicy):
    """How one provider is used and called: its gate's policy (pacing, retries, the breaker)
    and what the waterfall does with its answers."""

    enabled: bool = True
    min_confidence: float = Field(0.82, ge=0, le=1)
    """Matches below this confidence are ignored for this provider."""
    requires: list[str] = []
    """Fields that must be known before this stage runs (e.g. ``["isrc"]``)."""
    features: list[str] = []
    """Optional lookups to make: Spotify's ``audio_features`` (BPM and key; off by default,
    apps created after November 2024 get 403 there)."""


class LimiterSettings(Section):
    """The global rate limiter in Redis (``[limiter]``; see :mod:`providers.limiter`)."""

    enabled: bool = True
    """Pace every provider with one queue in Redis for all workers; off: per-partition slots
    only (each partition gets rate / partitions, idle partitions strand their share)."""
    redis_url: str | None = Field(None, repr=False)
    """The limiter's own Redis (``TRACKFLOW_LIMITER__REDIS_URL``); unset: ``redis_url``, the
    cache's. Give it one in production, with ``maxmemory-policy noeviction``: its keys are a few
    KB per provider, and they must never be evicted (an evicted log of calls sent lets the next
    calls over the provider's limit) nor be refused because the cache filled the memory (the
    gate then falls back to per-partition pacing, a share of the rate per partition). May hold
    a password, like ``redis_url``."""
    horizon_s: float = Field(5.0, gt=0, le=300)
    """How far ahead a slot may be reserved; also how long the fallback waits after an outage
    before it sends."""
    timeout_s: float = Field(0.5, gt=0, le=30)
    """Longest one round trip to Redis may take before the gate falls back."""
    outage_skip_s: float = Field(2.0, gt=0, le=600)
    """After a failed round trip, how long to pace from the changelogged table before trying
    Redis again."""
    refresh_min_share: float = Field(0.1, ge=0, lt=1)
    """The share of every provider's rate refreshes of published records get however many
    fresh records wait (they also get whatever fresh records leave)."""
    replay_min_share: float = Field(0.05, ge=0, lt=1)
    """The share dead-letter replays get however many fresh records and refreshes wait."""

    @model_validator(mode="after")
    def _shares_leave_room(self) -> LimiterSettings:
        if self.refresh_min_share + self.replay_min_share >= 1:
            raise ValueError("limiter.refresh_min_share + limiter.replay_min_share must be "
                             "below 1: fresh records need a share too")
        return self

    def min_shares(self) -> dict[Priority, float]:
        """The minimum shares by priority, as the global limiter takes them."""
        return {Priority.REFRESH: self.refresh_min_share,
                Priority.REPLAY: self.replay_min_share}


class CacheSettings(Section):
    """The two-level provider cache (in-process LRU in front of Redis)."""

    enabled: bool = True
    namespace: str = Field("trackflow", pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of every Redis key; separate pipelines sharing a Redis use separate namespaces."""
    lru_size: int = Field(50_000, ge=0)
    """Provider answers each worker keeps in process, in front of Redis (0: none)."""
    result_cache_size: int = Field(20_000, ge=0)
    """Waterfall results each worker keeps for inputs it saw recently (0: none); an entry
    never outlives the cached provider answers it was computed from."""
    shared_results: bool = True
    """Also keep those results in Redis, for every worker of the same configuration: a worker
    that has not seen an input yet (after a restart or a rebalance) reads its result there."""
    ttl_id_s: float = Field(30 * 86_400, gt=0)
    ttl_search_s: float = Field(86_400, gt=0)
    ttl_tags_s: float = Field(7 * 86_400, gt=0)
    ttl_features_s: float = Field(7 * 86_400, gt=0)
    """Spotify audio features (BPM, key)."""
    ttl_not_found_s: float = Field(3_600, gt=0)

    def ttls(self) -> CacheTtls:
        """The cache's TTLs: one per lookup kind the provider clients make."""
        return CacheTtls(by_kind={"isrc": self.ttl_id_s, "id": self.ttl_id_s,
                                  "search": self.ttl_search_s, "tags": self.ttl_tags_s,
                                  "features": self.ttl_features_s},
                         default=self.ttl_search_s, not_found=self.ttl_not_found_s)


# (calls per second, the window the provider counts them in), from each API's documentation;
# Spotify publishes no number (it uses a rolling 30 s window), Last.fm asks for about 5/s.
def default_providers() -> dict[str, ProviderSettings]:
    return {name: ProviderSettings(rate=spec.rate, window_s=spec.window_s,
                                   requires=list(spec.requires))
            for name, spec in SPECS.items()}
