"""Keep a broker outage to a handful of log lines a minute.

With the broker gone, aiokafka logs every failed connect, metadata refresh, fetch and
coordinator lookup at ERROR, each retried every ``retry_backoff_ms``: about 5,300 lines a minute
from one worker. :class:`OutageLogFilter` lets the first line of each kind through per interval,
counts the rest, and at the end of each interval writes one summary line saying how many of
which kind it held back. Lines of other loggers, and Kafka lines below WARNING, pass untouched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

#: Loggers whose WARNING and ERROR lines repeat per retry while Kafka is unreachable.
NOISY_PREFIXES = ("aiokafka", "faust.transport")
log = logging.getLogger("trackflow.streams.kafka")


class OutageLogFilter(logging.Filter):
    """Pass the first record of each kind per ``interval_s``; summarise the held-back rest."""

    def __init__(self, interval_s: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 prefixes: tuple[str, ...] = NOISY_PREFIXES) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._prefixes = prefixes
        self._lock = threading.Lock()  # Faust's consumer runs in a thread of its own
        self._window_start = clock()
        self._seen: set[tuple[str, str]] = set()
        self._held: Counter[str] = Counter()

    def _noisy(self, record: logging.LogRecord) -> bool:
        return (record.levelno >= logging.WARNING and record.name != log.name
                and record.name.startswith(self._prefixes))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._noisy(record):
            return True
        summary = None
        with self._lock:
            summary = self._roll()
            key = (record.name, str(record.msg))  # the template: one kind whatever its args
            if key in self._seen:
                self._held[str(record.msg)] += 1
                passed = False
            else:
                self._seen.add(key)
                passed = True
        if summary:
            log.warning("%s", summary)
        return passed

    def flush(self) -> None:
        """Write the summary of a finished interval now (called from a timer, so that the last
        interval of an outage is reported even when no Kafka line follows it)."""
        with self._lock:
            summary = self._roll()
        if summary:
            log.warning("%s", summary)

    def _roll(self) -> str | None:
        now = self._clock()
        if now - self._window_start < self.interval_s:
            return None
        held, elapsed = self._held, now - self._window_start
        self._window_start, self._seen, self._held = now, set(), Counter()
        if not held:
            return None
        kinds = "; ".join(f"{n}x {msg[:80]!r}" for msg, n in held.most_common(3))
        return (f"event=kafka_log_summary interval_s={elapsed:.0f} held_back={sum(held.values())} "
                f"kinds={len(held)} top: {kinds}")


def install(filter_: OutageLogFilter, logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of ``logger`` (default: the root logger).

    On the handlers, not on the loggers: a logger's filter does not see its children's records
    (aiokafka logs from aiokafka.conn, aiokafka.client, aiokafka.consumer.fetcher, …).
    """
    for handler in (logger or logging.getLogger()).handlers:
        if filter_ not in handler.filters:
            handler.addFilter(filter_)
