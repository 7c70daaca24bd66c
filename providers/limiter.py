"""One rate limit per provider for every worker together: a GCRA reservation queue in Redis.

Why: the per-partition slots of :mod:`providers.ratelimit` split a provider's rate R into P
shares of R/P, and a partition with no traffic strands its share (with every record on 1 of 8
partitions the pipeline used 1/8 of each provider). Here every call of every worker reserves the
next free slot of one queue per provider: an atomic Lua script keeps the provider's *theoretical
arrival time* (TAT, the GCRA's one number) in Redis, hands the caller ``max(TAT, now)`` and moves
the TAT one interval (``1 / paced rate``) on. Calls of all workers are then at least one interval
apart with no burst, whichever partition they come from, so the limit holds and no budget is
stranded: one busy partition can take every slot.

Design points and their trade-offs:

- **Redis's clock, relative waits.** The script reads ``TIME`` and answers "your slot is in
  ``w`` seconds"; the caller sleeps ``w``. Workers' clocks never meet, so clock skew between
  hosts does not matter while Redis is up.
- **A bounded horizon.** A slot is only granted within ``horizon_s`` of now (or before the
  caller's deadline, when that is sooner); beyond, the caller is told how far the queue reaches
  and asks again when its turn is within the horizon. That keeps a refused optional stage from
  taking a slot it will not use, bounds how far ahead any reservation reaches (what makes the
  fallback below safe), and costs a waiter one round trip per horizon: with 512 records waiting
  and a 5 s horizon, about 100 cheap script calls per second.
- **The queue orders, a log of calls sent bounds.** A busy event loop wakes callers late; a
  late call that simply went would come too close to the next one, and one that gave its slot
  up would waste budget (on a loaded two-core machine that lost 160 of 240 MusicBrainz slots).
  So when a caller wakes it *commits*: a second script keeps a log of the calls sent (a
  sorted set on Redis's clock) and lets the call go only while fewer than ``rate * window_s``
  calls count in it. How long a call counts is what keeps the provider's window within the
  limit: if a call arrives ``d`` after its commit, it can share a provider window only with
  calls committed less than ``window_s + d`` after it, so it must count for that long. ``d``
  is not a constant (a busy event loop between the commit and the request leaving, a process
  just started, a provider slow to read what it was sent), so a committed call counts for
  ``window_s + rate_slack_max_s`` until its answer comes; then the gate, which timed it from
  just before its commit was asked for (an upper bound of ``d``: the provider stamps a call
  before it answers), *settles* it to count ``window_s + max(rate_slack_s, that time)`` from
  its commit. A fixed ``window_s + 0.1 s`` for every call let one call in a few hundred over
  the limit on a loaded two-core machine; now a slow call costs the budget only its own delay,
  and prompt calls cost what they did. Each entry carries its own end, so workers, and a
  worker killed with calls in flight (they count the whole hold), need no agreement. Since a
  call counts from its commit for as long as it took, it may leave late without harm. When
  the log is full, the caller waits once for room if it comes within one slot (earlier calls
  that answered late), else queues again and the slot counts as lost
  (``trackflow_ratelimit_slots_lost_total``).
- **Priorities, with a minimum share each.** Fresh records come first, refreshes of published
  records second, dead-letter replays third (:class:`~providers.context.Priority`). A call below
  fresh is granted a slot nobody queued for (a refresh while the queue is at most one slot long;
  a replay while it is shorter and no refresh asked within the last two horizons), or, when its
  priority's minimum share is due (``limiter.refresh_min_share``, ``limiter.replay_min_share``
  of the rate: a schedule of its own in Redis), a slot ahead of the fresh calls still asking,
  up to one slot past the horizon per level. A saturated provider then serves fresh records
  with at least ``1 - refresh share - replay share`` of its rate and neither lower class
  starves; what fresh records leave goes to refreshes before replays. The queue does not know
  who waits, so below fresh the order is by asking, and a caller asks again when the limiter
  says its turn may have come. The per-partition fallback below has no priorities.
- **Redis unreachable: the changelogged per-partition slots are the durable fallback.** After a
  failed round trip the gate paces with :func:`providers.ratelimit.next_slot` (R/P per
  partition, state in the changelogged table, safe across workers by construction) for
  ``outage_skip_s`` before it tries Redis again. So that fallback calls cannot meet calls
  reserved in Redis before the outage, the fallback starts only after the reach of the last
  reservation this worker saw (:meth:`GlobalLimiter.reach_s`); back on Redis, the script is
  given the worker's last fallback slot as a floor for the TAT. The gap: while some workers
  reach Redis and others do not (a partial network partition), both schemes run side by side
  and the provider can see up to R + R*(partitions in fallback)/P; a Redis outage seen by every
  worker at once (the usual case on one Redis) keeps the limit. Budget is stranded again only
  during the outage.
- **Cost.** Three round trips (reserve, commit, settle; about 0.1 ms each on loopback, about
  1 ms in a data centre) per call, next to a provider call of 50-500 ms. The delay measured
  includes the provider's own work after its stamp, so a call slow to answer counts that much
  longer than it needs to (when over ``rate_slack_s``); a call with no answer within
  ``rate_slack_max_s`` is counted no longer than that. The queue's state is one key and one
  sorted set of at most ``rate * window_s`` members per provider; a Redis that restarts empty
  forgets them, and for one horizon its new slots may meet calls reserved
  before (run it with AOF, or accept a rare 429, which pauses the provider).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from trackflow.providers import metrics
from trackflow.providers.context import Priority
from trackflow.providers.redis_client import redis_client

log = logging.getLogger("trackflow.providers.limiter")

# KEYS: the provider's TAT, the priority's minimum-share schedule, the refreshes' demand mark.
# ARGV: interval s, lead s (how far ahead a fresh slot may be), a floor for the TAT (epoch s, 0
# for none), the priority (0 fresh, 1 refresh, 2 replay), its minimum share's interval s (0:
# none), how long a refresh's demand mark lasts ms. Replies: {granted 0/1, seconds until the
# slot (or until the queue's end when refused), seconds until it is worth asking again}, as
# strings: Redis turns Lua numbers into integers.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local lead = tonumber(ARGV[2])
local floor = tonumber(ARGV[3])
local priority = tonumber(ARGV[4])
local share_interval = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if floor > tat then tat = floor end
local slot = math.max(tat, now)
if priority > 0 then
  -- Budget nobody queued for: refreshes take a slot while the queue is at most one slot
  -- long, replays only while it is shorter and no refresh has asked lately.
  local idle = interval
  if priority == 1 then
    redis.call('SET', KEYS[3], '1', 'PX', ARGV[6])
  else
    idle = interval / 2
    if redis.call('EXISTS', KEYS[3]) == 1 then idle = -1 end
  end
  local owed = tonumber(redis.call('GET', KEYS[2]) or '0')
  if slot - now > idle then
    -- The minimum share: when due, the call goes ahead of the fresh calls still asking
    -- (one slot past the horizon per priority level, so that both levels fit).
    if share_interval <= 0 or owed > now or slot - now > lead + priority * interval then
      local again = slot - now - math.max(idle, 0)
      if share_interval > 0 then again = math.min(again, owed - now) end
      return {0, string.format('%.6f', slot - now), string.format('%.6f', math.max(again, 0))}
    end
    -- A share asked for late still keeps its pace (up to one interval's lateness), so the
    -- event loop's delays do not wear it down; an idle class banks no more than that.
    redis.call('SET', KEYS[2],
               string.format('%.6f', math.max(owed, now - share_interval) + share_interval),
               'PX', math.ceil(share_interval * 1000) + 60000)
  end
elseif slot - now > lead then
  return {0, string.format('%.6f', slot - now), string.format('%.6f', slot - now - lead)}
end
local nxt = slot + interval
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX',
           math.ceil((nxt - now) * 1000) + 60000)
return {1, string.format('%.6f', slot - now), '0'}
"""


