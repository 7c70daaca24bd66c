"""Validate raw tracks and build enriched records. Pure: no I/O, no clock of its own."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trackflow.providers.normalize import normalize_isrc

MAX_TEXT = 512
MIN_DURATION_MS = 1_000
MAX_DURATION_MS = 3 * 60 * 60 * 1_000

class InvalidRecord(ValueError):
    """A raw record that no retry can fix. ``reason`` is a short code, ``field`` the culprit."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})


def _has_control_chars(text: str) -> bool:
    # Category Cc covers C0/C1 controls (including NUL, ESC, DEL); Cf/Cs/Co would let
    # zero-width or surrogate junk through, so reject those too. A printable string has none
    # (``str.isprintable`` is False for every character of those categories), and the check in
    # C is what nearly every record needs; the rest (a no-break space, an unassigned code point)
    # get the character by character look-up.
    if text.isprintable():
        return False
    return any(unicodedata.category(ch) in _CONTROL_CATEGORIES for ch in text)


def _clean_text(record: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = record.get(name)
    if value is None:
        if required:
            raise InvalidRecord(f"missing_{name}", name, f"{name} is missing")
        return None
    if not isinstance(value, str):
        raise InvalidRecord(f"invalid_{name}", name, f"{name} is not a string")
    text = value.strip()
    if not text:
        if required:
            raise InvalidRecord(f"empty_{name}", name, f"{name} is empty")
        return None
    if len(text) > MAX_TEXT:
        raise InvalidRecord(f"{name}_too_long", name,
                            f"{name} has {len(text)} characters, at most {MAX_TEXT} allowed")
    if _has_control_chars(text):
        raise InvalidRecord(f"{name}_control_chars", name, f"{name} contains control characters")
    return text


def validate_raw(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return a normalised copy of a RawTrack, or raise :class:`InvalidRecord`."""
    track_id = record.get("track_id")
    if not isinstance(track_id, str) or not track_id.strip():
        raise InvalidRecord("missing_track_id", "track_id", "track_id is missing or empty")
    if len(track_id) > MAX_TEXT or _has_control_chars(track_id):
        raise InvalidRecord("invalid_track_id", "track_id", "track_id is too long or has controls")
    out = dict(record)
    out["track_id"] = track_id.strip()
    out["artist"] = _clean_text(record, "artist", required=True)
    out["title"] = _clean_text(record, "title", required=True)
    for optional in ("album", "spotify_id", "source", "source_ref"):
        out[optional] = _clean_text(record, optional, required=False)
    isrc = record.get("isrc")
    if isrc is not None and (not isinstance(isrc, str) or isrc.strip()):
        norm = normalize_isrc(isrc) if isinstance(isrc, str) else None
        if norm is None:
            raise InvalidRecord("invalid_isrc", "isrc",
                                f"isrc {str(isrc)[:40]!r} does not match CC-XXX-YY-NNNNN")
        out["isrc"] = norm
    else:
        out["isrc"] = None
    duration = record.get("duration_ms")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, int):
            raise InvalidRecord("invalid_duration", "duration_ms", "duration_ms is not an integer")
        if not MIN_DURATION_MS <= duration <= MAX_DURATION_MS:
            raise InvalidRecord("duration_out_of_range", "duration_ms",
                                f"duration_ms {duration} is outside 1 s .. 3 h")
    out["attributes"] = dict(record.get("attributes") or {})
    return out


#: The raw fields the waterfall's stages read (``agents.waterfall``).
INPUT_FIELDS = ("artist", "title", "isrc", "duration_ms", "album", "spotify_id",
                "musicbrainz_recording_id")
InputKey = tuple[Any, ...]


def input_key(raw: Mapping[str, Any]) -> InputKey:
    """What a waterfall result depends on, of a raw record."""
    return tuple(raw.get(name) for name in INPUT_FIELDS)


@dataclass(frozen=True, slots=True)
class FieldValue:
    """A value a provider filled, with its provenance."""

    value: Any
    """The value, in the EnrichedTrack field's type."""
    provider: str
    """Provider that supplied it."""
    confidence: float
    """Match confidence 0..1."""


STAGE_OUTCOMES = ("matched", "not_found", "skipped", "failed", "deferred")
"""What a provider stage can do for a record: the symbols of the ``Outcome`` enum of
EnrichedTrack, in its order."""

DISABLED = "provider_disabled"
"""Skip reason of a stage whose provider is disabled in this worker (a configuration error)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one provider stage did for one record."""

    provider: str
    """Provider name."""
    outcome: str
    """``matched``, ``not_found``, ``skipped``, ``failed`` or ``deferred`` (the provider was busy
    or its breaker open, and the stage's fields are optional: to be filled by a refresh)."""
    reason: str | None = None
    """Why it was skipped, failed or deferred (an error class or a short code)."""
    confidence: float | None = None
    """Confidence of the accepted match, when matched."""


def build_enriched(
    raw: Mapping[str, Any],
    *,
    attempt: int,
    enriched_at_ms: int,
    filled: Mapping[str, FieldValue] | None = None,
    outcomes: Sequence[Outcome] = (),
    targets: Sequence[str],
    revision: int = 1,
) -> dict[str, Any]:
    """Build an EnrichedTrack from a validated raw record and what the providers filled;
    ``targets`` (``waterfall.targets``) are the fields whose absence makes it ``partial``."""
    filled = dict(filled or {})
    # What the source already told us counts as known, without a provider.
    for name in ("isrc", "duration_ms", "album", "spotify_id"):
        if raw.get(name) is not None and name not in filled:
            filled[name] = FieldValue(raw[name], "input", 1.0)
    value = {k: v.value for k, v in filled.items()}
    missing = [t for t in targets if value.get(t) in (None, [], "")]
    return {
        "track_id": raw["track_id"],
        "input": dict(raw),
        "artist": value.get("artist") or raw["artist"],
        "title": value.get("title") or raw["title"],
        "album": value.get("album"),
        "release_date": value.get("release_date"),
        "duration_ms": value.get("duration_ms"),
        "label": value.get("label"),
        "isrc": value.get("isrc"),
        "spotify_id": value.get("spotify_id"),
        "musicbrainz_recording_id": value.get("musicbrainz_recording_id"),
        "deezer_id": value.get("deezer_id"),
        "discogs_release_id": value.get("discogs_release_id"),
        "bpm": value.get("bpm"),
        "key": value.get("key"),
        "genres": list(value.get("genres") or []),
        "tags": list(value.get("tags") or []),
        "popularity": value.get("popularity"),
        "listeners": value.get("listeners"),
        "playcount": value.get("playcount"),
        "deezer_rank": value.get("deezer_rank"),
        "sources": {
            k: {"provider": v.provider, "confidence": float(v.confidence)}
            for k, v in filled.items()
            if v.provider != "input"
        },
        "providers": [
            {"provider": o.provider, "outcome": o.outcome, "reason": o.reason,
             "confidence": o.confidence}
            for o in outcomes
        ],
        "status": "partial" if missing else "complete",
        "missing": missing,
        "attempt": attempt,
        "enriched_at": enriched_at_ms,
        "revision": revision,
    }
