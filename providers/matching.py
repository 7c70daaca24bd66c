"""Score provider candidates against a query; accept one only when it is surely the same recording.

A wrong match is worse than no match: a wrong ISRC or BPM written to ``tracks.enriched`` spreads to
every consumer, while a missing one is only retried later. So the scorer has *vetoes* besides
weights, and :func:`best_match` refuses ambiguous answers.

Score (``MatchScore.total``, 0..1):

* Text and duration: a weighted mean of title similarity (weight ``TITLE_WEIGHT`` = 3), artist
  similarity (``ARTIST_WEIGHT`` = 3) and duration agreement (``DURATION_WEIGHT`` = 2). Duration is
  1 within ``DURATION_GRACE_S`` (10 s), falls linearly to 0 at ``DURATION_MAX_S`` (30 s), and is
  left out of the mean when either side lacks it (missing is neutral, not evidence). The weights
  follow beets (title 3, artist 2, length 2) with artist raised to 3: the benchmark's hardest
  distractors are the same title by another artist. A perfect title and artist with a duration
  30 s off give 6/8 = 0.75, below the threshold: a length that far off is another edit.
* Vetoes cap the total at ``VETO_CAP`` whatever the mean: title below ``TITLE_FLOOR`` (0.75),
  artist below ``ARTIST_FLOOR`` (0.75), a distinguishing version that differs ("Strobe" vs
  "Strobe (Eric Prydz Remix)", live vs studio, see :mod:`providers.normalize`), no artist at all
  in the query, and different ISRCs on both sides. Floors stop a perfect title plus duration from
  buying a wrong artist ("Bon Jovi" vs "Jon Bon Jovi" scores 0.55 on artist).
* Identity: the same ISRC (or the same Spotify/MusicBrainz id, or a candidate found by ISRC lookup
  for the query's ISRC) gives ``0.95 + 0.05 * mean`` and overrides the vetoes, unless title and
  artist are both below 0.5 (a mistyped ISRC): then ``VETO_CAP``.
* The provider's own relevance (``Candidate.provider_score``) never enters the total; it only
  orders candidates whose totals are equal.

Acceptance: :func:`best_match` takes the best candidate when its total reaches ``THRESHOLD``
(0.82). When another candidate is within ``AMBIGUITY_MARGIN`` (0.03), also above the threshold,
and is a different recording, the one with stronger evidence (ISRC agreement over duration within
the grace over nothing) wins; with equal evidence the answer is refused as ambiguous.

A second look (``second_look=True``) accepts a candidate from wider queries made for a record the
first query missed (an artist's tracks, a title's tracks by anyone, fuzzy terms; see
``SecondLook.lookup_again``). Such a list holds the artist's other songs and other artists'
songs of the title, and a typo makes the truth look like a neighbour of them, so the rule is
stricter. Names are scored for typos: two names of as many words within :func:`typo_edits` of
each other, their spaces taken out, score ``1 - edits / length``, so "Newr Let Go" is 0.8 of
"Never Let Go" (2 edits in 10 letters) where the first look's word rule gives 0.57, and a moved
space ("Girls aWn tGirls", "danie lcaesar") is one swap; a word more or less is never a typo
("Billie Eilish Jr." is another act). Two edits in fewer than ten letters stay below 0.8:
"Yankee 150" and "Yandel 150" are two songs of one artist. Then the title must reach
``SECOND_LOOK_TITLE`` and the artist ``SECOND_LOOK_ARTIST_TYPO``; a typo on both sides (artist
below ``SECOND_LOOK_ARTIST`` and title below ``SECOND_LOOK_INTACT``) is taken only with both
durations known and within the grace; the duration must be within the grace whenever both sides
know it; the candidate must beat every other recording in the list by ``SECOND_LOOK_MARGIN``,
whatever that one scored; and a mistyped title shorter than ``SECOND_LOOK_MIN_LETTERS`` letters
is not matched this way: one edit in "Love" is "Lover", another song. A length vouches for
more: when the query gives one, a list the rule refuses is read again with Lucene's ``AUTO``
budgets (one edit from three letters, two from six), the title's floor instead of 0.8 and
titles from ``VOUCHED_MIN_LETTERS`` letters, and its pick taken only with the durations
agreeing ("Sars" for Papa Roach's "Scars" of the same length). The artist keeps its 0.8 there:
at the artist's floor (0.75) "Jim Jones" was taken for an absent "Jax Jones" song of the same
title and length.

How the numbers were chosen: ``python tests/bench/matching_bench.py`` builds noisy scraper-style
queries from the real catalog CSVs with ranked distractor lists (remixes, live and acoustic
versions, covers, same title by other artists and near-names, other songs by the same artist,
and queries whose true recording is absent). On seed 1 (5,308 queries) it gave: threshold 0.82
with floors 0.75 -> precision 0.998, recall 0.965; threshold 0.75 or 0.9 -> same precision,
recall 0.965 / 0.959; floors 0.7 -> recall 0.971, floors 0.8 -> 0.958, precision unchanged. The
remaining errors there are catalog duplicates and typos inside version labels, which no
threshold separates. The floors stay at 0.75 rather than 0.7 as margin for near-names the
benchmark does not generate ("Love" vs "Love Me" scores 0.61 on title).
Those figures are from the bench before it named its typo kinds and took the truth out of the
first list where a strict search would miss it (a title mistyped in every distinctive word, an
artist in every word). On its present cases (seeds 1, 2, 3; 5,308 queries each) the first look
gives recall 0.840-0.843 and the second look raises it to 0.969, 0.970 and 0.971 (508-522
recovered from ~1,960 second looks, none wrong; one "false positive" of seed 3 is the catalog's
own duplicate, "ýýchame La Culpa" for "Échame La Culpa"), precision 0.9977-0.9990. Of the 115-124
misses left per seed, 28-30 are mistyped titles under five letters, 22-30 titles with more than
one edit in five letters, 40-48 mistyped artists (about half names under five letters with the
title intact, "Kgyo", "Alon", half with the title mistyped too), 12-20 typos inside version
labels, credits moved between artist and title and catalog duplicates. Loosening the rule to
take them (edits from three letters, two edits from six, titles under five letters, a floor of
0.85 within the budget) reached recall 0.982-0.987 on the cases before the strict artist filter
but matched an absent track wrongly in each seed ("Jax Jones" for "Jim Jones", "Lil Nas X" for
"Lil Nas, Jr.", "Yankee 150" for "Yandel 150").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

from trackflow.providers.base import Candidate, TrackQuery
from trackflow.providers.normalize import (
    ArtistCredit,
    named,
    normalize_artist,
    normalize_isrc,
    parse_artists,
    split_artist_title,
)
from trackflow.providers.titles import ParsedTitle, Version, edit_distance, parse_title

__all__ = [
    "AMBIGUITY_MARGIN",
    "SECOND_LOOK_MARGIN",
    "THRESHOLD",
    "Match",
    "MatchScore",
    "best_match",
    "rank",
    "score",
    "similarity",
    "typo_edits",
]

#: Accept a candidate whose total reaches this.
THRESHOLD = 0.82
#: Weights of the weighted mean (duration only when both sides know it).
TITLE_WEIGHT = 3.0
ARTIST_WEIGHT = 3.0
DURATION_WEIGHT = 2.0
#: Duration difference (seconds) that costs nothing, and the one that costs everything.
DURATION_GRACE_S = 10.0
DURATION_MAX_S = 30.0
#: Below these part scores the candidate is rejected whatever the other parts say.
TITLE_FLOOR = 0.75
ARTIST_FLOOR = 0.75
#: The total of a vetoed candidate.
VETO_CAP = 0.3
#: Two candidates within this of each other count as a tie.
AMBIGUITY_MARGIN = 0.03
#: Cost of each word with no counterpart on the other side: in a title ("Love" vs "Love Me")
#: and, higher, in an artist name, where one extra word makes another act ("Jon Bon Jovi").
TITLE_WORD_PENALTY = 0.15
ARTIST_WORD_PENALTY = 0.25
#: Cost of each number with no counterpart ("We Come 1" vs "We Come 2" is another song).
NUMBER_PENALTY = 0.25
#: A subtitle present on one side only ("A Bar Song (Tipsy)" vs "A Bar Song").
EXTRA_FACTOR = 0.96
#: A second look's acceptance (see the module docstring).
SECOND_LOOK_ARTIST = 0.9
SECOND_LOOK_TITLE = 0.8
#: A second look's mistyped artist; with a mistyped title too (the title below
#: ``SECOND_LOOK_INTACT``), the durations must be known and agree.
SECOND_LOOK_ARTIST_TYPO = 0.8
SECOND_LOOK_INTACT = 0.97
SECOND_LOOK_MARGIN = 0.08
SECOND_LOOK_MIN_LETTERS = 5
#: With a length that agrees: the title's floor instead of ``SECOND_LOOK_TITLE``, this many
#: letters, and :func:`typo_edits`' wider budgets.
VOUCHED_MIN_LETTERS = 3
#: How :func:`score` reads typos: not at all (the first look), by the second look's budgets,
#: or by the wider ones a length that agrees allows.
NO_TYPOS, TYPOS, VOUCHED_TYPOS = 0, 1, 2


@dataclass(frozen=True, slots=True)
class MatchScore:
    """How well one candidate fits a query."""

    total: float
    """Confidence 0..1 that the candidate is the queried recording."""
    title: float
    """Title similarity 0..1."""
    artist: float
    """Artist similarity 0..1 (0 when the query has no artist)."""
    duration: float | None
    """Duration agreement 0..1; None when either side lacks a duration."""
    identity: bool | None
    """True: same ISRC or id; False: different ISRCs; None: nothing to compare."""
    versions_agree: bool
    """False when a distinguishing version (remix, live...) differs."""
    reasons: tuple[str, ...] = ()
    """Why the total was capped or raised, in plain words."""


@dataclass(frozen=True, slots=True)
class Match:
    """An accepted candidate."""

    candidate: Candidate
    """The candidate as the provider returned it."""
    score: MatchScore
    """Its score."""
    index: int
    """Its position in the provider's list."""

    @property
    def confidence(self) -> float:
        """The match confidence recorded with every field filled from this candidate."""
        return self.score.total


