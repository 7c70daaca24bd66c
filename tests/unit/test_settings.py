"""Settings: file + environment, and bad configuration naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackflow.providers.errors import ConfigError
from trackflow.streams.settings import load_settings


def test_environment_beats_file_and_conventional_variables_apply(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text("[kafka]\npartitions = 4\n[worker]\nmax_in_flight = 10\n")
    s = load_settings(cfg, env={"TRACKFLOW_WORKER__MAX_IN_FLIGHT": "20",
                                "KAFKA_BOOTSTRAP_SERVERS": "h:1", "REDIS_URL": "redis://r"})
    assert s.kafka.partitions == 4
    assert s.worker.max_in_flight == 20
    assert s.kafka.bootstrap_servers == "h:1"
    assert s.redis_url == "redis://r"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"TRACKFLOW_KAFKA__PARTITIONS": "0"}, "kafka.partitions"),
        ({"TRACKFLOW_WORKER__MAX_IN_FLIGHT": "many"}, "worker.max_in_flight"),
        ({"TRACKFLOW_KAFKA__PARTITONS": "3"}, "kafka.partitons"),
    ],
)
def test_bad_values_stop_with_the_key_named(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    assert err.value.key == key
    assert "TRACKFLOW_" in str(err.value), "the message must say which variable sets it"


def test_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    with pytest.raises(ConfigError):
        load_settings(bad, env={})


def test_provider_settings_hand_out_the_gate_policy_with_every_value_passed_through() -> None:
    s = load_settings(None, env={
        "TRACKFLOW_PROVIDERS__SPOTIFY__RATE": "7.5",
        "TRACKFLOW_PROVIDERS__SPOTIFY__WINDOW_S": "30",
        "TRACKFLOW_PROVIDERS__SPOTIFY__MAX_ATTEMPTS": "4",
        "TRACKFLOW_PROVIDERS__SPOTIFY__BREAKER__CONSECUTIVE_FAILURES": "9",
        "TRACKFLOW_PROVIDERS__SPOTIFY__BREAKER__OPEN_CAP_S": "42"})
    settings = s.providers["spotify"]
    policy = settings.policy()
    assert (policy.rate, policy.window_s, policy.max_attempts) == (7.5, 30.0, 4)
    assert (policy.breaker.consecutive_failures, policy.breaker.open_cap_s) == (9, 42.0)
    for name, value in settings.model_dump(exclude={"enabled", "min_confidence", "requires",
                                                     "features", "breaker"}).items():
        assert getattr(policy, name) == value, f"policy.{name} should be the setting's {value}"
    for name, value in settings.breaker.model_dump().items():
        assert getattr(policy.breaker, name) == value, f"breaker.{name} should be {value}"


def test_every_lookup_kind_has_its_own_cache_ttl() -> None:
    s = load_settings(None, env={"TRACKFLOW_CACHE__TTL_FEATURES_S": "123",
                                     "TRACKFLOW_CACHE__TTL_TAGS_S": "456"})
    ttls = s.cache.ttls()
    assert ttls.by_kind["features"] == 123 and ttls.by_kind["tags"] == 456
    assert ttls.by_kind["isrc"] == ttls.by_kind["id"] == s.cache.ttl_id_s


def test_minimum_shares_must_leave_fresh_records_a_share() -> None:
    from trackflow.providers.context import Priority

    s = load_settings(env={"TRACKFLOW_LIMITER__REFRESH_MIN_SHARE": "0.2"})
    assert s.limiter.min_shares() == {Priority.REFRESH: 0.2, Priority.REPLAY: 0.05}
    with pytest.raises(ConfigError, match="min_share"):
        load_settings(env={"TRACKFLOW_LIMITER__REFRESH_MIN_SHARE": "0.6",
                           "TRACKFLOW_LIMITER__REPLAY_MIN_SHARE": "0.4"})
