"""Fault injection: outages (scheduled and runtime), random errors, hangs and malformed bodies."""

from __future__ import annotations

import random
from typing import NamedTuple

from trackflow.providers.simulator.config import SimConfig


class Fault(NamedTuple):
    """A fault to inject into one answer."""

    kind: str
    """``outage``, ``error``, ``timeout`` or ``malformed``."""
    status: int = 200
    """HTTP status for outages and errors."""


class FaultInjector:
    """Decides, per request, which fault (if any) a provider answer gets."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        # provider -> (until, status), times in seconds since start.
        self._outages: dict[str, tuple[float, int]] = {}
        # provider -> when its next freeze is due, in seconds since start.
        self._next_freeze: dict[str, float] = {}

    def set_outage(self, provider: str, status: int, until_s: float) -> None:
        """Answer ``status`` to every request to ``provider`` until ``until_s`` (since start)."""
        self._outages[provider] = (until_s, status)

    def clear_outages(self) -> None:
        """End every runtime outage (scheduled ones from the config stay)."""
        self._outages.clear()

    def outage(self, provider: str, elapsed_s: float) -> Fault | None:
        """The outage in force for ``provider`` at ``elapsed_s`` since start, if any."""
        runtime = self._outages.get(provider)
        if runtime is not None:
            until, status = runtime
            if elapsed_s < until:
                return Fault("outage", status)
            del self._outages[provider]
        for window in self.config.provider(provider).outages:
            if window.start_s <= elapsed_s < window.end_s:
                return Fault("outage", window.status)
        return None

    def freeze_s(self, provider: str, elapsed_s: float) -> float:
        """How long the simulator must freeze before reading this request (0: not now)."""
        cfg = self.config.provider(provider)
        if cfg.freeze_every_s <= 0 or cfg.freeze_ms <= 0:
            return 0.0
        due = self._next_freeze.setdefault(provider, cfg.freeze_every_s)
        if elapsed_s < due:
            return 0.0
        self._next_freeze[provider] = elapsed_s + cfg.freeze_every_s
        return cfg.freeze_ms / 1000.0

    def latency_s(self, provider: str) -> float:
        """A response delay for one answer."""
        return self.config.provider(provider).latency.sample_s(self.rng)

    def roll(self, provider: str) -> Fault | None:
        """A random error, hang or malformed body, by the provider's configured rates."""
        cfg = self.config.provider(provider)
        if cfg.timeout_rate and self.rng.random() < cfg.timeout_rate:
            return Fault("timeout", 504)
        if cfg.error_rate and self.rng.random() < cfg.error_rate:
            return Fault("error", self.rng.choice(cfg.error_statuses or (500,)))
        if cfg.malformed_rate and self.rng.random() < cfg.malformed_rate:
            return Fault("malformed", 200)
        return None