def _words_close(a: str, b: str) -> bool:
    """Whether two words are the same word up to a typo (numbers must be equal)."""
    if a == b:
        return True
    short, long = sorted((len(a), len(b)))
    if long < 3 or long - short > 2 or any(c.isdigit() for c in a + b):
        return False
    return edit_distance(a, b) <= (1 if short < 8 else 2)


def _unmatched(words_a: list[str], words_b: list[str], word_penalty: float) -> float:
    """Penalty for the words of either side with no counterpart on the other.

    Pairs are one-to-one, exact pairs first, so "Jon Bon Jovi" vs "Bon Jovi" leaves "jon" alone
    (it cannot also pass for a typo of the "bon" already paired) and "Pt. 2 Pt. 2" vs "Pt. 2"
    leaves one "pt 2" over.
    """
    left_a, left_b = list(words_a), list(words_b)
    for word in words_a:
        if word in left_b:
            left_a.remove(word)
            left_b.remove(word)
    for word in list(left_a):
        partner = next((o for o in left_b if _words_close(word, o)), None)
        if partner is not None:
            left_a.remove(word)
            left_b.remove(partner)
    joined_a, joined_b = "".join(words_a), "".join(words_b)
    penalty = 0.0
    for word, other_joined in [(w, joined_b) for w in left_a] + [(w, joined_a) for w in left_b]:
        # Split or joined words ("dead mau5" vs "deadmau5") are present, just spaced differently.
        if len(word) >= 4 and not word.isdigit() and word in other_joined:
            continue
        if word.isdigit():
            penalty += NUMBER_PENALTY
        else:
            # A lone letter ("Wait for U") says less than a word.
            penalty += word_penalty / 2 if len(word) == 1 else word_penalty
    return penalty


