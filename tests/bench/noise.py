"""Ground truth from the real catalog CSVs, scraper-style noisy queries, ranked distractor lists.

Used by ``matching_bench.py``. Deliberately independent of :mod:`providers.normalize` (it has its
own crude title key) so the benchmark does not grade the matcher with the matcher's own rules.

Where the real files lack a field the generator makes one up, seeded and stable per track:
``most_streamed_2024.csv`` has ISRCs but no durations (a plausible 2-6 minute duration is drawn),
``top_hits_2000_2019.csv`` has durations but no ISRCs (a fake ``ZZ``-country ISRC is made).
Typos never touch digits: "We Come 1" -> "We Come 2" is another song, not a typo a matcher could
be expected to undo. Each kind of typo has its own noise name (:data:`TITLE_TYPO_KINDS`: letters
swapped, space moved, letter doubled, letter dropped, neighbour key, suffix with stray spacing),
so the benchmark can report by kind.

Every case has two candidate lists: a first page for the query, which lacks the true recording
when the title is mistyped in every distinctive word or the artist in every word (a strict
search would not find it), and what the wider queries (the artist's tracks, the title's) return,
for the matcher's second look.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trackflow.providers.base import Candidate, TrackQuery
from trackflow.providers.discogs import clean_name

NEUTRAL_SUFFIXES = (
    " - Radio Edit",
    " (Radio Edit)",
    " (Original Mix)",
    " - Original Mix",
    " - Remastered 2011",
    " - 2015 Remaster",
    " [Extended]",
    " (Extended Mix)",
    " - Single Version",
    " (Album Version)",
    " (Explicit)",
    " - Clean",
    " - Mono",
)
VENUES = ("Wembley Stadium", "Madison Square Garden", "Glastonbury 2019", "the BBC", "Red Rocks")
COVER_ARTISTS = (
    "MUSIC LAB JPN",
    "Vitamin String Quartet",
    "Piano Tribute Players",
    "The Karaoke Channel",
    "Sing2Piano",
    "Twinkle Twinkle Little Rock Star",
    "Rockabye Baby!",
    "Scala & Kolacny Brothers",
    "Boyce Avenue",
    "Postmodern Jukebox",
)
# Made-up near-names the way sound-alikes and tribute uploads look ("Bon Jovi" / "Jon Bon Jovi").
NEAR_NAME_PATTERNS = ("Jon {}", "DJ {}", "{} Jr.", "Young {}", "{} Tribute Band", "Lil {}", "{} II")
# Version words (as regex alternatives) the distractor versions use; "sped" and "speed" together.
VERSION_WORDS = r"\b(remix|live|acoustic|spe+d up|slowed|instrumental|cover|vip)\b"
# Keyboard neighbours for substitution typos (QWERTY).
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {
    ch: "".join(row[j] for j in (i - 1, i + 1) if 0 <= j < len(row))
    for row in _ROWS
    for i, ch in enumerate(row)
}
# Typo kinds and their weights per edit (space moved is made less often than its weight says: it
# needs two words of 3+ letters).
TYPO_WEIGHTS = {
    "letter dropped": 0.26,
    "letter doubled": 0.13,
    "neighbour key": 0.25,
    "letters swapped": 0.2,
    "space moved": 0.16,
}
#: Noise names that change the letters or spacing of a query's title.
TITLE_TYPO_KINDS = (*TYPO_WEIGHTS, "suffix with stray spacing")
# Words a search engine drops (Lucene's English stop set, its words of 4+ letters, and a few
# common Spanish ones): they do not make a title findable.
STOPWORDS = frozenset(
    ("into", "such", "that", "their", "then", "there", "these", "they", "this", "will", "with",
     "from", "your", "para", "como", "pero")
)


@dataclass(frozen=True, slots=True)
class TrueTrack:
    """One real recording of the catalog."""

    key: str
    """Stable id of the recording."""
    artist: str
    title: str
    isrc: str
    duration_ms: int
    source: str
    """Which CSV it came from."""


@dataclass(frozen=True, slots=True)
class Case:
    """One benchmark query with the candidate lists a provider would return."""

    query: TrackQuery
    candidates: list[Candidate]
    truth: frozenset[str]
    """Bench ids of the candidates that are the queried recording (empty: truth absent)."""
    track: TrueTrack
    noise: tuple[str, ...]
    """Noise applied to the query, for error reports."""
    second: list[Candidate]
    """What the wider queries (the artist's tracks, the title's) return, for a second look."""
    first_has_truth: bool
    """Whether ``candidates`` holds the true recording: not when it is absent, nor when the
    query's title is mistyped in every distinctive word (:func:`strict_search_finds`) or its
    artist in every word (:func:`strict_artist_finds`)."""


def catalog_dir(repo: Path) -> Path:
    """The catalog folder: $TRACKFLOW_CATALOG_DIR, else ../shared/data/catalog next to the repo."""
    import os

    env = os.environ.get("TRACKFLOW_CATALOG_DIR")
    return Path(env) if env else repo.parent / "shared" / "data" / "catalog"


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def coarse_key(artist: str, title: str) -> str:
    """Crude song identity: title without any bracket or dash suffix, and the artist."""
    title = re.sub(r"[\(\[].*?[\)\]]", " ", title)
    title = re.split(r"\s+[-\u2013]\s+", title)[0]
    return f"{_crude(artist)}|{_crude(title)}"


def _crude(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return re.sub(r"[^a-z0-9]+", "", "".join(c for c in text if not unicodedata.combining(c)))


def load_catalog(directory: Path) -> list[TrueTrack]:
    """Real tracks from both CSVs, de-duplicated, mojibake rows left out."""
    by_key: dict[str, TrueTrack] = {}
    streamed = directory / "most_streamed_2024.csv"
    hits = directory / "top_hits_2000_2019.csv"
    with streamed.open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            artist, title, isrc = row["Artist"].strip(), row["Track"].strip(), row["ISRC"].strip()
            # Mojibake: "Beyoncï¿" and runs of "ý" where the source lost the encoding.
            if not artist or not title or "ï¿" in artist + title or "ýýý" in artist + title:
                continue
            key = f"{_crude(artist)}|{_crude(title)}"
            seconds = 120 + _stable(key) % 240  # no duration in this file: 2-6 minutes
            by_key.setdefault(key, TrueTrack(key, artist, title, isrc, seconds * 1000, "streamed"))
    with hits.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            artist, title = row["artist"].strip(), row["song"].strip()
            if not artist or not title:
                continue
            key = f"{_crude(artist)}|{_crude(title)}"
            duration = int(row["duration_ms"])
            old = by_key.get(key)
            isrc = old.isrc if old else f"ZZTH0{_stable(key) % 10**7:07d}"
            by_key[key] = TrueTrack(key, artist, title, isrc, duration, "hits")
    return list(by_key.values())


def _edit_spots(chars: Sequence[str], kind: str) -> list[int]:
    """Where an edit of ``kind`` may go: letters of words of 3+ letters, never a digit."""
    in_word = [False] * len(chars)
    for m in re.finditer(r"[^\W\d_]{3,}", "".join(chars)):
        in_word[m.start() : m.end()] = [True] * (m.end() - m.start())
    if kind == "letters swapped":
        return [
            i
            for i in range(len(chars) - 1)
            if in_word[i] and in_word[i + 1] and chars[i].lower() != chars[i + 1].lower()
        ]
    if kind == "space moved":
        # +i: the letter after the space at i moves before it ("TheM iddle"); -i: the letter
        # before it moves after it ("Th eMiddle").
        return [
            sign * i
            for i, c in enumerate(chars)
            if c == " " and 0 < i < len(chars) - 1 and in_word[i - 1] and in_word[i + 1]
            for sign in (1, -1)
        ]
    if kind == "neighbour key":
        return [i for i, c in enumerate(chars) if in_word[i] and c.lower() in _NEIGHBOURS]
    return [i for i, c in enumerate(chars) if in_word[i]]


def typo(text: str, rng: random.Random, edits: int) -> tuple[str, tuple[str, ...]]:
    """``text`` with up to ``edits`` keyboard-style edits, and the kind of each edit made.

    Kinds are drawn by :data:`TYPO_WEIGHTS` among those with a place to go (a one-word title has
    no space to move); a text with none is left as it is.
    """
    chars, kinds = list(text), []
    for _ in range(edits):
        spots = {kind: _edit_spots(chars, kind) for kind in TYPO_WEIGHTS}
        possible = [kind for kind in TYPO_WEIGHTS if spots[kind]]
        if not possible:
            break
        kind = rng.choices(possible, [TYPO_WEIGHTS[k] for k in possible])[0]
        i = rng.choice(spots[kind])
        if kind == "letter dropped":
            del chars[i]
        elif kind == "letter doubled":
            chars.insert(i, chars[i])
        elif kind == "neighbour key":
            key = rng.choice(_NEIGHBOURS[chars[i].lower()])
            chars[i] = key.upper() if chars[i].isupper() else key
        elif kind == "letters swapped":
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif i > 0:
            chars[i], chars[i + 1] = chars[i + 1], " "
        else:
            chars[-i - 1], chars[-i] = " ", chars[-i - 1]
        kinds.append(kind)
    return "".join(chars), tuple(kinds)


def stray_spacing(title: str, suffix: str, rng: random.Random) -> str:
    """``title`` with the label of a neutral ``suffix`` after a dash spaced on one side only."""
    label = suffix.strip(" -()[]")
    return title + rng.choice((" -", "  -", "- ", "-  ")) + label


def base_title(title: str) -> str:
    """The title without bracketed parts and dash suffixes ("Song (feat. X) - Remix" -> "Song")."""
    return re.split(r"\s+-\s+", re.sub(r"\s*[\(\[].*?[\)\]]", "", title))[0].strip() or title


def strict_search_finds(title: str, query_title: str) -> bool:
    """Whether a strict search (a phrase query, a field filter) for ``query_title`` returns the
    recording titled ``title``: some distinctive word of its base title (4+ letters, not in
    :data:`STOPWORDS`; any word when it has none) is intact in the query."""
    words = [w for w in (_crude(w) for w in base_title(title).split()) if w]
    distinctive = [
        w for w in words if sum(c.isalpha() for c in w) >= 4 and w not in STOPWORDS
    ] or words
    present = {_crude(w) for w in query_title.split()}
    return not distinctive or any(w in present for w in distinctive)


def strict_artist_finds(artist: str, query: TrackQuery) -> bool:
    """Whether a strict artist filter for ``query`` returns a recording by ``artist``: a word of
    the name (not in :data:`STOPWORDS`) is intact in the query's artist, or in its title when
    the query gives "Artist - Title" with no artist."""
    words = [w for w in (_crude(w) for w in artist.split()) if w and w not in STOPWORDS]
    asked = query.artist or query.title or ""
    present = {_crude(w) for w in asked.split()}
    return not words or any(w in present for w in words)


def _strip_accents(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c))


_FEAT_IN_TITLE = re.compile(r"\s*[\(\[](?:feat\.?|ft\.?|featuring|with)\s+([^\)\]]+)[\)\]]", re.I)


def noisy_query(track: TrueTrack, rng: random.Random) -> tuple[TrackQuery, tuple[str, ...]]:
    """A query for ``track`` the way scrapers and playlist importers write it, and the names of
    the noise applied (each kind of title typo by its own name, see :data:`TITLE_TYPO_KINDS`)."""
    artist, title, noise = track.artist, track.title, []
    feat = _FEAT_IN_TITLE.search(title)
    if feat is not None:
        roll = rng.random()
        if roll < 0.35:
            joiner = rng.choice((" feat. ", " ft. ", " featuring ", " & ", ", "))
            artist, title = f"{artist}{joiner}{feat.group(1)}", _FEAT_IN_TITLE.sub("", title)
            noise.append("feat moved to artist")
        elif roll < 0.6:
            title = _FEAT_IN_TITLE.sub("", title)
            noise.append("feat dropped")
    neutral = re.search(
        r"\s+-\s+(?:\d{4}\s+)?(?:remaster|radio edit|single|original mix).*$|"
        r"\s*\((?:explicit|clean).*?\)$",
        title,
        re.I,
    )
    if neutral is not None and rng.random() < 0.4:
        title = title[: neutral.start()]
        noise.append("neutral suffix dropped")
    elif neutral is None:
        roll = rng.random()
        if roll < 0.15:
            title += rng.choice(NEUTRAL_SUFFIXES)
            noise.append("neutral suffix added")
        elif roll < 0.19:
            title = stray_spacing(title, rng.choice(NEUTRAL_SUFFIXES), rng)
            noise.append("suffix with stray spacing")
    if artist.lower().startswith("the ") and rng.random() < 0.5:
        artist = artist[4:]
        noise.append("'The' dropped")
    if " & " in artist and rng.random() < 0.3:
        artist = artist.replace(" & ", " and ")
        noise.append("& -> and")
    if _strip_accents(artist + title) != artist + title and rng.random() < 0.5:
        artist, title = _strip_accents(artist), _strip_accents(title)
        noise.append("accents lost")
    roll = rng.random()
    if roll < 0.2:
        artist, title = artist.lower(), title.lower()
        noise.append("lower case")
    elif roll < 0.3:
        artist, title = artist.upper(), title.upper()
        noise.append("upper case")
    elif roll < 0.4:
        artist, title = artist.title(), title.title()
        noise.append("title case")
    if rng.random() < 0.15:
        artist = re.sub(r"[.,'!?]", "", artist)
        title = re.sub(r"[.,'!?]", "", title)
        noise.append("punctuation dropped")
    if rng.random() < 0.2:
        title, kinds = typo(title, rng, 1 if rng.random() < 0.7 else 2)
        noise.extend(dict.fromkeys(kinds))
    if rng.random() < 0.15:
        artist, kinds = typo(artist, rng, 1)
        if kinds:
            noise.append("artist typo")
    if rng.random() < 0.12:
        artist, title = "", f"{artist} - {title}"
        noise.append("'Artist - Title' with empty artist")
    duration: int | None = None
    if rng.random() < 0.55:
        roll = rng.random()
        spread = 2 if roll < 0.8 else 6 if roll < 0.95 else 12
        duration = track.duration_ms + rng.randint(-spread * 1000, spread * 1000)
        noise.append(f"duration off {abs(duration - track.duration_ms) / 1000:.0f}s")
    else:
        noise.append("no duration")
    isrc = track.isrc if rng.random() < 0.1 else None
    if isrc:
        noise.append("isrc known")
    return TrackQuery(artist=artist, title=title, isrc=isrc, duration_ms=duration), tuple(noise)


class CandidateFactory:
    """Builds the candidate lists; holds catalog indexes for distractors."""

    def __init__(self, tracks: Sequence[TrueTrack]) -> None:
        self.tracks = list(tracks)
        self.by_artist: dict[str, list[TrueTrack]] = defaultdict(list)
        self.by_word: dict[str, list[TrueTrack]] = defaultdict(list)
        self.artists_by_word: dict[str, set[str]] = defaultdict(set)
        self.artists = sorted({t.artist for t in tracks})
        self.crude_artists = {a: _crude(a) for a in self.artists}
        for t in tracks:
            self.by_artist[t.artist].append(t)
            for word in set(re.findall(r"[a-z0-9]{4,}", t.title.lower())):
                self.by_word[word].append(t)
            for word in re.findall(r"[a-z0-9]{3,}", t.artist.lower()):
                if word != "the":
                    self.artists_by_word[word].add(t.artist)
        self.serial = 0

    def _candidate(
        self, rng: random.Random, artist: str, title: str, duration_ms: int, bench_id: str | None
    ) -> Candidate:
        self.serial += 1
        fields: dict[str, object] = {"artist": artist, "title": title}
        if rng.random() < 0.95:
            fields["duration_ms"] = max(30_000, duration_ms)
        if rng.random() < 0.7:
            fields["isrc"] = f"QZ{rng.choice('ABCDEFGH')}{rng.randint(10, 99)}{self.serial:07d}"
        fields["bench_id"] = bench_id or f"d{self.serial}"
        return Candidate(provider="bench", fields=fields)

    def distractors(self, track: TrueTrack, rng: random.Random) -> list[Candidate]:
        """Plausible wrong answers a search engine returns for this track."""
        out: list[Candidate] = []
        base, dur = base_title(track.title), track.duration_ms
        remixer = rng.choice(self.artists)
        versions = [
            (f"{base} ({remixer} Remix)", dur + rng.randint(-20_000, 150_000)),
            (f"{base} - {remixer} Remix", dur + rng.randint(-20_000, 150_000)),
            (f"{base} - Remix", dur + rng.randint(-15_000, 60_000)),
            (f"{base} ({remixer} Edit)", dur + rng.randint(-20_000, 20_000)),
            (f"{base} (Live)", dur + rng.randint(-10_000, 40_000)),
            (f"{base} - Live at {rng.choice(VENUES)}", dur + rng.randint(-10_000, 40_000)),
            (f"{base} (Acoustic)", dur + rng.randint(-20_000, 20_000)),
            (f"{base} - Acoustic Version", dur + rng.randint(-20_000, 20_000)),
            (f"{base} (Instrumental)", dur + rng.randint(-3_000, 3_000)),
            (f"{base} - Sped Up", int(dur * 0.8)),
            (f"{base} (Slowed + Reverb)", int(dur * 1.15)),
            (f"{base} (VIP Mix)", dur + rng.randint(-10_000, 60_000)),
        ]

        # A version of the kind the true track already is ("Asesina - Remix", "Paro - Speed Up")
        # could be the true recording itself: not a fair distractor.
        def kinds(title: str) -> set[str]:
            found = re.findall(VERSION_WORDS + r"|\b(edit)\b", title, re.I)
            return {"".join(m).lower().replace("speed", "sped") for m in found}

        own_kinds = kinds(track.title)
        versions = [v for v in versions if not kinds(v[0]) & own_kinds]
        for title, duration in rng.sample(versions, min(len(versions), rng.randint(1, 3))):
            out.append(self._candidate(rng, track.artist, title, duration, None))
        suffix = track.title[len(base) :] if track.title.startswith(base) else ""
        if re.search(VERSION_WORDS, suffix, re.I):
            # The true track is a version itself ("La Bebe - Remix"): the original is a distractor.
            out.append(
                self._candidate(rng, track.artist, base, dur + rng.randint(-9_000, 9_000), None)
            )
        # Same title by someone else: covers, karaoke, a sound-alike, a near-name.
        for _ in range(rng.randint(1, 2)):
            cover = rng.choice(COVER_ARTISTS)
            title = track.title + (" - Cover" if rng.random() < 0.3 else "")
            out.append(self._candidate(rng, cover, title, dur + rng.randint(-25_000, 25_000), None))
        if rng.random() < 0.5:
            other = rng.choice(self.artists)
            if self.crude_artists[other] != _crude(track.artist):
                near_dur = dur + rng.randint(-30_000, 30_000)
                out.append(self._candidate(rng, other, track.title, near_dur, None))
        # Artists sharing a word with the true one ("Lil Baby" / "Lil Durk"), and made-up
        # near-names: the same title, a duration within the grace. The hardest distractors.
        words = [w for w in re.findall(r"[a-z0-9]{3,}", track.artist.lower()) if w != "the"]
        near = sorted(
            a
            for a in {a for w in words for a in self.artists_by_word.get(w, ())}
            if self.crude_artists[a] != _crude(track.artist)
        )
        if near and rng.random() < 0.6:
            near_dur = dur + rng.randint(-8_000, 8_000)
            out.append(self._candidate(rng, rng.choice(near), track.title, near_dur, None))
        if rng.random() < 0.4:
            pattern = rng.choice(NEAR_NAME_PATTERNS)
            if pattern.split()[0].lower() == track.artist.split()[0].lower():
                pattern = "{} Jr."  # not "Lil Lil Durk"
            name = pattern.format(track.artist)
            near_dur = dur + rng.randint(-5_000, 5_000)
            out.append(self._candidate(rng, name, track.title, near_dur, None))
        # Other songs by the same artist, and songs whose titles share a word.
        own = coarse_key(track.artist, track.title)
        same_artist = [
            t for t in self.by_artist[track.artist] if coarse_key(t.artist, t.title) != own
        ]
        for t in rng.sample(same_artist, min(len(same_artist), rng.randint(0, 3))):
            out.append(self._candidate(rng, t.artist, t.title, t.duration_ms, None))
        words = re.findall(r"[a-z0-9]{4,}", track.title.lower())
        similar = [t for w in words for t in self.by_word.get(w, ()) if t.key != track.key]
        similar = [t for t in similar if coarse_key(t.artist, t.title) != own]
        for t in rng.sample(similar, min(len(similar), rng.randint(0, 3))):
            out.append(self._candidate(rng, t.artist, t.title, t.duration_ms, None))
        # Parts and reprises of the same song by the same artist.
        if rng.random() < 0.15:
            extra = rng.choice((" (Part 2)", " Pt. 2", " (Reprise)", " (Intro)", " (Demo)"))
            out.append(self._candidate(rng, track.artist, base + extra, dur - 40_000, None))
        return out

    def wider(
        self,
        track: TrueTrack,
        truths: Sequence[Candidate],
        distractors: Sequence[Candidate],
        rng: random.Random,
    ) -> list[Candidate]:
        """What the wider queries return (the artist's tracks, fuzzy terms, the title alone): up
        to 10 other songs of the artist from the catalog as the provider prints them,
        ``truths``, and ``distractors`` (the artist's versions of the song, the same title by
        other and near-named artists)."""
        own = coarse_key(track.artist, track.title)
        songs = [t for t in self.by_artist[track.artist] if coarse_key(t.artist, t.title) != own]
        song_titles = {t.title for t in songs}
        others = [
            self._candidate(rng, t.artist, t.title, t.duration_ms, None)
            for t in rng.sample(songs, min(len(songs), 10))
        ]
        rest = [c for c in distractors
                if c.get("artist") != track.artist or c.get("title") not in song_titles]
        return [*others, *truths, *rest]

    def truths(self, track: TrueTrack, rng: random.Random) -> list[Candidate]:
        """The true recording as a provider prints it, sometimes also a second release of it."""
        artist, title = track.artist, track.title
        feat = _FEAT_IN_TITLE.search(title)
        if feat is not None and rng.random() < 0.3:
            # Spotify lists every artist and keeps "(feat. X)" in the title; MusicBrainz credits.
            artist = f"{artist}, {feat.group(1)}" if rng.random() < 0.5 else artist
            if artist == track.artist:
                artist, title = f"{artist} feat. {feat.group(1)}", _FEAT_IN_TITLE.sub("", title)
        truth = self._candidate(rng, artist, title, track.duration_ms, track.key)
        fields = {k: v for k, v in truth.fields.items() if k != "isrc"}
        if rng.random() < 0.7:  # search results often lack the ISRC (Deezer's always do)
            fields["isrc"] = track.isrc
        out = [Candidate("bench", fields)]
        if rng.random() < 0.2:
            suffix = rng.choice((" - Remastered 2011", " - Single Version", " (Album Version)", ""))
            dup = self._candidate(rng, artist, title + suffix, track.duration_ms + 700, track.key)
            out.append(dup)
        return out


def _relevance(query: TrackQuery, candidate: Candidate, rng: random.Random) -> float:
    """A search engine's idea of relevance: shared words, plus a popularity-like jitter."""
    q = set(_crude_words(f"{query.artist} {query.title}"))
    c = set(_crude_words(f"{candidate.get('artist')} {candidate.get('title')}"))
    overlap = len(q & c) / max(1, len(q | c))
    return overlap + rng.uniform(0.0, 0.35)


def _crude_words(text: str) -> list[str]:
    text = _strip_accents(text.lower())
    return re.findall(r"[a-z0-9]+", text)


_CREDIT_SPLIT = re.compile(r"\s+(?:&|feat\.?|ft\.|featuring|x)\s+|,\s+", re.IGNORECASE)


def provider_quirks(candidate: Candidate, rng: random.Random) -> Candidate:
    """``candidate`` as a provider's real answer and our client make of it (issue 13).

    A share of answers is dressed: a Deezer credit joined from its contributors ("A, B"), a
    Discogs name with its display markers put on and taken off again by the client's
    :func:`~providers.discogs.clean_name`, a catalogue's inverted "Name, The" left as it is, an
    unknown duration (Last.fm's ``"0"``).
    """
    fields = dict(candidate.fields)
    artist = str(fields.get("artist") or "")
    roll = rng.random()
    if roll < 0.15 and _CREDIT_SPLIT.search(artist):
        fields["artist"] = ", ".join(n for n in _CREDIT_SPLIT.split(artist) if n.strip())
    elif roll < 0.30:
        shown = artist
        if shown.startswith("The ") and rng.random() < 0.7:
            shown = f"{shown[4:]}, The"
        marker = rng.random()
        shown += "*" if marker < 0.3 else f" ({rng.randint(2, 9)})" if marker < 0.6 else ""
        fields["artist"] = clean_name(shown + (" " if rng.random() < 0.2 else ""))
    elif roll < 0.35 and artist.startswith("The "):
        fields["artist"] = f"{artist[4:]}, The"
    elif roll < 0.45:
        fields.pop("duration_ms", None)
    return Candidate(candidate.provider, fields, candidate.provider_score, candidate.via)


def _ranked(query: TrackQuery, pool: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    return sorted(pool, key=lambda c: -_relevance(query, c, rng))


def _page(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Provider score from the rank, like MusicBrainz's 100, 98, 95... for a page of hits."""
    return [
        Candidate(c.provider, c.fields, round(1.0 - 0.04 * i, 2)) for i, c in enumerate(candidates)
    ]


def make_cases(tracks: Sequence[TrueTrack], seed: int, *, absent_share: float = 0.25,
               quirks: bool = True) -> list[Case]:
    """One case per track; ``absent_share`` of them have the true recording left out; with
    ``quirks`` candidates are dressed as real answers are (:func:`provider_quirks`), a candidate
    in both lists the same way.

    The first list is a page of 10 for the query, the true recording among them unless it is
    absent, the title is mistyped in every distinctive word (:func:`strict_search_finds`) or the
    artist in every word (:func:`strict_artist_finds`);
    ``second`` is :meth:`CandidateFactory.wider`'s list, ranked the same crude way.
    """
    rng = random.Random(seed)
    quirk_rng = random.Random(seed + 1)  # a separate stream: the cases stay those of the seed
    factory = CandidateFactory(tracks)
    cases = []
    for track in tracks:
        query, noise = noisy_query(track, rng)
        absent = rng.random() < absent_share
        truths = [] if absent else factory.truths(track, rng)
        distractors = factory.distractors(track, rng)
        mistyped = any(kind in TITLE_TYPO_KINDS for kind in noise)
        first_has_truth = bool(truths) and not (
            (mistyped and not strict_search_finds(track.title, query.title))
            or ("artist typo" in noise and not strict_artist_finds(track.artist, query))
        )
        first = _ranked(query, [*(truths if first_has_truth else ()), *distractors], rng)[:10]
        if first_has_truth and not any(c in first for c in truths):
            first[-1] = truths[0]  # providers do return the right one within the first page
        second = _ranked(query, factory.wider(track, truths, distractors, rng), rng)
        if quirks:
            dressed: dict[int, Candidate] = {}
            for c in (*first, *second):
                if id(c) not in dressed:
                    dressed[id(c)] = provider_quirks(c, quirk_rng)
            first, second = [dressed[id(c)] for c in first], [dressed[id(c)] for c in second]
        truth_ids = frozenset(str(c.get("bench_id")) for c in truths)
        noise = noise + (("truth absent",) if absent else ())
        cases.append(
            Case(query, _page(first), truth_ids, track, noise, _page(second), first_has_truth)
        )
    return cases
