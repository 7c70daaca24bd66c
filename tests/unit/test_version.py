"""The version is written once, in pyproject.toml; everything else reads or repeats it."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from click.testing import CliRunner

from trackflow.streams.cli import main

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_installed_metadata_has_the_version_of_pyproject() -> None:
    # The result cache's fingerprint, the User-Agent and build_info read this.
    installed = metadata.version("trackflow")
    assert installed == VERSION, (
        f"expected the installed trackflow to be {VERSION} (pyproject.toml), it is {installed}: "
        "reinstall (make install)")


def test_the_helm_chart_deploys_the_package_version() -> None:
    chart = (ROOT / "deploy/helm/trackflow/Chart.yaml").read_text()
    found = re.search(r'^appVersion:\s*"?([^"\s]+)"?\s*$', chart, re.MULTILINE)
    app_version = found and found.group(1)
    assert app_version == VERSION, (
        f"expected the chart's appVersion (the default image tag) to be {VERSION}, the version "
        f"in pyproject.toml; it is {app_version}")


def test_the_cli_prints_the_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert VERSION in result.output, f"expected `trackflow --version` to print {VERSION}"
