"""A seeded generator of realistic catalogs of any size.

It produces the cases a matcher must get right: leading "The", accented names, featured artists,
remixes, radio edits, original mixes, live versions, covers of the same title by another artist,
and the same recording (same ISRC) released both as a single and on an album.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

from trackflow.providers.simulator.catalog import Catalog, Track

FIRST = (
    "Alex", "Maya", "Jonas", "Lena", "Marcus", "Chloe", "Diego", "Nina", "Oscar", "Priya", "Sam",
    "Tessa", "Victor", "Zara", "Leo", "Ada", "Kofi", "Ines", "Hugo", "Freya", "Ravi", "Elena",
)  # fmt: skip
LAST = (
    "Carter", "Nguyen", "Lindqvist", "Moreau", "Okafor", "Rossi", "Tanaka", "Walsh", "Schmidt",
    "Kowalski", "Haddad", "Fischer", "Bennett", "Silva", "Novak", "Price", "Jensen", "Reyes",
)  # fmt: skip
ACCENTED = (
    "Björk Ásgeirsdóttir", "Zoé Lefèvre", "Sigur Ósk", "Röyksopp Nord", "Beyoncé Núñez",
    "Mø Sørensen", "Chloé Dubois", "Jürgen Weiß", "Álvaro Peña", "Céline Müller", "Dvořák Kvartet",
    "Łukasz Żak", "Maëlle Noël", "Ñandú", "Sébastien Tellier-Grâce",
)  # fmt: skip
BAND_ADJ = (
    "Velvet", "Electric", "Midnight", "Silver", "Neon", "Broken", "Golden", "Lonely", "Crystal",
    "Wild", "Secret", "Paper", "Hollow", "Arctic", "Glass", "Northern",
)  # fmt: skip
BAND_NOUN = (
    "Wolves", "Kites", "Lanterns", "Machines", "Rivers", "Ghosts", "Satellites", "Pilots",
    "Horses", "Echoes", "Strangers", "Sparrows", "Engines", "Tides",
)  # fmt: skip
SOLO_NAMES = ("deadmau5", "Kygo", "Lorde", "Sia", "Avicii Jr.", "Mëtro", "AURORA", "Oh Wonder")
TITLE_WORDS = (
    "Love", "Night", "Fire", "Summer", "Heart", "Gold", "Dreams", "Run", "Stay", "Lights", "Home",
    "Wild", "Forever", "Ocean", "Dance", "Sky", "Rain", "Shadow", "City", "Echo", "Paradise",
    "Tonight", "Alive", "Closer", "Higher", "Strobe", "Silence", "Blue", "Electric", "Stars",
    "Midnight", "Heaven", "Promises", "Memories", "Without", "You", "Me", "Again", "Slow", "Down",
)  # fmt: skip
SPECIAL_TITLES = (
    "What's Up?", "Hold On!", "Up & Down", "Part II: The Return", "4 + 4", "C'est la vie",
    "(I Can't) Stop", "Don't [Stop] Now", "Mr. Brightside-ish", "50/50", "Ça ira", "Ride ~ Slow",
    "Where Are Ü Now", "A*Star", "Über Alles", "Yes/No", "Mañana", "Who's Afraid Of Little Old Me?",
)  # fmt: skip
REMIXERS = (
    "Eric Prydz", "Armin van Buuren", "Tiësto", "Kaskade", "David Guetta", "Fred again..",
    "Purple Disco Machine", "Solomun", "Âme", "Jamie xx", "Dimitri Vegas & Like Mike",
)  # fmt: skip
VENUES = ("Wembley", "Red Rocks", "Brixton Academy", "the Royal Albert Hall", "Paradiso")
GENRES = (
    ("pop",), ("pop", "dance pop"), ("rock", "indie rock"), ("electronic", "house"),
    ("electronic", "progressive house"), ("electronic", "trance"), ("hip hop", "rap"),
    ("r&b",), ("latin", "reggaeton"), ("folk", "singer-songwriter"), ("electronic", "techno"),
    ("metal",), ("jazz",), ("country",),
)  # fmt: skip
LABELS = (
    "Columbia", "Atlantic", "Island Records", "Mau5trap", "Anjunabeats", "Ninja Tune",
    "XL Recordings", "Spinnin' Records", "Warp Records", "Sub Pop", "Domino", "Interscope",
    "Parlophone", "Defected",
)  # fmt: skip
ISRC_COUNTRIES = ("US", "GB", "DE", "FR", "SE", "NL", "CA", "AU", "QM", "QZ", "ES", "NO", "JP")
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class _Gen:
    """Generator state: the RNG, artists made so far and ISRCs in use."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.isrcs: set[str] = set()
        self.artists: list[str] = []
        self.artist_names: set[str] = set()
        self.titles: list[str] = []

    def artist(self) -> str:
        rng = self.rng
        for _ in range(50):
            roll = rng.random()
            if roll < 0.2:
                name = f"The {rng.choice(BAND_ADJ)} {rng.choice(BAND_NOUN)}"
            elif roll < 0.32:
                name = rng.choice(ACCENTED)
            elif roll < 0.4:
                name = rng.choice(SOLO_NAMES)
            elif roll < 0.5:
                name = f"{rng.choice(BAND_ADJ)} {rng.choice(BAND_NOUN)}"
            else:
                name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            if name not in self.artist_names:
                break
            # Name space is small: disambiguate like real artists do.
            suffix = rng.choice(
                ("II", "Jr.", "Band", "Collective", "Trio", str(rng.randint(2, 99)))
            )
            name = f"{name} {suffix}"
            if name not in self.artist_names:
                break
        self.artist_names.add(name)
        self.artists.append(name)
        return name

    def title(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.08:
            return rng.choice(SPECIAL_TITLES)
        if roll < 0.15 and self.titles:
            return rng.choice(self.titles)  # different song, same name as an existing one
        words = rng.sample(TITLE_WORDS, rng.choice((1, 1, 2, 2, 2, 3, 4)))
        title = " ".join(words)
        self.titles.append(title)
        return title

    def isrc(self, year: int) -> str:
        rng = self.rng
        while True:
            code = (
                rng.choice(ISRC_COUNTRIES)
                + "".join(rng.choice(ALNUM) for _ in range(3))
                + f"{year % 100:02d}{rng.randint(0, 99999):05d}"
            )
            if code not in self.isrcs:
                self.isrcs.add(code)
                return code

    def date(self) -> str:
        rng = self.rng
        year = rng.randint(1975, 2025)
        if rng.random() < 0.08:
            return str(year)
        return f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"

    def base(self, artist: str) -> Track:
        rng = self.rng
        date = self.date()
        popularity = max(0, min(100, int(rng.gauss(45, 20))))
        listeners = int((popularity / 100) ** 3 * 2_000_000) + rng.randint(0, 5_000)
        genres = rng.choice(GENRES)
        electronic = "electronic" in genres
        bpm = (
            0.0
            if rng.random() < 0.15
            else round(rng.uniform(124, 132) if electronic else rng.uniform(70, 180), 1)
        )
        title = self.title()
        if rng.random() < 0.12:
            artist = f"{artist} feat. {self.pick_other(artist)}"
        elif _share(title, artist) < DUET_SHARE:
            # Duets ("A & B"): decided by hash, not by the RNG, so that the rest of the
            # catalog (and every test built on a seed) stays what it was before they existed.
            others = [a for a in self.artists[-30:] if a != artist]
            if others:
                artist = f"{artist} & {others[int(_share(artist, title) * len(others))]}"
        return Track(
            artist=artist,
            title=title,
            album=rng.choice((f"{rng.choice(TITLE_WORDS)} {rng.choice(BAND_NOUN)}", title)),
            isrc=self.isrc(int(date[:4])),
            duration_ms=rng.randint(150_000, 330_000),
            release_date=date,
            bpm=bpm,
            key=-1 if rng.random() < 0.1 else rng.randint(0, 11),
            mode=rng.randint(0, 1),
            genres=genres,
            label=rng.choice(LABELS),
            popularity=popularity,
            listeners=listeners,
            playcount=listeners * rng.randint(3, 25),
            explicit=rng.random() < 0.15,
            track_number=rng.randint(1, 14),
            country=rng.choice(("US", "GB", "DE", "XW", "SE", "FR")),
        )

    def earlier(self, date: str) -> str:
        """A date some weeks before ``date`` in the same year (singles precede albums)."""
        if len(date) < 10:
            return date
        month = max(1, int(date[5:7]) - self.rng.randint(1, 3))
        return f"{date[:4]}-{month:02d}-{self.rng.randint(1, 28):02d}"

    def pick_other(self, artist: str) -> str:
        others = [a for a in self.artists[-30:] if a != artist]
        return self.rng.choice(others) if others else self.artist()

    def variants(self, base: Track) -> list[Track]:
        """Other catalog rows derived from ``base`` (the distractors and the same-ISRC single)."""
        rng = self.rng
        out: list[Track] = []
        year = base.year
        main = base.artist.split(" feat. ")[0]

        def version(title: str, **changes: object) -> Track:
            return replace(
                base,
                title=title,
                isrc=self.isrc(year),
                popularity=max(0, base.popularity - 15),
                listeners=base.listeners // 4,
                playcount=base.playcount // 5,
                **changes,  # type: ignore[arg-type]
            )

        if rng.random() < 0.3:  # same recording released as a single before the album
            out.append(
                replace(
                    base,
                    album=f"{base.title} - Single" if rng.random() < 0.6 else base.title,
                    album_type="single",
                    track_number=1,
                    release_date=self.earlier(base.release_date),
                )
            )
        if rng.random() < 0.15:
            remixer = rng.choice(REMIXERS)
            out.append(
                version(
                    f"{base.title} ({remixer} Remix)",
                    album=f"{base.title} (Remixes)",
                    duration_ms=base.duration_ms + rng.randint(60_000, 200_000),
                    genres=("electronic", "house"),
                    album_type="single",
                )
            )
        if rng.random() < 0.12:
            out.append(
                version(
                    f"{base.title} - Radio Edit",
                    album_type="single",
                    duration_ms=max(150_000, base.duration_ms - rng.randint(20_000, 90_000)),
                )
            )
        if rng.random() < 0.08:
            out.append(
                version(
                    f"{base.title} (Original Mix)",
                    album_type="single",
                    duration_ms=base.duration_ms + rng.randint(90_000, 240_000),
                )
            )
        if rng.random() < 0.1:
            out.append(
                version(
                    f"{base.title} (Live)",
                    album=f"Live at {rng.choice(VENUES)}",
                    duration_ms=base.duration_ms + rng.randint(-10_000, 60_000),
                )
            )
        if rng.random() < 0.08:
            cover_artist = self.pick_other(main)
            out.append(
                version(
                    base.title,
                    artist=cover_artist,
                    album=f"{rng.choice(TITLE_WORDS)} Covers",
                    label=rng.choice(LABELS),
                    duration_ms=base.duration_ms + rng.randint(-30_000, 30_000),
                )
            )
        return out


DUET_SHARE = 0.08
"""Share of base tracks credited to two main artists."""


def _share(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def generate_catalog(n: int, seed: int = 0) -> Catalog:
    """A catalog of exactly ``n`` tracks; the same ``(n, seed)`` always gives the same catalog."""
    gen = _Gen(seed)
    rows: list[Track] = []
    artist = gen.artist()
    while len(rows) < n:
        if gen.rng.random() < 0.15 or not rows:
            artist = gen.artist()
        base = gen.base(artist)
        rows.append(base)
        rows.extend(gen.variants(base))
    return Catalog.from_tracks(rows[:n])
