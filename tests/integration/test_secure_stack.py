"""The secured paths end to end: a secure stack, a worker, ``produce`` and ``consume`` on it.

The stack is started with ``--secure`` in its own state dir (one for the whole module): Kafka
with a SASL_SSL listener (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 logins, certificates from the
stack's own CA) and an SSL listener that requires a client certificate the CA signed (mutual
TLS), Redis over TLS with an ACL user. Every client is configured only by the variables
``trackflow stack up --secure [--auth ...]`` prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import REPO, TRACKFLOW, TopicNames, catalog_records, collect
from trackflow.streams.stack import StackInfo, down, up
from trackflow.streams.stack.processes import redis_answers

pytestmark = pytest.mark.integration

TRACKS = 120
NO_PROVIDERS = {"TRACKFLOW_WATERFALL__ORDER": "[]", "TRACKFLOW_WORKER__AGENTS": '["enrich"]'}


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    state_dir = tmp_path_factory.mktemp("secure-stack")
    info = up(state_dir=state_dir, secure=True)
    try:
        yield info
    finally:
        down(state_dir=state_dir, purge=True)


def secure_env(info: StackInfo, topics: TopicNames, auth: str | None = None) -> dict[str, str]:
    # Nothing of the session's plaintext stack may leak in: only what `stack up` printed.
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("TRACKFLOW_KAFKA", "KAFKA_", "REDIS_URL"))}
    return {**base, **topics.env(), **info.env(auth), "TRACKFLOW_KAFKA__PARTITIONS": "2"}


def tracks_file(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    tracks = tmp_path / "tracks.jsonl"
    tracks.write_text("".join(json.dumps({"artist": r["artist"], "title": r["title"]}) + "\n"
                              for r in records))
    return tracks


async def enrich_over(env: dict[str, str], topics: TopicNames, worker_factory: Any,
                      tmp_path: Path, source: str) -> Any:
    """A worker, ``produce`` and ``consume``, all configured by ``env``: every produced track
    comes back enriched. Returns the worker."""
    # No provider stage: this is about the Kafka path, and the skeleton path is fast.
    worker = worker_factory(partitions=2, extra_env={**env, **NO_PROVIDERS})
    await worker.wait_ready()
    records = catalog_records(500, count=TRACKS)
    produced = run(["produce", str(tracks_file(tmp_path, records)), "--source", source], env)
    assert produced.returncode == 0, (produced.stdout + produced.stderr)[-2000:]
    assert f"sent {TRACKS} records" in produced.stdout

    consumed = run(["consume", "--topic", topics.enriched, "--from-beginning",
                    "--format", "jsonl", "--max", str(TRACKS), "--timeout", "45"], env, 90)
    assert consumed.returncode == 0, consumed.stderr[-2000:]
    rows = [json.loads(line) for line in consumed.stdout.splitlines() if line.strip()]
    keys = {row["key"] for row in rows}
    assert keys == {r["track_id"] for r in records}, \
        f"expected the {TRACKS} produced tracks enriched and read back, got {len(keys)}"
    assert worker.alive()
    return worker


def run(argv: list[str], env: dict[str, str], timeout: float = 60
        ) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([TRACKFLOW, *argv], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"trackflow {' '.join(argv)} did not finish within {timeout:g}s:\n"
                             f"{exc.stdout!r}\n{exc.stderr!r}") from None


def test_stack_up_secure_prints_every_client_setting(secure_stack: StackInfo) -> None:
    env = secure_stack.env()
    assert env["TRACKFLOW_KAFKA__SECURITY__PROTOCOL"] == "SASL_SSL"
    assert env["TRACKFLOW_KAFKA__SECURITY__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert Path(env["TRACKFLOW_KAFKA__SECURITY__CA_FILE"]).is_file()
    assert env["TRACKFLOW_KAFKA_SASL_USERNAME"] and env["TRACKFLOW_KAFKA_SASL_PASSWORD"]
    assert env["REDIS_URL"].startswith("rediss://"), "Redis must be reached over TLS"
    assert redis_answers(env["REDIS_URL"]), "Redis must answer over TLS with the ACL user"
    plain = env["REDIS_URL"].replace("rediss://", "redis://").split("?")[0]
    assert not redis_answers(plain), "Redis must not answer without TLS"
    status = run(["stack", "status", "--state-dir", str(secure_stack.state_dir)], env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert env["TRACKFLOW_KAFKA_SASL_PASSWORD"] not in status.stdout, \
        "stack status must mask the Redis password"


async def test_worker_produce_and_consume_over_sasl_ssl(
        secure_stack: StackInfo, topic_names: TopicNames, worker_factory: Any,
        tmp_path: Path) -> None:
    env = secure_env(secure_stack, topic_names)
    password = env["TRACKFLOW_KAFKA_SASL_PASSWORD"]
    worker = await enrich_over(env, topic_names, worker_factory, tmp_path, "secure-it")
    assert password not in worker.log_text(), "the SASL password reached the worker's log"


async def test_worker_produce_and_consume_over_mutual_tls(
        secure_stack: StackInfo, topic_names: TopicNames, worker_factory: Any,
        tmp_path: Path) -> None:
    env = secure_env(secure_stack, topic_names, "mtls")
    assert env["TRACKFLOW_KAFKA__SECURITY__PROTOCOL"] == "SSL"
    assert "TRACKFLOW_KAFKA_SASL_USERNAME" not in env, "mutual TLS logs in with the certificate"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] != secure_stack.bootstrap_servers
    await enrich_over(env, topic_names, worker_factory, tmp_path, "mtls-it")


def test_a_client_without_a_certificate_is_refused_naming_the_setting(
        secure_stack: StackInfo, topic_names: TopicNames, tmp_path: Path) -> None:
    env = secure_env(secure_stack, topic_names, "mtls")
    for name in ("TRACKFLOW_KAFKA__SECURITY__CERT_FILE", "TRACKFLOW_KAFKA__SECURITY__KEY_FILE"):
        del env[name]
    done = run(["produce", str(tracks_file(tmp_path, catalog_records(500, count=3)))], env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"a client without a certificate must be refused:\n{output}"
    assert "client certificate" in output and "TRACKFLOW_KAFKA__SECURITY__CERT_FILE" in output, \
        f"the error must say a client certificate is required and name the setting:\n{output}"


@pytest.mark.parametrize("auth", ["plain", "scram-sha-256"])
async def test_produce_and_read_back_with_each_sasl_mechanism(
        secure_stack: StackInfo, topic_names: TopicNames, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, auth: str) -> None:
    """`produce` and the tests' reader (both through ``kafka_security.client_security``) log in
    with the mechanism; SCRAM-SHA-512 is covered by the worker test above."""
    env = secure_env(secure_stack, topic_names, auth)
    assert env["TRACKFLOW_KAFKA__SECURITY__SASL_MECHANISM"] == auth.upper()
    records = catalog_records(500, count=20)
    produced = run(["produce", str(tracks_file(tmp_path, records)), "--source", auth], env)
    assert produced.returncode == 0, (produced.stdout + produced.stderr)[-2000:]
    assert "sent 20 records" in produced.stdout
    for key in [k for k in os.environ if k.startswith(("TRACKFLOW_KAFKA", "KAFKA_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    read = await collect(env["KAFKA_BOOTSTRAP_SERVERS"], topic_names.raw, until=20, timeout=30)
    assert {m.key.decode() for m in read} == {r["track_id"] for r in records}, \
        f"read {len(read)} of the 20 records back over SASL_SSL with {auth.upper()}"


def test_a_wrong_password_fails_start_up_naming_the_setting(
        secure_stack: StackInfo, topic_names: TopicNames) -> None:
    env = secure_env(secure_stack, topic_names)
    right = env["TRACKFLOW_KAFKA_SASL_PASSWORD"]
    env["TRACKFLOW_KAFKA_SASL_PASSWORD"] = wrong = "not-the-password-3f9a"
    started = time.monotonic()
    done = run(["worker", "-l", "info"], env, timeout=60)
    took = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"a worker with a wrong password must not start:\n{output}"
    assert "TRACKFLOW_KAFKA_SASL_PASSWORD" in output, f"the error must name the setting:\n{output}"
    assert wrong not in output and right not in output, "a password reached the output"
    print(f"wrong password: worker exited {done.returncode} after {took:.1f}s")
