"""Spotify Web API client (client-credentials flow).

Track by id when the Spotify id is known, else a search (``isrc:`` when the ISRC is known, else
``artist:"..." track:"..."``). Audio features only when enabled; Spotify blocks them for apps
created after Nov 2024, so the first 403 there is remembered and never counts as a failure.

An invalid client (400/401 from the token endpoint) or a 401/403 from the API with a fresh token
is a configuration error that disables the provider. A 429's ``Retry-After`` can be ``0`` (no
hint: the gate pauses by default) and its body says "API rate limit exceeded"; older track
objects have no ``album.release_date``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from trackflow.providers import http, parse
from trackflow.providers.base import JSON, CallGate, CallSpec, Candidate, TrackQuery
from trackflow.providers.client import ProviderClient, clamp_limit
from trackflow.providers.errors import (
    CredentialsRejected,
    FeatureUnavailable,
    NotFound,
    PermanentError,
)
from trackflow.providers.normalize import named, normalize_isrc
from trackflow.providers.titles import parse_title

NAME = "spotify"
DEFAULT_API_URL = "https://api.spotify.com/v1"
DEFAULT_ACCOUNTS_URL = "https://accounts.spotify.com"
REFRESH_MARGIN_S = 60.0
"""Refresh the token this long before Spotify says it expires."""
MAX_SEARCH_LIMIT = 10
"""Development-mode apps get at most ``limit=10`` since Feb 2026."""

log = logging.getLogger("trackflow.providers.spotify")

_ID_RE = re.compile(r"^[0-9A-Za-z]{22}$")
_PITCHES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def build_search_q(query: TrackQuery) -> tuple[str, str]:
    """``(q, via)`` for the search endpoint; every user value is one quoted phrase."""
    isrc = normalize_isrc(query.isrc)
    if isrc:
        return f"isrc:{isrc}", "isrc"
    parts = []
    if query.artist.strip():
        parts.append(f"artist:{parse.quote_field(query.artist)}")
    parts.append(f"track:{parse.quote_field(query.title)}")
    return " ".join(parts), "search"


def build_again_qs(query: TrackQuery) -> list[str]:
    """The second look's two ``q``: the artist's tracks, and the title's (its suffixes and
    featured names left out) by anyone; none without an artist.

    Spotify documents its field filters but not how far a search forgives a misspelling, so
    neither side is sent with its typo hoping for the best: one filter per side, and the
    answers are compared with the whole query here; a typo in the title is found among the
    artist's tracks, one in the artist among the title's.
    """
    artist, title = named(query.artist, query.title)
    if not artist:
        return []
    qs = [f"artist:{parse.quote_field(artist)}"]
    base = parse_title(title).base
    if base:
        qs.append(f"track:{parse.quote_field(base)}")
    return qs


def key_name(key: Any, mode: Any) -> str | None:
    """``C# major`` from Spotify's pitch class and mode; None when unknown (-1)."""
    k = parse.as_int(key)
    if k is None or not 0 <= k < len(_PITCHES):
        return None
    m = parse.as_int(mode)
    return f"{_PITCHES[k]} {'minor' if m == 0 else 'major'}" if m in (0, 1) else _PITCHES[k]


def parse_track(track: Any, *, via: str) -> Candidate | None:
    """A candidate from a track object; None when it has no id."""
    track = parse.as_dict(track)
    sid = parse.as_str(track.get("id"))
    if not sid:
        return None
    album = parse.as_dict(track.get("album"))
    artists = [parse.as_str(parse.as_dict(a).get("name"))
               for a in parse.as_list(track.get("artists"))]
    fields = parse.compact(
        {
            "spotify_id": sid,
            "title": parse.as_str(track.get("name")),
            "artist": ", ".join(a for a in artists if a) or None,
            "album": parse.as_str(album.get("name")),
            "release_date": parse.as_str(album.get("release_date")),
            "label": parse.as_str(album.get("label")),
            "duration_ms": parse.as_int(track.get("duration_ms")),
            "isrc": normalize_isrc(
                parse.as_str(parse.as_dict(track.get("external_ids")).get("isrc"))
            ),
            "popularity": parse.as_int(track.get("popularity")),
        }
    )
    # Spotify ranks but gives no score: provider_score stays None (order carries the rank).
    return Candidate(provider=NAME, fields=fields, via=via)


