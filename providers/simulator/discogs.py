"""Discogs: ``/database/search`` with token auth and rate-limit headers, under ``/discogs``.

With quirks on (the default, :mod:`providers.simulator.quirks`) names carry Discogs' display
markers (``Name*``, ``Name (2)``, ``Name, The``, a trailing space), some releases have the
``Not On Label (...)`` placeholder, a plain-string ``label``, no ``year`` or no ``style``, a master
is listed before its release now and then, and some answers come without the
``X-Discogs-Ratelimit*`` headers.
"""

from __future__ import annotations

import math
import re
from typing import Any

from aiohttp import web

from trackflow.providers.simulator.catalog import Track, main_artist
from trackflow.providers.simulator.limits import Decision
from trackflow.providers.simulator.quirks import Quirks
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


def limit_answer(decision: Decision, quirks: Quirks) -> web.Response:
    """429 with Discogs' message; the rate-limit headers are added by :func:`decorate`."""
    response = json_response({"message": "You are making requests too quickly."}, status=429)
    response.headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after_s)))
    return response


def fault_answer(status: int, quirks: Quirks) -> web.Response:
    """A Discogs-shaped error for outages and injected errors."""
    return json_response({"message": "Service temporarily unavailable."}, status=status)


def decorate(response: web.StreamResponse, decision: Decision | None, quirks: Quirks) -> None:
    """``X-Discogs-Ratelimit``, ``-Used`` and ``-Remaining`` on every answer (with quirks, not
    always)."""
    if decision is None or quirks.of_answer("discogs_no_ratelimit_headers"):
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


def display_name(name: str, quirks: Quirks, kind: str = "artist") -> str:
    """``name`` as Discogs prints it, markers included."""
    if kind == "artist" and name.startswith("The ") and quirks.of_record("discogs_inverted", name):
        name = f"{name[4:]}, The"
    if quirks.of_record(f"discogs_numbered{'' if kind == 'artist' else '_label'}", name):
        name = f"{name} ({2 + int(quirks.of_record('discogs_numbered', 'n', name))})"
    elif kind == "artist" and quirks.of_record("discogs_name_variation", name):
        name = f"{name}*"
    return name


def _label(t: Track, quirks: Quirks) -> list[str] | str:
    if quirks.of_record("discogs_not_on_label", t.release_key):
        label = f"Not On Label ({main_artist(t.artist)} Self-released)"
    elif t.label:
        label = display_name(t.label, quirks, kind="label")
    else:
        return []
    return label if quirks.of_record("discogs_plain_label", t.release_key) else [label]


def result(t: Track, quirks: Quirks) -> dict[str, Any]:
    """One search result: the release carrying ``t``."""
    genres, styles = _genres(t)
    rid = t.discogs_release_id
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{main_artist(t.artist)} {t.album}").strip("-")
    title = f"{display_name(main_artist(t.artist), quirks)} - {t.album}"
    if quirks.of_record("discogs_trailing_space", t.release_key):
        title += " "
    out: dict[str, Any] = {
        "id": rid,
        "type": "release",
        "master_id": rid // 7,
        "master_url": f"{API}/masters/{rid // 7}",
        "uri": f"/release/{rid}-{slug}",
        "resource_url": f"{API}/releases/{rid}",
        "title": title,
        "year": t.release_date[:4],
        "country": t.country,
        "genre": genres,
        "style": styles,
        "label": _label(t, quirks),
        "catno": f"{re.sub(r'[^A-Z]', '', t.label.upper())[:4] or 'CAT'}{rid % 1000:03d}",
        "format": ["File", "MP3", "Single"]
        if t.album_type == "single"
        else ["Vinyl", "LP", "Album"],
        "barcode": [],
        "thumb": "",
        "cover_image": "",
        "community": {"want": t.popularity * 7, "have": t.popularity * 11},
    }
    if quirks.of_record("discogs_no_year", t.release_key):
        del out["year"]
    if quirks.of_record("discogs_no_style", t.release_key):
        del out["style"]
    return out


def master(t: Track, quirks: Quirks) -> dict[str, Any]:
    """The master of ``t``'s release, as a search lists it when the type filter lets it by."""
    release = result(t, quirks)
    mid = release["master_id"]
    return {"id": mid, "type": "master", "master_id": mid, "title": release["title"],
            "year": release.get("year", ""), "genre": release["genre"],
            "style": release.get("style", []), "uri": f"/master/{mid}",
            "resource_url": f"{API}/masters/{mid}"}


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
            "results": _results(chunk, state_of(request).quirks),
        }
    )


def _results(chunk: list[Track], quirks: Quirks) -> list[dict[str, Any]]:
    out = []
    for t in chunk:
        if quirks.of_record("discogs_master_result", t.release_key):
            out.append(master(t, quirks))
        out.append(result(t, quirks))
    return out


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
