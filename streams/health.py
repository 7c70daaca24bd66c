"""Liveness and readiness pages on the worker's web server: /health/live, /health/ready.

Liveness answers 200 while the worker's event loop serves requests and the app has not crashed:
an orchestrator restarts a worker that fails it. Readiness answers 503 until the worker is of
use to the pipeline: its producer has connected to Kafka and its consumer has received its first
partition assignment, with the tables recovered (Faust's ``on_rebalance_complete``); it answers
503 again once the worker is stopping. Later rebalances do not make a worker unready: every
member of the group pauses then, and an orchestrator taking them all out of service at once
would only make a rolling update stall.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from aiohttp.web import Response
from faust import web

LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"

@dataclass(slots=True)
class Readiness:
    """What the worker has reached since it started."""

    assigned_at: float | None = None
    """When the first assignment (after table recovery) completed, monotonic seconds."""
    partitions: int = 0
    """Partitions in the latest assignment."""
    started_at: float = field(default_factory=time.monotonic)

    def assigned(self, partitions: int) -> None:
        """An assignment of ``partitions`` topic partitions arrived."""
        self.partitions = partitions

    def rebalance_complete(self) -> None:
        """An assignment completed, its tables recovered."""
        if self.assigned_at is None:
            self.assigned_at = time.monotonic()

    def report(self, app: faust.App) -> tuple[bool, dict[str, Any]]:
        """(ready, the facts behind it)."""
        producer = bool(app.producer.started)
        stopping = bool(app.should_stop)
        assigned = self.assigned_at is not None
        facts = {"producer_connected": producer, "assignment_received": assigned,
                 "partitions_assigned": self.partitions, "rebalancing": bool(app.rebalancing),
                 "stopping": stopping,
                 "uptime_s": round(time.monotonic() - self.started_at, 1)}
        return producer and assigned and not stopping, facts


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return cast(web.Response, Response(body=json.dumps(body).encode(), status=status,
                                       content_type="application/json"))


def setup_health(app: faust.App, readiness: Readiness) -> None:
    """Register the two health pages on ``app``'s web server; ``readiness`` is kept by the
    worker's application object, which tells it of assignments."""

    @app.page(LIVE_PATH)
    async def live(self: web.View, request: web.Request) -> web.Response:
        crashed = bool(app.crashed)
        return _json(503 if crashed else 200, {"status": "crashed" if crashed else "alive"})

    @app.page(READY_PATH)
    async def ready(self: web.View, request: web.Request) -> web.Response:
        ok, facts = readiness.report(app)
        return _json(200 if ok else 503, {"status": "ready" if ok else "not_ready", **facts})
