"""Pure text normalisation for track matching: fold names, split credits, parse version suffixes.

Everything here is a pure function of its arguments (cached where a worker sees the same strings
again and again). :mod:`providers.matching` builds on it; the producer CLI uses
:func:`split_artist_title` for inputs that carry "Artist - Title" in one field.

Version suffixes ("(Original Mix)", "- Radio Edit", "[Live at Wembley]") are bracketed or dashed
segments of a title. Each segment is classified as:

* **featured credit** — ``(feat. X)``, ``(ft. X)``, ``(featuring X)``, ``(with X)``;
* **distinguishing** — it names a *different recording* of the song: remixes (also "X Mix" and
  "X Edit" where X is not a neutral word, e.g. "Eric Prydz Edit", "Techno Mix"), live, acoustic,
  instrumental, karaoke, cover, VIP, dub, rework, bootleg, mashup, sped up, slowed, demo, reprise,
  a cappella, re-recordings and "X Version" where X is not neutral ("Arabic Version",
  "Taylor's Version");
* **neutral** — it labels the same recording (or an edit of it that catalogues treat as the same
  song): Original Mix, Radio Edit/Version, Extended/Extended Mix/Extended Version (a judgement
  call: the issue lists "[Extended]" among the suffixes to normalise away, and the duration check
  in matching still tells a 7-minute extended mix from a 3-minute radio edit), Remaster(ed)
  [year], Single/Album Version, Explicit/Clean, Mono/Stereo, "From <film>";
* **extra** — anything else ("(Tipsy)", "- Spider-Man: Into the Spider-Verse"): part of the
  title that scrapers often drop, compared leniently.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "ArtistCredit",
    "ParsedTitle",
    "Version",
    "edit_distance",
    "fold",
    "normalize_artist",
    "normalize_isrc",
    "parse_artists",
    "parse_title",
    "split_artist_title",
    "split_featured",
]

# Characters that look like a hyphen or a quote but are not ASCII; scrapers mix them freely.
_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "-")
_QUOTES = dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b\u2032`\u00b4"), "'")
_DQUOTES = dict.fromkeys(map(ord, "\u201c\u201d\u201e\u201f\u2033"), '"')
# Letters NFKD does not decompose but that people type as ASCII anyway.
_SPECIAL = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "ß": "ss", "đ": "d", "ł": "l", "\u0131": "i"}
)

_NON_WORD = re.compile(r"[^\w]+")
_FEAT = re.compile(r"^(?:feat\.?|ft\.?|featuring|with)\s+", re.IGNORECASE)
# In an artist field "with" is too common inside real names to treat as a credit separator.
_ARTIST_FEAT = re.compile(
    r"\s+(?:feat\.?|ft\.|featuring)\s+|\s*\((?:feat\.?|ft\.?|featuring)\s+", re.IGNORECASE
)
_TITLE_FEAT_BARE = re.compile(r"\s+(?:feat\.?|ft\.|featuring)\s+(.+)$", re.IGNORECASE)
# "with" is not a separator here: a part that starts with it has it stripped by _FEAT instead.
# Not " x ": it joins DJ collaborations but also ends names ("Lil Nas X Jr.", "Malcolm X").
# Protects "& The" from _NAME_SEP: "and" between words is a separator, "and the" is not.
_BAND_THE = re.compile(r"(\w)\s*(?:&|\+|\band\b)\s*the\s+", re.IGNORECASE)
_NAME_SEP = re.compile(
    r"\s*(?:,|&|\+|;|/|\band\b(?!\s+the\b)|\bvs\b\.?|\bfeat\b\.?|\bft\b\.?|\bfeaturing\b)\s*",
    re.IGNORECASE,
)
_INVERTED_THE = re.compile(r"^\s*(.+?),\s*the\s*$", re.IGNORECASE)
_BRACKETED = re.compile(r"[\(\[\{]([^\(\)\[\]\{\}]*)[\)\]\}]")
_DASH_SPLIT = re.compile(r"\s+-\s+|\s+-(?=\s*$)")
_ARTIST_TITLE_SEP = re.compile(r"\s+[-\u2013\u2014]\s+")
# Years ("Remastered 2011") are neutral; other numbers may name a remixer ("41 Edit").
_YEAR = re.compile(r"^(?:19|20)\d\d$")
_ISRC = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}\d{7}$")

#: Words that, alone or together (with years), make a segment neutral: same recording.
NEUTRAL_WORDS = frozenset(
    "original radio extended single album main clean explicit dirty mono stereo short full "
    "length long version ver v mix edit edited remaster remastered remasterizado remasterizada "
    "remasterizada digital digitally bonus track deluxe edition anniversary official audio hq hd "
    "uncensored censored lp 7 12 inch the th st nd rd soundtrack ost and of".split()
)
# Keywords that name a different recording, mapped to a version kind. Matched as whole words.
_KIND_ANYWHERE: dict[str, str] = {
    "remix": "remix",
    "rmx": "remix",
    "remixed": "remix",
    "rework": "rework",
    "reworked": "rework",
    "refix": "rework",
    "flip": "rework",
    "bootleg": "bootleg",
    "mashup": "mashup",
    "acoustic": "acoustic",
    "unplugged": "acoustic",
    "stripped": "acoustic",
    "piano": "piano",
    "orchestral": "orchestral",
    "symphonic": "orchestral",
    "instrumental": "instrumental",
    "playback": "instrumental",
    "karaoke": "karaoke",
    "acapella": "acapella",
    "nightcore": "sped up",
    "slowed": "slowed",
    "reverb": "slowed",
    "demo": "demo",
    "reprise": "reprise",
    "vip": "vip",
    "rerecorded": "rerecording",
}
# Phrases that are distinguishing only in these spellings (space-joined folded tokens).
_KIND_PHRASES: tuple[tuple[str, str], ...] = (
    ("mash up", "mashup"),
    ("sped up", "sped up"),
    ("speed up", "sped up"),
    ("a cappella", "acapella"),
    ("a capella", "acapella"),
    ("re recorded", "rerecording"),
    ("re mix", "remix"),
    ("re work", "rework"),
    ("in concert", "live"),
    ("backing track", "karaoke"),
)
# Words that are distinguishing only at the end of a segment ("Apple Music Live", "Club Dub",
# "Cover"), since "(Live Forever)" or "(Cover Me)" are ordinary parts of a title.
_KIND_AT_END: dict[str, str] = {
    "live": "live",
    "dub": "dub",
    "cover": "cover",
    "intro": "intro",
    "outro": "outro",
    "interlude": "interlude",
    "skit": "skit",
}
# A segment starting "Live at/from/in/on ..." is a live recording.
_LIVE_AT = re.compile(r"^live (?:at|from|in|on|for|session|version|recording|performance)\b")
# "X Mix/Edit/Version": distinguishing when X holds a non-neutral word (kind given here).
_GENERIC_TAIL: dict[str, str] = {
    "mix": "remix",
    "edit": "edit",
    "version": "version",
    "ver": "version",
}
# Bare keywords at the end of an unbracketed title ("Strobe Eric Prydz Remix" after a scraper
# dropped the brackets). Only strong words: "Born to Live" must not become a live version.
_BARE_TAIL: dict[str, str] = {
    "remix": "remix",
    "rmx": "remix",
    "acoustic": "acoustic",
    "instrumental": "instrumental",
    "karaoke": "karaoke",
    "mashup": "mashup",
    "bootleg": "bootleg",
}


@dataclass(frozen=True, slots=True)
class Version:
    """A distinguishing version of a song (a different recording)."""

    kind: str
    """What kind of version: ``remix``, ``live``, ``acoustic``, ``edit``, ``version``..."""
    qualifier: str | None = ""
    """Folded words besides the kind ("eric prydz" in "Eric Prydz Remix"); empty when none,
    None when unknown (a bare "Remix" ending a title whose brackets a scraper dropped)."""


@dataclass(frozen=True, slots=True)
class ParsedTitle:
    """A title split into the song's name and what the suffixes say about the recording."""

    base: str
    """Folded title without bracketed or dashed segments."""
    versions: tuple[Version, ...]
    """Distinguishing versions, in order of appearance."""
    neutral: tuple[str, ...]
    """Folded neutral segments ("radio edit", "remastered 2011")."""
    extras: tuple[str, ...]
    """Folded segments that are neither: part of the title that is often dropped."""
    featured: tuple[str, ...]
    """Folded names credited with feat./ft./with inside the title."""

    @property
    def full(self) -> str:
        """Base plus distinguishing and extra segments: the title without neutral noise."""
        parts = [self.base, *(_version_text(v) for v in self.versions), *self.extras]
        return " ".join(p for p in parts if p)

    @property
    def kinds(self) -> frozenset[str]:
        """The set of distinguishing version kinds."""
        return frozenset(v.kind for v in self.versions)


