"""Discogs client: release search by artist and track (personal token).

Discogs results are releases, not recordings: a candidate carries the release's artist, album
title, year, label and genres (genre + style), never a track title or duration.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from trackflow.providers import http
from trackflow.providers.base import JSON, CallGate, CallSpec, Candidate, DirectGate, TrackQuery
from trackflow.providers.errors import NotFound

NAME = "discogs"
DEFAULT_URL = "https://api.discogs.com"

log = logging.getLogger("trackflow.providers.discogs")


def _unique(values: list[Any]) -> list[str]:
    out: list[str] = []
    for v in values:
        s = http.as_str(v)
        if s and s not in out:
            out.append(s)
    return out


def parse_result(result: Any) -> Candidate | None:
    """A candidate from one ``/database/search`` result; None when it has no id."""
    result = http.as_dict(result)
    rid = http.as_int(result.get("id"))
    if rid is None:
        return None
    artist, album = None, http.as_str(result.get("title"))
    if album and " - " in album:
        artist, album = (p.strip() or None for p in album.split(" - ", 1))
    year = http.as_int(result.get("year"))
    labels = _unique(http.as_list(result.get("label")))
    fields = http.compact(
        {
            "discogs_release_id": str(rid),
            "artist": artist,
            "album": album,
            "release_date": str(year) if year and year > 0 else None,
            "label": labels[0] if labels else None,
            "genres": _unique(
                http.as_list(result.get("genre")) + http.as_list(result.get("style"))
            ),
        }
    )
    # Discogs ranks but gives no score: provider_score stays None (order carries the rank).
    return Candidate(provider=NAME, fields=fields, via="search")


class DiscogsClient:
    """Discogs releases containing a track: release id, year, label, genres and styles."""

    name = NAME

    def __init__(
        self,
        *,
        token: str,
        contact: str,
        base_url: str = DEFAULT_URL,
        timeout: httpx.Timeout | float | None = None,
        gate: CallGate | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        search_limit: int = 5,
    ) -> None:
        if not token:
            raise ValueError("Discogs needs a personal access token")
        self._token = token
        self._base_url = base_url
        self._gate: CallGate = gate or DirectGate()
        self._limit = max(1, min(100, search_limit))
        #: Requests left in Discogs' moving minute, from the last answer (None until known).
        self.ratelimit_remaining: int | None = None
        self._client = http.make_client(
            base_url,
            timeout=timeout,
            headers={"User-Agent": http.user_agent(contact), "Accept": "application/json"},
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"DiscogsClient(base_url={self._base_url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def lookup(self, query: TrackQuery) -> list[Candidate]:
        if not query.title.strip():
            return []
        params = {"type": "release", "track": query.title.strip(), "per_page": str(self._limit)}
        if query.artist.strip():
            params["artist"] = query.artist.strip()
        spec = CallSpec(NAME, "search", http.cache_key(query.artist, query.title, self._limit))
        found = await self._gate.run(spec, lambda: self._fetch_search(params))
        log.debug("event=lookup provider=%s via=search candidates=%d", NAME, len(found))
        return [Candidate.from_json(c) for c in found]

    async def _fetch_search(self, params: dict[str, str]) -> JSON:
        response = await http.send(
            self._client,
            NAME,
            "GET",
            "/database/search",
            logger=log,
            kind="search",
            params=params,
            headers={"Authorization": f"Discogs token={self._token}"},
        )
        self._note_rate_limit(response)
        try:
            http.raise_for_status(NAME, response)
        except NotFound:
            return []
        results = http.as_list(http.as_dict(http.json_body(NAME, response)).get("results"))
        out = []
        for result in results:
            cand = parse_result(result)
            if cand is not None:
                out.append(cand.to_json())
        return out

    def _note_rate_limit(self, response: httpx.Response) -> None:
        remaining = http.as_int(response.headers.get("X-Discogs-Ratelimit-Remaining"))
        if remaining is None:
            return
        self.ratelimit_remaining = remaining
        if remaining <= 5:
            log.info(
                "event=ratelimit_low provider=%s remaining=%d limit=%s",
                NAME,
                remaining,
                response.headers.get("X-Discogs-Ratelimit", "?"),
            )
