"""Token search over the catalog, ranked by a simple relevance.

Relevance is a weighted Jaccard overlap of normalised tokens per field (title, artist, album, free
text), so the exact row ranks first and its remixes, live versions, radio edits and covers follow
as the distractors real search APIs return. Ties go to the more popular track.

A field search scores only the candidates that can still reach the top ``limit``: it counts each
candidate's matching tokens from the postings (one C-level count over the posting lists), visits
candidates by that count, best first, and stops once the best score the remaining ones could
reach is below the ``limit``-th score found. The result is the same as scoring every candidate,
but a query's cost no longer grows with the catalog: a common title word is in a sixth of a
generated catalog, and scoring all of those rows took ~70 ms per query at 40,000 rows, which
saturated a simulator serving three workers.

Only MusicBrainz forgives misspellings here, and only where a query asks for it with a fuzzy term
(:meth:`SearchIndex.fuzzy`): its search is Lucene, whose documented query syntax
(https://musicbrainz.org/doc/Indexed_Search_Syntax, "Fuzzy Searches") matches ``roam~`` to terms
within an edit distance (Lucene's FuzzyQuery: at most 2 edits, an adjacent swap counting as one).
Spotify and Deezer document field filters, not how much of a misspelling their searches forgive;
a simulator more forgiving than the real service would hide misses, so here their words match
exactly.
"""

from __future__ import annotations

import heapq
import itertools
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from trackflow.providers.titles import edit_distance

if TYPE_CHECKING:
    from trackflow.providers.simulator.catalog import Track

_TOKEN_RE = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset({"the", "a", "an", "and", "of", "feat", "ft", "featuring", "to", "in", "on"})
WEIGHTS = {"title": 0.6, "artist": 0.3, "album": 0.1, "text": 1.0}
#: candidate sets this small are scored whole (cheaper than ranking the postings)
SCORE_ALL_BELOW = 400
#: Lucene's FuzzyQuery supports at most this many edits.
MAX_EDITS = 2
#: and expands a fuzzy term to at most this many index terms (its ``maxExpansions``)
MAX_EXPANSIONS = 50


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