@lru_cache(maxsize=131072)
def similarity(a: str, b: str, word_penalty: float = TITLE_WORD_PENALTY,
               typos: int = NO_TYPOS) -> float:
    """Similarity 0..1 of two folded strings: character ratio minus a cost per unmatched word.

    ``typos`` (a second look's, ``TYPOS`` or ``VOUCHED_TYPOS``): a string of as many words as
    the other and within :func:`typo_edits` of it, its spaces aside, scores
    ``1 - edits / length`` however its words were broken by the typos ("danie lcaesar" is one
    swap from "daniel caesar").
    """
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    joined_a, joined_b = a.replace(" ", ""), b.replace(" ", "")
    if joined_a == joined_b:
        return 0.97
    ratio = SequenceMatcher(None, a, b, autojunk=False).ratio()
    # SequenceMatcher scores swapped letters poorly ("rivresdie" vs "riverside" = 0.56); the
    # edit distance is fairer to typos. Only computed where a typo is plausible: it is slower.
    if ratio < 0.9 and abs(len(a) - len(b)) <= 3 and max(len(a), len(b)) <= 40:
        ratio = max(ratio, 1.0 - edit_distance(a, b) / max(len(a), len(b)))
    plain = max(0.0, ratio - _unmatched(a.split(), b.split(), word_penalty))
    if not typos or a.count(" ") != b.count(" "):
        return plain  # a word more or less is another name or title, not a typo
    edits = typo_edits(joined_a, joined_b, vouched=typos == VOUCHED_TYPOS)
    return plain if edits is None else max(plain, 1.0 - edits / max(len(joined_a), len(joined_b)))