@dataclass(frozen=True, slots=True)
class ArtistCredit:
    """An artist field split into folded names."""

    full: str
    """The whole credit folded, featured part removed, leading "the" dropped."""
    main: tuple[str, ...]
    """Main artists, primary first."""
    featured: tuple[str, ...]
    """Featured artists."""

    @property
    def primary(self) -> str:
        """The first main artist (empty when the field was empty)."""
        return self.main[0] if self.main else ""


def _version_text(version: Version) -> str:
    return f"{version.qualifier or ''} {version.kind}".strip()


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _clean(text: str) -> str:
    """Accent-free, case-folded text that keeps punctuation (segments are parsed from it)."""
    text = text.translate(_DASHES).translate(_QUOTES).translate(_DQUOTES)
    return _strip_accents(text.casefold().translate(_SPECIAL))


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Case-fold, strip accents, spell ``&``/``+`` as "and", drop punctuation, collapse spaces."""
    text = _clean(text)
    # Apostrophes join words ("don't" = "dont"); other punctuation separates them.
    text = text.replace("'", "")
    # Stylised letters: "P!nk" = "Pink", "Ke$ha" = "Kesha", "A$AP" = "ASAP".
    text = re.sub(r"(?<=\w)!(?=\w)", "i", text)
    text = re.sub(r"\$(?=\w)|(?<=\w)\$", "s", text)
    text = re.sub(r"(?<=\w)\.(?=\w\.)|(?<=\b\w)\.", "", text)  # "r.e.m." -> "rem"
    text = re.sub(r"\s*[&+]\s*", " and ", text)
    return " ".join(_NON_WORD.sub(" ", text).replace("_", " ").split())


@lru_cache(maxsize=65536)
def normalize_artist(name: str) -> str:
    """Fold an artist name and drop a leading "the" ("The Killers" = "Killers"), or a trailing
    one of a catalogue's inverted name ("Killers, The", as Discogs and library exports write)."""
    inverted = _INVERTED_THE.match(name)
    folded = fold(inverted.group(1) if inverted else name)
    if folded.startswith("the ") and len(folded) > 4:
        folded = folded[4:]
    return folded


