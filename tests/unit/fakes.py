"""Stand-ins for what Faust and the Kafka producer hand the agents: no broker needed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

SentRecord = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]


@dataclass
class Message:
    """The parts of a Faust ``Message`` the agents read."""

    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "tracks.raw"
    partition: int = 2
    offset: int = 7
    timestamp: float = 1_700_000_000.0

    @property
    def tp(self) -> tuple[str, int]:
        """Faust's ``TP`` is a named tuple of topic and partition; any hashable pair will do."""
        return (self.topic, self.partition)


@dataclass
class Event:
    message: Message


class Sender:
    """A :data:`trackflow.agents.publish.Send` that records what it got, or fails as told per topic.

    With ``clock``, ``sent_at`` records the clock's time of every send that succeeded.
    """

    def __init__(self, fail: dict[str, BaseException] | None = None, *,
                 clock: Callable[[], float] | None = None) -> None:
        self.sent: list[SentRecord] = []
        self.sent_at: list[float] = []
        self.fail = fail or {}
        self._clock = clock

    async def __call__(self, topic: str, key: bytes | None, value: bytes | None,
                       headers: list[tuple[str, bytes]]) -> Awaitable[Any]:
        assert key is not None or value is not None, "Need at least one: key or value"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if topic in self.fail:
            future.set_exception(self.fail[topic])
        else:
            self.sent.append((topic, key, value, headers))
            if self._clock is not None:
                self.sent_at.append(self._clock())
            future.set_result(None)
        return future
