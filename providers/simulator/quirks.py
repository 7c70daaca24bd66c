"""The real services' quirks, served by default so that every integration run meets them.

Checked against responses recorded from the real APIs (``/work/shared/PROVIDERS.md``, issue 13):
Deezer credits only the first main artist in ``artist``; Discogs decorates names; Last.fm leaves
keys out; MusicBrainz's 503 is sometimes only a busy server; Spotify sends ``Retry-After: 0``.
``quirks = false`` in the simulator's TOML (or ``trackflow simulate --no-quirks``) serves the
plain answers the clients were first written against.

A quirk of a *record* (a duet's credit, a missing ``mbid``) is decided by hashing the record, so
the same track is answered the same way every time, as a real service does; a quirk of an
*answer* (the form a throttling reply takes) is rolled per answer with the seeded dice.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

#: How often each quirk shows, as a share of the records or answers it can apply to. The
#: figures are our estimates from recorded answers and client libraries' bug trackers, not
#: published numbers; they are high enough that a test run of a hundred records meets each.
RATES: dict[str, float] = {
    # Deezer: a multi-artist credit is a duet whose `artist` is only its first main artist.
    "deezer_duet": 0.6,
    # Deezer BPM: an integer for most tracks, 0 (unknown) for some.
    "deezer_integer_bpm": 0.6,
    "deezer_unknown_bpm": 0.15,
    # Deezer throttling as a bare HTTP 403 or 429 instead of the code-4 body.
    "deezer_bare_throttle": 0.4,
    # Deezer 5xx with an HTML page instead of a JSON error body.
    "deezer_html_fault": 0.5,
    # Discogs display markers and shapes.
    "discogs_name_variation": 0.15,  # "Name*"
    "discogs_numbered": 0.1,  # "Name (2)"
    "discogs_inverted": 0.7,  # "Name, The" for names starting with "The "
    "discogs_trailing_space": 0.1,
    "discogs_not_on_label": 0.08,
    "discogs_plain_label": 0.15,  # "label": "X" instead of ["X"]
    "discogs_numbered_label": 0.1,
    "discogs_no_year": 0.1,
    "discogs_no_style": 0.25,
    "discogs_master_result": 0.15,  # a master listed before the release
    "discogs_no_ratelimit_headers": 0.2,
    # Last.fm: `mbid` left out altogether (besides ""), duration "0".
    "lastfm_no_mbid_key": 0.35,
    "lastfm_zero_duration": 0.3,
    # MusicBrainz: `"video": null` on search results.
    "musicbrainz_video_null": 0.5,
    # Spotify: `Retry-After: 0` on a 429; older tracks without album.release_date.
    "spotify_retry_after_zero": 0.3,
    "spotify_no_release_date": 0.08,
}


def _unit(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True, slots=True)
class Quirks:
    """Which quirks an answer shows."""

    enabled: bool = True
    """False: plain answers, no quirk at all."""
    rng: random.Random | None = None
    """Dice for answer quirks (seeded from the simulator's seed)."""

    def of_record(self, quirk: str, *key: str) -> bool:
        """Whether the record identified by ``key`` shows ``quirk`` (always the same answer)."""
        return self.enabled and _unit(quirk, *key) < RATES[quirk]

    def of_answer(self, quirk: str) -> bool:
        """Whether this answer shows ``quirk`` (rolled)."""
        if not self.enabled:
            return False
        rng = self.rng if self.rng is not None else random
        return rng.random() < RATES[quirk]

    def pick(self, options: tuple[int, ...]) -> int:
        """One of ``options``, rolled."""
        rng = self.rng if self.rng is not None else random
        return options[rng.randrange(len(options))]


PLAIN = Quirks(enabled=False)
"""No quirks (what handlers use when called without a simulator state)."""
