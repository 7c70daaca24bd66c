"""Settings: file + environment, and bad configuration naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackflow.providers.errors import ConfigError
from trackflow.providers.policy import BreakerConfig, ProviderPolicy
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
        ({"TRACKFLOW_TABLES__STORE": "disk"}, "tables.store"),
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


def test_a_provider_section_is_its_gates_policy_and_every_knob_is_settable() -> None:
    s = load_settings(None, env={
        "TRACKFLOW_PROVIDERS__SPOTIFY__RATE": "7.5",
        "TRACKFLOW_PROVIDERS__SPOTIFY__WINDOW_S": "30",
        "TRACKFLOW_PROVIDERS__SPOTIFY__MAX_ATTEMPTS": "4",
        "TRACKFLOW_PROVIDERS__SPOTIFY__PAUSE_DEFAULT_S": "2.5",
        "TRACKFLOW_PROVIDERS__SPOTIFY__BREAKER__CONSECUTIVE_FAILURES": "9",
        "TRACKFLOW_PROVIDERS__SPOTIFY__BREAKER__PROBE_WAIT_S": "0.25",
        "TRACKFLOW_PROVIDERS__SPOTIFY__BREAKER__OPEN_CAP_S": "42"})
    policy = s.providers["spotify"]
    assert isinstance(policy, ProviderPolicy) and isinstance(policy.breaker, BreakerConfig)
    assert (policy.rate, policy.window_s, policy.max_attempts, policy.pause_default_s) == (
        7.5, 30.0, 4, 2.5)
    assert (policy.breaker.consecutive_failures, policy.breaker.open_cap_s,
            policy.breaker.probe_wait_s) == (9, 42.0, 0.25)
    # The rest keep the defaults the gate and the breaker have when built without settings.
    assert policy.breaker.window_size == BreakerConfig().window_size
    assert policy.timeout_s == ProviderPolicy().timeout_s


def test_a_breaker_whose_window_cannot_hold_its_minimum_stops_start_up() -> None:
    with pytest.raises(ConfigError, match=r"providers\.deezer\.breaker"):
        load_settings(None, env={"TRACKFLOW_PROVIDERS__DEEZER__BREAKER__WINDOW_SIZE": "4"})


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


def test_lists_are_json_and_one_key_of_a_provider_keeps_its_other_defaults(tmp_path: Path
                                                                           ) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text("[providers.deezer]\nmax_attempts = 2\n")
    s = load_settings(cfg, env={"TRACKFLOW_WATERFALL__ORDER": '["deezer", "lastfm"]',
                                "TRACKFLOW_WORKER__AGENTS": '["enrich"]',
                                "TRACKFLOW_PROVIDERS__SPOTIFY__RATE": "2"})
    assert s.waterfall.order == ["deezer", "lastfm"] and s.worker.agents == ["enrich"]
    defaults = load_settings(None, env={}).providers
    # Spotify counts over 30 s and Deezer needs an ISRC: set one key, the rest stay.
    assert (s.providers["spotify"].rate, s.providers["spotify"].window_s) == (
        2.0, defaults["spotify"].window_s)
    assert (s.providers["deezer"].max_attempts, s.providers["deezer"].requires) == (
        2, defaults["deezer"].requires)
    assert set(s.providers) == set(defaults)


def test_a_variable_that_is_not_json_stops_start_up_naming_it() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={"TRACKFLOW_WORKER__AGENTS": '["enrich"'})
    assert err.value.key == "TRACKFLOW_WORKER__AGENTS" and "JSON" in str(err.value)


def test_settings_built_in_code_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from trackflow.streams.settings import Settings

    monkeypatch.setenv("TRACKFLOW_KAFKA__PARTITIONS", "3")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9092")
    assert Settings().kafka.partitions == 8
    assert Settings().kafka.bootstrap_servers == "127.0.0.1:9092"
    assert load_settings().kafka.partitions == 3


def test_tables_default_to_rocksdb_sized_for_many_small_databases() -> None:
    tables = load_settings(env={}).tables
    assert tables.store_url == "rocksdb://"
    options = tables.rocksdb_options()
    per_database = options["block_cache_size"] + (
        options["write_buffer_size"] * options["max_write_buffer_number"])
    # RocksDB's own defaults through Faust: a 2 GiB cache and 3 x 64 MiB buffers per database.
    assert per_database <= 16 * 1024 * 1024
    assert load_settings(env={"TRACKFLOW_TABLES__STORE": "memory"}).tables.store_url == \
        "memory://"


def test_the_limiter_takes_its_own_redis_when_given_one() -> None:
    from trackflow.streams.worker import build_limiter

    shared = load_settings(env={"REDIS_URL": "redis://cache:6379/0"})
    assert shared.limiter.redis_url is None
    apart = load_settings(env={"REDIS_URL": "redis://cache:6379/0",
                               "TRACKFLOW_LIMITER__REDIS_URL": "redis://limits:6379/0"})
    assert apart.limiter.redis_url == "redis://limits:6379/0"
    for settings, host in ((shared, "cache"), (apart, "limits")):
        limiter = build_limiter(settings)
        assert limiter is not None
        kwargs = limiter._redis.connection_pool.connection_kwargs
        assert kwargs["host"] == host


def test_a_second_worker_on_the_same_data_directory_is_told_which_setting_to_change(
        tmp_path: Path) -> None:
    from trackflow.streams.worker import lock_data_dir

    first = lock_data_dir(tmp_path / "data")
    try:
        with pytest.raises(ConfigError) as err:
            lock_data_dir(tmp_path / "data")
        assert err.value.key == "worker.data_dir"
        assert "TRACKFLOW_WORKER__DATA_DIR" in str(err.value)
    finally:
        first.close()
    lock_data_dir(tmp_path / "data").close()  # free again once the first one is gone
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a writable directory"):
        lock_data_dir(tmp_path / "file" / "data")


def test_provider_credentials_are_read_with_the_settings_from_the_environment_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trackflow.streams.settings import Settings

    env = {"TRACKFLOW_SPOTIFY_CLIENT_SECRET": "s3cr3t-Vq7", "TRACKFLOW_DEEZER_URL": " http://x ",
           "TRACKFLOW_LASTFM_API_KEY": "  ", "UNRELATED": "1"}
    settings = load_settings(env=env)
    assert dict(settings.secrets) == {"TRACKFLOW_SPOTIFY_CLIENT_SECRET": "s3cr3t-Vq7",
                                      "TRACKFLOW_DEEZER_URL": "http://x"}
    assert "s3cr3t-Vq7" not in repr(settings) and "s3cr3t-Vq7" not in repr(settings.secrets)
    assert "TRACKFLOW_SPOTIFY_CLIENT_SECRET" in repr(settings.secrets)
    copied = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    assert copied.secrets == settings.secrets
    # Built in code, nothing comes from the process environment.
    monkeypatch.setenv("TRACKFLOW_SPOTIFY_CLIENT_SECRET", "from-the-process")
    assert dict(Settings().secrets) == {}
    config = tmp_path / "c.toml"
    config.write_text('[secrets]\nTRACKFLOW_DISCOGS_TOKEN = "t"\n')
    with pytest.raises(ConfigError, match="never read from the config file"):
        load_settings(config, env={})
