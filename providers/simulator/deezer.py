"""Deezer: ``/track/isrc:{ISRC}``, ``/track/{id}`` and ``/search``, under ``/deezer``.

Deezer reports errors (including its quota) inside HTTP 200 bodies. With quirks on (the default,
:mod:`providers.simulator.quirks`): throttling sometimes comes as a bare HTTP 403 or 429, server
errors as HTML pages; a duet's ``artist`` is only its first main artist, the whole credit being in
``contributors`` (featured artists with ``role: "Featured"``); BPM is often an integer, sometimes
0 (unknown).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from trackflow.providers.simulator.catalog import Track, int_id
from trackflow.providers.simulator.limits import Decision
from trackflow.providers.simulator.queries import parse_filters
from trackflow.providers.simulator.quirks import Quirks
from trackflow.providers.simulator.state import json_response, state_of

_DUET_SEP = re.compile(r"\s+&\s+|,\s+")

NAME = "deezer"
PREFIX = "/deezer"
API = "https://api.deezer.com"
FILTERS = frozenset(
    {"artist", "track", "album", "label", "dur_min", "dur_max", "bpm_min", "bpm_max"}
)
_VERSION_RE = re.compile(r"\s*(\([^)]*\)|- .*)$")


def _error(kind: str, message: str, code: int, status: int = 200) -> web.Response:
    return json_response({"error": {"type": kind, "message": message, "code": code}}, status=status)


def _html(status: int, title: str) -> web.Response:
    return web.Response(status=status, content_type="text/html",
                        text=f"<html><head><title>{status} {title}</title></head><body>"
                             f"<h1>{title}</h1></body></html>")


def limit_answer(decision: Decision, quirks: Quirks) -> web.Response:
    """HTTP 200 with error code 4, no Retry-After; with quirks, at times a bare 403 or 429."""
    if quirks.of_answer("deezer_bare_throttle"):
        status = quirks.pick((403, 429))
        return _html(status, "Forbidden" if status == 403 else "Too Many Requests")
    return _error("Exception", "Quota limit exceeded", 4)


def fault_answer(status: int, quirks: Quirks) -> web.Response:
    """Outages and server errors do come with a real HTTP status (with quirks, at times an HTML
    page rather than Deezer's JSON)."""
    if quirks.of_answer("deezer_html_fault"):
        return _html(status, "Service Unavailable" if status == 503 else "Server Error")
    return _error("Exception", "An internal error occurred", 100 if status < 503 else 700, status)


def decorate(response: web.StreamResponse, decision: Decision | None, quirks: Quirks) -> None:
    """Deezer sends no rate-limit headers."""


def _no_data() -> web.Response:
    return _error("DataException", "no data", 800)


def _artist(name: str) -> dict[str, Any]:
    artist_id = int_id("deezer:artist", name, low=1, high=200_000_000)
    return {
        "id": artist_id,
        "name": name,
        "link": f"https://www.deezer.com/artist/{artist_id}",
        "picture": f"{API}/artist/{artist_id}/image",
        "tracklist": f"{API}/artist/{artist_id}/top?limit=50",
        "type": "artist",
    }


def _album(t: Track) -> dict[str, Any]:
    album_id = int_id("deezer:album", t.release_key, low=1, high=900_000_000)
    return {
        "id": album_id,
        "title": t.album,
        "link": f"https://www.deezer.com/album/{album_id}",
        "cover": f"{API}/album/{album_id}/image",
        "md5_image": f"{album_id:032x}"[-32:],
        "release_date": t.release_date if len(t.release_date) == 10 else f"{t.release_date}-01-01",
        "tracklist": f"{API}/album/{album_id}/tracks",
        "type": "album",
    }


def _credits(t: Track, quirks: Quirks) -> tuple[str, list[dict[str, Any]]]:
    """(``artist`` name, ``contributors``) as Deezer shows this track's credit."""
    names = t.artists
    if not quirks.of_record("deezer_duet", t.isrc) or not _DUET_SEP.search(names[0]):
        return names[0], [{**_artist(name), "role": "Main"} for name in names]
    mains = [n for n in _DUET_SEP.split(names[0]) if n.strip()]
    contributors = [{**_artist(n), "role": "Main"} for n in mains]
    contributors += [{**_artist(n), "role": "Featured"} for n in names[1:]]
    return mains[0], contributors


def _bpm(t: Track, quirks: Quirks) -> float | int:
    if quirks.of_record("deezer_unknown_bpm", t.isrc):
        return 0
    if quirks.of_record("deezer_integer_bpm", t.isrc):
        return round(t.bpm)
    return t.bpm


def track_item(t: Track, *, full: bool, quirks: Quirks) -> dict[str, Any]:
    """A Deezer track: the full object, or the search item (no ISRC, BPM, gain, release date or
    contributors)."""
    artist, contributors = _credits(t, quirks)
    version = _VERSION_RE.search(t.title)
    short = t.title[: version.start()] if version else t.title
    body: dict[str, Any] = {
        "id": t.deezer_id,
        "readable": True,
        "title": t.title,
        "title_short": short,
        "title_version": version.group(0).strip() if version else "",
        "link": f"https://www.deezer.com/track/{t.deezer_id}",
        "duration": round(t.duration_ms / 1000),
        "rank": t.popularity * 10_000 + int_id("rank", t.isrc, low=0, high=9_999),
        "explicit_lyrics": t.explicit,
        "explicit_content_lyrics": 1 if t.explicit else 0,
        "explicit_content_cover": 0,
        "preview": f"https://cdnt-preview.dzcdn.net/api/1/1/{t.deezer_id}.mp3",
        "md5_image": f"{t.deezer_id:032x}"[-32:],
        "artist": _artist(artist),
        "album": _album(t),
        "type": "track",
    }
    if full:
        body.update(
            isrc=t.isrc,
            track_position=t.track_number,
            disk_number=1,
            release_date=_album(t)["release_date"],
            bpm=_bpm(t, quirks),
            gain=round(-6 - int_id("gain", t.isrc, low=0, high=900) / 100, 2),
            available_countries=["DE", "FR", "GB", "US"],
            contributors=contributors,
        )
    return body


async def track(request: web.Request) -> web.Response:
    """``GET /track/{id}`` or ``GET /track/isrc:{ISRC}``."""
    catalog = state_of(request).catalog
    quirks = state_of(request).quirks
    ref = request.match_info["ref"]
    if ref.lower().startswith("isrc:"):
        found = catalog.by_isrc(ref[5:])
        # Several releases share an ISRC; Deezer answers with one of them.
        return json_response(track_item(found[0], full=True, quirks=quirks)) if found \
            else _no_data()
    if not ref.isdigit():
        return _no_data()
    t = catalog.by_deezer_id(int(ref))
    return json_response(track_item(t, full=True, quirks=quirks)) if t else _no_data()


async def search(request: web.Request) -> web.Response:
    """``GET /search?q=artist:"x" track:"y"&index=&limit=``."""
    q = request.query.get("q", "").strip()
    if not q:
        return _error("ParameterException", "Wrong parameter: q", 501)
    try:
        index = max(int(request.query.get("index", 0)), 0)
        limit = min(max(int(request.query.get("limit", 25)), 1), 100)
    except ValueError:
        return _error("ParameterException", "Wrong parameter: index", 501)
    filters, free = parse_filters(q, FILTERS)
    hits = state_of(request).catalog.search(
        title=filters.get("track"),
        artist=filters.get("artist"),
        album=filters.get("album"),
        text=free or None,
        limit=index + limit + 50,
    )
    tracks = [h.track for h in hits]
    page = tracks[index : index + limit]
    quirks = state_of(request).quirks
    body: dict[str, Any] = {"data": [track_item(t, full=False, quirks=quirks) for t in page],
                            "total": len(tracks)}
    if index + limit < len(tracks):
        body["next"] = f"{API}/search?{urlencode({'q': q, 'index': index + limit})}"
    if index:
        body["prev"] = f"{API}/search?{urlencode({'q': q, 'index': max(0, index - limit)})}"
    return json_response(body)


def routes() -> list[web.RouteDef]:
    """Routes under ``/deezer``."""
    return [
        web.get(f"{PREFIX}/track/{{ref}}", track, name="deezer.track"),
        web.get(f"{PREFIX}/search", search, name="deezer.search"),
        web.get(f"{PREFIX}/search/track", search, name="deezer.search_track"),
    ]
