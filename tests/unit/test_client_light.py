"""The Python client API is light: a scraper that only produces tracks loads the producer, its
validation and a Kafka client, nothing of the worker (no Faust, no Redis, no HTTP client, and no
metric families registered in the application's default Prometheus registry)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Packages only the worker needs.
WORKER_ONLY = ("faust", "mode", "redis", "httpx", "prometheus_client", "aiohttp", "click",
               "rich")


@pytest.mark.parametrize("module", ["trackflow.streams.client", "trackflow.streams.settings"])
def test_importing_it_loads_nothing_of_the_worker(module: str) -> None:
    code = (f"import json, sys, {module}\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    loaded = set(json.loads(done.stdout))
    heavy = sorted(m for m in loaded if m.split(".")[0] in WORKER_ONLY)
    assert not heavy, f"importing {module} loads {heavy[:8]}"
    ours = sorted(m for m in loaded if m.endswith(".metrics") and m.startswith("trackflow."))
    assert not ours, f"importing {module} registers metric families: {ours}"


@pytest.mark.parametrize("module", ["trackflow.streams.worker", "trackflow.streams.cli.worker",
                                    "trackflow.streams.client"])
def test_the_runtime_loads_none_of_the_developer_tools(module: str) -> None:
    """The local stack (which runs apt-get and Maven) and the API simulator ship in the package
    for ``trackflow stack`` and ``trackflow simulate``; a worker or a client never imports
    them."""
    code = (f"import json, sys, {module}\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    tools = sorted(m for m in json.loads(done.stdout)
                   if m.startswith(("trackflow.streams.stack", "trackflow.providers.simulator")))
    assert not tools, f"importing {module} loads {tools}"
