"""``trackflow stack up / status / down``: the click commands over the lifecycle API."""

from __future__ import annotations

import logging
import shlex
import sys
import time
from pathlib import Path

import click

from trackflow.providers.urls import mask_url
from trackflow.streams.stack.config import AUTH_CHOICES, MAX_BROKERS, StackError
from trackflow.streams.stack.lifecycle import down, status, up
from trackflow.streams.stack.processes import pid_alive, registry_answers, registry_marker

_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the stack keeps config, data and logs [default: $TRACKFLOW_STACK_DIR or "
    "~/.cache/trackflow/stack].",
)


@click.group()
def stack() -> None:
    """Run a real Kafka (one node or a cluster) and Redis locally, without Docker."""
    # Progress goes to stderr: stdout of `stack up` is only `export` lines for eval.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")


@stack.command("up")
@click.option("--kafka-port", type=int, default=None,
              help="Port clients use on Kafka node 1 [default: a free one].")
@click.option("--redis-port", type=int, default=None, help="Redis port [default: a free one].")
@click.option("--brokers", type=click.IntRange(1, MAX_BROKERS), default=None,
              help="Kafka nodes (combined broker+controller) [default: 1, or what runs]; 3 gives "
              "topics replication 3 and min.insync.replicas 2.")
@click.option("--secure", is_flag=True, default=None,
              help="Clients connect over SASL_SSL (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 logins, "
              "a CA made for the stack) or mutual TLS, and Redis over TLS with an ACL user; the "
              "exports configure every client.")
@click.option("--auth", type=click.Choice(AUTH_CHOICES, case_sensitive=False), default=None,
              help="How the exported client settings log in to a secure stack: a SASL mechanism "
              "on the SASL_SSL listener, or mtls (protocol SSL with the stack's client "
              "certificate on the listener that requires one) [default: scram-sha-512].")
@click.option("--registry/--no-registry", default=True, show_default=True,
              help="Start a schema registry (Apicurio Registry, in memory) with a new stack and "
              "export SCHEMA_REGISTRY_URL: every client then writes the Confluent wire format.")
@_state_dir_option
def up_command(kafka_port: int | None, redis_port: int | None, brokers: int | None,
               secure: bool | None, auth: str | None, registry: bool,
               state_dir: Path | None) -> None:
    """Start the stack (or find it running); print `export` lines for `eval`."""
    started = time.monotonic()
    try:
        info = up(kafka_port=kafka_port, redis_port=redis_port, state_dir=state_dir,
                  brokers=brokers, secure=secure, registry=registry)
        env = info.env(auth.lower() if auth else None)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"stack ready in {time.monotonic() - started:.1f}s (state: {info.state_dir})", err=True
    )
    for name, value in env.items():
        click.echo(f"export {name}={shlex.quote(value)}")


@stack.command("status")
@_state_dir_option
def status_command(state_dir: Path | None) -> None:
    """Show what runs; exit status 0 only when Kafka and Redis both answer."""
    current = status(state_dir)
    if current.info is None:
        click.echo("stopped (no stack recorded)")
        raise SystemExit(1)
    info = current.info
    pids = ",".join(str(pid) for _, pid in info.kafka_pids)
    for name, alive, answering, where, pid in (
        ("kafka", current.kafka_alive, current.kafka_answering, info.bootstrap_servers, pids),
        ("redis", current.redis_alive, current.redis_answering, mask_url(info.redis_url),
         str(info.redis_pid)),
    ):
        state = "answering" if answering else "not answering" if alive else "stopped"
        click.echo(f"{name}: {state} at {where} (pid {pid})")
    if info.registry_url is not None:
        alive = pid_alive(info.registry_pid, registry_marker(info.ports.registry))
        state = "answering" if alive and registry_answers(info.registry_url) else \
            "not answering" if alive else "stopped"
        click.echo(f"schema registry: {state} at {info.registry_url} (pid {info.registry_pid})")
    if info.secure is not None:
        click.echo(f"secure: SASL_SSL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) user "
                   f"{info.secure.username} at {info.bootstrap_servers}, CA {info.secure.ca_file}")
        if info.ports.mtls:
            mtls = info.env("mtls")
            click.echo(f"secure: SSL with a client certificate at "
                       f"{mtls['KAFKA_BOOTSTRAP_SERVERS']} (`--auth mtls`), certificate "
                       f"{info.secure.cert_file}")
    click.echo(f"state: {info.state_dir}")
    raise SystemExit(0 if current.running else 1)


@stack.command("down")
@click.option("--purge", is_flag=True, help="Also delete the stack's data, logs and config.")
@_state_dir_option
def down_command(purge: bool, state_dir: Path | None) -> None:
    """Stop Kafka, Redis and the schema registry; keep their data unless --purge."""
    try:
        down(state_dir=state_dir, purge=purge)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("stack stopped" + (" and purged" if purge else ""), err=True)
