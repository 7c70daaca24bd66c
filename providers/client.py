"""What the five provider clients share: the HTTP client and the gate, their description, closing,
and the shape of a lookup (one gated call whose JSON answer is a list of candidates, the ISRC
first where the provider looks tracks up by ISRC).

A client subclasses :class:`ProviderClient`, sets ``name``, and writes only what is its own: the
requests it sends and how it parses the answers (the :class:`~providers.base.Provider` protocol).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from trackflow.providers import http, parse
from trackflow.providers.base import JSON, CallGate, CallSpec, Candidate, DirectGate, TrackQuery
from trackflow.providers.normalize import normalize_isrc

MAX_SEARCH_LIMIT = 100
"""The most results a search asks for, at every provider that takes a limit."""


def clamp_limit(limit: int, maximum: int = MAX_SEARCH_LIMIT) -> int:
    """A search limit the provider accepts: 1 to ``maximum``."""
    return max(1, min(maximum, limit))


class ProviderClient:
    """The base of every provider client: ``name``, the base URL, one ``httpx.AsyncClient``
    (:func:`providers.http.make_client`) and the :class:`CallGate` every call goes through."""

    name: str
    """The provider's name, as in :data:`providers.specs.SPECS` (set by each client)."""

    def __init__(self, *, base_url: str, timeout: httpx.Timeout | float | None,
                 gate: CallGate | None, transport: httpx.AsyncBaseTransport | None,
                 contact: str | None = None) -> None:
        """``contact`` (a URL or an e-mail) makes the User-Agent the providers that ask for
        one want (:func:`providers.http.user_agent`)."""
        self._base_url = base_url
        self._gate: CallGate = gate or DirectGate()
        headers = {"Accept": "application/json"}
        if contact is not None:
            headers["User-Agent"] = http.user_agent(contact)
        self._client = http.make_client(base_url, timeout=timeout, headers=headers,
                                        transport=transport)

    def _described(self) -> dict[str, Any]:
        """What ``repr`` shows besides the base URL (never a credential)."""
        return {}

    def __repr__(self) -> str:
        extra = "".join(f", {key}={value}" for key, value in self._described().items())
        return f"{type(self).__name__}(base_url={self._base_url!r}{extra})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _candidates(self, via: str, key: str, fetch: Callable[[], Awaitable[JSON]]
                          ) -> list[Candidate]:
        """The candidates of one call through the gate (which caches its JSON answer under
        ``key``): ``fetch`` returns them as :meth:`Candidate.to_json` dicts."""
        found = await self._gate.run(CallSpec(self.name, via, key), fetch)
        return [Candidate.from_json(c) for c in found]

    async def _by_isrc(self, query: TrackQuery, fetch: Callable[[str], Awaitable[JSON]]
                       ) -> list[Candidate]:
        """The candidates of the ISRC lookup, when the query has a valid ISRC; [] when it has
        none or the provider does not know it (the caller then searches by name)."""
        isrc = normalize_isrc(query.isrc)
        if not isrc:
            return []
        return await self._candidates("isrc", parse.cache_key(isrc), lambda: fetch(isrc))
