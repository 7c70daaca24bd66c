"""Per-provider rate-limit enforcement, the request log and the report.

Pure and clock-injected: callers pass ``now`` (monotonic seconds), so the window maths is
unit-tested without sleeping. Every provider's limit is a sliding window of ``window_s`` seconds
holding at most ``limit`` accepted requests, which is how Spotify (rolling 30 s), Discogs (moving
60 s) and, at their scale, Deezer, Last.fm and MusicBrainz behave.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class WindowCounter:
    """Counts events in the last ``window_s`` seconds and remembers the largest count seen."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self.max_seen = 0

    def _prune(self, now: float) -> None:
        # The window is (now - window_s, now]: an event exactly window_s old has left it.
        edge = now - self.window_s
        while self._times and self._times[0] <= edge:
            self._times.popleft()

    def count(self, now: float) -> int:
        """Events in the window ending at ``now``."""
        self._prune(now)
        return len(self._times)

    def add(self, now: float) -> int:
        """Record an event at ``now``; returns the count in the window including it."""
        self._prune(now)
        self._times.append(now)
        self.max_seen = max(self.max_seen, len(self._times))
        return len(self._times)

    def time_until_below(self, now: float, limit: int) -> float:
        """Seconds until fewer than ``limit`` events remain in the window (0 if already)."""
        self._prune(now)
        excess = len(self._times) - limit
        if excess < 0:
            return 0.0
        return max(0.0, self._times[excess] + self.window_s - now)


class Decision(NamedTuple):
    """A rate-limit verdict for one request."""

    allowed: bool
    """False when the request must get the provider's limit answer."""
    limit: int
    """The configured limit."""
    used: int
    """Requests counted in the window, including this one when allowed."""
    retry_after_s: float
    """Seconds until a request would be allowed again (0 when allowed)."""

    @property
    def remaining(self) -> int:
        """Requests still allowed in the current window."""
        return max(0, self.limit - self.used)


class SlidingWindowLimiter:
    """At most ``limit`` accepted requests in any ``window_s``-second window."""

    def __init__(self, limit: int, window_s: float, *, count_rejected: bool = False) -> None:
        self.limit = limit
        self.window_s = window_s
        self.count_rejected = count_rejected
        self._window = WindowCounter(window_s)

    def check(self, now: float) -> Decision:
        """Admit or reject one request arriving at ``now``."""
        used = self._window.count(now)
        if used < self.limit:
            used = self._window.add(now)
            return Decision(True, self.limit, used, 0.0)
        if self.count_rejected:
            used = self._window.add(now)
        return Decision(False, self.limit, used, self._window.time_until_below(now, self.limit))

    def peek(self, now: float) -> int:
        """Accepted (or counted) requests in the window ending at ``now``."""
        return self._window.count(now)


@dataclass(slots=True)
class ProviderStats:
    """What one provider saw since the last reset."""

    limiter: SlidingWindowLimiter
    """The provider's limiter (its window is reset with the stats)."""
    requests: int = 0
    """Requests subject to the limit (all API requests; Spotify's token calls are separate)."""
    violations: int = 0
    """Requests that got the limit answer."""
    token_requests: int = 0
    """Spotify accounts-service calls."""
    arrivals: WindowCounter = field(default_factory=lambda: WindowCounter(1.0))
    """All limited requests per window, for ``max_in_window``."""
    accepted: WindowCounter = field(default_factory=lambda: WindowCounter(1.0))
    """Requests that passed the limiter, per window."""
    statuses: Counter[int] = field(default_factory=Counter)
    """Answers by HTTP status."""
    endpoints: Counter[str] = field(default_factory=Counter)
    """Requests by endpoint name."""
    faults: Counter[str] = field(default_factory=Counter)
    """Injected faults by kind: outage, error, timeout, malformed."""
    first_at: float | None = None
    """Arrival time of the first request."""
    last_at: float | None = None
    """Arrival time of the latest request."""

    def report(self) -> dict[str, Any]:
        """The JSON-ready summary served by ``GET /_sim/report``."""
        return {
            "requests": self.requests,
            "limit": self.limiter.limit,
            "window_s": self.limiter.window_s,
            "max_in_window": self.arrivals.max_seen,
            "max_accepted_in_window": self.accepted.max_seen,
            "violations": self.violations,
            "token_requests": self.token_requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "endpoints": dict(sorted(self.endpoints.items())),
            "faults": dict(sorted(self.faults.items())),
            "duration_s": round((self.last_at or 0.0) - (self.first_at or 0.0), 3),
        }


class RequestLogEntry(NamedTuple):
    """One request as the simulator saw it."""

    at: float
    """Seconds since the simulator started."""
    provider: str
    """Provider name."""
    endpoint: str
    """Endpoint name, e.g. ``search``."""
    status: int
    """HTTP status answered."""
    outcome: str
    """``ok``, ``limited`` or the injected fault kind."""


class Recorder:
    """Limiters, statistics and a bounded request log for every provider."""

    def __init__(self, limits: dict[str, tuple[int, float, bool]], log_size: int = 10_000) -> None:
        self._limits = limits
        self.log: deque[RequestLogEntry] = deque(maxlen=log_size)
        self.stats: dict[str, ProviderStats] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every counter, window and log entry."""
        self.log.clear()
        self.stats = {}
        for name, (limit, window_s, count_rejected) in self._limits.items():
            limiter = SlidingWindowLimiter(limit, window_s, count_rejected=count_rejected)
            self.stats[name] = ProviderStats(
                limiter=limiter, arrivals=WindowCounter(window_s), accepted=WindowCounter(window_s)
            )

    def admit(self, provider: str, endpoint: str, now: float, *, enforce: bool = True) -> Decision:
        """Count one limited request and decide whether it passes the limit.

        With ``enforce=False`` (the provider is in an outage) the request is counted but neither
        fills the limit window nor can violate it.
        """
        stats = self.stats[provider]
        stats.requests += 1
        stats.endpoints[endpoint] += 1
        stats.first_at = now if stats.first_at is None else stats.first_at
        stats.last_at = now
        stats.arrivals.add(now)
        if not enforce:
            limiter = stats.limiter
            return Decision(True, limiter.limit, limiter.peek(now), 0.0)
        decision = stats.limiter.check(now)
        if decision.allowed:
            stats.accepted.add(now)
        else:
            stats.violations += 1
        return decision

    def note_unlimited(self, provider: str, endpoint: str) -> None:
        """Count a request exempt from the limit (Spotify token requests)."""
        stats = self.stats[provider]
        stats.token_requests += 1
        stats.endpoints[endpoint] += 1

    def finish(self, provider: str, entry: RequestLogEntry) -> None:
        """Record the answer given to a request."""
        stats = self.stats[provider]
        stats.statuses[entry.status] += 1
        if entry.outcome not in ("ok", "limited"):
            stats.faults[entry.outcome] += 1
        self.log.append(entry)

    def report(self) -> dict[str, dict[str, Any]]:
        """``{provider: summary}`` for every provider."""
        return {name: stats.report() for name, stats in self.stats.items()}
