"""What the local stack needs on the machine: Java 17+, the Kafka jars and the schema registry
(via Maven), redis-server.

Missing commands are installed with apt-get when we are root on Debian, else the error says how.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tarfile
from importlib import resources
from pathlib import Path

from trackflow.streams.stack.config import (
    JARS_MARKER,
    KAFKA_VERSION,
    POM_RESOURCE,
    REGISTRY_ARTIFACT,
    REGISTRY_RUNNER,
    StackError,
    jars_complete,
    java_major,
)
from trackflow.streams.stack.processes import locked, run_quietly

log = logging.getLogger("trackflow.stack")


def find_java() -> str:
    """A ``java`` of version 17 or newer: JAVA_HOME's first, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    hint = (
        "Kafka 4.1 needs Java 17 or newer. Install it (Debian/Ubuntu: "
        "`sudo apt-get install -y openjdk-17-jre-headless`; macOS: `brew install openjdk@17`) "
        "and put it on PATH or set JAVA_HOME."
    )
    if java is None:
        raise StackError(f"no `java` found (JAVA_HOME unset, nothing on PATH). {hint}")
    try:
        probe = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise StackError(f"{java} does not run ({exc}). {hint}") from exc
    major = java_major(probe.stderr + probe.stdout)
    if major is None or major < 17:
        raise StackError(f"{java} is Java {major or 'of unknown version'}. {hint}")
    return java


def ensure_jars(home: Path) -> Path:
    """The folder of Kafka broker jars, fetched from Maven Central when missing or incomplete."""
    libs = home / "libs"
    if jars_complete(libs):
        return libs
    with locked(home / ".lock"):
        if jars_complete(libs):  # another process fetched them while we waited for the lock
            return libs
        mvn = _maven()
        pom = resources.files("trackflow.streams.stack") / POM_RESOURCE
        if not pom.is_file():
            raise StackError(f"{pom} is missing: this trackflow installation is incomplete, "
                             "reinstall the package")
        # Fetch into a fresh folder first: a half-copied jar must never land in libs.
        partial = home / f"libs.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        log.info("stack.jars.fetch kafka=%s into=%s (first run only)", KAFKA_VERSION, libs)
        try:
            # as_file: Maven needs a path, and the package may be installed in a zip.
            with resources.as_file(pom) as pom_path:
                fetch = [mvn, "-q", "-B", "-f", str(pom_path), "dependency:copy-dependencies",
                         f"-DoutputDirectory={partial}"]
                run_quietly(fetch, "fetching the Kafka jars with Maven")
            jars = sorted(p.name for p in partial.glob("*.jar"))
            if f"kafka_2.13-{KAFKA_VERSION}.jar" not in jars:
                raise StackError(f"Maven finished without kafka_2.13-{KAFKA_VERSION}.jar")
            # Move jar by jar (each rename is atomic) rather than swapping the folder, so a broker
            # starting from libs meanwhile never finds it missing; drop jars from other versions.
            libs.mkdir(parents=True, exist_ok=True)
            for jar in jars:
                os.replace(partial / jar, libs / jar)
            for stale in {p.name for p in libs.glob("*.jar")} - set(jars):
                (libs / stale).unlink()
            (libs / JARS_MARKER).write_text(json.dumps({"kafka": KAFKA_VERSION, "jars": jars}))
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return libs


def _maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven (`mvn`) is needed once to fetch the Kafka jars and the schema registry and is "
            "not on PATH. Install it (Debian/Ubuntu: `sudo apt-get install -y maven`; macOS: "
            "`brew install maven`).")
    return mvn


def ensure_registry(home: Path) -> Path:
    """The schema registry's runner jar (Apicurio Registry), fetched from Maven Central and
    unpacked into ``home`` when missing."""
    runner = home / REGISTRY_RUNNER
    if runner.is_file():
        return runner
    with locked(home.parent / f".{home.name}.lock"):
        if runner.is_file():
            return runner
        # Unpacked into a fresh folder, renamed into place at once: never half an app.
        partial = home.parent / f"{home.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        log.info("stack.registry.fetch artifact=%s into=%s (first run only)",
                 REGISTRY_ARTIFACT, home)
        try:
            run_quietly([_maven(), "-q", "-B", "dependency:copy", f"-Dartifact={REGISTRY_ARTIFACT}",
                         f"-DoutputDirectory={partial}"], "fetching the schema registry with Maven")
            archives = list(partial.glob("*.tar.gz"))
            if len(archives) != 1:
                raise StackError(f"Maven finished without the {REGISTRY_ARTIFACT} archive")
            with tarfile.open(archives[0]) as archive:
                archive.extractall(partial, filter="data")
            archives[0].unlink()
            if not (partial / REGISTRY_RUNNER).is_file():
                raise StackError(f"the {REGISTRY_ARTIFACT} archive has no {REGISTRY_RUNNER}")
            shutil.rmtree(home, ignore_errors=True)
            os.replace(partial, home)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return runner


def ensure_command(command: str, package: str, how_to_install: str) -> str:
    """``command`` from PATH; installed with apt-get when we are root on Debian, else an error."""
    found = shutil.which(command)
    if found is None and Path("/etc/debian_version").exists() and os.geteuid() == 0:
        log.info("stack.install command=%s package=%s via=apt-get", command, package)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run_quietly(["apt-get", "update", "-q"], "apt-get update", env)
        run_quietly(["apt-get", "install", "-y", "-q", package], f"apt-get install {package}", env)
        found = shutil.which(command)
    if found is None:
        raise StackError(f"`{command}` is not on PATH. Install it: {how_to_install}")
    return found


def find_redis_server() -> str:
    """redis-server from PATH; installed with apt when we are root on Debian."""
    return ensure_command(
        "redis-server",
        "redis-server",
        "`sudo apt-get install -y redis-server` (Debian/Ubuntu), `sudo dnf install -y redis` "
        "(Fedora) or `brew install redis` (macOS).",
    )
