"""MusicBrainz WS/2 client: ISRC lookup when the ISRC is known, else a Lucene recording search.

A second look (:meth:`MusicBrainzClient.lookup_again`, for a record no stage matched) makes the
title's words fuzzy terms scoped to the artist: ``(recording:hodl~1 OR recording:on) AND
artist:"Vampire Weekend"``. MusicBrainz's search is Lucene, whose query syntax has fuzzy terms
(``term~N``, N edits at most, 2 at most; an adjacent swap is one edit); words of two letters
stay exact, since two edits would make them match almost any short word.

Search results leave ``joinphrase`` out of a single artist credit and may carry ``"video":
null``. A 503 is transient either way, but only one saying we exceed the allowable rate limit
means "too fast" (a rate-limited answer that pauses the provider); a 503 of a busy service is an
ordinary transient failure for the breaker to count.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

from trackflow.providers import http, parse
from trackflow.providers.base import JSON, CallGate, Candidate, TrackQuery
from trackflow.providers.client import ProviderClient, clamp_limit
from trackflow.providers.errors import NotFound
from trackflow.providers.normalize import named
from trackflow.providers.titles import parse_title

NAME = "musicbrainz"
DEFAULT_URL = "https://musicbrainz.org/ws/2"
DUR_TOLERANCE_MS = 10_000
"""Half-width of the ``dur:`` range when the duration is known (beets' length grace)."""

log = logging.getLogger("trackflow.providers.musicbrainz")

# Lucene specials; "&&" and "||" are covered by escaping every & and |.
_LUCENE_SPECIAL_RE = re.compile(r'([+\-&|!(){}\[\]^"~*?:\\/])')


def escape_lucene(text: str) -> str:
    """``text`` with every Lucene special character backslash-escaped."""
    return _LUCENE_SPECIAL_RE.sub(r"\\\1", text)


def build_search_query(query: TrackQuery) -> str:
    """The Lucene query for a recording search; user text is always a quoted, escaped phrase."""
    parts = [f'recording:"{escape_lucene(query.title.strip())}"']
    if query.artist.strip():
        parts.append(f'artist:"{escape_lucene(query.artist.strip())}"')
    if query.duration_ms and query.duration_ms > 0:
        low = max(0, query.duration_ms - DUR_TOLERANCE_MS)
        parts.append(f"dur:[{low} TO {query.duration_ms + DUR_TOLERANCE_MS}]")
    return " AND ".join(parts)


_FUZZY_WORD_RE = re.compile(r"[^\W_]+")
SECOND_LOOK_LIMIT = 25
"""Recordings a second look asks for: the artist's near-titles, more than a first search."""


def fuzzy_term(word: str) -> str:
    """One title word as a Lucene term: exact up to 2 letters, 1 edit up to 4, else 2."""
    if len(word) <= 2 or word.isdigit():
        return word
    return f"{word}~{1 if len(word) <= 4 else 2}"


def build_fuzzy_query(query: TrackQuery) -> str | None:
    """The second look's Lucene query, or None without an artist or a title word: the title's
    words and the artist's as fuzzy terms, the artist also as its phrase (it ranks the artist
    spelt right first), so a typo on either side is forgiven. An input that gives
    ``"Artist - Title"`` with no artist is read as such."""
    artist, title = named(query.artist, query.title)
    words = _FUZZY_WORD_RE.findall(parse_title(title).base)
    names = _FUZZY_WORD_RE.findall(artist.lower())
    if not names or not words:
        return None
    terms = " OR ".join(f"recording:{fuzzy_term(w)}" for w in dict.fromkeys(words))
    credit = " OR ".join([f'artist:"{escape_lucene(artist)}"',
                          *(f"artist:{fuzzy_term(w)}" for w in dict.fromkeys(names))])
    parts = [f"({terms})", f"({credit})"]
    if query.duration_ms and query.duration_ms > 0:
        low = max(0, query.duration_ms - DUR_TOLERANCE_MS)
        parts.append(f"dur:[{low} TO {query.duration_ms + DUR_TOLERANCE_MS}]")
    return " AND ".join(parts)


def _artist_credit(credits: Any) -> str | None:
    names = []
    for credit in parse.as_list(credits):
        if isinstance(credit, dict):
            name = credit.get("name") or parse.as_dict(credit.get("artist")).get("name") or ""
            names.append(f"{name}{credit.get('joinphrase') or ''}")
        elif isinstance(credit, str):  # very old answers mix joinphrase strings in
            names.append(credit)
    return parse.as_str("".join(names))


def _names(items: Any) -> list[str]:
    out = []
    for item in parse.as_list(items):
        name = parse.as_str(parse.as_dict(item).get("name"))
        if name and name not in out:
            out.append(name)
    return out


def parse_recording(rec: Any, *, via: str, isrc: str | None = None) -> Candidate | None:
    """A candidate from one recording object; None when it has no id."""
    rec = parse.as_dict(rec)
    mbid = parse.as_str(rec.get("id"))
    if not mbid:
        return None
    releases = [parse.as_dict(r) for r in parse.as_list(rec.get("releases"))]
    first_release = releases[0] if releases else {}
    isrcs = [i for i in parse.as_list(rec.get("isrcs")) if isinstance(i, str)]
    score = parse.as_float(rec.get("score"))
    fields = parse.compact(
        {
            "musicbrainz_recording_id": mbid,
            "title": parse.as_str(rec.get("title")),
            "artist": _artist_credit(rec.get("artist-credit")),
            "duration_ms": parse.as_int(rec.get("length")),
            "release_date": parse.as_str(rec.get("first-release-date"))
            or parse.as_str(first_release.get("date")),
            "album": parse.as_str(first_release.get("title")),
            "isrc": isrc or (isrcs[0] if isrcs else None),
            "tags": _names(rec.get("tags")),
            "genres": _names(rec.get("genres")),
        }
    )
    return Candidate(
        provider=NAME,
        fields=fields,
        provider_score=None if score is None else max(0.0, min(1.0, score / 100.0)),
        via=via,
    )


class MusicBrainzClient(ProviderClient):
    """MusicBrainz recordings by ISRC or by search; needs no key but a real User-Agent."""

    name = NAME

    def __init__(
        self,
        *,
        contact: str,
        base_url: str = DEFAULT_URL,
        timeout: httpx.Timeout | float | None = None,
        gate: CallGate | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        search_limit: int = 5,
    ) -> None:
        if not contact.strip():
            raise ValueError("MusicBrainz needs a contact (URL or e-mail) for its User-Agent")
        super().__init__(base_url=base_url, timeout=timeout, gate=gate, transport=transport,
                         contact=contact)
        self._limit = clamp_limit(search_limit)

    async def lookup(self, query: TrackQuery) -> list[Candidate]:
        found = await self._by_isrc(query, self._fetch_isrc)
        if found:
            return found
        # An ISRC MusicBrainz does not know yet: the recording may still be there by name.
        if not query.title.strip():
            return []
        lucene = build_search_query(query)
        found = await self._candidates("search", parse.cache_key(lucene),
                                       lambda: self._fetch_search(lucene, self._limit))
        log.debug("event=lookup provider=%s via=search candidates=%d", NAME, len(found))
        return found

    async def lookup_again(self, query: TrackQuery) -> list[Candidate]:
        lucene = build_fuzzy_query(query)
        if lucene is None:
            return []
        found = await self._candidates(
            "again", parse.cache_key(lucene),
            lambda: self._fetch_search(lucene, SECOND_LOOK_LIMIT, via="again"))
        log.debug("event=lookup provider=%s via=again candidates=%d", NAME, len(found))
        return found

    async def _get(self, url: str, kind: str, **kwargs: Any) -> Any:
        response = await http.send(self._client, NAME, "GET", url, logger=log, kind=kind, **kwargs)
        # Rate limited only when the body says so (see the module docstring).
        http.raise_for_status(NAME, response)
        return http.json_body(NAME, response)

    async def _fetch_isrc(self, isrc: str) -> JSON:
        # The literal "+" is what MusicBrainz documents for inc (httpx params would send %2B).
        try:
            body = await self._get(f"/isrc/{isrc}?fmt=json&inc=artist-credits+releases", "isrc")
        except NotFound:
            return []
        out = []
        for rec in parse.as_list(parse.as_dict(body).get("recordings")):
            cand = parse_recording(rec, via="isrc", isrc=isrc)
            if cand is not None:
                out.append(cand.to_json())
        return out

    async def _fetch_search(self, lucene: str, limit: int, via: str = "search") -> JSON:
        try:
            body = await self._get(
                "/recording",
                via,
                params={"query": lucene, "fmt": "json", "limit": limit},
            )
        except NotFound:
            return []
        out = []
        for rec in parse.as_list(parse.as_dict(body).get("recordings")):
            cand = parse_recording(rec, via=via)
            if cand is not None:
                out.append(cand.to_json())
        return out
