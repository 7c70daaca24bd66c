"""Typed, decoded tracks.enriched records: what :class:`~.consumer.TrackConsumer` yields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from trackflow.schemas.codec import decode
from trackflow.schemas.registry import SchemaVersion

Status = Literal["complete", "partial"]
OutcomeName = Literal["matched", "not_found", "skipped", "failed", "deferred"]
"""``deferred``: the provider was busy or its breaker open; a refresh fills the fields later."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record was read from."""

    topic: str
    """Topic name."""
    partition: int
    """Partition number."""
    offset: int
    """Offset in the partition."""
    timestamp_ms: int | None
    """The record's Kafka timestamp, epoch milliseconds."""


@dataclass(frozen=True, slots=True)
class RawTrack:
    """The input as the worker received it (validated and normalised)."""

    track_id: str
    """Stable id, the record key."""
    artist: str
    """Artist as the source published it."""
    title: str
    """Title as the source published it."""
    isrc: str | None = None
    """ISRC, upper case without hyphens."""
    duration_ms: int | None = None
    """Duration in milliseconds."""
    album: str | None = None
    """Album as the source published it."""
    spotify_id: str | None = None
    """Spotify track id the source knew."""
    source: str | None = None
    """Which scraper or importer produced it."""
    source_ref: str | None = None
    """The source's own reference (URL, row id)."""
    observed_at: int | None = None
    """When the source saw the track, epoch milliseconds."""
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Anything else the source knew."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RawTrack:
        scalars: dict[str, Any] = {name: record.get(name) for name in _RAW_SCALARS}
        return cls(**scalars, attributes=dict(record.get("attributes") or {}))


_RAW_SCALARS = ("track_id", "artist", "title", "isrc", "duration_ms", "album", "spotify_id",
                "source", "source_ref", "observed_at")


@dataclass(frozen=True, slots=True)
class FieldSource:
    """Which provider filled a field, and how sure its match was."""

    provider: str
    """Provider name, or ``input`` when the source already gave the value."""
    confidence: float
    """Match confidence 0..1."""


@dataclass(frozen=True, slots=True)
class ProviderOutcome:
    """What one provider stage did for the record."""

    provider: str
    """Provider name."""
    outcome: OutcomeName
    """``matched``, ``not_found``, ``skipped`` or ``failed``."""
    reason: str | None
    """Why it was skipped or failed."""
    confidence: float | None
    """Confidence of the accepted match, when matched."""


@dataclass(frozen=True, slots=True)
class EnrichedTrack:
    """One version of an enriched track, as published on tracks.enriched."""

    track_id: str
    """Stable id, the record key."""
    input: RawTrack
    """The raw record the version was built from."""
    artist: str
    """Canonical artist (the input's when no provider matched)."""
    title: str
    """Canonical title (the input's when no provider matched)."""
    status: Status
    """``complete`` when every target field is known, else ``partial``."""
    missing: tuple[str, ...]
    """Target fields still unknown."""
    sources: Mapping[str, FieldSource]
    """Per filled field: its provider and match confidence."""
    providers: tuple[ProviderOutcome, ...]
    """One outcome per provider stage, in waterfall order."""
    attempt: int
    """1 for the first pass, raised by each dead-letter replay."""
    enriched_at: int
    """When the version was built, epoch milliseconds."""
    album: str | None = None
    release_date: str | None = None
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``, as precise as known."""
    duration_ms: int | None = None
    label: str | None = None
    isrc: str | None = None
    spotify_id: str | None = None
    musicbrainz_recording_id: str | None = None
    deezer_id: int | None = None
    discogs_release_id: int | None = None
    bpm: float | None = None
    key: str | None = None
    genres: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    popularity: int | None = None
    listeners: int | None = None
    playcount: int | None = None
    deezer_rank: int | None = None
    position: Position | None = None
    """Where this version was read from (None when built from a plain dict)."""

    def provenance(self, name: str) -> FieldSource | None:
        """The provider that filled field ``name`` and its confidence; ``input`` when the
        source already gave it (the worker records no source for those); None when unknown."""
        found = self.sources.get(name)
        if found is not None:
            return found
        given = getattr(self.input, name, None) if name in _RAW_SCALARS else None
        if given is not None and getattr(self, name, None) == given:
            return FieldSource("input", 1.0)
        return None

    @classmethod
    def from_record(cls, record: Mapping[str, Any], position: Position | None = None
                    ) -> EnrichedTrack:
        """From a decoded EnrichedTrack dict (the Avro record, latest schema version)."""
        scalars: dict[str, Any] = {name: record.get(name) for name in _ENRICHED_SCALARS}
        return cls(
            **scalars,
            input=RawTrack.from_record(record["input"]),
            track_id=record["track_id"], artist=record["artist"], title=record["title"],
            status=record["status"], missing=tuple(record.get("missing") or ()),
            sources={k: FieldSource(v["provider"], v["confidence"])
                     for k, v in (record.get("sources") or {}).items()},
            providers=tuple(ProviderOutcome(p["provider"], p["outcome"], p.get("reason"),
                                            p.get("confidence"))
                            for p in record.get("providers") or ()),
            attempt=record.get("attempt", 1), enriched_at=record["enriched_at"],
            genres=tuple(record.get("genres") or ()), tags=tuple(record.get("tags") or ()),
            position=position,
        )

    @classmethod
    def from_message(cls, msg: Any, *,
                     writers: Mapping[int, SchemaVersion | None] | None = None) -> EnrichedTrack:
        """Decode a Kafka message of tracks.enriched (``writers``: the registry ids looked up,
        for Confluent-framed values); ``DecodeError`` when it is not one."""
        position = Position(msg.topic, msg.partition, msg.offset, msg.timestamp)
        return cls.from_record(decode("EnrichedTrack", msg.value, writers=writers), position)


_ENRICHED_SCALARS = ("album", "release_date", "duration_ms", "label", "isrc", "spotify_id",
                     "musicbrainz_recording_id", "deezer_id", "discogs_release_id", "bpm", "key",
                     "popularity", "listeners", "playcount", "deezer_rank")
