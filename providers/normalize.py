"""Pure text normalisation for track matching: fold names, split artist credits and fields.

Everything here is a pure function of its arguments (cached where a worker sees the same strings
again and again). :mod:`providers.titles` parses the version suffixes of titles on top of it, and
:mod:`providers.matching` builds on both; the producer CLI uses :func:`split_artist_title` for
inputs that carry "Artist - Title" in one field.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "FEAT_PREFIX",
    "ArtistCredit",
    "clean",
    "fold",
    "normalize_artist",
    "normalize_isrc",
    "parse_artists",
    "split_artist_title",
    "split_featured",
    "split_names",
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
FEAT_PREFIX = re.compile(r"^(?:feat\.?|ft\.?|featuring|with)\s+", re.IGNORECASE)
# In an artist field "with" is too common inside real names to treat as a credit separator.
_ARTISTFEAT_PREFIX = re.compile(
    r"\s+(?:feat\.?|ft\.|featuring)\s+|\s*\((?:feat\.?|ft\.?|featuring)\s+", re.IGNORECASE
)
# "with" is not a separator here: a part that starts with it has it stripped by _FEAT instead.
# Not " x ": it joins DJ collaborations but also ends names ("Lil Nas X Jr.", "Malcolm X").
# Protects "& The" from _NAME_SEP: "and" between words is a separator, "and the" is not.
_BAND_THE = re.compile(r"(\w)\s*(?:&|\+|\band\b)\s*the\s+", re.IGNORECASE)
_NAME_SEP = re.compile(
    r"\s*(?:,|&|\+|;|/|\band\b(?!\s+the\b)|\bvs\b\.?|\bfeat\b\.?|\bft\b\.?|\bfeaturing\b)\s*",
    re.IGNORECASE,
)
_INVERTED_THE = re.compile(r"^\s*(.+?),\s*the\s*$", re.IGNORECASE)
_ARTIST_TITLE_SEP = re.compile(r"\s+[-\u2013\u2014]\s+")
ISRC_PATTERN = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")
"""A normalised ISRC: country, registrant, year and designation (CC XXX YY NNNNN), no
separators. The one ISRC rule: input validation, provider answers and the simulator use it."""


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



def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def clean(text: str) -> str:
    """Accent-free, case-folded text that keeps punctuation (segments are parsed from it)."""
    text = text.translate(_DASHES).translate(_QUOTES).translate(_DQUOTES)
    return _strip_accents(text.casefold().translate(_SPECIAL))


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Case-fold, strip accents, spell ``&``/``+`` as "and", drop punctuation, collapse spaces."""
    text = clean(text)
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
    return isrc if ISRC_PATTERN.match(isrc) else None


def split_names(text: str) -> tuple[str, ...]:
    """Split a list of names ("A, B & C") into normalised names.

    "X & The Y" is one band ("Selena Gomez & The Scene", "Florence + The Machine"), not X and Y.
    """
    names = []
    inverted = _INVERTED_THE.match(text)
    if inverted:
        text = inverted.group(1)  # "Killers, The" is one name
    for part in _NAME_SEP.split(_BAND_THE.sub(r"\1 and the ", text)):
        part = FEAT_PREFIX.sub("", part.strip())
        name = normalize_artist(part)
        if name:
            names.append(name)
    return tuple(names)


def split_featured(artist: str) -> tuple[str, str]:
    """Split ``"A feat. B"`` (or ``"A (ft. B)"``) into ``("A", "B")``; ``(artist, "")`` if none."""
    match = _ARTISTFEAT_PREFIX.search(artist)
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
        main=split_names(main_text),
        featured=split_names(feat_text) if feat_text else (),
    )



def named(artist: str, title: str) -> tuple[str, str]:
    """``(artist, title)`` as given, or split from ``"Artist - Title"`` when the artist is blank."""
    if artist.strip():
        return artist.strip(), title
    split = split_artist_title(title)
    return split if split is not None else ("", title)


def split_artist_title(text: str) -> tuple[str, str] | None:
    """Split ``"Artist - Title"`` at the first spaced dash; None when there is none.

    Meant for inputs whose artist field is empty. The first dash wins, so
    ``"A - Song - Radio Edit"`` gives ``("A", "Song - Radio Edit")``.
    """
    parts = _ARTIST_TITLE_SEP.split(text.strip(), maxsplit=1)
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        return None
    return parts[0].strip(), parts[1].strip()
