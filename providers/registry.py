"""Build the provider clients from their environment variables (``specs.PROVIDER_VARIABLES``).

Credentials come only from the environment, as the settings loader read it (the worker passes
``Settings.secrets``). A provider whose credentials are missing is disabled with one log line
naming the missing variable; it never stops the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence

from trackflow.providers.base import CallGate, DirectGate, Provider
from trackflow.providers.errors import ConfigError
from trackflow.providers.specs import PROVIDER_NAMES, SPECS, Transport, env_value

__all__ = ["PROVIDER_NAMES", "build_providers"]


def build_providers(
    env: Mapping[str, str],
    *,
    gate: CallGate | None = None,
    enabled: Sequence[str] | None = None,
    transport: Transport = None,
    features: Mapping[str, Collection[str]] | None = None,
) -> dict[str, Provider]:
    """The enabled providers whose credentials are present, keyed by name, in ``enabled`` order.

    ``features`` lists, per provider, the optional lookups to switch on (``providers.<name>.
    features`` in the settings; Spotify's ``audio_features``); all are off by default.
    """
    names = list(PROVIDER_NAMES if enabled is None else enabled)
    unknown = [n for n in names if n not in PROVIDER_NAMES]
    if unknown:
        raise ConfigError(
            "providers",
            f"unknown provider(s) {', '.join(unknown)}; known: {', '.join(PROVIDER_NAMES)}",
        )
    shared_gate: CallGate = gate or DirectGate()
    out: dict[str, Provider] = {}
    for name in names:
        if name in out:
            continue
        spec = SPECS[name]
        missing = [var for var in spec.credentials if not env_value(env, var)]
        if missing:
            logging.getLogger(f"trackflow.providers.{name}").warning(
                "event=provider_disabled provider=%s reason=missing_credentials missing=%s",
                name,
                ",".join(missing),
            )
            continue
        wanted = frozenset((features or {}).get(name, ()))
        unknown_features = wanted - spec.features
        if unknown_features:
            raise ConfigError(f"providers.{name}.features",
                              f"unknown feature(s) {', '.join(sorted(unknown_features))}; "
                              f"{name} has {', '.join(sorted(spec.features)) or 'none'}")
        out[name] = spec.build(env, shared_gate, transport, wanted)
    return out
