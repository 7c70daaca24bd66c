"""Showing a URL without the password it may carry (``rediss://user:secret@host/0``)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "***"


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``; printable and loggable."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # unparseable: it might be all secret
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:{MASK}@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))
