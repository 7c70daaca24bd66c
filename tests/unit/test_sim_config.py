"""The simulator's behaviour configuration: the TOML structure over the defaults, and bad keys
or values refused with their place in the structure."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from trackflow.providers.simulator.cli import simulate
from trackflow.providers.simulator.config import DEFAULT_PROVIDERS, Outage, SimConfig


def test_a_provider_given_in_part_keeps_its_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text("seed = 3\n[providers.spotify]\nerror_rate = 0.25\n"
                    "latency = { dist = \"uniform\", min_ms = 5, max_ms = 9 }\n"
                    "outages = [ { start_s = 1, end_s = 2 } ]\n")
    config = SimConfig.from_toml(path)
    spotify = config.provider("spotify")
    assert (config.seed, spotify.error_rate, spotify.latency.max_ms) == (3, 0.25, 9.0)
    assert spotify.outages == (Outage(start_s=1, end_s=2, status=503),)
    assert spotify.rate_limit == DEFAULT_PROVIDERS["spotify"].rate_limit
    assert config.provider("musicbrainz") == DEFAULT_PROVIDERS["musicbrainz"]
    changed = config.with_provider("spotify", rate_limit=7)
    assert (changed.provider("spotify").rate_limit, changed.provider("spotify").error_rate) == \
        (7, 0.25)
    assert config.provider("spotify").rate_limit == DEFAULT_PROVIDERS["spotify"].rate_limit


@pytest.mark.parametrize(("data", "named"), [
    ({"providers": {"beatport": {}}}, "unknown provider 'beatport'"),
    ({"providers": {"spotify": {"eror_rate": 0.1}}}, "providers.spotify.eror_rate"),
    ({"providers": {"deezer": {"error_rate": 1.5}}}, "providers.deezer.error_rate"),
    ({"providers": {"lastfm": {"latency": {"dist": "gauss"}}}},
     "providers.lastfm.latency.dist"),
    ({"providers": {"discogs": {"outages": [{"start_s": 1}]}}},
     "providers.discogs.outages.0.end_s"),
    ({"token_ttl": 5}, "token_ttl"),
])
def test_a_bad_key_or_value_is_named(data: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        SimConfig.from_dict(data)


def test_the_command_stops_on_a_bad_file_with_the_key_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text("[providers.spotify]\nrate_limit = 0\n")
    result = CliRunner().invoke(simulate, ["--config", str(path)])
    assert result.exit_code != 0
    assert "providers.spotify.rate_limit" in result.output, result.output
    assert "Traceback" not in result.output
    path.write_text("[providers.spotify\n")
    result = CliRunner().invoke(simulate, ["--config", str(path)])
    assert result.exit_code != 0 and "not valid TOML" in result.output, result.output
