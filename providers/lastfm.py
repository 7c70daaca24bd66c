"""Last.fm client: ``track.getInfo`` (by mbid when known, else by artist and title), and
``track.getTopTags`` only when asked for (``top_tags``).

``track.getInfo`` answers with the track's ``toptags`` already: the top of the list
``track.getTopTags`` gives. The second call would add the less used tags after them, at the
cost of a call more per track at Last.fm's 5 calls/s; and a stage whose info call went out but
whose tag call found no slot in time was deferred, so its refresh asked for the info again (a
burst of 800 noisy tracks at the real limits against the simulator, with the tag call made only
for tracks whose info had no tags: 1,406 Last.fm calls, 1,016 of them info calls, 390 tag calls
that all came back empty, and 286 stages deferred at the tag call).

Last.fm answers errors as JSON bodies, often with HTTP 200; numbers come as strings,
``mbid`` may be ``""`` or missing altogether and ``duration: "0"`` means unknown. Errors 10
(invalid key) and 26 (suspended key) come with HTTP 403 and are configuration errors that
disable the provider (:class:`~providers.errors.CredentialsRejected`); error bodies carry
``"links": []`` and their wording changes (error 29's did), so only the code is read.

The api_key travels in the query string, so URLs in messages and logs
are always stripped of their query (see :mod:`providers.http`).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from trackflow.providers import http, parse
from trackflow.providers.base import JSON, CallGate, CallSpec, Candidate, TrackQuery
from trackflow.providers.client import ProviderClient
from trackflow.providers.errors import (
    CredentialsRejected,
    NotFound,
    PermanentError,
    ProviderError,
    TransientError,
)

NAME = "lastfm"
DEFAULT_URL = "https://ws.audioscrobbler.com/2.0/"
MAX_TAGS = 10

log = logging.getLogger("trackflow.providers.lastfm")

_NOT_FOUND = frozenset({6})
_TRANSIENT = frozenset({8, 11, 16, 29})
_RATE_LIMITED = 29
# 10 invalid key, 26 suspended key, 4 authentication failed: the key is what to fix.
_CREDENTIALS = frozenset({4, 10, 26})
# 2/3/5 bad service/method/format: our request, not our key.
_PERMANENT = frozenset({2, 3, 5})


def body_error(body: Any) -> ProviderError | None:
    """The error a Last.fm body reports (whatever the HTTP status), or None."""
    if not isinstance(body, dict) or "error" not in body:
        return None
    code = parse.as_int(body.get("error"))
    # The message is for people: its wording changes between deployments, the code does not.
    text = f"error code={code} message={(parse.as_str(body.get('message')) or 'error')[:200]}"
    if code in _NOT_FOUND:
        return NotFound(NAME, text)
    if code in _TRANSIENT:
        return TransientError(NAME, text, rate_limited=code == _RATE_LIMITED)
    if code in _CREDENTIALS:
        return CredentialsRejected(NAME, text)
    if code in _PERMANENT:
        return PermanentError(NAME, text)
    return TransientError(NAME, text)  # unknown code: assume it may pass


def _tag_names(tags: Any) -> list[str]:
    out: list[str] = []
    for tag in parse.as_list(parse.as_dict(tags).get("tag")):
        name = parse.as_str(parse.as_dict(tag).get("name"))
        if name and name.casefold() not in (t.casefold() for t in out):
            out.append(name)
    return out[:MAX_TAGS]


def parse_track_info(body: Any) -> Candidate | None:
    """A candidate from a ``track.getInfo`` answer; None when it has no track."""
    track = parse.as_dict(parse.as_dict(body).get("track"))
    if not track:
        return None
    duration = parse.as_int(track.get("duration"))
    artist = track.get("artist")
    artist_name = (
        parse.as_str(parse.as_dict(artist).get("name"))
        if isinstance(artist, dict)
        else parse.as_str(artist)
    )
    fields = parse.compact(
        {
            "title": parse.as_str(track.get("name")),
            "artist": artist_name,
            "album": parse.as_str(parse.as_dict(track.get("album")).get("title")),
            "duration_ms": duration if duration and duration > 0 else None,
            "musicbrainz_recording_id": parse.as_str(track.get("mbid")),
            "listeners": parse.as_int(track.get("listeners")),
            "playcount": parse.as_int(track.get("playcount")),
            "tags": _tag_names(track.get("toptags")),
        }
    )
    return Candidate(provider=NAME, fields=fields, via="search")


class LastfmClient(ProviderClient):
    """Last.fm track info (listeners, playcount, mbid) and top tags."""

    name = NAME

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_URL,
        timeout: httpx.Timeout | float | None = None,
        gate: CallGate | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        top_tags: bool = False,
    ) -> None:
        if not api_key:
            raise ValueError("Last.fm needs an api_key")
        super().__init__(base_url=base_url, timeout=timeout, gate=gate, transport=transport)
        self._api_key = api_key
        self._top_tags = top_tags

    def _described(self) -> dict[str, Any]:
        return {"top_tags": self._top_tags}

    async def lookup(self, query: TrackQuery) -> list[Candidate]:
        cand: Candidate | None = None
        if query.musicbrainz_recording_id:
            mbid = query.musicbrainz_recording_id.strip().lower()
            cand = await self._info({"mbid": mbid}, "id", parse.cache_key("mbid", mbid))
        if cand is None and query.title.strip() and query.artist.strip():
            ident = {"artist": query.artist.strip(), "track": query.title.strip()}
            cand = await self._info(ident, "search", parse.cache_key(query.artist, query.title))
        if cand is None:
            return []
        if self._top_tags and cand.get("artist") and cand.get("title"):
            tags = await self._tags(str(cand.get("artist")), str(cand.get("title")))
            if tags:
                cand = Candidate(NAME, {**cand.fields, "tags": tags}, cand.provider_score, cand.via)
        log.debug("event=lookup provider=%s via=%s candidates=1", NAME, cand.via)
        return [cand]

    async def _info(self, ident: dict[str, str], via: str, key: str) -> Candidate | None:
        found = await self._candidates(via, key, lambda: self._fetch_info(ident, via))
        return found[0] if found else None

    async def _tags(self, artist: str, title: str) -> list[str]:
        spec = CallSpec(NAME, "tags", parse.cache_key(artist, title))
        found = await self._gate.run(spec, lambda: self._fetch_tags(artist, title))
        return [str(t) for t in parse.as_list(found)]

    async def _call(self, method: str, kind: str, params: dict[str, str]) -> Any:
        query = {
            "method": method,
            **params,
            "autocorrect": "1",
            "format": "json",
            "api_key": self._api_key,
        }
        response = await http.send(
            self._client, NAME, "GET", "", logger=log, kind=kind, params=query
        )
        body = http.try_json(response)
        err = body_error(body)
        if err is not None:
            if isinstance(err, TransientError) and err.retry_after is None:
                err.retry_after = http.parse_retry_after(response.headers.get("Retry-After"))
            raise err
        http.raise_for_status(NAME, response)
        return body if body is not None else http.json_body(NAME, response)

    async def _fetch_info(self, ident: dict[str, str], via: str) -> JSON:
        try:
            body = await self._call("track.getInfo", via, ident)
        except NotFound:
            return []
        cand = parse_track_info(body)
        if cand is None:
            return []
        return [Candidate(NAME, cand.fields, None, via).to_json()]

    async def _fetch_tags(self, artist: str, title: str) -> JSON:
        try:
            body = await self._call("track.getTopTags", "tags", {"artist": artist, "track": title})
        except NotFound:
            return []
        return _tag_names(parse.as_dict(body).get("toptags"))