class _FieldSets:
    """One field's distinct token sets: their rows, and by size the sets holding a token."""

    def __init__(self) -> None:
        self.ids: dict[frozenset[str], int] = {}
        self.rows: list[list[int]] = []
        #: set size -> token -> ids of the sets of that size holding the token
        self.postings: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))

    def add(self, toks: frozenset[str], row: int) -> None:
        sid = self.ids.get(toks)
        if sid is None:
            sid = self.ids[toks] = len(self.rows)
            self.rows.append([])
            for tok in toks:
                self.postings[len(toks)][tok].append(sid)
        self.rows[sid].append(row)

    def most_similar(self, toks: frozenset[str]) -> Iterator[tuple[float, int]]:
        """(jaccard, set id) of the sets sharing a token with ``toks``, most similar first.

        Within one size the similarity grows with the shared count, which C counts and sorts;
        the sizes are merged lazily, so only the sets a search reaches cost Python time.
        """
        q = len(toks)
        streams = []
        for size, postings in self.postings.items():
            shared = Counter(itertools.chain.from_iterable(postings.get(t, ()) for t in toks))
            if shared:
                streams.append((size, iter(shared.most_common())))
        heap: list[tuple[float, int, int, Iterator[tuple[int, int]]]] = []
        for size, stream in streams:
            for sid, n in stream:
                heap.append((-n / (q + size - n), sid, size, stream))
                break
        heapq.heapify(heap)
        while heap:
            neg, sid, size, stream = heap[0]
            yield -neg, sid
            for nxt, n in stream:
                heapq.heapreplace(heap, (-n / (q + size - n), nxt, size, stream))
                break
            else:
                heapq.heappop(heap)


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
        # The distinct token sets of each field (a small vocabulary: a generated catalog of
        # 40,000 rows has ~12,000 distinct titles over ~110 title words), the rows holding each,
        # and which sets hold a token: a query scores a set once, not once per row.
        self._sets: dict[str, _FieldSets] = {name: _FieldSets() for name in self._postings}
        for i, t in enumerate(tracks):
            f = {"title": tokens(t.title), "artist": tokens(t.artist), "album": tokens(t.album)}
            self._fields.append(f)
            for name, toks in f.items():
                for tok in toks:
                    self._postings[name][tok].append(i)
                self._sets[name].add(toks, i)

    def fuzzy(self, field: str, term: str, max_edits: int = MAX_EDITS) -> list[str]:
        """The indexed tokens of ``field`` within ``max_edits`` (at most 2) of ``term``, closest
        first, as a Lucene fuzzy term ``term~max_edits`` expands."""
        folded = tokens(term)
        if len(folded) != 1:
            return sorted(folded)
        return list(self._fuzzy(field, next(iter(folded)), max(0, min(max_edits, MAX_EDITS))))

    @lru_cache(maxsize=4096)  # noqa: B019 - the index lives as long as the simulator
    def _fuzzy(self, field: str, term: str, max_edits: int) -> tuple[str, ...]:
        found = []
        for token in self._postings[field]:
            if abs(len(token) - len(term)) <= max_edits:
                distance = edit_distance(token, term)
                if distance <= max_edits:
                    found.append((distance, -len(self._postings[field][token]), token))
        return tuple(token for _, _, token in sorted(found)[:MAX_EXPANSIONS])

    def _candidates(self, query: dict[str, frozenset[str]], require: Sequence[str]
                    ) -> set[int]:
        """Rows holding every required field's tokens, or, with none required, any token."""
        candidates: set[int] | None = None
        for name in require:
            if name in query:
                found = self._postings_for(name, query[name])
                candidates = found if candidates is None else candidates & found
        if candidates is None:
            candidates = set()
            for name, toks in query.items():
                candidates |= self._postings_for(name, toks)
        return candidates

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
        candidates = self._candidates(query, require)
        if "text" not in query:
            return self._top(query, candidates, limit)
        return self._score_all(query, candidates, limit)

    def _score(self, query: dict[str, frozenset[str]], i: int, total_weight: float) -> float:
        f = self._fields[i]
        score = 0.0
        for name, toks in query.items():
            score += WEIGHTS[name] * jaccard(toks, f[name])
        return round(score / total_weight, 4)

    def _top(self, query: dict[str, frozenset[str]], candidates: set[int], limit: int
             ) -> list[Hit]:
        """The top ``limit`` of a title/artist/album query, exactly as :meth:`_score_all` ranks
        them, scoring only the rows that can still make it (Fagin's threshold algorithm)."""
        if limit <= 0:
            return []
        if len(candidates) <= SCORE_ALL_BELOW:
            return self._score_all(query, candidates, limit)
        total_weight = sum(WEIGHTS[name] for name in query)
        # Per queried field: its distinct token sets that share a token with the query, best
        # similarity first. A set holds each token once, so a count over the set postings is
        # the size of the intersection, and jaccard is |q & d| / (|q| + |d| - |q & d|).
        fields = [(WEIGHTS[name], self._sets[name], self._sets[name].most_similar(toks))
                  for name, toks in query.items()]
        heads = [next(similar, None) for _, _, similar in fields]
        seen: set[int] = set()
        scored: list[tuple[float, int]] = []
        kth: list[float] = []  # min-heap of the best ``limit`` scores so far
        while True:
            # A row none of whose sets was reached yet scores at most this: in every field its
            # set is no more similar than the next one in that field's order.
            worth = [0.0 if head is None else w * head[0]
                     for (w, _, _), head in zip(fields, heads, strict=True)]
            best = max(worth)
            if best == 0.0:
                break  # every row sharing a token with the query was reached
            if len(kth) == limit and round(sum(worth) / total_weight + 1e-9, 4) < kth[0]:
                break  # no row left can reach the top ``limit``
            j = worth.index(best)
            _, sets, similar = fields[j]
            head = heads[j]
            assert head is not None
            heads[j] = next(similar, None)
            for i in sets.rows[head[1]]:
                if i in seen or i not in candidates:
                    continue
                seen.add(i)
                score = self._score(query, i, total_weight)
                scored.append((score, i))
                if len(kth) < limit:
                    heapq.heappush(kth, score)
                elif score > kth[0]:
                    heapq.heapreplace(kth, score)
        hits = [Hit(self._tracks[i], score) for score, i in scored]
        hits.sort(key=lambda h: (-h.score, -h.track.popularity, h.track.spotify_id))
        return hits[:limit]

    def _score_all(self, query: dict[str, frozenset[str]], candidates: set[int], limit: int
                   ) -> list[Hit]:
        """Score every candidate (free-text queries, and the reference for :meth:`_top`)."""
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