# KEYS[1]: the log of calls sent, each member scored with when it stops counting (epoch s,
# Redis's clock). ARGV: calls allowed at once, a unique member, how long a call counts until
# its answer settles it s. Replies: {sent 0/1, seconds until one more fits}.
_COMMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local hold = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
local n = redis.call('ZCARD', KEYS[1])
if n < limit then
  redis.call('ZADD', KEYS[1], string.format('%.6f', now + hold), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], math.ceil(hold * 1000) + 1000)
  return {1, '0'}
end
-- One more fits once the call at this rank (the limit-th to stop counting) has stopped.
local e = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
return {0, string.format('%.6f', tonumber(e[2]) - now)}
"""

# KEYS[1]: the log of calls sent. ARGV: the member, seconds to count it less (its answer came
# and its delay is known). A member already gone is left gone.
_SETTLE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
local by = tonumber(ARGV[2])
if score and by > 0 then
  redis.call('ZADD', KEYS[1], 'XX', string.format('%.6f', tonumber(score) - by), ARGV[1])
end
return {1, '0'}
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    """The limiter's answer to one request for a slot."""

    granted: bool
    """True: the slot is the caller's. False: no slot within the allowed lead."""
    wait_s: float
    """Seconds until the granted slot, or until the end of the queue when refused."""
    retry_s: float = 0.0
    """Refused: seconds until asking again may be granted (for a fresh call, until the end of
    the queue is within its lead; below fresh, until the minimum share is due or the queue may
    be idle)."""


