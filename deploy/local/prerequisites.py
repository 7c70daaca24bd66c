"""Check (and on Debian as root, install) what `make test` needs besides Python packages.

Java 17+ and Maven run the local Kafka broker; redis-server is the cache; promtool (Debian's
`prometheus` package) checks and unit-tests the alert rules. Each missing piece stops here with
a message that says how to install it, rather than failing deep inside a test.
"""

from __future__ import annotations

import sys

from trackflow.streams.stack import StackError
from trackflow.streams.stack.prerequisites import ensure_command, find_java, find_redis_server


def main() -> int:
    try:
        find_java()
        ensure_command("mvn", "maven", "`sudo apt-get install -y maven` or see maven.apache.org")
        find_redis_server()
        ensure_command("openssl", "openssl", "`sudo apt-get install -y openssl`")
        ensure_command("promtool", "prometheus",
                       "`sudo apt-get install -y prometheus` (it ships promtool) or download "
                       "Prometheus from prometheus.io")
    except StackError as exc:
        print(f"prerequisite missing: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
