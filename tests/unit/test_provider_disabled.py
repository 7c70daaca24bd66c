"""A configuration error disables the provider in the worker instead of failing every record.

The real clients answer scripted HTTP (``httpx.MockTransport``) through a real gate, waterfall
and enrichment pipeline: after the first rejection no request goes out, records skip the stage
as ``skipped: provider_disabled`` and are published (never dead-lettered), the gauge says 1, and
one log line names the provider and the variable to fix, never the secret.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.unit.fakes import Event, Message, Sender
from tests.unit.fixtures.providers.helpers import Router, reply
from trackflow.agents.deadletter import error_facts
from trackflow.agents.enrich import EnrichmentPipeline
from trackflow.agents.records import validate_raw
from trackflow.agents.results import ResultCache
from trackflow.agents.waterfall import DISABLED, Waterfall
from trackflow.providers.base import CallSpec, Provider, TrackQuery
from trackflow.providers.context import AnswersUsed, enter_record
from trackflow.providers.deezer import DeezerClient
from trackflow.providers.discogs import DiscogsClient
from trackflow.providers.errors import CredentialsRejected, ProviderDisabled, TransientError
from trackflow.providers.gate import GateSet, ResilientGate
from trackflow.providers.lastfm import LastfmClient
from trackflow.providers.policy import ProviderPolicy
from trackflow.providers.specs import SPECS
from trackflow.providers.spotify import SpotifyClient
from trackflow.schemas.codec import decode, encode
from trackflow.streams.settings import Settings

SECRET = "s3cr3t-key-do-not-log"
NOW = 1_700_000_000.0


def disabled_gauge(provider: str) -> float | None:
    return REGISTRY.get_sample_value("trackflow_provider_disabled", {"provider": provider})


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def gate(provider: str, clock: Clock) -> ResilientGate:
    return ResilientGate(provider, ProviderPolicy(rate=1000.0, rate_slack_s=0.0, max_attempts=2),
                         partitions=4, clock=clock, sleep=clock.sleep, rng=random.Random(3),
                         config_variables=SPECS[provider].fix_variables)


# --- the gate -----------------------------------------------------------------------------------


async def test_gate_disables_on_the_first_rejection_and_sends_nothing_after(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    g = gate("discogs", clock)
    enter_record(0)
    calls = 0

    async def rejected() -> Any:
        nonlocal calls
        calls += 1
        raise CredentialsRejected("discogs", "credentials rejected (HTTP 401) on GET /x")

    assert disabled_gauge("discogs") == 0.0, "the gauge exists at 0 before anything happens"
    with caplog.at_level(logging.DEBUG, logger="trackflow"):
        # Several records in flight meet the rejection together: still one log line.
        results = await asyncio.gather(
            *(g.run(CallSpec("discogs", "search", f"q{i}"), rejected) for i in range(5)),
            return_exceptions=True)
        assert all(isinstance(r, ProviderDisabled) for r in results), results
        sent = calls
        for i in range(5):
            with pytest.raises(ProviderDisabled):
                await g.run(CallSpec("discogs", "search", f"later{i}"), rejected)
    assert calls == sent <= 5, "no call may go out once the provider is disabled"
    assert disabled_gauge("discogs") == 1.0
    lines = [r for r in caplog.records if "provider_disabled" in r.getMessage()]
    assert len(lines) == 1, f"expected one log line, got {[r.getMessage() for r in lines]}"
    assert lines[0].levelno == logging.ERROR
    assert "provider=discogs" in lines[0].getMessage()
    assert "fix=TRACKFLOW_DISCOGS_TOKEN" in lines[0].getMessage()
    assert g.disabled is not None and g.disabled.variables == ("TRACKFLOW_DISCOGS_TOKEN",)
    assert g.breaker_state(0).value == "closed", "a configuration error is not an outage"

    g.enable()  # what a reloaded configuration (or a restart) does
    assert disabled_gauge("discogs") == 0.0 and g.disabled is None

    async def fine() -> Any:
        return [{"ok": 1}]

    assert await g.run(CallSpec("discogs", "search", "again"), fine) == [{"ok": 1}]


async def test_transient_failures_never_disable() -> None:
    clock = Clock()
    g = gate("deezer", clock)
    enter_record(0)

    async def throttled() -> Any:
        raise TransientError("deezer", "refused (HTTP 403)", rate_limited=True)

    for i in range(3):
        with pytest.raises(TransientError):
            await g.run(CallSpec("deezer", "isrc", f"i{i}"), throttled)
    assert g.disabled is None and disabled_gauge("deezer") == 0.0


# --- clients, gate, waterfall and pipeline together ------------------------------------------

TRACK = {"track_id": "t1", "artist": "Daft Punk", "title": "One More Time",
         "isrc": "GBDUW0000059", "duration_ms": 320_000}


def pipeline(providers: dict[str, Provider], settings: Settings, sender: Sender,
             results: ResultCache | None = None) -> EnrichmentPipeline:
    return EnrichmentPipeline(send=sender, settings=settings,
                              enricher=Waterfall(providers, settings, results=results),
                              clock=lambda: NOW)


async def run_records(p: EnrichmentPipeline, n: int, **track: Any) -> None:
    for i in range(n):
        value = encode("RawTrack", validate_raw({**TRACK, **track, "track_id": f"t{i}"}))
        await p.handle(Event(Message(value, f"t{i}".encode(), offset=i)))


def lastfm_suspended() -> Router:
    # Error 26 comes with HTTP 403 and "links": [] (real answers carry it).
    return Router({"/2.0/": reply(403, {"error": 26, "message": "Suspended API key - Access "
                                        "for your account has been suspended", "links": []})})


async def test_suspended_lastfm_key_skips_the_stage_and_dead_letters_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    router = lastfm_suspended()
    gates = GateSet({"lastfm": gate("lastfm", clock)})
    lastfm = LastfmClient(api_key=SECRET, base_url="https://lastfm.test/2.0/", gate=gates,
                          transport=router.transport)
    settings = Settings(waterfall={"order": ["lastfm"], "targets": ["isrc", "tags"]})
    sender = Sender()
    with caplog.at_level(logging.DEBUG):
        await run_records(pipeline({"lastfm": lastfm}, settings, sender), 6)
    assert len(router.requests) == 1, "only the first record may reach Last.fm"
    topics = [topic for topic, *_ in sender.sent]
    # Each record is published, and its skipped stage is scheduled for a refresh (it fills in
    # once the provider is enabled again); nothing goes to the dead-letter topic.
    assert topics == ["tracks.enriched", "tracks.enriched.refresh"] * 6, (
        f"expected six published records, each with a refresh request, got {topics}")
    for _, _, value, _ in (s for s in sender.sent if s[0] == "tracks.enriched"):
        record = decode("EnrichedTrack", value)
        assert record["providers"] == [{"provider": "lastfm", "outcome": "skipped",
                                        "reason": DISABLED, "confidence": None}]
        assert record["status"] == "partial" and "tags" in record["missing"]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert text.count("event=provider_disabled") == 1, text
    assert "fix=TRACKFLOW_LASTFM_API_KEY" in text
    assert SECRET not in text, "the key must never reach a log line"
    assert "event=provider_permanent_error" not in text, "no error line per record"
    assert gates.disabled("lastfm") is not None and disabled_gauge("lastfm") == 1.0
    await lastfm.aclose()


async def test_invalid_spotify_client_leaves_the_required_gap_published_not_parked(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    router = Router({"/api/token": reply(400, {"error": "invalid_client",
                                               "error_description": "Invalid client"})})
    gates = GateSet({"spotify": gate("spotify", clock)})
    spotify = SpotifyClient(client_id="id", client_secret=SECRET,
                            base_url="https://api.spotify.test/v1",
                            accounts_url="https://accounts.spotify.test", gate=gates,
                            transport=router.transport)
    # Only Spotify could find the required ISRC: without it the record would be dead-lettered
    # as NotFound and parked. Disabled, Spotify says nothing about the track.
    settings = Settings(waterfall={"order": ["spotify"], "targets": ["isrc", "spotify_id"]})
    sender = Sender()
    with caplog.at_level(logging.DEBUG):
        await run_records(pipeline({"spotify": spotify}, settings, sender), 4, isrc=None)
    assert [t for t, *_ in sender.sent] == ["tracks.enriched", "tracks.enriched.refresh"] * 4
    record = decode("EnrichedTrack", sender.sent[0][2])
    assert record["isrc"] is None and record["providers"][0]["reason"] == DISABLED
    assert len(router.calls("/api/token")) == 1
    line = next(r.getMessage() for r in caplog.records
                if "event=provider_disabled" in r.getMessage())
    assert "fix=TRACKFLOW_SPOTIFY_CLIENT_ID,TRACKFLOW_SPOTIFY_CLIENT_SECRET" in line
    assert SECRET not in line
    await spotify.aclose()


async def test_a_gap_no_disabled_provider_could_fill_is_still_dead_lettered() -> None:
    clock = Clock()
    router = Router({"/database/search": reply(401, {"message": "You must authenticate."})})
    gates = GateSet({"discogs": gate("discogs", clock)})
    discogs = DiscogsClient(token=SECRET, contact="ops@example.org",
                            base_url="https://discogs.test", gate=gates,
                            transport=router.transport)
    # Discogs cannot provide an ISRC: the gap is not waiting for it.
    settings = Settings(waterfall={"order": ["discogs"], "targets": ["isrc", "label"]})
    sender = Sender()
    await run_records(pipeline({"discogs": discogs}, settings, sender), 1, isrc=None)
    (topic, _, _, headers), = sender.sent
    assert topic == "tracks.dlq"
    facts = error_facts(headers)
    assert facts["__connect.errors.exception.class.name"] == "NotFound"
    await discogs.aclose()


async def test_results_with_a_disabled_stage_are_not_kept_for_reuse() -> None:
    clock = Clock()
    router = lastfm_suspended()
    gates = GateSet({"lastfm": gate("lastfm", clock)})
    lastfm = LastfmClient(api_key=SECRET, base_url="https://lastfm.test/2.0/", gate=gates,
                          transport=router.transport)
    settings = Settings(waterfall={"order": ["lastfm"], "targets": ["isrc", "tags"]})
    results = ResultCache(100, clock=lambda: 0.0)
    waterfall = Waterfall({"lastfm": lastfm}, settings, results=results)
    enter_record(0)
    outcome = await waterfall.enrich(validate_raw(dict(TRACK)), 1)
    assert outcome.outcomes[0].reason == DISABLED
    assert not results.put(("k",), outcome, AnswersUsed(answers=1, expires_at=10.0))
    assert len(results) == 0
    await lastfm.aclose()


@pytest.mark.parametrize("status", [403, 429, 500, 502, 503])
async def test_deezer_refusals_are_transient_and_never_disable(status: int) -> None:
    clock = Clock()
    router = Router({"/track/": reply(status, {"message": "slow down"})})
    gates = GateSet({"deezer": gate("deezer", clock)})
    deezer = DeezerClient(base_url="https://deezer.test", gate=gates,
                          transport=router.transport)
    enter_record(0)
    with pytest.raises(TransientError) as raised:
        await deezer.lookup(TrackQuery("Daft Punk", "", isrc="GBDUW0000059"))
    # 403 and 429 are Deezer throttling us: they pause it; a 5xx is an outage for the breaker.
    assert raised.value.rate_limited == (status in (403, 429))
    assert gates.disabled("deezer") is None and disabled_gauge("deezer") == 0.0
    await deezer.aclose()

