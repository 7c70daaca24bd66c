"""Deezer API client (no key): BPM by ISRC, else a search plus track details for isrc/bpm.

Deezer reports errors inside HTTP 200 bodies: code 4 is its quota (transient, rate limited),
800 "no data" means not found. Its throttling also shows as bare HTTP 403, 429 or 5xx answers:
all transient (a 403 or 429 pauses it like the quota answer). Deezer needs no key, so nothing it
answers is a configuration error that would disable it.

``artist`` of a track is only its first main artist; the whole credit is in ``contributors``
(``role: "Main"``), which track answers have and search items do not (nor ``release_date``,
``isrc`` or ``bpm``: those come from the track fetched by id).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from trackflow.providers import http, parse
from trackflow.providers.base import JSON, CallGate, CallSpec, Candidate, TrackQuery
from trackflow.providers.client import ProviderClient, clamp_limit
from trackflow.providers.errors import NotFound, PermanentError, TransientError
from trackflow.providers.normalize import normalize_isrc

NAME = "deezer"
DEFAULT_URL = "https://api.deezer.com"

log = logging.getLogger("trackflow.providers.deezer")

_QUOTA = 4
_TRANSIENT = frozenset({100, 700})  # items limit exceeded, service busy
_NOT_FOUND = frozenset({800, 500, 501, 600})  # no data; query complaints user text can cause
_PERMANENT = frozenset({200, 300, 901})  # permission / token / account: our configuration


def build_search_q(query: TrackQuery) -> str:
    """``artist:"x" track:"y"``; user values are quoted phrases that cannot end early."""
    parts = []
    if query.artist.strip():
        parts.append(f"artist:{parse.quote_field(query.artist)}")
    parts.append(f"track:{parse.quote_field(query.title)}")
    return " ".join(parts)


def body_error(body: Any) -> TransientError | PermanentError | NotFound | None:
    """The error a Deezer body reports (whatever the HTTP status), or None."""
    err = parse.as_dict(body).get("error") if isinstance(body, dict) else None
    if not err:
        return None
    err = parse.as_dict(err)
    code = parse.as_int(err.get("code"))
    message = parse.as_str(err.get("message")) or "error"
    text = f"error code={code} type={parse.as_str(err.get('type'))} message={message}"
    if code == _QUOTA:
        return TransientError(NAME, text, rate_limited=True)
    if code in _NOT_FOUND:
        return NotFound(NAME, text)
    if code in _PERMANENT:
        return PermanentError(NAME, text)
    return TransientError(NAME, text)  # 100, 700 and codes we do not know: may pass


def main_artists(track: dict[str, Any]) -> str | None:
    """Every main artist of a track, joined like Spotify's credits ("A, B"); the ``artist``
    object alone (search items have no contributors)."""
    names: list[str] = []
    for contributor in parse.as_list(track.get("contributors")):
        c = parse.as_dict(contributor)
        name = parse.as_str(c.get("name"))
        # No role at all in some older answers: every contributor listed is then credited.
        if name and (parse.as_str(c.get("role")) or "Main") == "Main" and name not in names:
            names.append(name)
    first = parse.as_str(parse.as_dict(track.get("artist")).get("name"))
    if first and first not in names:
        names.insert(0, first)
    return ", ".join(names) or None


def parse_track(track: Any, *, via: str) -> Candidate | None:
    """A candidate from a Deezer track or search item; None when it has no id."""
    track = parse.as_dict(track)
    tid = parse.as_int(track.get("id"))
    if tid is None:
        return None
    duration_s = parse.as_int(track.get("duration"))
    bpm = parse.as_float(track.get("bpm"))
    album = parse.as_dict(track.get("album"))
    fields = parse.compact(
        {
            "deezer_id": str(tid),
            "title": parse.as_str(track.get("title")),
            "artist": main_artists(track),
            "album": parse.as_str(album.get("title")),
            "release_date": parse.as_str(track.get("release_date"))
            or parse.as_str(album.get("release_date")),
            "duration_ms": duration_s * 1000 if duration_s else None,
            "isrc": normalize_isrc(parse.as_str(track.get("isrc"))),
            "bpm": bpm if bpm and bpm > 0 else None,  # 0 means "unknown"
            "deezer_rank": parse.as_int(track.get("rank")),
        }
    )
    return Candidate(provider=NAME, fields=fields, via=via)


class DeezerClient(ProviderClient):
    """Deezer tracks by ISRC or by search (top items fetched in full for isrc and bpm)."""

    name = NAME

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_URL,
        timeout: httpx.Timeout | float | None = None,
        gate: CallGate | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        search_limit: int = 5,
        detail_limit: int = 3,
    ) -> None:
        super().__init__(base_url=base_url, timeout=timeout, gate=gate, transport=transport)
        self._limit = clamp_limit(search_limit)
        self._detail_limit = max(0, detail_limit)

    async def lookup(self, query: TrackQuery) -> list[Candidate]:
        found = await self._by_isrc(query, lambda isrc: self._fetch_track(f"isrc:{isrc}", "isrc"))
        if found:
            return found
        if not query.title.strip():
            return []
        q = build_search_q(query)
        items = await self._candidates("search", parse.cache_key(q, self._limit),
                                       lambda: self._search(q))
        out = []
        for i, item in enumerate(items):
            if i < self._detail_limit:
                out.append(await self._details(item))
            else:
                out.append(item)
        log.debug("event=lookup provider=%s via=search candidates=%d", NAME, len(out))
        return out

    async def _details(self, item: Candidate) -> Candidate:
        tid = str(item.get("deezer_id"))
        spec = CallSpec(NAME, "id", tid)
        full = await self._gate.run(spec, lambda: self._fetch_track(tid, "search"))
        if not full:
            return item
        detail = Candidate.from_json(full[0])
        return Candidate(NAME, {**item.fields, **detail.fields}, item.provider_score, "search")

    async def _get(self, url: str, kind: str, **kwargs: Any) -> Any:
        response = await http.send(self._client, NAME, "GET", url, logger=log, kind=kind, **kwargs)
        status = response.status_code
        if status >= 500 or status == 429:
            http.raise_for_status(NAME, response)  # the status says it all (outages, limits)
        body = http.try_json(response)
        err = body_error(body)
        if err is not None:
            raise err
        if status in (401, 403):
            # Throttling (or an edge refusing us for a while), never our configuration: we send
            # no credentials. Pause like a quota answer and let the breaker judge the rest.
            raise TransientError(
                NAME, f"refused (HTTP {status}) on GET {http.safe_url(response.request.url)}",
                retry_after=http.parse_retry_after(response.headers.get("Retry-After")),
                rate_limited=True)
        http.raise_for_status(NAME, response)
        return body if body is not None else http.json_body(NAME, response)

    async def _fetch_track(self, ref: str, via: str) -> JSON:
        try:
            body = await self._get(f"/track/{ref}", "isrc" if via == "isrc" else "id")
        except NotFound:
            return []
        cand = parse_track(body, via=via)
        return [] if cand is None else [cand.to_json()]

    async def _search(self, q: str) -> JSON:
        try:
            body = await self._get("/search", "search", params={"q": q, "limit": self._limit})
        except NotFound:
            return []
        out = []
        for item in parse.as_list(parse.as_dict(body).get("data")):
            cand = parse_track(item, via="search")
            if cand is not None:
                out.append(cand.to_json())
        return out
