"""MusicBrainz WS/2: ISRC lookup and Lucene recording search, under ``/musicbrainz/ws/2``.

A fuzzy term (``recording:hodl~1``, ``artist:pitbulll~2``, ``~`` alone meaning 2 edits) stands
for the indexed title or artist words within that many edits, as Lucene expands it (see
:mod:`.search`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from trackflow.providers.normalize import ISRC_PATTERN
from trackflow.providers.simulator.catalog import Track, mb_uuid, split_artists
from trackflow.providers.simulator.limits import Decision
from trackflow.providers.simulator.queries import LuceneQuery, parse_lucene
from trackflow.providers.simulator.quirks import PLAIN, Quirks
from trackflow.providers.simulator.state import json_response, state_of

NAME = "musicbrainz"
PREFIX = "/musicbrainz/ws/2"
HELP = "For usage, please see: https://musicbrainz.org/development/mmd"
# Library defaults and other anonymous agents that MusicBrainz blocks.
_GENERIC_UA = re.compile(
    r"^(python-requests|python-httpx|python-urllib|python/|aiohttp|curl|wget|java|go-http-client"
    r"|okhttp|node-fetch|axios|libwww-perl|httpie|mozilla/5\.0$)",
    re.IGNORECASE,
)


def limit_answer(decision: Decision, quirks: Quirks) -> web.Response:
    """503 with MusicBrainz's rate-limit JSON (no Retry-After, as on the real service)."""
    return json_response(
        {
            "error": "Your requests are exceeding the allowable rate limit. Please see "
            "http://wiki.musicbrainz.org/XMLWebService for more information."
        },
        status=503,
    )


def fault_answer(status: int, quirks: Quirks) -> web.Response:
    """A MusicBrainz-shaped error for outages and injected errors. With quirks a 503 says the
    server is busy: transient, but not the rate-limit answer."""
    if status == 503 and quirks.enabled:
        return json_response({"error": "The MusicBrainz web server is currently busy. Please "
                                       "try again later.", "help": HELP}, status=503)
    return json_response({"error": "Internal server error", "help": HELP}, status=status)


def decorate(response: web.StreamResponse, decision: Decision | None, quirks: Quirks) -> None:
    """MusicBrainz sends no rate-limit headers that clients rely on."""


def blocked_agent(user_agent: str) -> bool:
    """True for a missing or generic User-Agent (MusicBrainz requires an identifying one)."""
    user_agent = user_agent.strip()
    return not user_agent or bool(_GENERIC_UA.match(user_agent))


def _check(request: web.Request) -> web.Response | None:
    if blocked_agent(request.headers.get("User-Agent", "")):
        return json_response(
            {
                "error": "Your user agent is blocked: please identify your application, e.g. "
                "'AppName/1.0 ( contact@example.org )'.",
                "help": HELP,
            },
            status=403,
        )
    return None


def _artist_credit(artist: str, *, omit_joinphrase: bool = False) -> list[dict[str, Any]]:
    names = split_artists(artist)
    credits = [
        {
            "name": name,
            "joinphrase": " feat. " if i < len(names) - 1 else "",
            "artist": {
                "id": mb_uuid("mb:artist", name),
                "name": name,
                "sort-name": name[4:] + ", The" if name.startswith("The ") else name,
                "disambiguation": "",
            },
        }
        for i, name in enumerate(names)
    ]
    if omit_joinphrase and len(credits) == 1:
        del credits[0]["joinphrase"]  # search results leave it out of a single credit
    return credits


def _release(t: Track) -> dict[str, Any]:
    return {
        "id": mb_uuid("mb:release", t.release_key),
        "title": t.album,
        "status": "Official",
        "date": t.release_date,
        "country": t.country,
        "release-group": {
            "id": mb_uuid("mb:release-group", t.release_key),
            "primary-type": "Single" if t.album_type == "single" else "Album",
        },
        "track-count": max(t.track_number, 1),
    }


def recording(appearances: list[Track], inc: set[str], *, search: bool,
              quirks: Quirks = PLAIN) -> dict[str, Any]:
    """A recording object built from every appearance of one recording."""
    t = appearances[0]
    body: dict[str, Any] = {
        "id": t.mbid,
        "title": t.title,
        "length": t.duration_ms,
        "disambiguation": "live" if t.title.endswith("(Live)") else "",
        "video": None if search and quirks.of_record("musicbrainz_video_null", t.mbid)
        else False,
        "first-release-date": min(a.release_date for a in appearances),
    }
    if search or "artist-credits" in inc or "artists" in inc:
        body["artist-credit"] = _artist_credit(t.artist,
                                               omit_joinphrase=search and quirks.enabled)
    if search or "releases" in inc:
        body["releases"] = [_release(a) for a in appearances]
    if search or "isrcs" in inc:
        body["isrcs"] = [t.isrc]
    if search or "tags" in inc:
        body["tags"] = [{"count": len(t.genres) - i, "name": g} for i, g in enumerate(t.genres)]
    if "genres" in inc:
        body["genres"] = [
            {
                "count": len(t.genres) - i,
                "name": g,
                "id": mb_uuid("mb:genre", g),
                "disambiguation": "",
            }
            for i, g in enumerate(t.genres)
        ]
    return body


