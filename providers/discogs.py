"""Discogs client: release search by artist and track (personal token).

Discogs results are releases, not recordings: a candidate carries the release's artist, album
title, year, label and genres (genre + style), never a track title or duration.

Names in results carry Discogs' display markers, stripped before matching and before they fill
a field (:func:`clean_name`): ``*`` after a name variation, `` (2)`` telling same-named artists
(and labels) apart, inverted ``Name, The``, stray spaces. ``Not On Label (...)`` is its
placeholder for "no label". Older answers give ``label`` (and ``genre``/``style``) as a plain
string, ``year`` and ``style`` may be missing, and the ``X-Discogs-Ratelimit*`` headers are not
always there. Results of any other ``type`` than ``release`` (masters, artists) are ignored.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

from trackflow.providers import http, parse
from trackflow.providers.base import JSON, CallGate, Candidate, TrackQuery
from trackflow.providers.client import ProviderClient, clamp_limit
from trackflow.providers.errors import NotFound

NAME = "discogs"
DEFAULT_URL = "https://api.discogs.com"

log = logging.getLogger("trackflow.providers.discogs")


_NUMBERED = re.compile(r"\s+\(\d+\)$")
_INVERTED = re.compile(r"^(.+?),\s+(The|A|An|Die|Les|La|Le|Los|El)$", re.IGNORECASE)
# Between credited names: " & ", ", ", " / ", " Feat. ", " Vs. ", " And ", " + ", " x ".
_CREDIT_SEP = re.compile(r"(\s+(?:&|/|\+|and|feat\.?|ft\.|vs\.?|x)\s+|,\s+)", re.IGNORECASE)
_NO_LABEL = re.compile(r"^not on label\b", re.IGNORECASE)


def _clean_one(name: str) -> str:
    name = " ".join(name.split())
    name = name.rstrip("*").rstrip()
    name = _NUMBERED.sub("", name).rstrip("*").rstrip()
    inverted = _INVERTED.match(name)
    if inverted:
        name = f"{inverted.group(2)} {inverted.group(1)}"
    return name


def clean_name(text: str) -> str:
    """An artist credit or label without Discogs' display markers.

    ``"Röyksopp* & Robyn (2) "`` -> ``"Röyksopp & Robyn"``, ``"Knife, The"`` -> ``"The Knife"``.
    A comma before an article is an inverted name, not a separator between two names.
    """
    parts = _CREDIT_SEP.split(" ".join(text.split()))
    out: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        sep = parts[i + 1] if i + 1 < len(parts) else ""
        nxt = parts[i + 2] if i + 2 < len(parts) else ""
        article = _NUMBERED.sub("", nxt.rstrip("*")).rstrip("*")
        if sep.strip() == "," and _INVERTED.match(f"{part.rstrip('*')}, {article}"):
            # "Knife, The (2)": rejoin, then clean as one name.
            part, sep = f"{part}, {nxt}", parts[i + 3] if i + 3 < len(parts) else ""
            i += 2
        out.append(_clean_one(part))
        if sep:
            out.append(sep if sep.strip() == "," else f" {sep.strip()} ")
        i += 2
    return "".join(out).strip(" ,")


def _names(values: Any) -> list[str]:
    """Cleaned, unique names from a list or a lone string."""
    items = [values] if isinstance(values, str) else parse.as_list(values)
    out: list[str] = []
    for v in items:
        s = parse.as_str(v)
        s = clean_name(s) if s else None
        if s and s not in out:
            out.append(s)
    return out


def _labels(values: Any) -> list[str]:
    return [name for name in _names(values) if not _NO_LABEL.match(name)]


def _plain(values: Any) -> list[Any]:
    return [values] if isinstance(values, str) else parse.as_list(values)


def _unique(values: list[Any]) -> list[str]:
    out: list[str] = []
    for v in values:
        s = parse.as_str(v)
        if s and s not in out:
            out.append(s)
    return out


def parse_result(result: Any) -> Candidate | None:
    """A candidate from one ``/database/search`` result; None when it has no id."""
    result = parse.as_dict(result)
    rid = parse.as_int(result.get("id"))
    if rid is None:
        return None
    kind = parse.as_str(result.get("type"))
    if kind is not None and kind != "release":
        return None  # a master or an artist: no release id to record
    artist, album = None, parse.as_str(result.get("title"))
    if album and " - " in album:
        left, right = album.split(" - ", 1)
        artist, album = clean_name(left) or None, right.strip() or None
    year = parse.as_int(result.get("year"))
    labels = _labels(result.get("label"))
    fields = parse.compact(
        {
            "discogs_release_id": str(rid),
            "artist": artist,
            "album": album,
            "release_date": str(year) if year and year > 0 else None,
            "label": labels[0] if labels else None,
            "genres": _unique(_plain(result.get("genre")) + _plain(result.get("style"))),
        }
    )
    # Discogs ranks but gives no score: provider_score stays None (order carries the rank).
    return Candidate(provider=NAME, fields=fields, via="search")


class DiscogsClient(ProviderClient):
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
        super().__init__(base_url=base_url, timeout=timeout, gate=gate, transport=transport,
                         contact=contact)
        self._token = token
        self._limit = clamp_limit(search_limit)
        #: Requests left in Discogs' moving minute, from the last answer (None until known).
        self.ratelimit_remaining: int | None = None

    async def lookup(self, query: TrackQuery) -> list[Candidate]:
        if not query.title.strip():
            return []
        params = {"type": "release", "track": query.title.strip(), "per_page": str(self._limit)}
        if query.artist.strip():
            params["artist"] = query.artist.strip()
        found = await self._candidates("search",
                                       parse.cache_key(query.artist, query.title, self._limit),
                                       lambda: self._fetch_search(params))
        log.debug("event=lookup provider=%s via=search candidates=%d", NAME, len(found))
        return found

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
        results = parse.as_list(parse.as_dict(http.json_body(NAME, response)).get("results"))
        out = []
        for result in results:
            cand = parse_result(result)
            if cand is not None:
                out.append(cand.to_json())
        return out

    def _note_rate_limit(self, response: httpx.Response) -> None:
        remaining = parse.as_int(response.headers.get("X-Discogs-Ratelimit-Remaining"))
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
