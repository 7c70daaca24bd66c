"""Pure parsing of track titles: the song's name, and what its suffixes say about the recording.

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
from dataclasses import dataclass
from functools import lru_cache

from trackflow.providers.normalize import FEAT_PREFIX, clean, fold, split_names

__all__ = ["NEUTRAL_WORDS", "ParsedTitle", "Version", "edit_distance", "parse_title"]

_TITLE_FEAT_BARE = re.compile(r"\s+(?:feat\.?|ft\.|featuring)\s+(.+)$", re.IGNORECASE)
_BRACKETED = re.compile(r"[\(\[\{]([^\(\)\[\]\{\}]*)[\)\]\}]")
_DASH_SPLIT = re.compile(r"\s+-\s+|\s+-(?=\s*$)")
# A dash spaced on one side only, as hand-typed lists write it ("Gold Dust  -Radio Edit"): a
# separator only when what follows is a version or neutral label, since "Ob-La-Di" and
# "Re- Hash" are names.
_ONE_SIDED_DASH = re.compile(r"^(.*?\S)(?:\s+-(?=\S)|(?<=\S)-\s+)(.+)$")
# Years ("Remastered 2011") are neutral; other numbers may name a remixer ("41 Edit").
_YEAR = re.compile(r"^(?:19|20)\d\d$")

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
    ("high and fast", "sped up"),  # "SNAP - High and Fast", the label's sped-up release
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

def _version_text(version: Version) -> str:
    return f"{version.qualifier or ''} {version.kind}".strip()


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
    if FEAT_PREFIX.match(stripped):
        return "feat", split_names(FEAT_PREFIX.sub("", stripped))
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
    text = clean(title).strip()
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
        featured.extend(split_names(names))
        text = text[: bare_feat.start()] + (f" - {tail}" if tail else "")
    parts = _DASH_SPLIT.split(text)
    one_sided = _ONE_SIDED_DASH.match(parts[-1]) if parts else None
    if one_sided is not None and _classify(one_sided.group(2))[0] in ("version", "neutral"):
        parts[-1:] = [one_sided.group(1), one_sided.group(2)]
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