def _inc(request: web.Request) -> set[str]:
    return {part for part in re.split(r"[+ ]", request.query.get("inc", "")) if part}


async def isrc(request: web.Request) -> web.Response:
    """``GET /ws/2/isrc/{isrc}?fmt=json&inc=artist-credits+releases``."""
    if (denied := _check(request)) is not None:
        return denied
    code = request.match_info["isrc"].upper()
    if not ISRC_PATTERN.match(code):
        return json_response({"error": "Invalid isrc.", "help": HELP}, status=400)
    catalog = state_of(request).catalog
    appearances = catalog.by_isrc(code)
    if not appearances:
        return json_response({"error": "Not Found", "help": HELP}, status=404)
    inc = _inc(request)
    return json_response(
        {
            "isrc": code,
            "recordings": [recording(catalog.recording(appearances[0]), inc, search=False)],
        }
    )


def _in_range(value: int, bounds: tuple[str, str]) -> bool:
    low, high = bounds
    return (low == "*" or value >= int(low)) and (high == "*" or value <= int(high))


_FUZZY_RE = re.compile(r"^(.+?)~(\d*(?:\.\d+)?)$")


def _expand_fuzzy(request: web.Request, text: str | None, field: str) -> str | None:
    """A ``recording`` or ``artist`` value with each fuzzy term replaced by the words of the
    catalog's ``field`` (title or artist) it stands for."""
    if text is None or "~" not in text:
        return text
    index = state_of(request).catalog.index
    words = []
    for word in text.split():
        fuzzy = _FUZZY_RE.match(word)
        if fuzzy is None:
            words.append(word)
            continue
        term, edits = fuzzy.groups()
        # "~0.8" is Lucene's old similarity form: read as the default, like Lucene 4+ does.
        max_edits = int(edits) if edits.isdigit() else 2
        words.extend(index.fuzzy(field, term, max_edits) or [term])
    return " ".join(words)


def _search(request: web.Request, query: LuceneQuery, limit: int) -> list[tuple[Track, int]]:
    catalog = state_of(request).catalog
    if "isrc" in query.fields:
        tracks = [t for code in query.fields["isrc"] for t in catalog.by_isrc(code)[:1]]
        scored = [(t, 100) for t in tracks]
    else:
        title = _expand_fuzzy(request, query.text("recording") or query.text("recordingaccent"),
                              "title")
        artist = _expand_fuzzy(request, query.text("artist") or query.text("artistname"),
                               "artist")
        album = query.text("release")
        require = [f for f, v in (("title", title), ("artist", artist), ("album", album)) if v]
        hits = catalog.search(
            title=title,
            artist=artist,
            album=album,
            text=" ".join(query.free) or None,
            require=require,
            limit=limit * 4 + 50,
        )
        scored = [(h.track, round(h.score * 100)) for h in catalog.unique_recordings(hits)]
    if "dur" in query.ranges:
        try:
            scored = [(t, s) for t, s in scored if _in_range(t.duration_ms, query.ranges["dur"])]
        except ValueError:
            pass
    return scored


async def recording_search(request: web.Request) -> web.Response:
    """``GET /ws/2/recording?query=<lucene>&fmt=json&limit=&offset=``."""
    if (denied := _check(request)) is not None:
        return denied
    text = request.query.get("query", "").strip()
    if not text:
        return json_response({"error": "Invalid query: missing 'query'", "help": HELP}, status=400)
    try:
        limit = min(max(int(request.query.get("limit", 25)), 1), 100)
        offset = max(int(request.query.get("offset", 0)), 0)
    except ValueError:
        return json_response({"error": "Invalid limit or offset", "help": HELP}, status=400)
    catalog = state_of(request).catalog
    scored = _search(request, parse_lucene(text), offset + limit)
    page = scored[offset : offset + limit]
    recordings = []
    for t, score in page:
        body = recording(catalog.recording(t), set(), search=True,
                         quirks=state_of(request).quirks)
        recordings.append({"id": body.pop("id"), "score": score, **body})
    return json_response(
        {
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "count": len(scored),
            "offset": offset,
            "recordings": recordings,
        }
    )


def routes() -> list[web.RouteDef]:
    """Routes under ``/musicbrainz/ws/2``."""
    return [
        web.get(f"{PREFIX}/isrc/{{isrc}}", isrc, name="musicbrainz.isrc"),
        web.get(f"{PREFIX}/recording", recording_search, name="musicbrainz.search"),
        web.get(f"{PREFIX}/recording/", recording_search, name="musicbrainz.search_slash"),
    ]