def normalize_isrc(value: str | None) -> str | None:
    """Upper-case an ISRC and drop hyphens/spaces; None when it is not a well-formed ISRC."""
    if not value:
        return None
    isrc = re.sub(r"[\s-]", "", value).upper()
    return isrc if _ISRC.match(isrc) else None


def _split_names(text: str) -> tuple[str, ...]:
    """Split a list of names ("A, B & C") into normalised names.

    "X & The Y" is one band ("Selena Gomez & The Scene", "Florence + The Machine"), not X and Y.
    """
    names = []
    inverted = _INVERTED_THE.match(text)
    if inverted:
        text = inverted.group(1)  # "Killers, The" is one name
    for part in _NAME_SEP.split(_BAND_THE.sub(r"\1 and the ", text)):
        part = _FEAT.sub("", part.strip())
        name = normalize_artist(part)
        if name:
            names.append(name)
    return tuple(names)


def split_featured(artist: str) -> tuple[str, str]:
    """Split ``"A feat. B"`` (or ``"A (ft. B)"``) into ``("A", "B")``; ``(artist, "")`` if none."""
    match = _ARTIST_FEAT.search(artist)
    if match is None:
        return artist.strip(), ""
    rest = artist[match.end() :].strip().rstrip(")").strip()
    return artist[: match.start()].strip(), rest


