"""The package as a user installs it: built (sdist, then the wheel from it), installed into a
fresh virtualenv outside the checkout, and run from an empty directory.

Every command a new user runs goes through the installed ``trackflow`` only: ``stack up`` (with
a Kafka home of its own, so the jars are fetched with the pom the wheel ships; Maven reads them
from ~/.m2 after its first run), ``simulate --catalog``, ``worker``, ``produce``, ``consume``,
``dlq stats``, ``top --once`` and ``stack down``. Nothing of the checkout is on the path, and
the dependencies come from the package's own metadata, so a file or a dependency the wheel
lacks fails here.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import REPO, free_port, stop_group

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: the catalog the simulator serves; the worker gets artist, title and duration only, so the
#: ISRC on an enriched record was found by a provider
CATALOG = [
    ("Velvet Kites", "Northern Lights", "QZK6Y2400001", 201_000, "Paper Rivers", "2024-03-01"),
    ("Maya Okafor", "Glass Harbour", "QZK6Y2400002", 187_500, "Glass Harbour", "2024-05-17"),
    ("Hollow Pilots", "Slow Satellites", "QZK6Y2400003", 243_000, "Engines", "2023-11-02"),
    ("Jonas Lindqvist", "Amber Tides", "QZK6Y2400004", 215_250, "Amber Tides", "2022-08-19"),
]
STEP_TIMEOUT_S = 120.0


@pytest.fixture(autouse=True)
def _integration_services() -> None:
    """Not the session's stack: this test brings up its own with the installed package."""


def _run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = STEP_TIMEOUT_S) -> str:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
    took = time.monotonic() - started
    print(f"{took:6.1f} s  {Path(argv[0]).name} {' '.join(argv[1:])}")
    assert done.returncode == 0, (
        f"expected `{' '.join(argv)}` to succeed, it exited {done.returncode}:\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def _exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            out[key] = value.strip("'\"")
    return out


def _user_env(tmp: Path) -> dict[str, str]:
    """The caller's environment without trackflow's settings and without the checkout on any
    path; the stack and the Kafka jars in ``tmp``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRACKFLOW_", "KAFKA_", "REDIS_"))
           and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not Path(p).resolve().is_relative_to(REPO))
    # Fewer partitions than the default 8 start the worker faster; every command takes it.
    env["TRACKFLOW_KAFKA__PARTITIONS"] = "2"
    env["TRACKFLOW_STACK_DIR"] = str(tmp / "stack")
    env["TRACKFLOW_KAFKA_HOME"] = str(tmp / "kafka-home")
    return env


def _install(tmp: Path) -> Path:
    """Build the sdist and the wheel from it; install the wheel with its dependencies into a
    new virtualenv. Returns the virtualenv's ``trackflow``."""
    dist = tmp / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], timeout=300)
    wheels = sorted(dist.glob("trackflow-*.whl"))
    built = sorted(p.name for p in dist.iterdir())
    assert len(wheels) == 1 and sorted(dist.glob("trackflow-*.tar.gz")), (
        f"expected one wheel and one sdist in {dist}, found {built}")
    venv = tmp / "venv"
    # No pip inside it: the caller's pip installs into it (--python), which saves ensurepip.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
          "--quiet", "--disable-pip-version-check", str(wheels[0])], timeout=400)
    return venv / "bin" / "trackflow"


def _write_inputs(work: Path) -> tuple[Path, Path, Path]:
    catalog = work / "catalog.csv"
    with catalog.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["artist", "title", "isrc", "duration_ms", "album", "release_date"])
        out.writerows(CATALOG)
    tracks = work / "tracks.csv"
    with tracks.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["artist", "title", "duration"])
        out.writerows((a, t, f"{d // 60_000}:{d // 1000 % 60:02d}") for a, t, _, d, _, _ in CATALOG)
    invalid = work / "invalid.jsonl"
    invalid.write_text(json.dumps({"artist": "Broken Engines", "title": "No Such Code",
                                   "isrc": "NOT-AN-ISRC"}) + "\n")
    return catalog, tracks, invalid


