"""The provider waterfall: which stage runs next, and what a matched candidate may fill.

For each record the stages run in configured order. A stage runs only when it can still fill a
missing field it is allowed to fill, and the inputs it requires are known (an ISRC found by
MusicBrainz lets Deezer look up BPM by ISRC). The waterfall stops as soon as every target field
is known. Each filled field keeps its provider and match confidence; each provider gets one
outcome (matched, not_found, skipped, failed, deferred).

Waiting for provider budget is backpressure, not failure. A stage that may fill a still-missing
``required`` field that no later stage can fill waits for its rate-limit slot as long as that
takes (the record stays in flight, and records behind it stay in Kafka). A stage that would fill
only optional fields waits until its provider's ``max_wait_s`` at most
(:func:`~providers.context.call_deadline`); a busy provider (no slot in time) or an open breaker
then makes it ``deferred``: the record is published ``partial`` with those fields missing, for
the refresh path to fill later.

A required field that a later stage can fill too does not hold the record up at a busy
provider: the stage is deferred like an optional one and the later stage fills the field (in a
burst, MusicBrainz at 1 call/s passes the ISRC on to Spotify at 5/s, and the pipeline drains at
the rate of both instead of MusicBrainz's alone). If the field is still missing after the last
stage, the stages that passed it on run again and wait for their slot, so a busy provider never
makes a dead letter.

The record is publishable when every ``required`` field is known. When it is not, it is
dead-lettered: retryable when a transient provider failure may have caused the gap, not
retryable when the providers answered and simply do not have the data.

A typo in the title ("Telephnoe") makes the providers' searches answer with nothing like the
track. So a record whose gap the providers answered without a sure match, and that has not had
a second look yet, is dead-lettered as retryable with reason ``second_look``: the reprocessing
agent replays it, and the replay, at replay priority (after the fresh work), asks the providers
that can (:class:`~providers.base.SecondLook`) a wider question, cheapest provider first, and
matches by :func:`~providers.matching.best_match`'s stricter ``second_look`` rule. Stages that
then have an ISRC to look up by run again. Only a record the second look missed as well is
dead-lettered as ``not_found``, and parked. The outcome of a second-looked stage says so
(reason ``second_look``), also in a result kept for repeated inputs.

A provider disabled in this worker by a configuration error (its gate raises
``ProviderDisabled``) is ``skipped`` with reason ``provider_disabled``. That says nothing about
the track: a record whose only gap is fields a disabled provider could fill is published
``partial`` (its outcome says why), never dead-lettered, and stays a candidate for enrichment
once the provider is enabled again.

Inputs repeat (chart scrapers publish the same tracks week after week): a result computed only
from cached provider answers is kept per input (:mod:`agents.results`), in process and in
Redis, until the earliest of those answers expires, and a repeated input costs one lookup
instead of five stages of lookups and matching.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trackflow.agents import metrics
from trackflow.agents.deadletter import Failure
from trackflow.agents.enrich import Enrichment
from trackflow.agents.records import DISABLED, STAGE_OUTCOMES, FieldValue, Outcome, input_key
from trackflow.agents.results import KeptResult, ResultCache
from trackflow.agents.settings import AgentSettings
from trackflow.providers.base import Candidate, Provider, SecondLook, TrackQuery
from trackflow.providers.context import (
    Priority,
    call_deadline,
    call_priority,
    current_priority,
    current_record,
)
from trackflow.providers.errors import (
    BreakerOpen,
    CredentialsRejected,
    NotFound,
    PermanentError,
    ProviderDisabled,
    ProviderError,
    RateLimitWait,
    TransientError,
)
from trackflow.providers.matching import best_match
from trackflow.providers.specs import SPECS

log = logging.getLogger("trackflow.agents.waterfall")

_INT_FIELDS = {"duration_ms", "deezer_id", "discogs_release_id", "popularity", "listeners",
               "playcount", "deezer_rank"}
_LIST_FIELDS = {"genres", "tags"}



@dataclass(frozen=True, slots=True)
class StagePlan:
    """What one stage would do for a record in its current state."""

    provider: str
    fillable: frozenset[str]
    """Missing fields this stage may fill (empty: skip)."""
    skip_reason: str | None
    """Why it is skipped: ``complete``, ``nothing_to_fill`` or ``missing_<field>``."""


def missing_fields(known: Mapping[str, FieldValue], targets: Sequence[str]) -> list[str]:
    return [t for t in targets if t not in known]


def _known(raw: Mapping[str, Any], filled: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
    """What a record knows: its given fields, then what stages filled."""
    known = {name: FieldValue(raw[name], "input", 1.0) for name in GIVEN_FIELDS if raw.get(name)}
    known.update(filled)
    return known


def plan_stage(provider: str, known: Mapping[str, FieldValue], settings: AgentSettings,
               targets: Sequence[str]) -> StagePlan:
    """Pure: may ``provider`` contribute anything to a record that knows ``known``?"""
    missing = set(missing_fields(known, targets))
    if not missing:
        return StagePlan(provider, frozenset(), "complete")
    rules = settings.waterfall.fields
    allowed = {f for f, rule in rules.items() if provider in rule.providers}
    fillable = frozenset(SPECS[provider].provides & allowed & missing)
    if not fillable:
        return StagePlan(provider, fillable, "nothing_to_fill")
    for needed in settings.providers[provider].requires:
        if needed not in known:
            return StagePlan(provider, frozenset(), f"missing_{needed}")
    return StagePlan(provider, fillable, None)


def convert(name: str, value: Any) -> Any:
    """A candidate value in the EnrichedTrack field's type, or None when unusable."""
    if value is None or value == "" or value == []:
        return None
    try:
        if name in _INT_FIELDS:
            return int(value)
        if name == "bpm":
            bpm = float(value)
            return bpm if bpm > 0 else None
        if name in _LIST_FIELDS:
            items = value if isinstance(value, list | tuple) else [value]
            out = [str(v).strip() for v in items if str(v).strip()]
            return out[:25] or None
    except (TypeError, ValueError):
        return None
    return str(value)


