"""The Faust worker as trackflow runs it: quiet during a broker outage, bounded on shutdown.

- The Kafka clients' log lines pass through :class:`~streams.kafka_logs.OutageLogFilter`,
  installed on the root handlers once Faust has set them up.
- SIGTERM or SIGINT starts Faust's clean stop and a deadline: with no broker, Faust's stop waits
  on commits and flushes that cannot succeed (62 s measured, and a worker that ignored two
  SIGTERMs). At the deadline the process exits anyway. Nothing is lost: offsets are committed
  only for finished records, so what was in flight is read again by the partition's next owner.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from trackflow.agents.runner import ExitTimer
from trackflow.streams.kafka_logs import OutageLogFilter, install

log = logging.getLogger("trackflow.streams.worker")

SHUTDOWN_SETTLE_S = 0.1
"""How long the stopped worker's event loop runs on before it is closed."""


class StopDeadline(ExitTimer):
    """Exits the process ``grace_s`` after the first stop signal, unless it ended by itself."""

    def _log(self) -> None:
        log.warning("event=stop_deadline grace_s=%g: the clean stop did not finish (is Kafka "
                    "reachable?); exiting now, uncommitted records will be read again",
                    self.grace_s)


class TrackflowWorker(faust.Worker):
    """faust.Worker with the outage log filter and a stop deadline."""

    def __init__(self, app: faust.App, *, log_filter: OutageLogFilter, stop_grace_s: float,
                 **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.log_filter = log_filter
        self.stop_deadline = StopDeadline(stop_grace_s)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        install(self.log_filter, logger)

    def _on_sigterm(self) -> None:
        self.stop_deadline.arm()
        super()._on_sigterm()

    async def _sentinel_task(self) -> None:
        # The last task mode runs before it closes the event loop; mode's own sleeps a fixed
        # second, which every stop (each pod of a rolling deploy) waited. A tenth of a second
        # still lets the callbacks the closing connections scheduled run.
        await asyncio.sleep(SHUTDOWN_SETTLE_S)

    def _on_sigint(self) -> None:
        self.stop_deadline.arm()
        super()._on_sigint()