class _Background:
    """Processes started in their own session; stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], *, env: dict[str, str], cwd: Path, log: Path,
              stdout: Any = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=stdout or log.open("ab"),
                                stderr=log.open("ab"), start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_group(proc)


@pytest.fixture
def background() -> Iterator[_Background]:
    procs = _Background()
    yield procs
    procs.stop()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the worker exited early:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"the worker was not ready at {url} in {STEP_TIMEOUT_S} s:\n"
                         f"{log.read_text()[-3000:]}")


def test_installed_package_runs_the_whole_sequence_from_an_empty_directory(
        tmp_path: Path, background: _Background) -> None:
    assert not tmp_path.resolve().is_relative_to(REPO), "expected a tmp dir outside the checkout"
    trackflow = _install(tmp_path)
    env = _user_env(tmp_path)
    work = tmp_path / "empty"
    work.mkdir()
    python = str(trackflow.with_name("python"))
    where = _run([python, "-c", "import trackflow.streams.stack as m; print(m.__file__)"],
                 env=env, cwd=work)
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), (
        f"expected trackflow imported from the new virtualenv, it came from {where.strip()}")
    version = _run([str(trackflow), "--version"], env=env, cwd=work)
    assert version.split()[-1] == next(tmp_path.glob("dist/*.whl")).name.split("-")[1]

    try:
        stack_up = _exports(_run([str(trackflow), "stack", "up"], env=env, cwd=work, timeout=300))
        assert {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "SCHEMA_REGISTRY_URL"} <= set(stack_up), \
            stack_up
        fetched = Path(env["TRACKFLOW_KAFKA_HOME"]) / "libs" / ".fetched.json"
        assert fetched.is_file(), "expected `stack up` to fetch Kafka's jars with the packaged pom"
        # The rest of the sequence runs with the stack's schema registry: the worker writes,
        # and consume and dlq stats read, the Confluent wire format.
        _sequence(trackflow, {**env, **stack_up}, work, tmp_path, background)
        background.stop()
        _run([str(trackflow), "stack", "down"], env=env, cwd=work)
        status = subprocess.run([str(trackflow), "stack", "status"], env=env, cwd=work,
                                capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 1 and "answering at" not in status.stdout, (
            f"expected nothing answering after `stack down`, `stack status` says:\n"
            f"{status.stdout}")
    finally:
        background.stop()
        # whatever failed above: leave no broker or Redis behind (a no-op once stopped)
        subprocess.run([str(trackflow), "stack", "down"], env=env, cwd=work,
                       capture_output=True, timeout=STEP_TIMEOUT_S, check=False)


def _sequence(trackflow: Path, env: dict[str, str], work: Path, tmp: Path,
              background: _Background) -> None:
    tf = str(trackflow)
    catalog, tracks, invalid = _write_inputs(work)

    sim = background.start([tf, "simulate", "--catalog", str(catalog)], env=env, cwd=work,
                           log=tmp / "simulator.log", stdout=subprocess.PIPE)
    sim_env: dict[str, str] = {}
    assert sim.stdout is not None
    while "TRACKFLOW_SIMULATOR_URL" not in sim_env:  # its last export line
        line = sim.stdout.readline().decode()
        if not line.startswith("export "):
            raise AssertionError(f"the simulator stopped printing its exports at {line!r}:\n"
                                 f"{(tmp / 'simulator.log').read_text()[-3000:]}")
        sim_env.update(_exports(line))

    web_port = free_port()
    worker_env = {**env, **sim_env,
                  "TRACKFLOW_WORKER__WEB_PORT": str(web_port),
                  "TRACKFLOW_WORKER__DATA_DIR": str(tmp / "worker-data")}
    worker_log = tmp / "worker.log"
    worker = background.start([tf, "worker"], env=worker_env, cwd=work, log=worker_log)
    _wait_ready(f"http://127.0.0.1:{web_port}/health/ready", worker, worker_log)

    produced = _run([tf, "produce", str(tracks)], env=env, cwd=work)
    _run([tf, "produce", "--no-validate", str(invalid)], env=env, cwd=work)

    expected = {(a, t): isrc for a, t, isrc, _, _, _ in CATALOG}
    latest: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        out = _run([tf, "consume", "--from-beginning", "--format", "jsonl", "--timeout", "2"],
                   env=env, cwd=work)
        for line in out.splitlines():
            item = json.loads(line)
            latest[item["key"]] = item["value"]
        found = {(v["artist"], v["title"]): v.get("isrc") for v in latest.values() if v}
        if all(found.get(k) == isrc for k, isrc in expected.items()):
            break
        time.sleep(1)
    found = {(v["artist"], v["title"]): v.get("isrc") for v in latest.values() if v}
    assert found == expected, (
        f"expected every produced track on tracks.enriched with the catalog's ISRC (found by a "
        f"provider of the simulator), got {found}\nproduce said: {produced}\n"
        f"{worker_log.read_text()[-3000:]}")

    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        stats = json.loads(_run([tf, "dlq", "stats", "--format", "json"], env=env, cwd=work))
        if stats["total"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert stats["total"] == 1, f"expected the one invalid record on tracks.dlq, got {stats}"

    view = _run([tf, "top", "--once", "--interval", "0.5",
                 "--url", f"http://127.0.0.1:{web_port}/metrics"], env=env, cwd=work)
    assert "musicbrainz" in view, f"expected `top --once` to show the providers, got:\n{view}"