def query_for(raw: Mapping[str, Any], known: Mapping[str, FieldValue]) -> TrackQuery:
    """What we ask providers: the input plus identifiers found by earlier stages."""
    def value(name: str) -> Any:
        fv = known.get(name)
        return fv.value if fv is not None else raw.get(name)

    return TrackQuery(artist=raw["artist"], title=raw["title"], isrc=value("isrc"),
                      duration_ms=value("duration_ms"), album=value("album"),
                      spotify_id=value("spotify_id"),
                      musicbrainz_recording_id=value("musicbrainz_recording_id"))


def _for_matching(provider: str, query: TrackQuery, candidates: Sequence[Candidate]
                  ) -> list[Candidate]:
    if not SPECS[provider].release_level:
        return list(candidates)
    # Releases found by a track filter have no track title: the release must agree on the
    # artist, and the title is the query's.
    return [Candidate(c.provider, {**c.fields, "title": c.get("title") or query.title},
                      c.provider_score, c.via) for c in candidates]


#: The reason of a stage outcome decided by a second look, and of the dead letter asking for one.
SECOND_LOOK = "second_look"
#: The stage and error class of that dead letter.
MATCH_STAGE = "match"
NO_SURE_MATCH = "NoSureMatch"

#: Target fields a raw record may already carry; stages do not look for them again.
GIVEN_FIELDS = ("isrc", "duration_ms", "album", "spotify_id")