@lru_cache(maxsize=65536)
def parse_artists(artist: str) -> ArtistCredit:
    """Split an artist field into main and featured names.

    "Tyler, The Creator" and "Dimitri Vegas & Like Mike" are one act each but split into two names
    here; matching therefore also compares the whole credit (``full``), never only the split names.
    """
    main_text, feat_text = split_featured(artist)
    return ArtistCredit(
        full=normalize_artist(main_text),
        main=_split_names(main_text),
        featured=_split_names(feat_text) if feat_text else (),
    )


# Label words a typo should not hide ("Remix" typed "Rmeix", "Remastered" as "Remasteed"). A
# missed version label is worse than a spurious one: the first makes a wrong match, the second
# only a missed one. Kind words come first so that they win over neutral look-alikes.
_LABEL_WORDS = tuple(
    dict.fromkeys(
        w
        for w in (*_KIND_ANYWHERE, "live", "cover", "sped", "speed", *NEUTRAL_WORDS, "remastered")
        if len(w) >= 4
    )
)


@lru_cache(maxsize=16384)
def _canonical_word(word: str) -> str:
    """The label word that ``word`` is a typo of, or ``word`` itself.

    One edit, two when both words have seven letters or more ("Remasteed"); four-letter labels
    take no substitutions: "love" is not a typo of "live", nor "remind" of "remixed".
    """
    if len(word) < 3 or word in _KIND_ANYWHERE or word in NEUTRAL_WORDS or word.isdigit():
        return word
    for label in _LABEL_WORDS:
        if abs(len(label) - len(word)) > 2:
            continue
        distance = _osa(word, label)
        limit = 2 if min(len(label), len(word)) >= 7 else 1
        if len(label) == 4 and len(word) == 4 and sorted(word) != sorted(label):
            limit = 0
        if distance <= limit:
            return label
    return word


def _canonical_words(words: list[str]) -> list[str]:
    # "Soed Up": a one-letter slip in "sped" is still "sped up" when "up" follows.
    words = [
        "sped" if i + 1 < len(words) and words[i + 1] == "up" and _osa(w, "sped") <= 1 else w
        for i, w in enumerate(words)
    ]
    return [_canonical_word(w) for w in words]


@lru_cache(maxsize=131072)
def _osa(a: str, b: str) -> int:
    """Optimal string alignment distance (edits with adjacent transpositions)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def _tokens_kind(words: list[str]) -> tuple[str, list[str]] | None:
    """Find the distinguishing kind a segment's words name, with the remaining words."""
    joined = " ".join(words)
    for phrase, kind in _KIND_PHRASES:
        if re.search(rf"\b{phrase}\b", joined):
            rest = re.sub(rf"\b{phrase}\b", " ", joined).split()
            return kind, rest
    for i, word in enumerate(words):
        if word in _KIND_ANYWHERE:
            return _KIND_ANYWHERE[word], words[:i] + words[i + 1 :]
    if _LIVE_AT.match(joined) or joined == "live":
        return "live", words[1:]
    if words and words[-1] in _KIND_AT_END:
        return _KIND_AT_END[words[-1]], words[:-1]
    if len(words) >= 2 and words[-2:] == ["live", "version"]:
        return "live", words[:-2]
    if words and words[-1] in _GENERIC_TAIL:
        qualifier = [w for w in words[:-1] if w not in NEUTRAL_WORDS and not _YEAR.match(w)]
        if qualifier:
            return _GENERIC_TAIL[words[-1]], words[:-1]
    return None


