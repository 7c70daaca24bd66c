"""The simulator's catalog: one row per appearance of a recording on a release.

A *recording* is identified by its ISRC (and its MusicBrainz id); the same recording may appear on
several releases (a single and an album), each appearance being one :class:`Track` with its own
Spotify and Deezer track id, as on the real services. Provider ids are derived from the row's
content by hashing, so they are stable across runs and across catalog sizes.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from trackflow.providers.normalize import normalize_isrc
from trackflow.providers.simulator.search import Hit, SearchIndex

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PITCHES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FEAT_RE = re.compile(r"\s+(?:feat\.|ft\.|featuring)\s+", re.IGNORECASE)


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()


def base62_id(*parts: str, length: int = 22) -> str:
    """A Spotify-style base62 id derived from ``parts``."""
    n = int.from_bytes(_digest(*parts), "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    return "".join(out)


def mb_uuid(*parts: str) -> str:
    """A MusicBrainz-style UUID (version 4 layout) derived from ``parts``."""
    return str(uuid.UUID(bytes=_digest(*parts)[:16], version=4))


def int_id(*parts: str, low: int = 100_000, high: int = 3_000_000_000) -> int:
    """A positive integer id in ``[low, high)`` derived from ``parts``."""
    return low + int.from_bytes(_digest(*parts)[:8], "big") % (high - low)


def split_artists(artist: str) -> list[str]:
    """Credited artists of ``"X feat. Y"`` style strings, main artist first."""
    names = [part.strip() for part in _FEAT_RE.split(artist) if part.strip()]
    return names or [artist]


def main_artist(artist: str) -> str:
    """The first credited artist."""
    return split_artists(artist)[0]


def key_name(key: int, mode: int) -> str:
    """Readable key, e.g. ``"C# minor"``; empty when unknown."""
    if not 0 <= key <= 11:
        return ""
    return f"{PITCHES[key]} {'major' if mode == 1 else 'minor'}"


@dataclass(frozen=True, slots=True)
class Track:
    """One appearance of a recording on a release."""

    artist: str
    """Artist credit as shown, e.g. ``"Calvin Harris feat. Rihanna"``."""
    title: str
    """Track title including any mix/version text."""
    album: str
    """Release title."""
    isrc: str
    """ISRC of the recording (shared by all its appearances)."""
    duration_ms: int
    """Length in milliseconds."""
    release_date: str
    """``YYYY-MM-DD`` or ``YYYY``."""
    bpm: float = 0.0
    """Tempo; 0 means unknown (as on Deezer)."""
    key: int = -1
    """Pitch class 0-11, -1 unknown."""
    mode: int = 1
    """1 major, 0 minor."""
    genres: tuple[str, ...] = ()
    """Lower-case genre names, most specific first."""
    label: str = ""
    """Record label of the release."""
    popularity: int = 50
    """Spotify-style popularity 0-100."""
    listeners: int = 0
    """Last.fm-style listener count."""
    playcount: int = 0
    """Last.fm-style play count."""
    explicit: bool = False
    """Explicit lyrics flag."""
    album_type: str = "album"
    """``album``, ``single`` or ``compilation``."""
    track_number: int = 1
    """Position on the release."""
    country: str = "US"
    """Release country."""
    spotify_id: str = ""
    """Spotify track id (per appearance)."""
    mbid: str = ""
    """MusicBrainz recording id (per recording)."""
    deezer_id: int = 0
    """Deezer track id (per appearance)."""
    discogs_release_id: int = 0
    """Discogs release id (per release)."""

    @property
    def year(self) -> int:
        """Release year."""
        return int(self.release_date[:4])

    @property
    def artists(self) -> list[str]:
        """Credited artist names, main first."""
        return split_artists(self.artist)

    @property
    def release_key(self) -> str:
        """Identifies the release this appearance is on."""
        return f"{main_artist(self.artist).casefold()}\x1f{self.album.casefold()}"


def assign_ids(track: Track) -> Track:
    """Fill in the content-derived provider ids that are still empty."""
    content = (track.artist, track.title, track.album, track.isrc)
    return replace(
        track,
        spotify_id=track.spotify_id or base62_id("spotify:track", *content),
        mbid=track.mbid or mb_uuid("mb:recording", track.isrc),
        deezer_id=track.deezer_id or int_id("deezer:track", *content),
        discogs_release_id=track.discogs_release_id
        or int_id("discogs:release", track.release_key, low=10_000, high=40_000_000),
    )


@dataclass(slots=True)
class Catalog:
    """An immutable collection of tracks with lookups by every provider id and a search index."""

    tracks: tuple[Track, ...]
    """All appearances, in catalog order."""
    _by_isrc: dict[str, list[Track]] = field(default_factory=dict, repr=False)
    _by_spotify: dict[str, Track] = field(default_factory=dict, repr=False)
    _by_deezer: dict[int, Track] = field(default_factory=dict, repr=False)
    _by_mbid: dict[str, list[Track]] = field(default_factory=dict, repr=False)
    _by_discogs: dict[int, list[Track]] = field(default_factory=dict, repr=False)
    _index: SearchIndex | None = field(default=None, repr=False)

    @classmethod
    def from_tracks(cls, tracks: Iterable[Track]) -> Catalog:
        """Build a catalog, assigning ids and resolving id collisions deterministically."""
        by_isrc: dict[str, list[Track]] = defaultdict(list)
        by_spotify: dict[str, Track] = {}
        by_deezer: dict[int, Track] = {}
        by_mbid: dict[str, list[Track]] = defaultdict(list)
        by_discogs: dict[int, list[Track]] = defaultdict(list)
        release_ids: dict[int, str] = {}
        out: list[Track] = []
        for raw in tracks:
            t = assign_ids(raw)
            # Hash collisions are rare but possible at scale: probe to the next free id.
            while t.spotify_id in by_spotify:
                t = replace(t, spotify_id=base62_id("spotify:probe", t.spotify_id))
            while t.deezer_id in by_deezer:
                t = replace(t, deezer_id=t.deezer_id + 1)
            while release_ids.get(t.discogs_release_id, t.release_key) != t.release_key:
                t = replace(t, discogs_release_id=t.discogs_release_id + 1)
            release_ids[t.discogs_release_id] = t.release_key
            out.append(t)
            by_isrc[t.isrc].append(t)
            by_spotify[t.spotify_id] = t
            by_deezer[t.deezer_id] = t
            by_mbid[t.mbid].append(t)
            by_discogs[t.discogs_release_id].append(t)
        return cls(
            tracks=tuple(out),
            _by_isrc=dict(by_isrc),
            _by_spotify=by_spotify,
            _by_deezer=by_deezer,
            _by_mbid=dict(by_mbid),
            _by_discogs=dict(by_discogs),
        )

    def __len__(self) -> int:
        return len(self.tracks)

    @property
    def index(self) -> SearchIndex:
        """The token search index (built on first use)."""
        if self._index is None:
            self._index = SearchIndex(self.tracks)
        return self._index

    def by_isrc(self, isrc: str) -> list[Track]:
        """Every appearance of the recording with this ISRC (empty when unknown)."""
        return list(self._by_isrc.get(normalize_isrc(isrc) or "", ()))

    def by_spotify_id(self, spotify_id: str) -> Track | None:
        """The appearance with this Spotify track id."""
        return self._by_spotify.get(spotify_id)

    def by_deezer_id(self, deezer_id: int) -> Track | None:
        """The appearance with this Deezer track id."""
        return self._by_deezer.get(deezer_id)

    def by_mbid(self, mbid: str) -> list[Track]:
        """Every appearance of the recording with this MusicBrainz id."""
        return list(self._by_mbid.get(mbid.lower(), ()))

    def by_discogs_release(self, release_id: int) -> list[Track]:
        """The tracks on the Discogs release with this id."""
        return list(self._by_discogs.get(release_id, ()))

    def recording(self, track: Track) -> list[Track]:
        """All appearances of ``track``'s recording, earliest release first."""
        return sorted(self._by_mbid.get(track.mbid, [track]), key=lambda t: t.release_date)

    def search(
        self,
        *,
        title: str | None = None,
        artist: str | None = None,
        album: str | None = None,
        text: str | None = None,
        require: Sequence[str] = (),
        limit: int = 10,
    ) -> list[Hit]:
        """Ranked candidates for the given fields (see :meth:`SearchIndex.search`)."""
        return self.index.search(
            title=title, artist=artist, album=album, text=text, require=require, limit=limit
        )

    def unique_recordings(self, hits: Iterable[Hit]) -> list[Hit]:
        """``hits`` with one hit per recording (the best one), order kept."""
        seen: set[str] = set()
        out: list[Hit] = []
        for hit in hits:
            if hit.track.mbid not in seen:
                seen.add(hit.track.mbid)
                out.append(hit)
        return out
