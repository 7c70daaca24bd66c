"""Shared simulator state and the seam every API module plugs into."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from trackflow.providers.simulator.catalog import Catalog
from trackflow.providers.simulator.config import SimConfig
from trackflow.providers.simulator.faults import FaultInjector
from trackflow.providers.simulator.limits import Decision, Recorder
from trackflow.providers.simulator.quirks import PLAIN, Quirks


@dataclass(slots=True)
class SimState:
    """Everything the handlers share."""

    catalog: Catalog
    """Tracks served by every API."""
    config: SimConfig
    """Behaviour configuration."""
    recorder: Recorder
    """Limiters, counters and the request log."""
    faults: FaultInjector
    """Fault decisions and runtime outages."""
    started: float = field(default_factory=time.monotonic)
    """Monotonic start time; outage windows count from here."""
    tokens: dict[str, float] = field(default_factory=dict)
    """Spotify access token -> monotonic expiry time."""
    quirks: Quirks = PLAIN
    """Which real-API quirks answers show (on by default through :class:`SimConfig`)."""

    def now(self) -> float:
        """Monotonic clock (seconds)."""
        return time.monotonic()

    def elapsed(self) -> float:
        """Seconds since start."""
        return time.monotonic() - self.started


STATE = web.AppKey("trackflow_sim_state", SimState)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer with ``application/json; charset=utf-8``."""
    return web.Response(
        body=json.dumps(data, ensure_ascii=False).encode("utf-8"),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def state_of(request: web.Request) -> SimState:
    """The simulator state of the app serving ``request``."""
    return request.app[STATE]


class ApiModule(Protocol):
    """What the server needs from one provider API module."""

    NAME: str
    """Provider name (``spotify``...)."""
    PREFIX: str
    """Path prefix on the shared app (``/spotify``)."""

    def routes(self) -> list[web.RouteDef]:
        """The module's routes, each named ``<provider>.<endpoint>``."""
        ...

    def limit_answer(self, decision: Decision, quirks: Quirks) -> web.Response:
        """The provider's answer to a request over its rate limit."""
        ...

    def fault_answer(self, status: int, quirks: Quirks) -> web.Response:
        """The provider's answer during an outage or an injected error."""
        ...

    def decorate(self, response: web.StreamResponse, decision: Decision | None,
                 quirks: Quirks) -> None:
        """Add provider headers (Discogs rate-limit headers) to any answer."""
        ...
