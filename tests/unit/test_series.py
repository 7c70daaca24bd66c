"""Series with known label values exist at 0 from the start (no broker needed)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from trackflow.providers.specs import PROVIDER_NAMES
from trackflow.streams.series import create_series
from trackflow.streams.settings import load_settings


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_every_provider_gets_its_alerted_series_at_zero() -> None:
    settings = load_settings(env={"TRACKFLOW_PROVIDERS__SPOTIFY__MAX_ATTEMPTS": "4"})
    create_series(settings)
    for p in PROVIDER_NAMES:
        for name, labels in (
            ("trackflow_breaker_transitions_total", {"from_state": "closed", "to_state": "open"}),
            ("trackflow_breaker_transitions_total", {"from_state": "half_open",
                                                     "to_state": "closed"}),
            ("trackflow_ratelimit_limited_answers_total", {}),
            ("trackflow_retry_budget_exhausted_total", {}),
            ("trackflow_retries_total", {"attempt": "1"}),
            ("trackflow_provider_disabled", {}),
            ("trackflow_provider_errors_total", {"error_class": "TransientError"}),
            ("trackflow_dead_letters_total", {"stage": "provider", "retryable": "true"}),
            ("trackflow_dlq_parked_total", {"stage": "provider", "error_class": "NotFound"}),
            ("trackflow_cache_requests_total", {"level": "redis", "result": "hit"}),
        ):
            got = value(name, provider=p, **labels)
            assert got is not None, f"expected {name}{labels} for {p} to exist"
    # Retries are numbered up to max_attempts - 1, per provider.
    assert value("trackflow_retries_total", provider="spotify", attempt="3") is not None
    assert value("trackflow_retries_total", provider="deezer", attempt="3") is None
    # Lookup kinds come from the spec: Spotify has a token call, Discogs only searches.
    assert value("trackflow_provider_calls_total", provider="spotify", kind="token",
                 outcome="transient") is not None
    assert value("trackflow_provider_calls_total", provider="discogs", kind="token",
                 outcome="transient") is None
    assert value("trackflow_cache_errors_total", operation="mget") is not None
    # The second look's dead letters have no provider: stage "match", retried.
    assert value("trackflow_dead_letters_total", stage="match", provider="",
                 retryable="true") is not None
    assert value("trackflow_dlq_received_total", stage="match", provider="",
                 error_class="NoSureMatch") is not None
    assert value("trackflow_dlq_scheduled_total", provider="") is not None


def test_stage_outcomes_are_the_schemas_and_each_has_its_series_at_zero() -> None:
    import json
    from importlib import resources
    from typing import get_args

    from trackflow.agents.records import STAGE_OUTCOMES
    from trackflow.streams.client.records import OutcomeName

    schema = json.loads(resources.files("trackflow.schemas").joinpath(
        "EnrichedTrack.v2.avsc").read_text())
    (providers,) = [f for f in schema["fields"] if f["name"] == "providers"]
    (outcome,) = [f for f in providers["type"]["items"]["fields"] if f["name"] == "outcome"]
    symbols = tuple(outcome["type"]["symbols"])
    assert STAGE_OUTCOMES == symbols, f"expected the schema's outcomes {symbols}"
    assert set(get_args(OutcomeName)) == set(symbols), "the client's type names every outcome"
    create_series(load_settings(env={}))
    for p in PROVIDER_NAMES:
        for o in symbols:
            assert value("trackflow_provider_stage_outcomes_total", provider=p, outcome=o) \
                is not None, f"expected the {o} series of {p} to exist at 0"