class GlobalLimiter:
    """Reserves provider slots in Redis; ``None`` from :meth:`reserve` means use the fallback."""

    def __init__(self, redis_url: str | None, *, namespace: str, horizon_s: float = 5.0,
                 timeout_s: float = 0.5, outage_skip_s: float = 2.0,
                 min_shares: Mapping[Priority, float] | None = None,
                 max_connections: int = 64, client: aioredis.Redis | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        commit_client = client
        if client is None and redis_url is not None:
            # Hundreds of waiting calls ask at once: they queue for one of a bounded set of
            # connections (within the timeout) instead of failing with MaxConnectionsError,
            # which the plain pool raises past its 50 connections. Commits have connections
            # of their own: a call that woke for its slot must not queue behind reservations
            # (the time to its commit counts against the slack).
            client = redis_client(redis_url, max_connections=max_connections, timeout_s=timeout_s)
            commit_client = redis_client(redis_url, max_connections=max_connections,
                                         timeout_s=timeout_s)
        self._redis = client
        self._commit_redis = commit_client
        self._namespace = namespace
        self.horizon_s = horizon_s
        self.min_shares: Mapping[Priority, float] = dict(min_shares or {})
        """The share of each provider's rate each priority below fresh gets at least, however
        many fresh calls wait."""
        for priority in Priority:
            if priority is not Priority.FRESH:
                metrics.RATELIMIT_MIN_SHARE.labels(priority=priority.name.lower()).set(
                    self.min_shares.get(priority, 0.0))
        self._outage_skip_s = outage_skip_s
        self._clock = clock
        self._skip_until = 0.0
        self._outage = False
        self._script = client.register_script(_SCRIPT) if client is not None else None
        self._commit = (commit_client.register_script(_COMMIT) if commit_client is not None
                        else None)
        self._settle = (commit_client.register_script(_SETTLE) if commit_client is not None
                        else None)

    def key(self, provider: str) -> str:
        return f"{self._namespace}:ratelimit:{provider}"

    @property
    def client(self) -> aioredis.Redis | None:
        """The Redis client of the reservations."""
        return self._redis

    @property
    def available(self) -> bool:
        """Whether the next :meth:`reserve` will try Redis."""
        return self._script is not None and self._clock() >= self._skip_until

    async def reserve(self, provider: str, *, interval_s: float, ahead_s: float,
                      floor: float = 0.0, priority: Priority = Priority.FRESH
                      ) -> Reservation | None:
        """Reserve ``provider``'s next slot if it is at most ``ahead_s`` away (capped at the
        horizon); below fresh, only a slot nobody queued for, or one ahead of the fresh calls
        when the priority's minimum share is due. ``floor`` (epoch seconds) keeps the queue from
        handing out slots before it. None: Redis is unreachable (or was within
        ``outage_skip_s``)."""
        if self._script is None or not self.available:
            return None
        ahead = max(0.0, min(ahead_s, self.horizon_s))
        share = self.min_shares.get(priority, 0.0)
        share_interval = interval_s / share if share > 0 else 0.0
        demand_ms = math.ceil(2000 * max(self.horizon_s, share_interval))
        key = self.key(provider)
        return await self._run(provider, self._script,
                               [key, f"{key}:share:{int(priority)}", f"{key}:demand"],
                               [f"{interval_s:.9f}", f"{ahead:.6f}", f"{floor:.6f}",
                                str(int(priority)), f"{share_interval:.9f}", str(demand_ms)])

    def reach_s(self, interval_s: float) -> float:
        """How far ahead of now any slot handed out may be: the horizon, plus one slot per
        priority below fresh (their minimum shares go ahead of the queue)."""
        return self.horizon_s + (len(Priority) - 1) * interval_s

    async def commit(self, provider: str, *, limit: int, member: str, hold_s: float
                     ) -> Reservation | None:
        """Record a call about to leave as ``member`` if fewer than ``limit`` calls count now;
        it counts for ``hold_s`` (Redis's clock) unless :meth:`settle` shortens that. Refused:
        ``wait_s`` until one more fits. None: Redis is unreachable."""
        if self._commit is None or not self.available:
            return None
        return await self._run(provider, self._commit, [self.key(provider) + ":sent"],
                               [str(limit), member, f"{hold_s:.6f}"])

    async def settle(self, provider: str, *, member: str, shorten_s: float) -> None:
        """Count the call ``member`` for ``shorten_s`` less than it was committed for (its
        answer came, and with it a bound of its delay to the provider)."""
        if self._settle is None or not self.available or shorten_s <= 0:
            return
        await self._run(provider, self._settle, [self.key(provider) + ":sent"],
                        [member, f"{shorten_s:.6f}"])

    async def _run(self, provider: str, script: Any, keys: list[str], args: list[str]
                   ) -> Reservation | None:
        try:
            reply = await script(keys=keys, args=args)
        except (aioredis.RedisError, OSError) as exc:
            self._skip_until = self._clock() + self._outage_skip_s
            metrics.LIMITER_ERRORS.labels(provider=provider).inc()
            if not self._outage:
                self._outage = True
                log.warning("event=limiter_unavailable provider=%s error_class=%s skip_s=%s: "
                            "pacing per partition from the changelogged table",
                            provider, type(exc).__name__, self._outage_skip_s)
            return None
        if self._outage:
            self._outage = False
            log.info("event=limiter_available provider=%s", provider)
        return Reservation(int(reply[0]) == 1, float(reply[1]),
                           float(reply[2]) if len(reply) > 2 else 0.0)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        if self._commit_redis is not None and self._commit_redis is not self._redis:
            await self._commit_redis.aclose()