def typo_edits(a: str, b: str, *, vouched: bool = False) -> int | None:
    """The edits (an adjacent swap is one) between two unspaced strings when they are few
    enough to be typos of one another, else None.

    On the shorter string: none below 5 characters ("Love" and "Lover" are two songs), one up to
    7, two from 8; ``vouched`` (a length that agrees vouches for the match), Lucene's fuzzy
    ``AUTO``: one from 3 characters, two from 6. Numbers must be equal: "Pt. 2" and "Pt. 3" are
    one edit apart and two songs.
    """
    short, long = sorted((len(a), len(b)))
    if vouched:
        allowed = 0 if short < 3 else 1 if short < 6 else 2
    else:
        allowed = 0 if short < 5 else 1 if short < 8 else 2
    if allowed == 0 or long - short > allowed or long > 60:
        return None
    if re.findall(r"\d+", a) != re.findall(r"\d+", b):
        return None
    edits = edit_distance(a, b)
    return edits if edits <= allowed else None


def _artist_name_similarity(a: str, b: str, typos: int = NO_TYPOS) -> float:
    return similarity(a, b, ARTIST_WORD_PENALTY, typos)


def _title_similarity(q: ParsedTitle, c: ParsedTitle, typos: int = NO_TYPOS) -> float:
    base = similarity(q.base, c.base, typos=typos)
    if q.extras != c.extras:
        # A subtitle on one side only is usually dropped by a scraper ("A Bar Song (Tipsy)"),
        # unless it numbers a part ("(Part 2)"). Two different subtitles are two different
        # titles: then only the whole strings decide.
        one_sided = q.extras if not c.extras else c.extras if not q.extras else ()
        numbered = any(ch.isdigit() for extra in one_sided for ch in extra)
        base = base * EXTRA_FACTOR if one_sided and not numbered else 0.0
    return max(base, similarity(q.full, c.full, typos=typos))


def _versions_agree(q: Sequence[Version], c: Sequence[Version]) -> bool:
    """Same distinguishing kinds, and the same qualifiers (remixer, venue) unless one is unknown.

    "Remix" and "Nirvana Remix" differ: an unnamed remix is the official one, not any remix.
    """
    if {v.kind for v in q} != {v.kind for v in c}:
        return False
    for qv in q:
        others = [cv.qualifier for cv in c if cv.kind == qv.kind]
        if qv.qualifier is None or any(o is None for o in others):
            continue
        if not any(similarity(qv.qualifier, o) >= 0.8 for o in others if o is not None):
            return False
    return True


