"""Value types and the one protocol every provider client implements.

A client turns a :class:`TrackQuery` into a list of :class:`Candidate` recordings (empty when the
provider has none) or raises one of :mod:`providers.errors`. It does no matching: scoring the
candidates against the query is :mod:`providers.matching`'s job.

Every HTTP exchange goes through a :class:`CallGate`. The default one just calls; the resilient
one (cache, rate limit, circuit breaker, retries) wraps the same calls without the client
knowing, which is what keeps the clients small and unit-testable with ``httpx.MockTransport``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

JSON = Any
"""A JSON-compatible value (what a gate may cache)."""


@dataclass(frozen=True, slots=True)
class TrackQuery:
    """What we know about a track when we ask a provider."""

    artist: str
    """Artist as received (not normalised)."""
    title: str
    """Title as received (not normalised)."""
    isrc: str | None = None
    """Normalised ISRC (upper case, no hyphens), when known."""
    duration_ms: int | None = None
    """Duration in milliseconds, when known."""
    album: str | None = None
    """Album title, when known."""
    spotify_id: str | None = None
    """Spotify track id, when known."""
    musicbrainz_recording_id: str | None = None
    """MusicBrainz recording MBID, when known."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One recording a provider offered for a query."""

    provider: str
    """Name of the provider that answered (``spotify``, ``musicbrainz``...)."""
    fields: Mapping[str, Any]
    """Canonical fields (named as in the EnrichedTrack schema); absent keys mean unknown."""
    provider_score: float | None = None
    """The provider's own relevance score scaled to 0..1, when it gives one."""
    via: str = "search"
    """How it was found: ``isrc``, ``id`` or ``search`` (an ISRC/id lookup is stronger evidence)."""

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "fields": dict(self.fields),
            "provider_score": self.provider_score,
            "via": self.via,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(
            provider=data["provider"],
            fields=dict(data.get("fields") or {}),
            provider_score=data.get("provider_score"),
            via=data.get("via", "search"),
        )


@dataclass(frozen=True, slots=True)
class CallSpec:
    """Identifies one provider HTTP exchange for the gate (cache key, TTL class, limits)."""

    provider: str
    """Provider name."""
    kind: str
    """Kind of lookup: ``isrc``, ``id``, ``search``, ``tags``, ``features``, ``token``."""
    key: str
    """Normalised query that identifies the answer (cache key part); never a credential."""
    cacheable: bool = True
    """False for calls whose answer must not be cached (tokens)."""


class CallGate(Protocol):
    """Runs one provider exchange. ``fetch`` returns a JSON value (cacheable) or raises."""

    async def run(self, spec: CallSpec, fetch: Callable[[], Awaitable[JSON]]) -> JSON: ...


class DirectGate:
    """A gate that just calls: no cache, no limits. Used by tests and one-off lookups."""

    async def run(self, spec: CallSpec, fetch: Callable[[], Awaitable[JSON]]) -> JSON:
        return await fetch()


class Provider(Protocol):
    """A provider client."""

    name: str
    """Stable provider name used in settings, metrics and dead-letter headers."""

    async def lookup(self, query: TrackQuery) -> list[Candidate]:
        """Candidates for ``query``, best first as the provider ranks them; empty when none."""
        ...

    async def aclose(self) -> None:
        """Close the HTTP client."""
        ...


@runtime_checkable
class SecondLook(Protocol):
    """A provider that can ask a wider question for a record its ``lookup`` did not match."""

    async def lookup_again(self, query: TrackQuery) -> list[Candidate]:
        """Candidates of queries wider than ``lookup``'s (the artist's tracks, the title's,
        fuzzy terms), for :func:`~providers.matching.best_match` with ``second_look=True``; []
        when the query has nothing to widen (no artist)."""
        ...
