"""The outage log filter: one line per kind and interval, and a summary of the rest."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from trackflow.streams.kafka_logs import OutageLogFilter, install


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup() -> Iterator[tuple[OutageLogFilter, Clock, list[logging.LogRecord]]]:
    clock = Clock()
    filt = OutageLogFilter(60.0, clock=clock)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    root = logging.getLogger("outage-test")
    root.handlers = [handler]
    root.propagate = False
    install(filt, root)
    names = ("aiokafka", "aiokafka.conn", "trackflow.streams.kafka", "faust.app")
    saved = {n: (logging.getLogger(n).handlers, logging.getLogger(n).propagate,
                 logging.getLogger(n).level) for n in names}
    for name in names:
        child = logging.getLogger(name)
        child.handlers = [handler]
        child.propagate = False
        child.setLevel(logging.DEBUG)
    yield filt, clock, seen
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


def test_a_minute_of_outage_is_a_handful_of_lines(
        setup: tuple[OutageLogFilter, Clock, list[logging.LogRecord]]) -> None:
    filt, clock, seen = setup
    conn, client = logging.getLogger("aiokafka.conn"), logging.getLogger("aiokafka")
    for i in range(5000):  # about what one worker logged in a minute before
        clock.now = i * 0.012
        conn.error("Unable connect to node with id %s: %s", 1, "refused")
        client.error("Unable to update metadata from %s", [1])
        client.error("Failed fetch messages from %s: %s", 1, "NodeNotReadyError")
    clock.now = 61.0
    filt.flush()
    messages = [r.getMessage() for r in seen]
    assert len(messages) <= 5, f"expected a handful of lines, got {len(messages)}: {messages}"
    summary = messages[-1]
    assert "event=kafka_log_summary" in summary and "held_back=14997" in summary
    assert "Unable connect to node with id" in summary


def test_each_interval_lets_each_kind_through_once_again(
        setup: tuple[OutageLogFilter, Clock, list[logging.LogRecord]]) -> None:
    _, clock, seen = setup
    conn = logging.getLogger("aiokafka.conn")
    for t in (0.0, 1.0, 61.0, 62.0, 130.0):
        clock.now = t
        conn.error("Unable connect to node with id %s", 1)
    texts = [r.getMessage() for r in seen]
    assert texts.count("Unable connect to node with id 1") == 3
    assert sum("event=kafka_log_summary" in t for t in texts) == 2


def test_other_loggers_and_kafka_info_lines_pass_untouched(
        setup: tuple[OutageLogFilter, Clock, list[logging.LogRecord]]) -> None:
    _, _, seen = setup
    for _ in range(50):
        logging.getLogger("faust.app").error("an error of ours")
        logging.getLogger("aiokafka").info("Discovered coordinator")
    assert len(seen) == 100