def _artist_similarity(
    q: ArtistCredit, q_feat: tuple[str, ...], c: ArtistCredit, c_feat: tuple[str, ...],
    typos: int = NO_TYPOS,
) -> float:
    """Artist similarity from the whole credit or the primary artist, whichever is better.

    The primary-artist path lets "Macklemore" match "Macklemore & Ryan Lewis" and Spotify's
    "Calvin Harris, Rihanna" match "Calvin Harris feat. Rihanna"; extra names cost a little.
    """
    best = _artist_name_similarity(q.full, c.full, typos)
    q_all, c_all = (*q.main, *q_feat), (*c.main, *c_feat)
    primary = _artist_name_similarity(q.primary, c.primary, typos)
    if primary > best:
        q_extra = [n for n in q.main[1:] if not _credited(n, c_all)]
        c_extra = [n for n in c.main[1:] if not _credited(n, q_all)]
        # Extra names on one side only are an incomplete credit ("Macklemore" vs "Macklemore &
        # Ryan Lewis"); names on both sides that the other lacks are another act
        # ("Dimitri Vegas & Like Mike II"): then the whole credit decides.
        if not (q_extra and c_extra):
            best = max(best, primary - 0.03 * min(len(q_extra) + len(c_extra), 3))
    if q.primary != c.primary and q.primary in c_all and c.primary in q_all:
        best = max(best, 0.9)  # the same credits listed in another order
    if q_feat and c_feat and not set(q_feat) & set(c_feat):
        best *= 0.9  # both name a featured artist, and not the same one
    return best


def _credited(name: str, names: Sequence[str]) -> bool:
    return any(_artist_name_similarity(name, other) >= 0.85 for other in names)


def _duration_agreement(query_ms: int | None, candidate_ms: object) -> float | None:
    if not query_ms or not isinstance(candidate_ms, int | float) or candidate_ms <= 0:
        return None
    diff = abs(query_ms - float(candidate_ms)) / 1000.0
    if diff <= DURATION_GRACE_S:
        return 1.0
    if diff >= DURATION_MAX_S:
        return 0.0
    return 1.0 - (diff - DURATION_GRACE_S) / (DURATION_MAX_S - DURATION_GRACE_S)


def _identity(query: TrackQuery, candidate: Candidate) -> bool | None:
    for field in ("spotify_id", "musicbrainz_recording_id"):
        q_id, c_id = getattr(query, field), candidate.get(field)
        if q_id and c_id and q_id == c_id:
            return True
    q_isrc = normalize_isrc(query.isrc)
    c_isrc = normalize_isrc(candidate.get("isrc"))
    if q_isrc and c_isrc:
        return q_isrc == c_isrc
    if q_isrc and candidate.via == "isrc":
        return True  # the provider found it by looking up this very ISRC
    return None


def _readings(artist: str, title: str) -> list[tuple[str, str]]:
    """The ways to read an (artist, title) pair: as given, and "Artist - Title" split."""
    readings = [(artist, title)]
    split = split_artist_title(title)
    if split is not None:
        left, right = split
        if not artist.strip():
            readings.append(split)
        elif normalize_artist(left) == normalize_artist(artist):
            readings.append((artist, right))  # "Daft Punk" / "Daft Punk - One More Time"
    return readings


def _score_text(
    q_artist: str, q_title: str, c_artist: str, c_title: str, typos: int = NO_TYPOS
) -> tuple[float, float, bool]:
    qt, ct = parse_title(q_title), parse_title(c_title)
    qa, ca = parse_artists(q_artist), parse_artists(c_artist)
    q_feat = tuple(dict.fromkeys(qa.featured + qt.featured))
    c_feat = tuple(dict.fromkeys(ca.featured + ct.featured))
    title = _title_similarity(qt, ct, typos)
    artist = _artist_similarity(qa, q_feat, ca, c_feat, typos) if qa.full else 0.0
    return title, artist, _versions_agree(qt.versions, ct.versions)


