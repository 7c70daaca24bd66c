"""Pure helpers the provider clients read answers and write queries with: tolerant converters
for JSON fields of any shape, the query text helpers, and the gate's cache keys. No I/O (the
transport is :mod:`providers.http`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_WS_RE = re.compile(r"\s+")


def cache_key(*parts: object) -> str:
    """A normalised gate key from query parts: case-folded, whitespace collapsed, ``|``-joined."""
    out = []
    for part in parts:
        text = "" if part is None else str(part)
        out.append(_WS_RE.sub(" ", text).strip().casefold())
    return "|".join(out)



# Small tolerant converters used by every parser.


def as_int(value: Any) -> int | None:
    """An int from an int, float or numeric string; None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(float(str(value).strip()))
    except ValueError:
        return None


def as_float(value: Any) -> float | None:
    """A float from a number or numeric string; None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def as_str(value: Any) -> str | None:
    """A non-empty stripped string, or None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a dict, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a list, a one-item list for a lone dict, else empty."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    return []


def compact(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` without None values and empty lists."""
    return {k: v for k, v in fields.items() if v is not None and v != []}


# Query text helpers: user text must never change a query's meaning.

def quote_field(value: str) -> str:
    """``value`` as one double-quoted phrase for Spotify/Deezer ``field:"..."`` filters.

    Neither API documents an escape for ``"`` inside a phrase, so quotes and backslashes become
    spaces: the phrase can never end early and let the rest act as query syntax.
    """
    cleaned = re.sub(r'["\\]', " ", value)
    return '"' + _WS_RE.sub(" ", cleaned).strip() + '"'
