"""How a provider is called, as one set of objects that are settings sections and what the code
takes: :class:`BreakerConfig` (the breaker), :class:`ProviderPolicy` (the gate), and
:class:`CacheTtls` (the cache). The settings object (``providers.settings``, assembled in
``streams.settings``) is made of them, so a default or a bound is written once, here.

Pure: pydantic only, so that reading the settings loads no HTTP client, Redis or metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

_DAY = 86_400.0


class Section(BaseModel):
    """A frozen settings section that rejects keys it does not know."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BreakerConfig(Section):
    """Thresholds of one provider's breaker (``[providers.<name>.breaker]``)."""

    window_size: int = Field(20, ge=1, le=1000)
    """Calls in the sliding count window."""
    minimum_calls: int = Field(5, ge=1, le=1000)
    """Calls the window must hold before the failure or slow-call rate can open the breaker."""
    failure_rate_threshold: float = Field(0.5, gt=0, le=1)
    """Failure rate (0..1] in the window that opens the breaker."""
    consecutive_failures: int = Field(5, ge=1, le=1000)
    """Failures in a row that open the breaker whatever the window says."""
    slow_call_s: float = Field(5.0, gt=0)
    """A call taking this long or longer is slow."""
    slow_call_rate_threshold: float = Field(0.8, gt=0, le=1)
    """Slow-call rate (0..1] in the window that opens the breaker."""
    half_open_max_probes: int = Field(1, ge=1, le=100)
    """Probe calls allowed in flight while half-open."""
    half_open_successes: int = Field(2, ge=1, le=100)
    """Successful probes that close the breaker."""
    open_base_s: float = Field(5.0, gt=0)
    """Open period after the first trip."""
    open_cap_s: float = Field(300.0, ge=0)
    """Longest open period from backoff (a longer Retry-After still wins)."""
    max_retry_after_s: float = Field(86_400.0, gt=0)
    """Retry-After values above this are clamped (a bogus header must not open us for a year)."""
    probe_timeout_s: float = Field(120.0, gt=0)
    """Probe slots not released after this long are presumed lost (a crashed caller)."""
    probe_wait_s: float = Field(1.0, gt=0)
    """Wait suggested to callers refused because every probe slot is taken."""

    @model_validator(mode="after")
    def _window_holds_the_minimum(self) -> BreakerConfig:
        if self.minimum_calls > self.window_size:
            raise ValueError(f"minimum_calls {self.minimum_calls} is more than window_size "
                             f"{self.window_size}: the window could never hold enough calls")
        return self


class ProviderPolicy(Section):
    """How one provider is called: pacing, waiting, timeouts, retries and its breaker."""

    rate: float = Field(1.0, gt=0, le=100_000)
    """Calls per second the provider allows this application as a whole (all workers)."""
    window_s: float = Field(1.0, gt=0, le=3600)
    """The window over which the provider counts calls (it allows ``rate * window_s`` each)."""
    rate_slack_s: float = Field(0.1, ge=0, le=60)
    """Pacing counts the provider's window as this much longer: ``rate * window_s`` calls go
    out per ``window_s + rate_slack_s``. On the global limiter a call counts against the limit
    for the window plus the time from its commit to its answer, when that is longer
    (``trackflow_ratelimit_transit_seconds``)."""
    rate_slack_max_s: float = Field(2.0, ge=0, le=600)
    """On the global limiter, how long past the window a call counts while it has no answer,
    and the most a slow answer makes it count."""
    max_wait_s: float = Field(5.0, ge=0)
    """How long a stage that may be deferred waits for its rate-limit slot: a stage of
    optional fields, or of required ones a later stage can also fill. Up to
    ``limiter.horizon_s`` (5 s) the limiter tells at once whether a slot comes in time;
    beyond, the stage keeps asking until its deadline."""
    timeout_s: float = Field(15.0, gt=0)
    """Upper bound on one exchange, on top of the HTTP client's own timeouts."""
    max_attempts: int = Field(3, ge=1, le=10)
    """Attempts per call (first call included)."""
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_cap_s: float = Field(8.0, gt=0)
    retry_budget_ratio: float = Field(0.2, ge=0, le=1)
    """Retries allowed as a fraction of calls over a sliding window."""
    max_retry_delay_s: float = Field(20.0, gt=0)
    """A Retry-After longer than this is not slept on in the stream (the DLQ retries later)."""
    pause_default_s: float = Field(5.0, gt=0)
    """Pause after a limit answer that carried no Retry-After."""
    state_checkpoint_s: float = Field(5.0, ge=0, le=3600)
    """How often a partition's breaker and pacing state is written to the changelogged table
    while nothing changes its course (a breaker opening or closing, a pause, a trip is written
    at once). A crash loses at most this much of the breaker's window of outcomes; 0 writes
    after every call."""
    breaker: BreakerConfig = BreakerConfig()


def _default_ttls() -> dict[str, float]:
    return {"isrc": 30 * _DAY, "id": 30 * _DAY, "search": 1 * _DAY, "tags": 7 * _DAY,
            "features": 7 * _DAY}


class CacheTtls(Section):
    """How long the cache keeps answers, in seconds."""

    by_kind: Mapping[str, float] = Field(default_factory=_default_ttls)
    """TTL of a found answer per lookup kind."""
    default: float = 1 * _DAY
    """TTL of kinds not listed in ``by_kind``."""
    not_found: float = 3600.0
    """TTL of a "not found" answer (``None`` or empty), never longer than the kind's TTL."""

    def ttl_for(self, kind: str, value: Any) -> float:
        ttl = self.by_kind.get(kind, self.default)
        if value is None or value == []:
            return min(ttl, self.not_found)
        return ttl
