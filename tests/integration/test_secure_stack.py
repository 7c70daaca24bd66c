"""The SASL_SSL path end to end: a secure stack, a worker, ``produce`` and ``consume`` on it.

The stack is started with ``--secure`` in its own state dir: Kafka with a SASL_SSL listener
(SCRAM-SHA-512, certificates from the stack's own CA), Redis over TLS with an ACL user. Every
client is configured only by the variables ``trackflow stack up --secure`` prints.
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

from tests.integration.harness import REPO, TRACKFLOW, TopicNames, catalog_records
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


def secure_env(info: StackInfo, topics: TopicNames) -> dict[str, str]:
    # Nothing of the session's plaintext stack may leak in: only what `stack up` printed.
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("TRACKFLOW_KAFKA", "KAFKA_", "REDIS_URL"))}
    return {**base, **topics.env(), **info.env(), "TRACKFLOW_KAFKA__PARTITIONS": "2"}


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
    # No provider stage: this is about the Kafka path, and the skeleton path is fast.
    worker = worker_factory(partitions=2, extra_env={**env, **NO_PROVIDERS})
    await worker.wait_ready()

    tracks = tmp_path / "tracks.jsonl"
    records = catalog_records(500, count=TRACKS)
    tracks.write_text("".join(json.dumps({"artist": r["artist"], "title": r["title"]}) + "\n"
                              for r in records))
    produced = run(["produce", str(tracks), "--source", "secure-it"], env)
    assert produced.returncode == 0, (produced.stdout + produced.stderr)[-2000:]
    assert f"sent {TRACKS} records" in produced.stdout

    consumed = run(["consume", "--topic", topic_names.enriched, "--from-beginning",
                    "--format", "jsonl", "--max", str(TRACKS), "--timeout", "45"], env, 90)
    assert consumed.returncode == 0, consumed.stderr[-2000:]
    rows = [json.loads(line) for line in consumed.stdout.splitlines() if line.strip()]
    keys = {row["key"] for row in rows}
    assert keys == {r["track_id"] for r in records}, \
        f"expected the {TRACKS} produced tracks enriched and read over SASL_SSL, got {len(keys)}"
    assert worker.alive()
    assert password not in worker.log_text(), "the SASL password reached the worker's log"


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
