"""Check (and on Debian as root, install) what `make test` needs besides Python packages.

Java 17+ and Maven run the local Kafka broker; redis-server is the cache; promtool (Debian's
`prometheus` package) checks and unit-tests the alert rules; helm (built from the Go module
proxy into .tools/bin, so nothing is installed system-wide) checks the Helm chart. Each missing
piece stops here with a message that says how to install it, rather than failing deep inside a
test. ``--lint`` checks only what `make lint` needs (promtool and helm).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from trackflow.streams.stack import StackError
from trackflow.streams.stack.prerequisites import ensure_command, find_java, find_redis_server

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools/bin"
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.22.0"


def ensure_helm() -> Path:
    """helm HELM_VERSION in .tools/bin, built with ``go install`` when missing or another one."""
    helm = TOOLS / "helm"
    # `helm version` of a `go install` build says only "v3.22": a stamp records the exact one.
    stamp = TOOLS / ".helm-version"
    if helm.exists() and stamp.exists() and stamp.read_text().strip() == HELM_VERSION:
        return helm
    go = shutil.which("go")
    if go is None:
        raise StackError("helm needs Go 1.24 or newer to build (`go install`); install Go "
                         "from your distribution or go.dev and run this again")
    print(f"installing helm {HELM_VERSION} into {TOOLS} (go install, a minute or two)",
          file=sys.stderr)
    TOOLS.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([go, "install", f"{HELM_MODULE}@{HELM_VERSION}"],
                            env={**os.environ, "GOBIN": str(TOOLS)}, check=False)
    if result.returncode or not helm.exists():
        raise StackError(f"`go install {HELM_MODULE}@{HELM_VERSION}` failed")
    stamp.write_text(HELM_VERSION + "\n")
    return helm


def ensure_promtool() -> None:
    ensure_command("promtool", "prometheus",
                   "`sudo apt-get install -y prometheus` (it ships promtool) or download "
                   "Prometheus from prometheus.io")


def main() -> int:
    parser = argparse.ArgumentParser(description="Check or install what make test needs.")
    parser.add_argument("--lint", action="store_true", help="only what make lint needs")
    args = parser.parse_args()
    try:
        if not args.lint:
            find_java()
            ensure_command("mvn", "maven",
                           "`sudo apt-get install -y maven` or see maven.apache.org")
            find_redis_server()
            ensure_command("openssl", "openssl", "`sudo apt-get install -y openssl`")
        ensure_promtool()
        ensure_helm()
    except StackError as exc:
        print(f"prerequisite missing: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
