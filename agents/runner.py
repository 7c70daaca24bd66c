"""What the agents share in Faust's machinery: stopping the worker when a record cannot be handled.

A record whose handling failed for a reason that is not the record's own (Kafka gone, a bug) must
not be acked, and not acking it would stall its partition: the worker stops and a restart
re-delivers it from the last commit. Faust's ``app.crash`` starts that stop, but a crash while the
consumer or the producer is wedged can leave a process that neither consumes nor exits, holding
its web port and ignoring SIGTERM. A watchdog thread ends the process once the grace period is
over, whatever the event loop is doing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("trackflow.agents.runner")

#: The exit status of a worker stopped by a fatal error (``EX_SOFTWARE``).
CRASH_EXIT_CODE = 70


class CrashWatchdog:
    """Ends the process ``grace_s`` after the first fatal error, unless it ended by itself."""

    def __init__(self, grace_s: float, *, exit: Callable[[int], Any] = os._exit) -> None:
        self._grace_s = grace_s
        self._exit = exit
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    @property
    def armed(self) -> bool:
        """Whether a fatal error has started the countdown."""
        return self._timer is not None

    def arm(self) -> None:
        """Start the countdown (again or not: the first call counts)."""
        with self._lock:
            if self._timer is not None:
                return
            self._timer = threading.Timer(self._grace_s, self._fire)
            self._timer.daemon = True  # a clean exit before the deadline is not held up
            self._timer.start()

    def cancel(self) -> None:
        """Stop the countdown (tests)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    def _fire(self) -> None:
        log.critical("event=crash_exit grace_s=%s exit_code=%s: the worker did not stop by "
                     "itself after a fatal error; exiting", self._grace_s, CRASH_EXIT_CODE)
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._exit(CRASH_EXIT_CODE)


def crash_handler(app: Any, watchdog: CrashWatchdog) -> Callable[[BaseException], Any]:
    """The ``on_fatal`` of an agent's in-flight tracker: crash the app, exit for sure."""

    async def on_fatal(exc: BaseException) -> None:
        if not watchdog.armed:
            log.critical("event=worker_crash error=%s detail=%r", type(exc).__name__,
                         str(exc)[:200])
        watchdog.arm()
        await app.crash(exc)

    return on_fatal
