"""Spotify: accounts service (client-credentials tokens) and Web API search, tracks, audio features.

Served under ``/spotify/accounts`` and ``/spotify/v1``.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
from typing import Any

from aiohttp import web

from trackflow.providers.simulator.catalog import Track, base62_id, int_id
from trackflow.providers.simulator.limits import Decision
from trackflow.providers.simulator.queries import parse_filters
from trackflow.providers.simulator.quirks import PLAIN, Quirks
from trackflow.providers.simulator.state import json_response, state_of

NAME = "spotify"
PREFIX = "/spotify"
API = "https://api.spotify.com/v1"
FILTERS = frozenset({"artist", "track", "album", "year", "isrc", "genre"})


def _error(status: int, message: str | None = None) -> web.Response:
    body: dict[str, Any] = {"status": status}
    if message is not None:
        body["message"] = message
    return json_response({"error": body}, status=status)


def limit_answer(decision: Decision, quirks: Quirks) -> web.Response:
    """429 with ``Retry-After`` in whole seconds, as Spotify sends it (with quirks, its real
    message and at times ``Retry-After: 0``)."""
    if not quirks.enabled:
        response = _error(429, "Too many requests")
        response.headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after_s)))
        return response
    response = _error(429, "API rate limit exceeded")
    zero = quirks.of_answer("spotify_retry_after_zero")
    response.headers["Retry-After"] = "0" if zero else str(max(1, math.ceil(
        decision.retry_after_s)))
    return response


def fault_answer(status: int, quirks: Quirks) -> web.Response:
    """A Spotify-shaped error for outages and injected errors."""
    messages = {500: "Server error", 502: "Bad gateway", 503: "Service unavailable"}
    return _error(status, messages.get(status, "Service unavailable"))


def decorate(response: web.StreamResponse, decision: Decision | None, quirks: Quirks) -> None:
    """Spotify adds no rate-limit headers to ordinary answers."""


def _artist(name: str) -> dict[str, Any]:
    artist_id = base62_id("spotify:artist", name)
    return {
        "external_urls": {"spotify": f"https://open.spotify.com/artist/{artist_id}"},
        "href": f"{API}/artists/{artist_id}",
        "id": artist_id,
        "name": name,
        "type": "artist",
        "uri": f"spotify:artist:{artist_id}",
    }


def track_object(t: Track, quirks: Quirks = PLAIN) -> dict[str, Any]:
    """A full Spotify track object (older ones, with quirks, lack ``album.release_date``)."""
    album_id = base62_id("spotify:album", t.release_key)
    artists = [_artist(name) for name in t.artists]
    name = t.title
    if len(artists) > 1 and "feat." not in name.lower():
        name = f"{name} (feat. {', '.join(a['name'] for a in artists[1:])})"
    body: dict[str, Any] = {
        "album": {
            "album_type": t.album_type,
            "artists": artists[:1],
            "external_urls": {"spotify": f"https://open.spotify.com/album/{album_id}"},
            "href": f"{API}/albums/{album_id}",
            "id": album_id,
            "images": [],
            "name": t.album,
            "release_date": t.release_date,
            "release_date_precision": "day" if len(t.release_date) == 10 else "year",
            "total_tracks": max(t.track_number, 1 if t.album_type == "single" else 12),
            "type": "album",
            "uri": f"spotify:album:{album_id}",
        },
        "artists": artists,
        "disc_number": 1,
        "duration_ms": t.duration_ms,
        "explicit": t.explicit,
        "external_ids": {"isrc": t.isrc},
        "external_urls": {"spotify": f"https://open.spotify.com/track/{t.spotify_id}"},
        "href": f"{API}/tracks/{t.spotify_id}",
        "id": t.spotify_id,
        "is_local": False,
        "name": name,
        "popularity": t.popularity,
        "preview_url": None,
        "track_number": t.track_number,
        "type": "track",
        "uri": f"spotify:track:{t.spotify_id}",
    }
    if quirks.of_record("spotify_no_release_date", t.spotify_id):
        del body["album"]["release_date"], body["album"]["release_date_precision"]
    return body


async def token(request: web.Request) -> web.Response:
    """``POST /api/token`` with client credentials (Basic auth or form fields)."""
    state = state_of(request)
    cfg = state.config
    form = await request.post()
    client_id = str(form.get("client_id", ""))
    client_secret = str(form.get("client_secret", ""))
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        try:
            client_id, _, client_secret = (
                base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            client_id = client_secret = ""
    if form.get("grant_type") != "client_credentials":
        return json_response(
            {
                "error": "unsupported_grant_type",
                "error_description": "grant_type parameter is missing",
            },
            status=400,
        )
    if (client_id, client_secret) != (cfg.spotify_client_id, cfg.spotify_client_secret):
        return json_response(
            {"error": "invalid_client", "error_description": "Invalid client"}, status=400
        )
    access_token = "BQ" + secrets.token_urlsafe(90)
    state.tokens[access_token] = state.now() + cfg.token_ttl_s
    return json_response(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": max(1, math.ceil(cfg.token_ttl_s)),
        }
    )


def _auth_error(request: web.Request) -> web.Response | None:
    state = state_of(request)
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return _error(401, "No token provided")
    expires = state.tokens.get(auth[7:].strip())
    if expires is None or expires <= state.now():
        return _error(401, "The access token expired")
    return None


async def search(request: web.Request) -> web.Response:
    """``GET /v1/search?q=...&type=track&limit=...&offset=...``."""
    if (denied := _auth_error(request)) is not None:
        return denied
    cfg = state_of(request).config
    q = request.query.get("q", "").strip()
    if not q:
        return _error(400, "No search query")
    types = request.query.get("type", "")
    if not types:
        return _error(400, "Missing parameter type")
    if "track" not in types.split(","):
        return _error(400, "Unsupported type; this simulator serves type=track")
    try:
        limit = int(request.query.get("limit", cfg.search_default_limit))
        offset = int(request.query.get("offset", 0))
    except ValueError:
        return _error(400, "Invalid limit")
    if not 0 < limit <= cfg.search_max_limit:
        return _error(400, "Invalid limit")
    if offset < 0 or offset > 1000:
        return _error(400, "Invalid offset")
    catalog = state_of(request).catalog
    filters, free = parse_filters(q, FILTERS)
    if "isrc" in filters:
        tracks = catalog.by_isrc(filters["isrc"])
    else:
        hits = catalog.search(
            title=filters.get("track"),
            artist=filters.get("artist"),
            album=filters.get("album"),
            text=free or None,
            require=[f for f in ("title", "artist", "album") if f in _asked(filters)],
            limit=offset + limit + 50,
        )
        tracks = [h.track for h in hits]
    if "year" in filters:
        years = filters["year"].split("-")
        low, high = years[0], years[-1]
        tracks = [t for t in tracks if low <= t.release_date[:4] <= high]
    page = tracks[offset : offset + limit]
    base = f"{API}/search?query={q}&type=track"
    more = offset + limit < len(tracks)
    return json_response(
        {
            "tracks": {
                "href": f"{base}&offset={offset}&limit={limit}",
                "items": [track_object(t, state_of(request).quirks) for t in page],
                "limit": limit,
                "next": f"{base}&offset={offset + limit}&limit={limit}" if more else None,
                "offset": offset,
                "previous": f"{base}&offset={max(0, offset - limit)}&limit={limit}"
                if offset
                else None,
                "total": len(tracks),
            }
        }
    )


def _asked(filters: dict[str, str]) -> set[str]:
    return {{"track": "title"}.get(name, name) for name in filters}


async def track(request: web.Request) -> web.Response:
    """``GET /v1/tracks/{id}``."""
    if (denied := _auth_error(request)) is not None:
        return denied
    track_id = request.match_info["id"]
    if len(track_id) != 22 or not track_id.isalnum():
        return _error(400, "invalid id")
    found = state_of(request).catalog.by_spotify_id(track_id)
    if found is None:
        return _error(404, "Resource not found")
    return json_response(track_object(found, state_of(request).quirks))


async def audio_features(request: web.Request) -> web.Response:
    """``GET /v1/audio-features/{id}``: 403 for new apps unless the config enables it."""
    if (denied := _auth_error(request)) is not None:
        return denied
    state = state_of(request)
    if not state.config.audio_features:
        return json_response({"error": {"status": 403}}, status=403)
    t = state.catalog.by_spotify_id(request.match_info["id"])
    if t is None:
        return _error(404, "Resource not found")

    def unit(salt: str) -> float:
        return int_id(salt, t.isrc, low=0, high=1000) / 1000

    return json_response(
        {
            "acousticness": unit("ac"),
            "analysis_url": f"{API}/audio-analysis/{t.spotify_id}",
            "danceability": unit("da"),
            "duration_ms": t.duration_ms,
            "energy": unit("en"),
            "id": t.spotify_id,
            "instrumentalness": unit("in"),
            "key": t.key,
            "liveness": unit("li"),
            "loudness": -unit("lo") * 12,
            "mode": t.mode,
            "speechiness": unit("sp") / 3,
            "tempo": t.bpm,
            "time_signature": 4,
            "track_href": f"{API}/tracks/{t.spotify_id}",
            "type": "audio_features",
            "uri": f"spotify:track:{t.spotify_id}",
            "valence": unit("va"),
        }
    )


def routes() -> list[web.RouteDef]:
    """Routes under ``/spotify``."""
    return [
        web.post(f"{PREFIX}/accounts/api/token", token, name="spotify.token"),
        web.get(f"{PREFIX}/v1/search", search, name="spotify.search"),
        web.get(f"{PREFIX}/v1/tracks/{{id}}", track, name="spotify.track"),
        web.get(
            f"{PREFIX}/v1/audio-features/{{id}}", audio_features, name="spotify.audio_features"
        ),
    ]
