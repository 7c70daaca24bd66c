"""Discogs: ``/database/search`` with token auth and rate-limit headers, under ``/discogs``."""

from __future__ import annotations

import math
import re
from typing import Any

from aiohttp import web

from trackflow.providers.simulator.catalog import Track, main_artist
from trackflow.providers.simulator.limits import Decision
from trackflow.providers.simulator.state import json_response, state_of

NAME = "discogs"
PREFIX = "/discogs"
API = "https://api.discogs.com"
# Our lower-case genres -> (Discogs genre, Discogs style).
_GENRES = {
    "pop": ("Pop", ""), "dance pop": ("Pop", "Europop"), "rock": ("Rock", ""),
    "indie rock": ("Rock", "Indie Rock"), "electronic": ("Electronic", ""),
    "house": ("Electronic", "House"), "progressive house": ("Electronic", "Progressive House"),
    "trance": ("Electronic", "Trance"), "techno": ("Electronic", "Techno"),
    "hip hop": ("Hip Hop", ""), "rap": ("Hip Hop", "Pop Rap"), "r&b": ("Funk / Soul", "RnB/Swing"),
    "latin": ("Latin", ""), "reggaeton": ("Latin", "Reggaeton"),
    "folk": ("Folk, World, & Country", ""), "singer-songwriter": ("Rock", "Folk Rock"),
    "metal": ("Rock", "Heavy Metal"), "jazz": ("Jazz", ""),
    "country": ("Folk, World, & Country", "Country"),
}  # fmt: skip
_TOKEN_RE = re.compile(r"^Discogs\s+token=(\S+)$")


def limit_answer(decision: Decision) -> web.Response:
    """429 with Discogs' message; the rate-limit headers are added by :func:`decorate`."""
    response = json_response({"message": "You are making requests too quickly."}, status=429)
    response.headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after_s)))
    return response


def fault_answer(status: int) -> web.Response:
    """A Discogs-shaped error for outages and injected errors."""
    return json_response({"message": "Service temporarily unavailable."}, status=status)


def decorate(response: web.StreamResponse, decision: Decision | None) -> None:
    """``X-Discogs-Ratelimit``, ``-Used`` and ``-Remaining`` on every answer."""
    if decision is None:
        return
    response.headers["X-Discogs-Ratelimit"] = str(decision.limit)
    response.headers["X-Discogs-Ratelimit-Used"] = str(min(decision.used, decision.limit))
    response.headers["X-Discogs-Ratelimit-Remaining"] = str(decision.remaining)


def _genres(t: Track) -> tuple[list[str], list[str]]:
    genres: list[str] = []
    styles: list[str] = []
    for g in t.genres:
        genre, style = _GENRES.get(g, (g.title(), ""))
        if genre not in genres:
            genres.append(genre)
        if style and style not in styles:
            styles.append(style)
    return genres or ["Pop"], styles


def result(t: Track) -> dict[str, Any]:
    """One search result: the release carrying ``t``."""
    genres, styles = _genres(t)
    rid = t.discogs_release_id
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{main_artist(t.artist)} {t.album}").strip("-")
    return {
        "id": rid,
        "type": "release",
        "master_id": rid // 7,
        "master_url": f"{API}/masters/{rid // 7}",
        "uri": f"/release/{rid}-{slug}",
        "resource_url": f"{API}/releases/{rid}",
        "title": f"{main_artist(t.artist)} - {t.album}",
        "year": t.release_date[:4],
        "country": t.country,
        "genre": genres,
        "style": styles,
        "label": [t.label] if t.label else [],
        "catno": f"{re.sub(r'[^A-Z]', '', t.label.upper())[:4] or 'CAT'}{rid % 1000:03d}",
        "format": ["File", "MP3", "Single"]
        if t.album_type == "single"
        else ["Vinyl", "LP", "Album"],
        "barcode": [],
        "thumb": "",
        "cover_image": "",
        "community": {"want": t.popularity * 7, "have": t.popularity * 11},
    }


def _authorised(request: web.Request) -> bool:
    expected = state_of(request).config.discogs_token
    match = _TOKEN_RE.match(request.headers.get("Authorization", "").strip())
    token = match.group(1) if match else request.query.get("token", "")
    return token == expected


async def search(request: web.Request) -> web.Response:
    """``GET /database/search?type=release&artist=&track=&release_title=&q=&per_page=&page=``."""
    if not _authorised(request):
        return json_response(
            {"message": "You must authenticate to access this resource."}, status=401
        )
    query = request.query
    if query.get("type", "release") not in ("release", "all", ""):
        return json_response({"pagination": _pagination(1, 50, 0), "results": []})
    try:
        per_page = min(max(int(query.get("per_page", 50)), 1), 100)
        page = max(int(query.get("page", 1)), 1)
    except ValueError:
        return json_response({"message": "Invalid page or per_page."}, status=400)
    catalog = state_of(request).catalog
    hits = catalog.search(
        title=query.get("track") or None,
        artist=query.get("artist") or None,
        album=query.get("release_title") or None,
        text=query.get("q") or None,
        limit=page * per_page + 50,
    )
    seen: set[int] = set()
    releases: list[Track] = []
    for hit in hits:  # one result per release
        if hit.track.discogs_release_id not in seen:
            seen.add(hit.track.discogs_release_id)
            releases.append(hit.track)
    chunk = releases[(page - 1) * per_page : page * per_page]
    return json_response(
        {
            "pagination": _pagination(page, per_page, len(releases)),
            "results": [result(t) for t in chunk],
        }
    )


def _pagination(page: int, per_page: int, items: int) -> dict[str, Any]:
    pages = max(1, math.ceil(items / per_page))
    urls: dict[str, str] = {}
    if page < pages:
        urls["next"] = f"{API}/database/search?page={page + 1}&per_page={per_page}"
        urls["last"] = f"{API}/database/search?page={pages}&per_page={per_page}"
    return {"page": page, "pages": pages, "per_page": per_page, "items": items, "urls": urls}


def routes() -> list[web.RouteDef]:
    """Routes under ``/discogs``."""
    return [web.get(f"{PREFIX}/database/search", search, name="discogs.search")]