def _classify(segment: str) -> tuple[str, object]:
    """Classify a cleaned segment as ("feat", names), ("version", Version), ("neutral", text)
    or ("extra", text)."""
    stripped = segment.strip().strip("\"'").strip()
    if _FEAT.match(stripped):
        return "feat", _split_names(_FEAT.sub("", stripped))
    words = _canonical_words(fold(stripped).split())
    if not words:
        return "neutral", ""
    found = _tokens_kind(words)
    if found is not None:
        kind, rest = found
        qualifier = " ".join(w for w in rest if w not in NEUTRAL_WORDS and not _YEAR.match(w))
        return "version", Version(kind, qualifier)
    text = " ".join(words)
    if words[0] == "from" or any(w.startswith("remaster") for w in words):
        return "neutral", text
    if all(
        w in NEUTRAL_WORDS or _YEAR.match(w) or re.fullmatch(r"\d+(?:st|nd|rd|th)", w)
        for w in words
    ):
        return "neutral", text
    return "extra", text


@lru_cache(maxsize=65536)
def parse_title(title: str) -> ParsedTitle:
    """Split a title into base, distinguishing versions, neutral segments, extras and featured.

    ``"Strobe (Eric Prydz Remix) - Radio Edit"`` gives base ``"strobe"``, versions
    ``(Version("remix", "eric prydz"),)`` and neutral ``("radio edit",)``.
    """
    text = _clean(title).strip()
    segments: list[str] = []

    # Bracketed segments anywhere but at the very start: "(It Goes Like) Nanana" keeps its
    # leading bracket as part of the name. Repeat to peel nested brackets from the inside.
    def take(match: re.Match[str]) -> str:
        if match.start() == 0:
            return f" {match.group(1)} "
        segments.append(match.group(1))
        return " - "

    for _ in range(3):
        new = _BRACKETED.sub(take, text)
        if new == text:
            break
        text = new
    # A bare "feat. X" inside the title ("Title feat. X") is a credit, not part of the name.
    featured: list[str] = []
    bare_feat = _TITLE_FEAT_BARE.search(text)
    if bare_feat is not None:
        names, _, tail = bare_feat.group(1).partition(" - ")
        featured.extend(_split_names(names))
        text = text[: bare_feat.start()] + (f" - {tail}" if tail else "")
    parts = _DASH_SPLIT.split(text)
    base_raw = parts[0] if parts else ""
    # "Title -" left behind by bracket removal: strip trailing dashes.
    segments = [p for p in parts[1:] if p.strip(" -")] + segments

    versions: list[Version] = []
    neutral: list[str] = []
    extras: list[str] = []
    for segment in segments:
        # "From 'Frozen'/Soundtrack Version" and "Remix / Live" carry two labels in one segment.
        for piece in segment.split("/") if "/" in segment else [segment]:
            label, value = _classify(piece)
            if label == "feat":
                assert isinstance(value, tuple)
                featured.extend(value)
            elif label == "version":
                assert isinstance(value, Version)
                versions.append(value)
            elif label == "neutral":
                if value:
                    neutral.append(str(value))
            else:
                extras.append(str(value))

    base = fold(base_raw)
    base_words = base.split()
    # Brackets lost upstream: a strong keyword ending the bare title still marks the version.
    if base_words and base_words[-1] in _BARE_TAIL:
        kind = _BARE_TAIL[base_words[-1]]
        if kind not in {v.kind for v in versions}:
            versions.append(Version(kind, None))
    return ParsedTitle(
        base=base,
        versions=tuple(versions),
        neutral=tuple(neutral),
        extras=tuple(extras),
        featured=tuple(dict.fromkeys(featured)),
    )


def edit_distance(a: str, b: str) -> int:
    """Edit distance counting an adjacent swap as one edit (optimal string alignment)."""
    return _osa(a, b)


def split_artist_title(text: str) -> tuple[str, str] | None:
    """Split ``"Artist - Title"`` at the first spaced dash; None when there is none.

    Meant for inputs whose artist field is empty. The first dash wins, so
    ``"A - Song - Radio Edit"`` gives ``("A", "Song - Radio Edit")``.
    """
    parts = _ARTIST_TITLE_SEP.split(text.strip(), maxsplit=1)
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        return None
    return parts[0].strip(), parts[1].strip()