class SpotifyClient(ProviderClient):
    """Spotify tracks by id or search, with optional audio features (bpm, key)."""

    name = NAME

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        base_url: str = DEFAULT_API_URL,
        accounts_url: str = DEFAULT_ACCOUNTS_URL,
        timeout: httpx.Timeout | float | None = None,
        gate: CallGate | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        audio_features: bool = False,
        search_limit: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not client_id or not client_secret:
            raise ValueError("Spotify needs a client id and a client secret")
        super().__init__(base_url=base_url, timeout=timeout, gate=gate, transport=transport)
        self._token_url = accounts_url.rstrip("/") + "/api/token"
        self._basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
        self._audio_features = audio_features
        self._features_unavailable = False
        self._limit = clamp_limit(search_limit, MAX_SEARCH_LIMIT)
        self._clock = clock
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = asyncio.Lock()

    def _described(self) -> dict[str, Any]:
        return {"audio_features": self._audio_features,
                "features_unavailable": self._features_unavailable}

    @property
    def features_unavailable(self) -> bool:
        """True once Spotify refused audio features for this app."""
        return self._features_unavailable

    # -- token ---------------------------------------------------------------------------

    async def _access_token(self, *, force: bool = False, stale: str | None = None) -> str:
        async with self._token_lock:
            if force and self._token is not None and self._token != stale:
                return self._token  # another task refreshed it meanwhile
            if not force and self._token and self._clock() < self._token_expires_at:
                return self._token
            spec = CallSpec(NAME, "token", "client_credentials", cacheable=False)
            body = await self._gate.run(spec, self._fetch_token)
            token = parse.as_str(parse.as_dict(body).get("access_token"))
            if not token:
                raise PermanentError(NAME, "token answer without access_token")
            expires_in = parse.as_float(parse.as_dict(body).get("expires_in")) or 3600.0
            self._token = token
            # 60 s early, but never more than half the lifetime (short-lived tokens stay usable).
            lifetime = max(expires_in - REFRESH_MARGIN_S, expires_in / 2)
            self._token_expires_at = self._clock() + lifetime
            log.info("event=token_refreshed provider=%s expires_in_s=%d", NAME, int(expires_in))
            return token

    async def _fetch_token(self) -> JSON:
        response = await http.send(
            self._client,
            NAME,
            "POST",
            self._token_url,
            logger=log,
            kind="token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {self._basic}"},
        )
        if response.status_code in (400, 401):
            # {"error":"invalid_client"}: wrong id/secret; retrying cannot help.
            error = parse.as_str(parse.as_dict(http.try_json(response)).get("error")) or "unknown"
            raise CredentialsRejected(
                NAME, f"token request rejected (HTTP {response.status_code}, error={error})"
            )
        http.raise_for_status(NAME, response)
        body = http.json_body(NAME, response)
        # Only what we need: the gate never sees more than it must.
        return {
            "access_token": parse.as_dict(body).get("access_token"),
            "expires_in": parse.as_dict(body).get("expires_in"),
        }

    async def _api_get(self, url: str, kind: str, **kwargs: Any) -> Any:
        """GET with the bearer token; on a 401 refresh the token once and try again."""
        token = await self._access_token()
        for attempt in (1, 2):
            response = await http.send(
                self._client,
                NAME,
                "GET",
                url,
                logger=log,
                kind=kind,
                headers={"Authorization": f"Bearer {token}"},
                **kwargs,
            )
            if response.status_code == 401 and attempt == 1:
                log.info("event=token_rejected provider=%s action=refresh", NAME)
                token = await self._access_token(force=True, stale=token)
                continue
            if response.status_code == 403 and kind == "features":
                raise FeatureUnavailable(NAME, "audio features are not available for this app")
            http.raise_for_status(NAME, response)
            return http.json_body(NAME, response)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- lookups -------------------------------------------------------------------------

    async def lookup(self, query: TrackQuery) -> list[Candidate]:
        # Get the token in its own gate call, not nested inside the API call's fetch: a gate
        # holding a permit (or a half-open breaker's single probe) while fetching must not need a
        # second one. Only a 401 mid-call refreshes from inside the fetch.
        await self._access_token()
        candidates: list[Candidate] = []
        if query.spotify_id and _ID_RE.match(query.spotify_id):
            sid = query.spotify_id
            candidates = await self._candidates("id", sid, lambda: self._fetch_track(sid))
        if not candidates and (query.title.strip() or normalize_isrc(query.isrc)):
            q, via = build_search_q(query)
            candidates = await self._candidates("search", parse.cache_key(q, self._limit),
                                                lambda: self._fetch_search(q, via))
        if candidates and self._audio_features and not self._features_unavailable:
            candidates[0] = await self._with_features(candidates[0])
        log.debug("event=lookup provider=%s candidates=%d", NAME, len(candidates))
        return candidates

    async def lookup_again(self, query: TrackQuery) -> list[Candidate]:
        qs = build_again_qs(query)
        if not qs:
            return []
        await self._access_token()
        found: dict[str, Candidate] = {}
        for q in qs:
            for cand in await self._candidates("again", parse.cache_key(q, self._limit),
                                               functools.partial(self._fetch_search, q, "again")):
                found.setdefault(str(cand.get("spotify_id")), cand)
        log.debug("event=lookup provider=%s via=again candidates=%d", NAME, len(found))
        return list(found.values())

    async def _fetch_track(self, sid: str) -> JSON:
        try:
            body = await self._api_get(f"/tracks/{sid}", "id")
        except NotFound:
            return []
        cand = parse_track(body, via="id")
        return [] if cand is None else [cand.to_json()]

    async def _fetch_search(self, q: str, via: str) -> JSON:
        try:
            body = await self._api_get(
                "/search", "search", params={"q": q, "type": "track", "limit": self._limit}
            )
        except NotFound:
            return []
        items = parse.as_list(parse.as_dict(parse.as_dict(body).get("tracks")).get("items"))
        out = []
        for item in items:
            cand = parse_track(item, via=via)
            if cand is not None:
                out.append(cand.to_json())
        return out

    async def _with_features(self, cand: Candidate) -> Candidate:
        sid = cand.get("spotify_id")
        if not sid:
            return cand
        spec = CallSpec(NAME, "features", str(sid))
        try:
            feats = parse.as_dict(await self._gate.run(spec, lambda: self._fetch_features(sid)))
        except FeatureUnavailable:
            self._features_unavailable = True
            log.warning("event=feature_unavailable provider=%s feature=audio_features", NAME)
            return cand
        extra = parse.compact(
            {
                "bpm": parse.as_float(feats.get("tempo")) or None,
                "key": key_name(feats.get("key"), feats.get("mode")),
            }
        )
        return Candidate(cand.provider, {**cand.fields, **extra}, cand.provider_score, cand.via)

    async def _fetch_features(self, sid: str) -> JSON:
        try:
            body = await self._api_get(f"/audio-features/{sid}", "features")
        except NotFound:
            return {}
        b = parse.as_dict(body)
        return {"tempo": b.get("tempo"), "key": b.get("key"), "mode": b.get("mode")}
