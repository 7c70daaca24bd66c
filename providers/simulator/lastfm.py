"""Last.fm 2.0: ``track.getInfo`` and ``track.getTopTags``, under ``/lastfm/2.0/``.

Errors are JSON bodies ``{"error": n, "message": ...}``; numbers in answers are strings. With
quirks on (the default, :mod:`providers.simulator.quirks`) error bodies carry ``"links": []``,
error 29 has its newer wording, some tracks have no ``mbid`` key at all and some a duration of
``"0"``. A wrong key gets error 10 with HTTP 403, as on the real service.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

from aiohttp import web

from trackflow.providers.simulator.catalog import Track, main_artist
from trackflow.providers.simulator.limits import Decision
from trackflow.providers.simulator.quirks import PLAIN, Quirks
from trackflow.providers.simulator.search import fold
from trackflow.providers.simulator.state import json_response, state_of

NAME = "lastfm"
PREFIX = "/lastfm/2.0"
# HTTP statuses observed with each error code (clients must read the body either way).
_STATUS = {6: 200, 8: 500, 10: 403, 11: 503, 16: 503, 26: 403, 29: 429, 3: 400}


def error(code: int, message: str, quirks: Quirks = PLAIN, status: int | None = None
          ) -> web.Response:
    """A Last.fm error body."""
    body: dict[str, Any] = {"error": code, "message": message}
    if quirks.enabled:
        body["links"] = []
    return json_response(body, status=status or _STATUS.get(code, 200))


def limit_answer(decision: Decision, quirks: Quirks) -> web.Response:
    """Error 29 (its wording changed over the years: clients read the code)."""
    if quirks.enabled:
        return error(29, "Rate limit exceeded - too many requests, slow down", quirks)
    return error(29, "Rate Limit Exceeded - Your IP has made too many requests in a short period")


def fault_answer(status: int, quirks: Quirks) -> web.Response:
    """Error 11 (service offline) for outages, 16 (temporarily unavailable) for other errors."""
    if status == 503:
        return error(11, "Service Offline - This service is temporarily offline. Try again later.",
                     quirks, 503)
    return error(16, "There was a temporary error processing your request. Please try again",
                 quirks, status)


def decorate(response: web.StreamResponse, decision: Decision | None, quirks: Quirks) -> None:
    """Last.fm sends no rate-limit headers."""


def _url(t: Track) -> str:
    return f"https://www.last.fm/music/{quote_plus(main_artist(t.artist))}/_/{quote_plus(t.title)}"


def _tags(t: Track) -> list[dict[str, Any]]:
    return [{"name": g, "url": f"https://www.last.fm/tag/{quote_plus(g)}"} for g in t.genres]


def _find(request: web.Request) -> Track | None:
    catalog = state_of(request).catalog
    mbid = request.query.get("mbid", "").strip()
    if mbid:
        found = catalog.by_mbid(mbid)
        return found[0] if found else None
    artist, title = request.query.get("artist", ""), request.query.get("track", "")
    hits = catalog.search(title=title, artist=artist, require=["title", "artist"], limit=20)
    want = (fold(artist).strip(), fold(title).strip())
    for hit in hits:
        t = hit.track
        if (fold(t.artist), fold(t.title)) == want or (
            fold(main_artist(t.artist)),
            fold(t.title),
        ) == want:
            return t
    # autocorrect=1 fixes small spelling differences; model it as a near-perfect token match.
    if request.query.get("autocorrect") == "1" and hits and hits[0].score >= 0.9:
        return hits[0].track
    return None


def _track_info(t: Track, quirks: Quirks) -> dict[str, Any]:
    # Last.fm knows only some MBIDs; an empty string is common.
    mbid = t.mbid if int(t.mbid[-1], 16) % 3 else ""
    body = {
        "track": {
            "name": t.title,
            "mbid": mbid,
            "url": _url(t),
            "duration": str(t.duration_ms),
            "streamable": {"#text": "0", "fulltrack": "0"},
            "listeners": str(t.listeners),
            "playcount": str(t.playcount),
            "artist": {
                "name": main_artist(t.artist),
                "mbid": "",
                "url": f"https://www.last.fm/music/{quote_plus(main_artist(t.artist))}",
            },
            "album": {
                "artist": main_artist(t.artist),
                "title": t.album,
                "url": f"https://www.last.fm/music/{quote_plus(main_artist(t.artist))}/{quote_plus(t.album)}",
                "image": [],
            },
            "toptags": {"tag": _tags(t)},
            "wiki": {"published": f"{t.release_date[:4]}"},
        }
    }
    track = body["track"]
    if not mbid and quirks.of_record("lastfm_no_mbid_key", t.isrc, t.title):
        del track["mbid"]
    if quirks.of_record("lastfm_zero_duration", t.isrc, t.title):
        track["duration"] = "0"
    return body


def _top_tags(t: Track) -> dict[str, Any]:
    tags = [
        {
            "count": max(100 - 23 * i, 1),
            "name": g,
            "url": f"https://www.last.fm/tag/{quote_plus(g)}",
        }
        for i, g in enumerate(t.genres)
    ]
    return {"toptags": {"tag": tags, "@attr": {"artist": main_artist(t.artist), "track": t.title}}}


async def root(request: web.Request) -> web.Response:
    """``GET /2.0/?method=...&api_key=...&format=json``."""
    cfg = state_of(request).config
    quirks = state_of(request).quirks
    if request.query.get("api_key", "") != cfg.lastfm_api_key:
        return error(10, "Invalid API key - You must be granted a valid key by last.fm", quirks)
    method = request.query.get("method", "").lower()
    if method not in ("track.getinfo", "track.gettoptags"):
        return error(3, "Invalid Method - No method with that name in this package", quirks)
    if not request.query.get("mbid") and not (
        request.query.get("artist") and request.query.get("track")
    ):
        return error(6, "Track not found" if method == "track.getinfo" else "Invalid parameters",
                     quirks)
    t = _find(request)
    if t is None:
        return error(6, "Track not found", quirks)
    return json_response(_track_info(t, quirks) if method == "track.getinfo" else _top_tags(t))


def routes() -> list[web.RouteDef]:
    """Routes under ``/lastfm/2.0``."""
    return [
        web.get(f"{PREFIX}/", root, name="lastfm.api"),
        web.get(PREFIX, root, name="lastfm.api_noslash"),
    ]