def score(query: TrackQuery, candidate: Candidate, *, typos: int = NO_TYPOS) -> MatchScore:
    """Score one candidate against the query (pure; see the module docstring for the rules).

    ``typos`` (``TYPOS``, ``VOUCHED_TYPOS``): titles and artist names a few typos apart score
    as near-copies (:func:`typo_edits`), for a second look's list."""
    c_artist = str(candidate.get("artist") or "")
    c_title = str(candidate.get("title") or "")
    best: tuple[float, float, bool] = (0.0, 0.0, False)
    q_readings = _readings(query.artist or "", query.title or "")
    has_artist = any(parse_artists(artist).full for artist, _ in q_readings)
    for q_artist, q_title in q_readings:
        for ca, ct in _readings(c_artist, c_title):
            parts = _score_text(q_artist, q_title, ca, ct, typos)
            if parts[0] + parts[1] + parts[2] > best[0] + best[1] + best[2]:
                best = parts
    title, artist, versions_agree = best
    duration = _duration_agreement(query.duration_ms, candidate.get("duration_ms"))
    identity = _identity(query, candidate)

    weighted = TITLE_WEIGHT * title + ARTIST_WEIGHT * artist
    weights = TITLE_WEIGHT + ARTIST_WEIGHT
    if duration is not None:
        weighted += DURATION_WEIGHT * duration
        weights += DURATION_WEIGHT
    mean = weighted / weights

    reasons: list[str] = []
    if not versions_agree:
        reasons.append("a distinguishing version (remix, live, acoustic...) differs")
    if title < TITLE_FLOOR:
        reasons.append(f"title similarity {title:.2f} is below {TITLE_FLOOR}")
    if not has_artist:
        reasons.append("the query names no artist")
    elif artist < ARTIST_FLOOR:
        reasons.append(f"artist similarity {artist:.2f} is below {ARTIST_FLOOR}")
    if identity is False:
        reasons.append("both sides have an ISRC and they differ")

    if identity is True:
        if title < 0.5 and artist < 0.5:
            total = VETO_CAP
            reasons = ["same ISRC or id, but neither title nor artist agrees"]
        else:
            total = 0.95 + 0.05 * mean
            reasons = ["same ISRC or id", *(f"overridden: {r}" for r in reasons)]
    elif reasons:
        total = min(mean, VETO_CAP)
    else:
        total = mean
    return MatchScore(
        total=round(total, 4),
        title=round(title, 4),
        artist=round(artist, 4),
        duration=None if duration is None else round(duration, 4),
        identity=identity,
        versions_agree=versions_agree,
        reasons=tuple(reasons),
    )


def rank(query: TrackQuery, candidates: Sequence[Candidate], *, typos: int = NO_TYPOS
         ) -> list[Match]:
    """All candidates scored, best first (provider score, then position, break equal totals)."""
    scored = [Match(c, score(query, c, typos=typos), i) for i, c in enumerate(candidates)]
    scored.sort(key=lambda m: (-m.score.total, -(m.candidate.provider_score or 0.0), m.index))
    return scored


_EDIT_MARGIN_MS = 2000.0


def _same_recording(a: Candidate, b: Candidate) -> bool:
    """Whether two candidates are the same recording (e.g. the single and the album track)."""
    for field in ("isrc", "spotify_id", "musicbrainz_recording_id", "deezer_id"):
        if a.get(field) and a.get(field) == b.get(field):
            return True
    ta, tb = parse_title(str(a.get("title") or "")), parse_title(str(b.get("title") or ""))
    aa, ab = parse_artists(str(a.get("artist") or "")), parse_artists(str(b.get("artist") or ""))
    if ta.full != tb.full or aa.primary != ab.primary:
        return False
    da, db = a.get("duration_ms"), b.get("duration_ms")
    return not (da and db and abs(float(da) - float(db)) > 3000)


def _evidence(match: Match) -> int:
    """2 for identity agreement, 1 for a duration within the grace, 0 for text alone."""
    if match.score.identity:
        return 2
    return 1 if match.score.duration == 1.0 else 0


