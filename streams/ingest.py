"""Turn rows from CSV, JSONL or ``Artist - Title`` text files into RawTrack records. Pure.

Column names are forgiving (``artist``/``artist_name``/``artists``, ``title``/``track``/``song``/
``name``, ``duration_ms``/``duration`` in ms, seconds or ``m:ss``). A row that cannot become a
RawTrack at all (no artist or title, a duration that is not a duration) is rejected with a reason
(:class:`RowRejected`). Content rules (ISRC format, lengths, control characters) are the worker's
(``agents.records.validate_raw``); the client API (``streams.client``) applies them at the edge
too, with the worker's own function, unless asked not to.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from trackflow.providers import normalize

ARTIST_KEYS = ("artist", "artist_name", "artists", "artist name", "performer")
TITLE_KEYS = ("title", "track", "song", "name", "track_name", "track name", "song_name")
ISRC_KEYS = ("isrc",)
DURATION_MS_KEYS = ("duration_ms", "length_ms", "durationms")
DURATION_KEYS = ("duration", "length", "time")
ALBUM_KEYS = ("album", "album_name", "album name", "release")
ID_KEYS = ("track_id", "id")
SPOTIFY_KEYS = ("spotify_id", "spotify_track_id")
#: RawTrack fields a row may carry under their own names; never copied into ``attributes``.
META_KEYS = ("source", "source_ref", "observed_at", "attributes")


class RowRejected(ValueError):
    """A row that cannot become a RawTrack; ``reason`` and ``field`` use the worker's codes."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


def stable_track_id(artist: str, title: str, isrc: str | None = None) -> str:
    """A track id that is the same for the same track, whoever produces it."""
    if isrc:
        basis = "isrc:" + (normalize.normalize_isrc(isrc) or isrc.strip().upper())
    else:
        norm = [unicodedata.normalize("NFKC", s).casefold().strip() for s in (artist, title)]
        basis = "at:" + "\u241f".join(" ".join(s.split()) for s in norm)
    return "trk_" + hashlib.sha256(basis.encode()).hexdigest()[:24]


def _pick(row: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).strip().lower().lstrip("\ufeff"): v for k, v in row.items() if k is not None}
    for key in keys:
        value = lowered.get(key)
        if value not in (None, ""):
            return value
    return None


def parse_duration_ms(row: Mapping[str, Any]) -> int | None:
    """Duration in ms from a ``duration_ms`` column, or ``duration`` in s / ms / ``m:ss``."""
    value = _pick(row, DURATION_MS_KEYS)
    if value is not None:
        return int(float(value))
    value = _pick(row, DURATION_KEYS)
    if value is None:
        return None
    text = str(value).strip()
    if ":" in text:
        parts = [float(p) for p in text.split(":")]
        seconds = 0.0
        for p in parts:
            seconds = seconds * 60 + p
        return int(seconds * 1000)
    number = float(text)
    # Bare numbers below 10,000 are seconds (no track lasts 10,000 s but many last 240,000 ms).
    return int(number * 1000) if number < 10_000 else int(number)


def row_to_raw(row: Mapping[str, Any], *, source: str | None = None,
               source_ref: str | None = None) -> dict[str, Any]:
    """A RawTrack dict from a loosely named row; ValueError with a reason when impossible."""
    artist = _pick(row, ARTIST_KEYS)
    title = _pick(row, TITLE_KEYS)
    if artist is None and title is not None:
        artist, title = split_artist_title(str(title))
    if artist is None or not str(artist).strip():
        raise RowRejected("missing_artist", "artist", "no artist")
    if title is None or not str(title).strip():
        raise RowRejected("missing_title", "title", "no title")
    try:
        duration = parse_duration_ms(row)
    except (TypeError, ValueError, OverflowError):
        raise RowRejected("invalid_duration", "duration_ms",
                          "duration is not a number or m:ss") from None
    observed_at = parse_observed_at(row.get("observed_at"))
    isrc = _pick(row, ISRC_KEYS)
    artist, title = str(artist), str(title)
    track_id = _pick(row, ID_KEYS)
    known = set(ARTIST_KEYS + TITLE_KEYS + ISRC_KEYS + DURATION_MS_KEYS + DURATION_KEYS
                + ALBUM_KEYS + ID_KEYS + SPOTIFY_KEYS + META_KEYS)
    attributes = {str(k): str(v) for k, v in row.items()
                  if k is not None and str(k).strip().lower() not in known and v not in (None, "")
                  and not isinstance(v, dict | list)}
    given = row.get("attributes")
    if isinstance(given, Mapping):
        attributes.update({str(k): str(v) for k, v in given.items() if v is not None})
    return {
        "track_id": str(track_id) if track_id is not None else stable_track_id(
            artist, title, str(isrc) if isrc else None),
        "artist": artist,
        "title": title,
        "isrc": str(isrc) if isrc is not None else None,
        "duration_ms": duration,
        "album": _str_or_none(_pick(row, ALBUM_KEYS)),
        "spotify_id": _str_or_none(_pick(row, SPOTIFY_KEYS)),
        # The row's own values win over the caller's defaults (a file name, a line number).
        "source": _str_or_none(row.get("source")) or source,
        "source_ref": _str_or_none(row.get("source_ref")) or source_ref,
        "observed_at": observed_at,
        "attributes": attributes,
    }


def parse_observed_at(value: Any) -> int | None:
    """Epoch milliseconds from an int (ms), a datetime or an ISO 8601 string."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, dt.datetime):
            when = value
        elif isinstance(value, str) and not value.strip().lstrip("-").isdigit():
            when = dt.datetime.fromisoformat(value.strip())
        else:
            if isinstance(value, bool):
                raise TypeError
            return int(value)
    except (TypeError, ValueError):
        raise RowRejected("invalid_observed_at", "observed_at",
                          "observed_at is not epoch milliseconds or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def split_artist_title(text: str) -> tuple[str | None, str]:
    """``"Artist - Title"`` -> (artist, title); (None, text) when there is no separator.

    The producer's reading of :func:`providers.normalize.split_artist_title`, which splits.
    """
    split = normalize.split_artist_title(text)
    return split if split is not None else (None, text.strip())


def read_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    """Rows of a CSV, JSONL or text file, numbered; a text line is returned as a string."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    suffix = path.suffix.lower()
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if suffix in (".jsonl", ".ndjson", ".json") or first.lstrip().startswith("{"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield n, line
        return
    if suffix in (".csv", ".tsv") or ("," in first and any(
            k in first.lower() for k in ("artist", "title", "song", "track"))):
        dialect = "excel-tab" if suffix == ".tsv" else "excel"
        for n, row in enumerate(csv.DictReader(io.StringIO(text), dialect=dialect), 2):
            yield n, row
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield n, line


def parse_row(n: int, row: Mapping[str, Any] | str, *, source: str | None,
              jsonl: bool) -> dict[str, Any]:
    """One input row to a RawTrack dict, ValueError when it cannot be one."""
    if isinstance(row, str):
        if jsonl or row.lstrip().startswith("{"):
            try:
                obj = json.loads(row)
            except json.JSONDecodeError as exc:
                raise RowRejected("invalid_json", "value", f"invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise RowRejected("invalid_json", "value", "JSON line is not an object")
            return row_to_raw(obj, source=source, source_ref=f"line:{n}")
        artist, title = split_artist_title(row)
        if artist is None:
            raise RowRejected("missing_artist", "artist", "line is not 'Artist - Title'")
        return row_to_raw({"artist": artist, "title": title}, source=source,
                          source_ref=f"line:{n}")
    return row_to_raw(row, source=source, source_ref=f"row:{n}")
