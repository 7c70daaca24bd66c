"""The worker's application object (streams.worker.TrackflowApp) is the one place where its
partitions' lifecycle is handled: one receiver per Faust signal, dispatching to the gates, the
agents, the rewind and readiness. Built offline (nothing listens on the addresses given)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from trackflow.streams.settings import load_settings
from trackflow.streams.worker import TrackflowApp

CREDENTIALS = {"TRACKFLOW_SPOTIFY_CLIENT_ID": "id", "TRACKFLOW_SPOTIFY_CLIENT_SECRET": "s",
               "TRACKFLOW_LASTFM_API_KEY": "k", "TRACKFLOW_DISCOGS_TOKEN": "t"}


@pytest.fixture
def worker(tmp_path: Path) -> TrackflowApp:
    settings = load_settings(env={
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "REDIS_URL": "redis://127.0.0.1:9/0",
        "TRACKFLOW_WORKER__DATA_DIR": str(tmp_path), "TRACKFLOW_TABLES__STORE": "memory",
        **CREDENTIALS})
    return TrackflowApp(settings)


def test_each_lifecycle_signal_has_one_receiver_the_application_object(
        worker: TrackflowApp) -> None:
    app: Any = worker.faust
    assert [a.name for a in worker.agents] == \
        ["trackflow.enrich", "trackflow.refresh", "trackflow.reprocess"]
    for signal, handler in ((app.on_partitions_assigned, worker.on_assigned),
                            (app.on_partitions_revoked, worker.on_revoked),
                            (app.on_rebalance_complete, worker.on_rebalance_complete),
                            (app.on_before_shutdown, worker.on_stop)):
        # Faust's app signals file their receivers under the app as sender.
        receivers = [*signal._receivers,
                     *(r for rs in signal._filter_receivers.values() for r in rs)]
        assert receivers == [handler], f"{signal.name}: {receivers}"


async def test_a_revoke_reaches_the_gates_first_then_every_agent(
        worker: TrackflowApp, monkeypatch: pytest.MonkeyPatch) -> None:
    k = worker.settings.kafka
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(worker.gates, "forget", lambda parts: calls.append(("gates", parts)))
    for agent in worker.agents:
        monkeypatch.setattr(agent.inflight, "revoke",
                            lambda tps, name=agent.name: calls.append((name, tps)))
    revoked = {TP(k.raw_topic, 0), TP(k.raw_topic, 3), TP(k.dlq_topic, 1),
               TP(k.refresh_topic, 2)}
    await worker.on_revoked(None, revoked)
    # The gates hold per-partition state of the raw topic's partitions only.
    assert calls[0] == ("gates", {0, 3})
    assert calls[1:] == [(a.name, revoked) for a in worker.agents]


async def test_an_assignment_counts_for_readiness_once_its_tables_are_recovered(
        worker: TrackflowApp, monkeypatch: pytest.MonkeyPatch) -> None:
    k = worker.settings.kafka
    looked_up: list[Any] = []
    monkeypatch.setattr(worker.rewind, "assigned", looked_up.append)
    assigned = {TP(k.raw_topic, 0), TP(k.dlq_topic, 0)}
    await worker.on_assigned(None, assigned)
    assert worker.readiness.partitions == 2
    assert looked_up == [assigned]
    assert worker.readiness.assigned_at is None, "not ready before the recovery is done"
    await worker.on_rebalance_complete(None)
    first = worker.readiness.assigned_at
    assert first is not None
    await worker.on_rebalance_complete(None)
    assert worker.readiness.assigned_at == first, "readiness dates from the first assignment"


async def test_at_stop_the_agents_cancel_their_records_before_the_clients_close(
        worker: TrackflowApp, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []

    def recorder(name: str) -> Any:
        async def record() -> None:
            order.append(name)
        return record

    for agent in worker.agents:
        monkeypatch.setattr(agent.inflight, "close", recorder(agent.name))
    for name, provider in worker.providers.items():
        monkeypatch.setattr(provider, "aclose", recorder(name))
    assert worker.cache is not None and worker.limiter is not None
    monkeypatch.setattr(worker.cache, "aclose", recorder("cache"))
    monkeypatch.setattr(worker.limiter, "aclose", recorder("limiter"))
    await worker.on_stop(None)
    agents = [a.name for a in worker.agents]
    assert order == [*agents, *worker.providers, "cache", "limiter"]
    assert list(worker.providers) == ["musicbrainz", "spotify", "deezer", "lastfm", "discogs"]
