"""The simulator's aiohttp app: five provider APIs behind one port, plus ``/_sim`` control.

Every provider request passes one middleware that freezes the simulator when a freeze is due,
records it, applies outages, the provider's rate limit (answered the provider's way), latency
and random faults, in that order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from aiohttp import web

from trackflow.providers.simulator import deezer, discogs, lastfm, musicbrainz, spotify
from trackflow.providers.simulator.catalog import Catalog
from trackflow.providers.simulator.config import PROVIDERS, SimConfig
from trackflow.providers.simulator.csvload import load_csv
from trackflow.providers.simulator.faults import FaultInjector
from trackflow.providers.simulator.generate import generate_catalog
from trackflow.providers.simulator.limits import Decision, Recorder, RequestLogEntry
from trackflow.providers.simulator.quirks import Quirks
from trackflow.providers.simulator.state import STATE, SimState, json_response

log = logging.getLogger("trackflow.simulator")

APIS: dict[str, ModuleType] = {m.NAME: m for m in (spotify, musicbrainz, deezer, lastfm, discogs)}
_PREFIXES = [(f"/{name}/", name) for name in APIS]
DEFAULT_SIZE = 1000


def provider_of(path: str) -> str | None:
    """The provider a request path belongs to, or None (control and unknown paths)."""
    for prefix, name in _PREFIXES:
        if path.startswith(prefix) or path == prefix.rstrip("/"):
            return name
    return None


def _truncate(response: web.StreamResponse) -> None:
    """Cut a JSON body in half: the malformed answer a flaky proxy produces."""
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        response.body = response.body[: max(1, len(response.body) // 2)]


@web.middleware
async def provider_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Record, limit, delay and break provider requests as configured."""
    provider = provider_of(request.path)
    if provider is None:
        response: web.StreamResponse = await handler(request)
        return response
    state = request.app[STATE]
    api = APIS[provider]
    route = request.match_info.route.name or "unknown"
    endpoint = route.split(".", 1)[-1]
    exempt = route == "spotify.token"  # the accounts service is not the Web API's limit
    decision: Decision | None = None
    outcome = "ok"
    answer: web.StreamResponse | None = None
    freeze = state.faults.freeze_s(provider, state.elapsed())
    if freeze > 0:
        # Blocks the event loop on purpose: every request arriving meanwhile is read late.
        time.sleep(freeze)  # noqa: ASYNC251
    fault = state.faults.outage(provider, state.elapsed())
    if exempt:
        state.recorder.note_unlimited(provider, endpoint)
    else:
        # Decided at arrival, before latency: the window counts what the client sends, when.
        decision = state.recorder.admit(provider, endpoint, state.now(), enforce=fault is None)
    if fault is not None:
        outcome, answer = "outage", api.fault_answer(fault.status, state.quirks)
    elif decision is not None and not decision.allowed:
        outcome, answer = "limited", api.limit_answer(decision, state.quirks)
    delay = state.faults.latency_s(provider)
    if delay > 0:
        await asyncio.sleep(delay)
    if answer is None:
        fault = state.faults.roll(provider)
        if fault is not None and fault.kind == "timeout":
            outcome = "timeout"
            await asyncio.sleep(state.config.provider(provider).timeout_s)
            answer = api.fault_answer(504, state.quirks)
        elif fault is not None and fault.kind == "error":
            outcome, answer = "error", api.fault_answer(fault.status, state.quirks)
        else:
            try:
                answer = await handler(request)
            except web.HTTPException as exc:
                answer = json_response({"error": exc.reason}, status=exc.status)
            if fault is not None and fault.kind == "malformed" and answer.status == 200:
                outcome = "malformed"
                _truncate(answer)
    api.decorate(answer, decision, state.quirks)
    state.recorder.finish(
        provider,
        RequestLogEntry(round(state.elapsed(), 4), provider, endpoint, answer.status, outcome),
    )
    return answer


async def _report(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].recorder.report())


async def _reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.recorder.reset()
    state.faults.clear_outages()
    return json_response({"ok": True})


