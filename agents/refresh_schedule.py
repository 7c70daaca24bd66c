"""Refresh requests: what the enrichment agent schedules and the refresh agent reads. Pure,
apart from :func:`schedule_refresh`, which publishes one (see :mod:`agents.refresh`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trackflow.agents import metrics
from trackflow.agents.publish import Send, publish
from trackflow.agents.records import DISABLED, FieldValue, Outcome, input_key
from trackflow.agents.settings import AgentSettings, RefreshSettings

#: Outcomes a refresh runs again. A stage skipped because its provider was disabled by a
#: configuration error is one too: a worker restarted with the configuration fixed fills it.
REFRESHABLE = frozenset({"deferred", "failed"})


@dataclass(slots=True)
class RefreshRequest:
    """One scheduled refresh (the value of a refresh-topic record, as JSON)."""

    raw: dict[str, Any]
    """The validated input."""
    filled: dict[str, FieldValue]
    """Fields providers filled so far."""
    outcomes: list[Outcome]
    """The outcome of every stage so far."""
    revision: int
    """The revision published with these fields; the refresh publishes a higher one
    (:func:`next_revision`)."""
    due_ms: int
    """When the refresh may run, epoch milliseconds."""
    round: int = 1
    """Refreshes of this track so far, this one included."""
    attempt: int = 1
    """The input's attempt (dead-letter replays raise it)."""
    stages: list[str] = field(default_factory=list)
    """The stages to run again."""
    source: tuple[int, int] | None = None
    """Partition and offset of the raw record the input was read from (None in requests
    written before it was kept): after the last round, the track's refresh-table entry stays
    until that offset is committed."""

    def encode(self) -> bytes:
        return json.dumps({
            "raw": self.raw, "revision": self.revision, "due_ms": self.due_ms,
            "round": self.round, "attempt": self.attempt, "stages": self.stages,
            "source": list(self.source) if self.source is not None else None,
            "filled": {k: [v.value, v.provider, v.confidence] for k, v in self.filled.items()},
            "outcomes": [[o.provider, o.outcome, o.reason, o.confidence] for o in self.outcomes],
        }, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> RefreshRequest:
        d = json.loads(data)
        source = d.get("source")
        return cls(raw=d["raw"], revision=int(d["revision"]), due_ms=int(d["due_ms"]),
                   round=int(d["round"]), attempt=int(d["attempt"]), stages=list(d["stages"]),
                   filled={k: FieldValue(v[0], v[1], v[2]) for k, v in d["filled"].items()},
                   outcomes=[Outcome(*o) for o in d["outcomes"]],
                   source=(int(source[0]), int(source[1])) if source else None)


def stages_to_refresh(outcomes: Sequence[Outcome]) -> list[str]:
    return [o.provider for o in outcomes
            if o.outcome in REFRESHABLE or (o.outcome == "skipped" and o.reason == DISABLED)]


def refresh_due_ms(now: float, settings: RefreshSettings, round_: int) -> int:
    """Later with every round: ``delay_s * 2^(round - 1)``, capped."""
    delay = min(settings.delay_s * 2 ** (round_ - 1), settings.max_delay_s)
    return int((now + delay) * 1000)


#: Revisions count seconds from here (2020-01-01 UTC): an Avro ``int`` holds them until 2088.
REVISION_EPOCH_S = 1_577_836_800


def next_revision(now: float, previous: int | None) -> int:
    """The revision of a publication at ``now`` (epoch seconds) of a track whose last known
    revision is ``previous`` (None: none known): the seconds since :data:`REVISION_EPOCH_S`, or
    one more than ``previous`` if that is higher.

    A revision derived from the time needs no per-track counter kept for good: a track
    published again after its refresh-table entry is gone (a new input, a replay) gets a
    higher revision than any it had, as long as the workers' clocks agree within the time
    between the two publications. Revisions of earlier versions (1, 2, 3, ... per track) are
    all lower than any of these.
    """
    revision = int(now) - REVISION_EPOCH_S
    return revision if previous is None else max(revision, previous + 1)


def known_revision(entry: Mapping[str, Any] | None) -> int | None:
    """The revision a refresh-table entry says a refresh published (None: no entry)."""
    return int(entry["revision"]) if entry else None


def input_digest(raw: Mapping[str, Any]) -> str:
    """What the ordering check compares: the inputs the stages read."""
    return json.dumps(list(input_key(raw)), default=str)


def already_refreshed(table: Mapping[str, Any], raw: Mapping[str, Any]) -> bool:
    """Whether a refresh published a newer version of this very input (enrichment agent)."""
    return supersedes(table.get(raw["track_id"]), raw)


def supersedes(entry: Mapping[str, Any] | None, raw: Mapping[str, Any]) -> bool:
    """Whether ``entry``, the refresh table's entry for ``raw``'s track, says a refresh
    published a newer version of this very input."""
    return entry is not None and bool(entry["input"] == input_digest(raw))


async def schedule_refresh(send: Send, settings: AgentSettings, raw: dict[str, Any],
                           filled: Mapping[str, FieldValue], outcomes: Sequence[Outcome], *,
                           attempt: int, now: float, revision: int,
                           source: tuple[int, int] | None = None) -> bool:
    """After a fresh publication: ask for a refresh of its deferred or failed stages."""
    stages = stages_to_refresh(outcomes)
    if not stages or not settings.refresh.enabled:
        return False
    request = RefreshRequest(raw, dict(filled), list(outcomes), revision,
                             refresh_due_ms(now, settings.refresh, 1), 1, attempt, stages,
                             source)
    await publish(send, settings.kafka.refresh_topic, raw["track_id"].encode(),
                  request.encode(), [])
    metrics.REFRESH_SCHEDULED.inc()
    return True