class Waterfall:
    """Runs the provider stages for one record. ``providers`` holds the enabled clients."""

    def __init__(self, providers: Mapping[str, Provider], settings: AgentSettings,
                 *, results: ResultCache | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._providers = providers
        self._settings = settings
        self._targets = tuple(settings.waterfall.targets)
        self._order = [p for p in settings.waterfall.order if p in providers]
        self._results = results
        self._clock = clock
        self._outcome_counters = {
            (p, o): metrics.PROVIDER_STAGE_OUTCOMES.labels(provider=p, outcome=o)
            for p in self._order
            for o in STAGE_OUTCOMES}
        self._deferred_fields = {p: metrics.DEFERRED_FIELDS.labels(provider=p)
                                 for p in self._order}

    def cached(self, raw: dict[str, Any]) -> Enrichment | None:
        """The result cache's result for ``raw`` (counted as a hit), or None (nothing counted):
        what :meth:`enrich` returns without running a stage."""
        kept = self._results.get(input_key(raw)) if self._results is not None else None
        return None if kept is None else self._reuse(raw, kept)

    async def enrich(self, raw: dict[str, Any], attempt: int) -> Enrichment:
        if self._results is None:
            return await self._run(raw, attempt)
        hit = self.cached(raw)
        if hit is not None:
            return hit
        key = input_key(raw)
        shared = await self._results.load(key)
        if shared is not None:
            return self._reuse(raw, shared)
        # The cache reports every answer it hands this record into its context.
        used = current_record().answers
        result = await self._run(raw, attempt)
        await self._results.store(key, result, used)
        return result

    def _reuse(self, raw: Mapping[str, Any], kept: KeptResult) -> Enrichment:
        for outcome in kept.outcomes:
            if outcome.outcome != "skipped":
                self._outcome_counters[outcome.provider, outcome.outcome].inc()
        return self._finish(raw, dict(kept.filled), list(kept.outcomes), [])

    async def _run(self, raw: dict[str, Any], attempt: int = 1) -> Enrichment:
        known = _known(raw, {})
        outcomes: dict[str, Outcome] = {}
        transient: list[TransientError] = []
        deferred: dict[str, int] = {}
        passed_on: set[str] = set()
        for name in self._order:
            await self._stage(name, raw, known, outcomes, transient, deferred, passed_on)
        if passed_on and self._gap(known):
            # A required field is still missing: the stages that passed it on to a later
            # provider now wait for their own slot, and the stages that lacked an input they
            # may bring run after them.
            again = {name for name, o in outcomes.items()
                     if name in passed_on or (o.outcome == "skipped"
                                              and (o.reason or "").startswith("missing_"))}
            for name in self._order:
                if name in again:
                    await self._stage(name, raw, known, outcomes, transient, deferred, None)
        if attempt > 1 and not transient and self._gap(known):
            await self._second_look(raw, known, outcomes, transient, deferred)
        for name, count in deferred.items():
            self._deferred_fields[name].inc(count)
        for o in outcomes.values():
            if o.outcome != "skipped":
                self._outcome_counters[o.provider, o.outcome].inc()
        filled = {k: v for k, v in known.items() if v.provider != "input"}
        return self._finish(raw, filled, [outcomes[n] for n in self._order], transient)

    async def _stage(self, name: str, raw: Mapping[str, Any], known: dict[str, FieldValue],
                     outcomes: dict[str, Outcome], transient: list[TransientError],
                     deferred: dict[str, int], passed_on: set[str] | None) -> None:
        """Plan and run one stage of a fresh record. With ``passed_on`` (the first pass), a
        stage of required fields that a later stage can also fill is deferred like one of
        optional fields when its provider is busy, and noted there."""
        plan = plan_stage(name, known, self._settings, self._targets)
        deferred.pop(name, None)
        if plan.skip_reason is not None:
            outcomes[name] = Outcome(name, "skipped", plan.skip_reason)
            return
        required = self._waits(plan)
        may_pass = (required and passed_on is not None
                    and self._filled_later(name, plan, known))
        outcome = await self._run_stage(name, plan, raw, known, transient,
                                        waits=required and not may_pass)
        if outcome.outcome == "deferred":
            deferred[name] = len(plan.fillable)
            if may_pass and passed_on is not None:
                passed_on.add(name)
        outcomes[name] = outcome

    async def _second_look(self, raw: Mapping[str, Any], known: dict[str, FieldValue],
                           outcomes: dict[str, Outcome], transient: list[TransientError],
                           deferred: dict[str, int]) -> None:
        """Ask the providers that answered a gap field without a sure match a wider question,
        cheapest first, until the gap is filled; then run again the stages that lacked an input
        or may look it up by the new one (see the module docstring)."""
        gap = set(self._gap(known))
        looked: set[str] = set()
        for name in sorted(self._order, key=lambda n: -SPECS[n].rate / SPECS[n].window_s):
            provider = self._providers[name]
            outcome = outcomes.get(name)
            plan = plan_stage(name, known, self._settings, self._targets)
            if (not isinstance(provider, SecondLook) or outcome is None
                    or outcome.outcome != "not_found" or not plan.fillable & gap):
                continue
            looked.add(name)
            outcomes[name] = await self._run_stage(name, plan, raw, known, transient,
                                                   waits=True, second_look=True)
            gap = set(self._gap(known))
            if not gap:
                break
        if gap or not looked:
            return
        for name in self._order:
            o = outcomes.get(name)
            if name not in looked and o is not None and (
                    o.outcome == "not_found"
                    or (o.outcome == "skipped" and (o.reason or "").startswith("missing_"))):
                await self._stage(name, raw, known, outcomes, transient, deferred, None)

    def _filled_later(self, name: str, plan: StagePlan, known: Mapping[str, FieldValue]
                      ) -> bool:
        """Whether a stage after ``name`` could fill every required field ``plan`` would, with
        what is known now: then a busy provider need not hold the record up, the later one
        can fill them (MusicBrainz at 1/s passes an ISRC on to Spotify at 5/s)."""
        needed = plan.fillable & set(self._settings.waterfall.required)
        rules = self._settings.waterfall.fields
        later = self._order[self._order.index(name) + 1:]
        return any(
            all(f in SPECS[p].provides and p in rules[f].providers for f in needed)
            and all(r in known for r in self._settings.providers[p].requires)
            for p in later)

    def _gap(self, known: Mapping[str, FieldValue]) -> list[str]:
        """Required fields neither the input nor a stage has filled."""
        return [f for f in self._settings.waterfall.required if f not in known]

    async def refresh(self, raw: dict[str, Any], filled: Mapping[str, FieldValue],
                      outcomes: Sequence[Outcome], stages: Sequence[str], *,
                      on_stage: Callable[[str], None] | None = None) -> Enrichment:
        """Run ``stages`` again for a record that already knows ``filled``; the other stages
        keep their outcomes. The record is published already, so its stages wait for budget
        as long as it takes, at refresh priority (:class:`~providers.context.Priority`): what
        fresh records leave, and at least the refreshes' minimum share. An open breaker defers
        them again. ``on_stage`` is told each stage's name once it is over (run or skipped)."""
        with call_priority(Priority.REFRESH):
            return await self._refresh(raw, filled, outcomes, stages,
                                       on_stage or (lambda name: None))

    def planned(self, raw: dict[str, Any], filled: Mapping[str, FieldValue],
                stages: Sequence[str]) -> list[str]:
        """The stages of ``stages`` a refresh would ask their provider for, with what is known
        now (one with nothing left to fill, another provider having filled it meanwhile, is
        skipped without a call): what the refresh backlog asks of each provider."""
        known = _known(raw, filled)
        return [name for name in self._order if name in stages
                and plan_stage(name, known, self._settings, self._targets).skip_reason is None]

    async def _refresh(self, raw: dict[str, Any], filled: Mapping[str, FieldValue],
                       outcomes: Sequence[Outcome], stages: Sequence[str],
                       on_stage: Callable[[str], None]) -> Enrichment:
        known = _known(raw, filled)
        previous = {o.provider: o for o in outcomes}
        out: list[Outcome] = []
        transient: list[TransientError] = []
        for name in self._order:
            if name not in stages:
                if name in previous:
                    out.append(previous[name])
                continue
            plan = plan_stage(name, known, self._settings, self._targets)
            if plan.skip_reason is not None:
                out.append(Outcome(name, "skipped", plan.skip_reason))
                on_stage(name)
                continue
            outcome = await self._run_stage(name, plan, raw, known, transient,
                                            waits=self._waits(plan))
            on_stage(name)
            if outcome.outcome == "deferred":
                self._deferred_fields[name].inc(len(plan.fillable))
            out.append(outcome)
            self._outcome_counters[name, outcome.outcome].inc()
        result = Enrichment(filled={k: v for k, v in known.items() if v.provider != "input"},
                            outcomes=out)
        return result

    def _finish(self, raw: Mapping[str, Any], filled: dict[str, FieldValue],
                outcomes: list[Outcome], transient: list[TransientError]) -> Enrichment:
        result = Enrichment(filled=filled, outcomes=outcomes)
        gap = [f for f in self._settings.waterfall.required
               if f not in filled and not (f in GIVEN_FIELDS and raw.get(f))]
        if gap and not transient and self._awaits_disabled(gap, outcomes):
            return result  # published partial; see the module docstring
        if gap:
            result.failure = self._failure(gap, transient, outcomes)
            if transient:
                waits = [e.retry_after for e in transient if e.retry_after]
                if waits:
                    result.not_before_ms = int((self._clock() + max(waits)) * 1000)
        return result

    def _second_look_due(self, gap: Sequence[str], outcomes: Sequence[Outcome]) -> bool:
        """Whether a provider that answered ``not_found`` for a gap field can look again, and
        none has yet (a second look's outcome carries its reason)."""
        if any(o.reason == SECOND_LOOK for o in outcomes):
            return False
        return any(
            o.outcome == "not_found" and isinstance(self._providers.get(o.provider), SecondLook)
            and any(self._may_fill(o.provider, f) for f in gap)
            for o in outcomes)

    def _may_fill(self, provider: str, field: str) -> bool:
        """Whether ``provider``'s answers carry ``field`` and the rules let it fill it."""
        rule = self._settings.waterfall.fields.get(field)
        return rule is not None and field in SPECS[provider].provides and provider in rule.providers

    def _awaits_disabled(self, gap: Sequence[str], outcomes: Sequence[Outcome]) -> bool:
        """True when every field of ``gap`` could come from a provider skipped as disabled."""
        disabled = {o.provider for o in outcomes if o.reason == DISABLED}
        if not disabled:
            return False
        return all(any(self._may_fill(p, field) for p in disabled) for field in gap)

    def _waits(self, plan: StagePlan) -> bool:
        """Whether the stage may fill a required field: then it waits for its slot, however far."""
        return bool(plan.fillable & set(self._settings.waterfall.required))

    async def _lookup(self, name: str, query: TrackQuery, *, waits: bool,
                      second_look: bool = False) -> list[Candidate]:
        provider = self._providers[name]
        if second_look and isinstance(provider, SecondLook):
            lookup = provider.lookup_again
        else:
            lookup = provider.lookup
        if not waits and current_priority() is Priority.FRESH:
            deadline = self._clock() + self._settings.providers[name].max_wait_s
            with call_deadline(deadline):
                return await lookup(query)
        while True:
            try:
                return await lookup(query)
            except RateLimitWait:
                # A lookup shared with a record whose stage had a deadline (the cache lets
                # identical lookups share one call) gave up: this stage waits, so ask again.
                continue

    async def _run_stage(self, name: str, plan: StagePlan, raw: Mapping[str, Any],
                         known: dict[str, FieldValue], transient: list[TransientError],
                         *, waits: bool, second_look: bool = False) -> Outcome:
        """One stage's lookup and match; ``waits``: it waits for its slot however long (it
        may fill a required field no later stage can), otherwise it is deferred when its
        provider is busy past ``max_wait_s`` or its breaker is open."""
        query = query_for(raw, known)
        try:
            candidates = await self._lookup(name, query, waits=waits, second_look=second_look)
        except (RateLimitWait, BreakerOpen) as exc:
            if waits:
                # Required fields: an open breaker is an outage, dead-lettered as retryable.
                transient.append(exc)
                metrics.PROVIDER_ERRORS.labels(provider=name,
                                               error_class=type(exc).__name__).inc()
                return Outcome(name, "failed", type(exc).__name__)
            # Optional fields (or required ones a later stage may fill) from a busy or
            # unavailable provider: publish without them now, fill them in later.
            return Outcome(name, "deferred", type(exc).__name__)
        except TransientError as exc:
            transient.append(exc)
            metrics.PROVIDER_ERRORS.labels(provider=name, error_class=type(exc).__name__).inc()
            return Outcome(name, "failed", type(exc).__name__)
        except NotFound:
            candidates = []
        except (ProviderDisabled, CredentialsRejected):
            # Counted and logged once by the resilient gate, which turns the first rejection
            # into ProviderDisabled; a plain gate (tests, one-off lookups) lets the rejection
            # itself through. Either way the record only notes it.
            return Outcome(name, "skipped", DISABLED)
        except (PermanentError, ProviderError) as exc:
            metrics.PROVIDER_ERRORS.labels(provider=name, error_class=type(exc).__name__).inc()
            log.error("event=provider_permanent_error provider=%s error=%s", name, exc)
            return Outcome(name, "failed", type(exc).__name__)
        threshold = self._settings.providers[name].min_confidence
        match = best_match(query, _for_matching(name, query, candidates), threshold=threshold,
                           second_look=second_look)
        if match is None:
            return Outcome(name, "not_found", SECOND_LOOK if second_look
                           else "no_candidates" if not candidates else "no_confident_match")
        confidence = min(match.confidence, SPECS[name].confidence_cap)
        rules = self._settings.waterfall.fields
        for field_name in plan.fillable:
            value = convert(field_name, match.candidate.get(field_name))
            if value is not None and confidence >= rules[field_name].min_confidence:
                known[field_name] = FieldValue(value, name, round(confidence, 4))
        if "title" not in known and confidence >= 0.9:
            for canon in ("artist", "title"):
                value = match.candidate.get(canon)
                if value:
                    known[canon] = FieldValue(str(value), name, round(confidence, 4))
        return Outcome(name, "matched", SECOND_LOOK if second_look else None,
                       confidence=round(confidence, 4))

    def _failure(self, gap: list[str], transient: list[TransientError],
                 outcomes: Sequence[Outcome]) -> Failure:
        if transient:
            first = transient[0]
            return Failure(
                stage=f"provider:{first.provider}", error_class=type(first).__name__,
                message=f"missing {', '.join(gap)} after transient failures: "
                        + "; ".join(str(e) for e in transient)[:500],
                reason="provider_unavailable", retryable=True, provider=first.provider)
        if self._second_look_due(gap, outcomes):
            return Failure(stage=MATCH_STAGE, error_class=NO_SURE_MATCH,
                           message=f"no sure match for {', '.join(gap)} at the first look; "
                                   "a wider query follows at replay priority",
                           reason=SECOND_LOOK, retryable=True)
        return Failure(stage="provider:" + (self._order[0] if self._order else "none"),
                       error_class="NotFound",
                       message=f"no provider knows {', '.join(gap)} for this track",
                       reason="not_found", retryable=False,
                       provider=self._order[0] if self._order else None)
