"""HTTP transport every provider client shares.

One place decides what an HTTP outcome means (:func:`classify`), one builds the per-provider
``httpx.AsyncClient`` (:func:`make_client`), and a few helpers keep secrets out of messages and
logs (:func:`safe_url`, the filter installed on httpx's own logger). Reading the fields of an
answer and writing query text is pure, and lives in :mod:`providers.parse`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib import metadata
from typing import Any

import httpx

from trackflow.providers.errors import (
    CredentialsRejected,
    NotFound,
    PermanentError,
    ProviderError,
    TransientError,
)

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
"""Per-request timeout: 10 s overall phases, 5 s to connect."""
# Enough connections that a request leaves when its rate-limit slot says so: a request queued
# in a small pool leaves later, bunched with the next ones, and a sliding-window limit counts
# arrivals, not slots.
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=50)
"""Connection pool bounds per provider client."""

#: Query parameter names whose values are credentials.
SECRET_PARAMS = frozenset(
    {"api_key", "apikey", "key", "token", "access_token", "client_secret", "secret", "sig"}
)

_SECRET_PARAM_RE = re.compile(
    r"(?i)\b(" + "|".join(sorted(SECRET_PARAMS)) + r")=([^&\s\"']*)",
)


def version() -> str:
    """The installed trackflow version (for User-Agent strings)."""
    try:
        return metadata.version("trackflow")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def user_agent(contact: str) -> str:
    """``trackflow/<version> ( contact )`` as MusicBrainz and Discogs ask for."""
    return f"trackflow/{version()} ( {contact} )"


def safe_url(url: httpx.URL | str) -> str:
    """The URL without its query string, fit for messages and logs."""
    u = httpx.URL(str(url))
    return str(u.copy_with(query=None, fragment=None))


def redact(text: str) -> str:
    """``text`` with the values of secret-looking query parameters replaced by ``***``."""
    return _SECRET_PARAM_RE.sub(r"\1=***", text)


class _RedactSecretsFilter(logging.Filter):
    """Rewrites httpx's request log lines so query-string credentials (Last.fm) never show."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact(str(a)) if isinstance(a, httpx.URL | str) else a for a in record.args
            )
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def _install_log_filter() -> None:
    for name in ("httpx", "httpcore"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _RedactSecretsFilter) for f in lg.filters):
            lg.addFilter(_RedactSecretsFilter())


_install_log_filter()


def make_client(
    base_url: str,
    *,
    timeout: httpx.Timeout | float | None = None,
    limits: httpx.Limits | None = None,
    headers: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The one shared client of a provider; tests pass an ``httpx.MockTransport``."""
    if timeout is None:
        to = DEFAULT_TIMEOUT
    elif isinstance(timeout, httpx.Timeout):
        to = timeout
    else:
        to = httpx.Timeout(timeout)
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=to,
        limits=limits or DEFAULT_LIMITS,
        headers=dict(headers or {}),
        transport=transport,
        follow_redirects=True,
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ref = now or datetime.now(UTC)
    return max(0.0, (when - ref).total_seconds())


def _body_mentions_rate_limit(response: httpx.Response) -> bool:
    try:
        text = response.text[:2000].lower()
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return False
    return "rate limit" in text or "too many requests" in text or "too quickly" in text


def classify(
    provider: str,
    outcome: httpx.Response | BaseException,
    *,
    rate_limit_on_503: bool = False,
) -> ProviderError | None:
    """Map an HTTP response or an httpx exception to our error vocabulary.

    Returns None for a successful response (2xx/3xx) and for exceptions that are not httpx's
    (the caller re-raises those). ``rate_limit_on_503``: the provider uses 503 to say "too fast"
    (MusicBrainz). 401 and 403 are :class:`CredentialsRejected`; a provider whose 403 means
    something else (Deezer throttling) maps it before calling this.
    """
    if isinstance(outcome, BaseException):
        if isinstance(outcome, httpx.TimeoutException):
            return TransientError(provider, f"timeout ({type(outcome).__name__})")
        if isinstance(outcome, httpx.TransportError):
            # ConnectError, ReadError, RemoteProtocolError...: the network, not the request.
            return TransientError(provider, f"transport error ({type(outcome).__name__})")
        if isinstance(outcome, httpx.HTTPError):
            return PermanentError(provider, f"http error ({type(outcome).__name__})")
        return None

    status = outcome.status_code
    if status < 400:
        return None
    where = f"{outcome.request.method} {safe_url(outcome.request.url)}"
    if status == 429:
        return TransientError(
            provider,
            f"rate limited (HTTP 429) on {where}",
            # Spotify sends ``Retry-After: 0`` at times: no permission to resend at once, only
            # no hint, so the gate's default pause applies.
            retry_after=parse_retry_after(outcome.headers.get("Retry-After")) or None,
            rate_limited=True,
        )
    if status == 503:
        limited = rate_limit_on_503 or _body_mentions_rate_limit(outcome)
        return TransientError(
            provider,
            f"{'rate limited' if limited else 'unavailable'} (HTTP 503) on {where}",
            retry_after=parse_retry_after(outcome.headers.get("Retry-After")),
            rate_limited=limited,
        )
    if status >= 500 or status == 408:
        return TransientError(
            provider,
            f"server error (HTTP {status}) on {where}",
            retry_after=parse_retry_after(outcome.headers.get("Retry-After")),
        )
    if status == 404:
        return NotFound(provider, f"not found (HTTP 404) on {where}")
    if status in (401, 403):
        return CredentialsRejected(provider, f"credentials rejected (HTTP {status}) on {where}")
    return PermanentError(provider, f"request rejected (HTTP {status}) on {where}")


async def send(
    client: httpx.AsyncClient,
    provider: str,
    method: str,
    url: str,
    *,
    logger: logging.Logger,
    kind: str,
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP exchange; network failures come back as our errors, HTTP statuses do not.

    The caller inspects provider-specific bodies first, then calls :func:`raise_for_status`.
    """
    started = time.perf_counter()
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        err = classify(provider, exc)
        assert err is not None
        logger.debug(
            "event=http_failed provider=%s kind=%s error=%s",
            provider,
            kind,
            type(exc).__name__,
        )
        raise err from None
    logger.debug(
        "event=http_response provider=%s kind=%s method=%s url=%s status=%d elapsed_ms=%.1f",
        provider,
        kind,
        method,
        safe_url(response.request.url),
        response.status_code,
        (time.perf_counter() - started) * 1000,
    )
    return response


def raise_for_status(provider: str, response: httpx.Response, **kwargs: Any) -> None:
    """Raise the classified error of a non-successful response."""
    err = classify(provider, response, **kwargs)
    if err is not None:
        raise err


def json_body(provider: str, response: httpx.Response) -> Any:
    """The decoded JSON body; a body that is not JSON is a transient failure (a proxy page)."""
    try:
        return response.json()
    except ValueError:
        raise TransientError(
            provider,
            f"invalid JSON (HTTP {response.status_code}) from {safe_url(response.request.url)}",
        ) from None


def try_json(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when the body is not JSON (error pages)."""
    try:
        return response.json()
    except ValueError:
        return None
