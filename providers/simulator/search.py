"""Token search over the catalog, ranked by a simple relevance.

Relevance is a weighted Jaccard overlap of normalised tokens per field (title, artist, album, free
text), so the exact row ranks first and its remixes, live versions, radio edits and covers follow
as the distractors real search APIs return. Ties go to the more popular track.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from trackflow.providers.simulator.catalog import Track

_TOKEN_RE = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset({"the", "a", "an", "and", "of", "feat", "ft", "featuring", "to", "in", "on"})
WEIGHTS = {"title": 0.6, "artist": 0.3, "album": 0.1, "text": 1.0}


def fold(text: str) -> str:
    """Lower-case ``text`` and strip accents (``"Beyoncé"`` -> ``"beyonce"``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def tokens(text: str | None) -> frozenset[str]:
    """Normalised word tokens of ``text``; ``&`` counts as ``and``."""
    if not text:
        return frozenset()
    return frozenset(_TOKEN_RE.findall(fold(text).replace("&", " and ")))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Size of the intersection over size of the union; 0 when both are empty."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


class Hit(NamedTuple):
    """One search result."""

    track: Track
    """The matching catalog row."""
    score: float
    """Relevance 0..1 (1 = every token of every queried field matches exactly)."""


class SearchIndex:
    """Inverted index of title, artist and album tokens."""

    def __init__(self, tracks: Sequence[Track]) -> None:
        self._tracks = tracks
        self._fields: list[dict[str, frozenset[str]]] = []
        self._postings: dict[str, dict[str, list[int]]] = {
            "title": defaultdict(list),
            "artist": defaultdict(list),
            "album": defaultdict(list),
        }
        for i, t in enumerate(tracks):
            f = {"title": tokens(t.title), "artist": tokens(t.artist), "album": tokens(t.album)}
            self._fields.append(f)
            for name, toks in f.items():
                for tok in toks:
                    self._postings[name][tok].append(i)

    def _postings_for(self, field: str, toks: Iterable[str]) -> set[int]:
        toks = list(toks)
        useful = [t for t in toks if t not in STOPWORDS] or toks
        found: set[int] = set()
        fields = ("title", "artist", "album") if field == "text" else (field,)
        for name in fields:
            for tok in useful:
                found.update(self._postings[name].get(tok, ()))
        return found

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
        """Up to ``limit`` hits, best first.

        ``require`` names fields (of those queried) that must share at least one token with the
        row, like a field filter on Spotify or an ``AND`` clause on MusicBrainz; the other fields
        only add to the score.
        """
        query = {
            name: toks
            for name, toks in (
                ("title", tokens(title)),
                ("artist", tokens(artist)),
                ("album", tokens(album)),
                ("text", tokens(text)),
            )
            if toks
        }
        if not query:
            return []
        candidates: set[int] | None = None
        for name in require:
            if name in query:
                found = self._postings_for(name, query[name])
                candidates = found if candidates is None else candidates & found
        if candidates is None:
            candidates = set()
            for name, toks in query.items():
                candidates |= self._postings_for(name, toks)
        total_weight = sum(WEIGHTS[name] for name in query)
        hits: list[Hit] = []
        for i in candidates:
            f = self._fields[i]
            score = 0.0
            for name, toks in query.items():
                if name == "text":
                    doc = f["title"] | f["artist"] | f["album"]
                    # Free text need not mention the album: measure coverage of the query.
                    sim = len(toks & doc) / len(toks | (doc - f["album"]))
                else:
                    sim = jaccard(toks, f[name])
                score += WEIGHTS[name] * sim
            hits.append(Hit(self._tracks[i], round(score / total_weight, 4)))
        hits.sort(key=lambda h: (-h.score, -h.track.popularity, h.track.spotify_id))
        return hits[: max(limit, 0)]
