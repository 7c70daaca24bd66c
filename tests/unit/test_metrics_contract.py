"""The metrics contract: docs/metrics.md is what the code defines; families follow the rules."""

from __future__ import annotations

import re
from pathlib import Path

from trackflow.providers import metrics
from trackflow.streams.metrics_doc import families, render, sample_names

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
#: Label names a per-track value could hide behind; never allowed on a family.
FORBIDDEN_LABELS = {"track_id", "isrc", "title", "artist", "key", "cache_key", "url", "query"}


def test_docs_table_is_what_the_code_generates() -> None:
    assert DOC.exists(), ("docs/metrics.md is missing: "
                          "run python -m trackflow.streams.metrics_doc > docs/metrics.md")
    assert DOC.read_text() == render(), (
        "docs/metrics.md differs from agents/metrics.py and providers/metrics.py: "
        "run python -m trackflow.streams.metrics_doc > docs/metrics.md and commit it")


def test_every_family_is_in_the_table() -> None:
    text = DOC.read_text()
    missing = [f.name for f in families() if f"| `{f.name}` |" not in text]
    assert not missing, f"families missing from docs/metrics.md: {missing}"


def test_the_contract_covers_every_area_the_issue_names() -> None:
    names = {f.name for f in families()}
    for needed in ("trackflow_provider_calls_total", "trackflow_provider_call_duration_seconds",
                   "trackflow_cache_requests_total", "trackflow_ratelimit_tokens",
                   "trackflow_breaker_state", "trackflow_retries_total",
                   "trackflow_dead_letters_total", "trackflow_records_in_total",
                   "trackflow_end_to_end_latency_seconds", "trackflow_consumer_lag_records",
                   "trackflow_build_info"):
        assert needed in names, (f"expected the family {needed} in agents/metrics.py or "
                                 "providers/metrics.py")


def test_families_follow_the_naming_rules() -> None:
    for f in families():
        assert re.fullmatch(r"trackflow_[a-z0-9_]+", f.name), f"bad family name {f.name}"
        if f.type == "counter":
            assert f.name.endswith("_total"), f"counter {f.name} must end in _total"
        else:
            assert not f.name.endswith("_total"), f"only counters may end in _total: {f.name}"
        if f.type == "histogram":
            assert f.name.endswith("_seconds"), f"histogram {f.name} must be in seconds"
        assert not FORBIDDEN_LABELS & set(f.labels), f"{f.name} has a per-track label"
        assert f.help.strip(), f"{f.name} has no help text"


def test_histogram_samples_map_back_to_their_family() -> None:
    samples = sample_names()
    fam = samples["trackflow_provider_call_duration_seconds_bucket"]
    assert fam.name == "trackflow_provider_call_duration_seconds"
    assert samples["trackflow_build_info"].type == "info"
    assert samples["trackflow_retries_total"].labels == ("provider", "attempt")


def test_breaker_state_values_match_the_help_text() -> None:
    help_text = next(f.help for f in families() if f.name == "trackflow_breaker_state")
    for state, value in metrics.BREAKER_STATE_VALUES.items():
        assert f"{value} {state}" in help_text, f"help of trackflow_breaker_state lacks {state}"
