"""Waterfall results kept for repeated inputs: in process, and shared by every worker in Redis.

Inputs repeat (chart scrapers publish the same tracks week after week), and a result computed
only from cached provider answers is a function of those answers and of the waterfall's
settings. :class:`ResultCache` keeps it per input until the earliest of those answers expires:
in process (a dictionary lookup instead of five stages of lookups and matching), and, when a
provider cache with Redis is given, in Redis too, so that a worker that has not seen an input
yet (just started, or given partitions another worker had) reads one value instead of running
the stages on the answers one by one.

A shared result lives in Redis no longer than its kept copy would live in process (the earliest
expiry among the answers' in-process copies, so at most the provider cache's ``lru_ttl_s``
after an answer was read: a purge of answers in Redis reaches the results within that, as it
reaches every worker's copies of the answers). Its key holds a fingerprint of everything else a
result depends on: the enabled stages in order, the waterfall's fields and rules, each stage's
matching settings, and trackflow's version. Workers of another configuration never read each
other's results. A value that cannot be read back is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from trackflow.agents import metrics
from trackflow.agents.enrich import Enrichment
from trackflow.agents.records import DISABLED, FieldValue, InputKey, Outcome
from trackflow.agents.settings import AgentSettings
from trackflow.providers.cache import ProviderCache
from trackflow.providers.context import AnswersUsed

log = logging.getLogger("trackflow.agents.results")

RESULT_FORMAT: Final = 1
"""Bump when the shape of a shared result, or what a result means, changes."""


@dataclass(frozen=True, slots=True)
class KeptResult:
    """A kept waterfall result and its expiry on the provider cache's clock."""

    expires_at: float
    filled: Mapping[str, FieldValue]
    outcomes: tuple[Outcome, ...]


def result_fingerprint(settings: AgentSettings, order: Sequence[str]) -> str:
    """A short digest of what a result depends on besides the input and the answers:
    ``order`` (the enabled stages), the waterfall section, each stage's matching settings and
    trackflow's version."""
    try:
        code = version("trackflow")
    except PackageNotFoundError:  # run from a source tree without installing
        code = "source"
    stages = {name: {"min_confidence": settings.providers[name].min_confidence,
                     "requires": list(settings.providers[name].requires),
                     "features": settings.providers[name].features}
              for name in order}
    described = {"format": RESULT_FORMAT, "trackflow": code, "order": list(order),
                 "waterfall": settings.waterfall.model_dump(mode="json"), "stages": stages}
    text = json.dumps(described, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class ResultCache:
    """Waterfall results by input, bounded (least recently used out), each with its expiry.

    Only results every stage of which was answered (matched, not found or skipped) are kept:
    a failed or deferred stage must be tried again. Times are on the provider cache's clock;
    ``shared`` (a provider cache with Redis) and ``fingerprint`` (:func:`result_fingerprint`)
    make it keep them in Redis too, where ``wall`` (epoch seconds) dates them.
    """

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.monotonic,
                 shared: ProviderCache | None = None, fingerprint: str = "",
                 wall: Callable[[], float] = time.time) -> None:
        if shared is not None and not shared.uses_redis:
            shared = None  # an LRU-only provider cache has nothing to share through
        if shared is not None and not fingerprint:
            raise ValueError("a shared result cache needs the settings' fingerprint")
        self.max_entries = max_entries
        self.clock = clock
        self._shared = shared
        self._kind = f"result:{fingerprint}"
        self._wall = wall
        self._entries: OrderedDict[InputKey, KeptResult] = OrderedDict()
        self._process_hit = metrics.RESULT_CACHE_REQUESTS.labels(level="process", result="hit")
        self._process_miss = metrics.RESULT_CACHE_REQUESTS.labels(level="process",
                                                                  result="miss")
        self._redis_hit = metrics.RESULT_CACHE_REQUESTS.labels(level="redis", result="hit")
        self._redis_miss = metrics.RESULT_CACHE_REQUESTS.labels(level="redis", result="miss")

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: InputKey) -> KeptResult | None:
        """The result kept in process for ``key`` (counted as a hit), or None (not counted:
        :meth:`load` counts the miss)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.clock() >= entry.expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        self._process_hit.inc()
        return entry

    async def load(self, key: InputKey) -> KeptResult | None:
        """After :meth:`get` found nothing: the result another worker (or this one, before a
        restart) shared in Redis, now also kept in process; None when there is none."""
        self._process_miss.inc()
        if self._shared is None or self.max_entries == 0:
            return None
        text = await self._shared.read_text(self._redis_key(key))
        entry = self._parse(text) if text is not None else None
        if entry is None:
            self._redis_miss.inc()
            return None
        self._redis_hit.inc()
        self._keep(key, entry)
        return entry

    def put(self, key: InputKey, result: Enrichment, used: AnswersUsed) -> KeptResult | None:
        """Keep ``result`` in process until ``used.expires_at``; None when it may not be kept."""
        if self.max_entries == 0 or used.expires_at <= self.clock():
            return None
        if any(o.outcome in ("failed", "deferred") or o.reason == DISABLED
               for o in result.outcomes):
            return None  # a failed, deferred or disabled stage must be tried again
        if result.failure is not None and result.failure.retryable:
            return None  # its replay must run the stages again (a second look, an outage)
        if used.answers == 0 and any(o.outcome != "skipped" for o in result.outcomes):
            return None  # stages answered without the cache: nothing bounds the result's age
        entry = KeptResult(used.expires_at, dict(result.filled), tuple(result.outcomes))
        self._keep(key, entry)
        return entry

    async def store(self, key: InputKey, result: Enrichment, used: AnswersUsed) -> bool:
        """:meth:`put`, and share what was kept in Redis; False when it may not be kept."""
        entry = self.put(key, result, used)
        if entry is None:
            return False
        if self._shared is not None:
            ttl = entry.expires_at - self.clock()
            await self._shared.write_text(self._redis_key(key), self._dump(entry, ttl), ttl)
        return True

    # --- internals ---

    def _keep(self, key: InputKey, entry: KeptResult) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _redis_key(self, key: InputKey) -> str:
        assert self._shared is not None
        text = json.dumps(list(key), ensure_ascii=False, separators=(",", ":"))
        return self._shared.shared_key(self._kind, text)

    def _dump(self, entry: KeptResult, ttl_s: float) -> str:
        return json.dumps({
            "expires": self._wall() + ttl_s,
            "filled": {name: [v.value, v.provider, v.confidence]
                       for name, v in entry.filled.items()},
            "outcomes": [[o.provider, o.outcome, o.reason, o.confidence]
                         for o in entry.outcomes],
        }, ensure_ascii=False, separators=(",", ":"))

    def _parse(self, text: str) -> KeptResult | None:
        """A shared result read back, or None when it is unreadable or has expired."""
        try:
            obj: Any = json.loads(text)
            left = float(obj["expires"]) - self._wall()
            filled = {str(name): FieldValue(value, str(provider), float(confidence))
                      for name, (value, provider, confidence) in obj["filled"].items()}
            outcomes = tuple(Outcome(str(p), str(o), r, c) for p, o, r, c in obj["outcomes"])
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("event=shared_result_unreadable")
            return None
        if left <= 0:
            return None
        return KeptResult(self.clock() + left, filled, outcomes)