async def _outage(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        names = list(PROVIDERS) if body["provider"] in ("all", "*") else [str(body["provider"])]
        status = int(body.get("status", 503))
        duration_s = float(body["duration_s"])
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        return json_response({"error": f"expected {{provider, status, duration_s}}: {exc}"}, 400)
    unknown = [n for n in names if n not in APIS]
    if unknown:
        return json_response({"error": f"unknown provider {unknown[0]!r}"}, status=400)
    state = request.app[STATE]
    for name in names:
        state.faults.set_outage(name, status, state.elapsed() + duration_s)
    return json_response(
        {"ok": True, "providers": names, "status": status, "duration_s": duration_s}
    )


async def _requests(request: web.Request) -> web.Response:
    entries = list(request.app[STATE].recorder.log)
    provider = request.query.get("provider")
    if provider:
        entries = [e for e in entries if e.provider == provider]
    limit = int(request.query.get("limit", 1000))
    return json_response([e._asdict() for e in entries[-limit:]])


async def _health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response({"ok": True, "tracks": len(state.catalog), "uptime_s": state.elapsed()})


def build_app(catalog: Catalog, config: SimConfig | None = None) -> web.Application:
    """The aiohttp application serving every provider API and the control endpoints."""
    config = config or SimConfig()
    limits = {
        name: (cfg.rate_limit, cfg.rate_window_s, cfg.count_rejected)
        for name, cfg in config.providers.items()
    }
    _ = catalog.index  # build the search index now, not during the first (timed) request
    app = web.Application(middlewares=[provider_middleware])
    app[STATE] = SimState(
        catalog=catalog, config=config, recorder=Recorder(limits), faults=FaultInjector(config),
        quirks=Quirks(config.quirks,
                      random.Random(None if config.seed is None else config.seed + 13)),
    )
    for api in APIS.values():
        app.router.add_routes(api.routes())
    app.router.add_routes(
        [
            web.get("/_sim/report", _report),
            web.post("/_sim/reset", _reset),
            web.post("/_sim/outage", _outage),
            web.get("/_sim/requests", _requests),
            web.get("/_sim/health", _health),
        ]
    )
    return app


def simulator_env(url: str, config: SimConfig) -> dict[str, str]:
    """The ``TRACKFLOW_*`` variables that point trackflow at a simulator at ``url``."""
    return {
        "TRACKFLOW_MUSICBRAINZ_URL": f"{url}/musicbrainz/ws/2",
        "TRACKFLOW_SPOTIFY_API_URL": f"{url}/spotify/v1",
        "TRACKFLOW_SPOTIFY_ACCOUNTS_URL": f"{url}/spotify/accounts",
        "TRACKFLOW_DEEZER_URL": f"{url}/deezer",
        "TRACKFLOW_LASTFM_URL": f"{url}/lastfm/2.0/",
        "TRACKFLOW_DISCOGS_URL": f"{url}/discogs",
        "TRACKFLOW_SPOTIFY_CLIENT_ID": config.spotify_client_id,
        "TRACKFLOW_SPOTIFY_CLIENT_SECRET": config.spotify_client_secret,
        "TRACKFLOW_LASTFM_API_KEY": config.lastfm_api_key,
        "TRACKFLOW_DISCOGS_TOKEN": config.discogs_token,
        "TRACKFLOW_SIMULATOR_URL": url,
    }


class RunningSimulator:
    """A simulator serving on loopback; stop it with :meth:`stop` or ``async with``."""

    def __init__(self, runner: web.AppRunner, state: SimState, url: str) -> None:
        self._runner = runner
        self.state = state
        self.url = url
        self.env = simulator_env(url, state.config)
        self.catalog = state.catalog

    async def report(self) -> dict[str, Any]:
        """The same JSON as ``GET /_sim/report``."""
        return self.state.recorder.report()

    async def reset(self) -> None:
        """Clear counters, limit windows, the request log and runtime outages."""
        self.state.recorder.reset()
        self.state.faults.clear_outages()

    async def set_outage(self, provider: str, status: int = 503, duration_s: float = 10.0) -> None:
        """Answer ``status`` to every request to ``provider`` (or ``all``) for ``duration_s``."""
        names = list(PROVIDERS) if provider in ("all", "*") else [provider]
        for name in names:
            if name not in APIS:
                raise ValueError(f"unknown provider {name!r}")
            self.state.faults.set_outage(name, status, self.state.elapsed() + duration_s)

    async def stop(self) -> None:
        """Stop serving (hanging "timeout" answers are cancelled)."""
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningSimulator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def resolve_catalog(catalog: Catalog | str | Path | None) -> Catalog:
    """A catalog object from a catalog, a CSV path, or None (a generated default)."""
    if catalog is None:
        return generate_catalog(DEFAULT_SIZE, seed=0)
    if isinstance(catalog, Catalog):
        return catalog
    return load_csv(catalog)


async def start_simulator(
    *,
    catalog: Catalog | str | Path | None = None,
    config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> RunningSimulator:
    """Start serving on ``host:port`` (0 = a free port) and return the running simulator."""
    app = build_app(resolve_catalog(catalog), config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{url_host}:{bound_port}"
    log.info("event=simulator_started url=%s tracks=%d", url, len(app[STATE].catalog))
    return RunningSimulator(runner, app[STATE], url)


@asynccontextmanager
async def simulator(
    *,
    catalog: Catalog | str | Path | None = None,
    config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[RunningSimulator]:
    """``async with simulator(...) as sim:`` — start, yield, stop."""
    sim = await start_simulator(catalog=catalog, config=config, host=host, port=port)
    try:
        yield sim
    finally:
        await sim.stop()