def best_match(
    query: TrackQuery,
    candidates: Sequence[Candidate],
    *,
    threshold: float = THRESHOLD,
    margin: float = AMBIGUITY_MARGIN,
    second_look: bool = False,
) -> Match | None:
    """The candidate that is surely the queried recording, or None (none good enough, or a tie).

    ``second_look``: the candidates come from a wider query after the first one missed; the
    stricter rule of the module docstring applies.
    """
    if second_look:
        return _second_look(query, candidates, threshold)
    ranked = rank(query, candidates)
    if not ranked or ranked[0].score.total < threshold:
        return None
    top = ranked[0]
    tied = [
        m
        for m in ranked[1:]
        if m.score.total >= threshold
        and top.score.total - m.score.total <= margin
        and not _same_recording(top.candidate, m.candidate)
    ]
    if not tied:
        return top
    contenders = [top, *tied]
    strongest = max(_evidence(m) for m in contenders)
    winners = [m for m in contenders if _evidence(m) == strongest]
    if len(winners) == 1:
        return winners[0]
    closest = _closest_edit(query, winners)
    if closest is not None:
        return closest
    # Several different recordings fit equally well: guessing would be a coin toss.
    return None


def _second_look(query: TrackQuery, candidates: Sequence[Candidate], threshold: float
                 ) -> Match | None:
    """The second look's pick (see the module docstring): by the typo budgets, or, when the
    query gives a length, by the wider ones with the length agreeing."""
    for typos in (TYPOS, VOUCHED_TYPOS) if query.duration_ms else (TYPOS,):
        ranked = rank(query, candidates, typos=typos)
        if ranked and ranked[0].score.total >= threshold and _sure_second_look(
                query, ranked[0], ranked[1:], vouched=typos == VOUCHED_TYPOS):
            return ranked[0]
    return None


def _sure_second_look(query: TrackQuery, top: Match, others: Sequence[Match], *,
                      vouched: bool = False) -> bool:
    """Whether ``top``, the best of a wider query's list, passes the second look's rule;
    ``vouched``: scored by the wider typo budgets, so the length must agree."""
    s = top.score
    if vouched and s.duration != 1.0:
        return False
    if s.artist < SECOND_LOOK_ARTIST_TYPO or s.title < (TITLE_FLOOR if vouched
                                                          else SECOND_LOOK_TITLE):
        return False
    if s.artist < SECOND_LOOK_ARTIST and s.title < SECOND_LOOK_INTACT and s.duration != 1.0:
        return False  # a typo on both sides: only a length that agrees vouches for it
    if s.duration not in (None, 1.0):
        return False
    if s.title < SECOND_LOOK_INTACT and _letters(query) < (
            VOUCHED_MIN_LETTERS if vouched else SECOND_LOOK_MIN_LETTERS):
        return False
    return all(s.total - m.score.total >= SECOND_LOOK_MARGIN
               for m in others if not _same_recording(top.candidate, m.candidate))


def _letters(query: TrackQuery) -> int:
    """The letters of the query's title base, read from "Artist - Title" when it names no artist."""
    _, title = named(query.artist or "", query.title or "")
    return sum(c.isalpha() for c in parse_title(title).base)


def _closest_edit(query: TrackQuery, contenders: Sequence[Match]) -> Match | None:
    """Among equally good recordings of one song, the one whose length the query states.

    Neutral suffixes are ignored when scoring, so "Heaven" and "Heaven - Radio Edit" tie, and so
    do two recordings of a song with the same title. A scraper that gives the length gives strong
    evidence: when exactly one contender is within ``_EDIT_MARGIN_MS`` of it and every other is
    at least that much further away, it is the one; otherwise we refuse.
    """
    if query.duration_ms is None:
        return None

    def off(m: Match) -> float:
        d = m.candidate.get("duration_ms")
        return abs(float(d) - query.duration_ms) if d else float("inf")  # type: ignore[operator]

    ranked = sorted(contenders, key=off)
    others = [off(m) for m in ranked[1:] if not _same_recording(ranked[0].candidate, m.candidate)]
    best = off(ranked[0])
    if best <= _EDIT_MARGIN_MS and all(o >= best + _EDIT_MARGIN_MS for o in others):
        return ranked[0]
    return None
