"""Load catalogs from CSV files.

The native format has the columns
``artist,title,isrc,duration_ms,album,release_date,bpm,key,genres`` (only ``artist`` and
``title`` are required). Two real public data sets are adapted onto it by their headers:
``top_hits_2000_2019.csv`` and ``most_streamed_2024.csv`` (see the catalog's SOURCES.md).
Rows carrying mojibake are skipped, as are repeated recordings.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from trackflow.providers.normalize import normalize_isrc
from trackflow.providers.simulator.catalog import (
    PITCHES,
    Catalog,
    Track,
    int_id,
    main_artist,
)
from trackflow.providers.simulator.search import fold

NATIVE_COLUMNS = (
    "artist",
    "title",
    "isrc",
    "duration_ms",
    "album",
    "release_date",
    "bpm",
    "key",
    "genres",
)
_MOJIBAKE = ("ï¿", "\ufffd", "Ã©", "Ã¨", "â€")
_KEY_RE = re.compile(r"^\s*([A-Ga-g])([#b♯♭]?)\s*(m|min|minor|maj|major)?\s*$")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E"}
Row = Mapping[str, str]


def has_mojibake(*values: str) -> bool:
    """True when any value shows UTF-8 decoded as Latin-1 (``Beyoncï¿``)."""
    return any(marker in value for value in values for marker in _MOJIBAKE)


def parse_key(value: str) -> tuple[int, int]:
    """``(pitch class, mode)`` from ``"5"``, ``"C#m"``, ``"Bb major"``; ``(-1, 1)`` when unknown."""
    value = (value or "").strip()
    if value.lstrip("-").isdigit():
        key = int(value)
        return (key, 1) if 0 <= key <= 11 else (-1, 1)
    match = _KEY_RE.match(value)
    if not match:
        return -1, 1
    note = match.group(1).upper() + match.group(2).replace("♯", "#").replace("♭", "b")
    note = _FLATS.get(note, note)
    mode = 0 if (match.group(3) or "").lower() in ("m", "min", "minor") else 1
    return (PITCHES.index(note), mode) if note in PITCHES else (-1, 1)


def synthetic_isrc(artist: str, title: str, year: int) -> str:
    """A stable, well-formed ISRC for rows that have none (``QZ`` + hash-derived registrant)."""
    n = int_id("isrc", fold(artist), fold(title), low=0, high=36**3 * 100_000)
    registrant, designation = divmod(n, 100_000)
    alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    reg = "".join(alnum[(registrant // 36**i) % 36] for i in range(3))
    return f"QZ{reg}{year % 100:02d}{designation:05d}"


def _float(value: str | None, default: float = 0.0) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        return default


def _date(value: str) -> str:
    """``YYYY-MM-DD`` or ``YYYY`` from ISO dates, ``M/D/YYYY`` or a bare year."""
    value = (value or "").strip()
    if re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", value):
        month, day, year = value.split("/")
        return f"{year}-{int(month):02d}-{int(day):02d}"
    if re.fullmatch(r"\d{4}(-\d{2}-\d{2})?", value):
        return value
    return "2000"


def native_track(row: Row) -> Track | None:
    """A :class:`Track` from a row in the native column format (``None`` if unusable)."""
    artist, title = (row.get("artist") or "").strip(), (row.get("title") or "").strip()
    album = (row.get("album") or "").strip() or title
    if not artist or not title or has_mojibake(artist, title, album):
        return None
    date = _date(row.get("release_date") or "")
    isrc = normalize_isrc(row.get("isrc")) or synthetic_isrc(artist, title, int(date[:4]))
    duration = int(_float(row.get("duration_ms"))) or int_id(
        "dur", artist, title, low=150_000, high=300_000
    )
    key, mode = parse_key(row.get("key") or "")
    if (row.get("mode") or "").strip() in ("0", "1"):
        mode = int(row["mode"])
    genres = tuple(
        g.strip().lower() for g in re.split(r"[,;|]", row.get("genres") or "") if g.strip()
    )
    popularity = int(_float(row.get("popularity"), -1))
    if not 0 <= popularity <= 100:
        popularity = int_id("pop", artist, title, low=20, high=90)
    listeners = int((popularity / 100) ** 3 * 2_000_000) + int_id("lis", isrc, low=0, high=5_000)
    return Track(
        artist=artist,
        title=title,
        album=album,
        isrc=isrc,
        duration_ms=duration,
        release_date=date,
        bpm=round(_float(row.get("bpm")), 3),
        key=key,
        mode=mode,
        genres=genres,
        label=(row.get("label") or "").strip(),
        popularity=popularity,
        listeners=listeners,
        playcount=listeners * 12,
        explicit=(row.get("explicit") or "").strip().lower() in ("1", "true", "yes"),
        album_type="single" if album == title or album.endswith(" - Single") else "album",
    )


def _top_hits(row: Row) -> dict[str, str]:
    return {
        "artist": row["artist"],
        "title": row["song"],
        "duration_ms": row["duration_ms"],
        "release_date": row["year"],
        "bpm": row["tempo"],
        "key": row["key"],
        "mode": row.get("mode", ""),
        "genres": row["genre"],
        "popularity": row["popularity"],
        "explicit": row["explicit"],
        "album": "",
    }


def _most_streamed(row: Row) -> dict[str, str]:
    return {
        "artist": row["Artist"],
        "title": row["Track"],
        "album": row["Album Name"],
        "release_date": row["Release Date"],
        "isrc": row["ISRC"],
        "popularity": row.get("Spotify Popularity", ""),
        "explicit": row.get("Explicit Track", ""),
    }


def _adapter(header: list[str]) -> Callable[[Row], Mapping[str, str]]:
    columns = set(header)
    if {"artist", "song", "tempo", "genre"} <= columns:
        return _top_hits
    if {"Track", "Album Name", "Artist", "ISRC"} <= columns:
        return _most_streamed
    if {"artist", "title"} <= columns:
        return lambda row: row
    raise ValueError(f"unrecognised catalog CSV header: {header[:10]}")


def read_tracks(path: str | Path) -> Iterator[Track]:
    """Tracks from a native, top-hits or most-streamed CSV, without mojibake or repeats."""
    # utf-8-sig strips the BOM that most_streamed_2024.csv starts with.
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        adapt = _adapter(list(reader.fieldnames or ()))
        seen_isrc: set[str] = set()
        seen_song: set[tuple[str, str, str]] = set()
        for row in reader:
            track = native_track(adapt(row))
            if track is None:
                continue
            song = (fold(main_artist(track.artist)), fold(track.title), fold(track.album))
            if track.isrc in seen_isrc or song in seen_song:
                continue
            seen_isrc.add(track.isrc)
            seen_song.add(song)
            yield track


def load_csv(path: str | Path) -> Catalog:
    """A :class:`Catalog` from a CSV file (format detected from its header)."""
    return Catalog.from_tracks(read_tracks(path))
