"""Schema evolution checked offline: every version of a record reads what the version before it
wrote (Avro's schema resolution; what a schema registry calls BACKWARD compatibility, the level
trackflow's subjects are meant to be held to). ``make lint`` runs it, so a breaking change to an
``.avsc`` file fails before any record or registry meets it.

The check is the Apache Avro library's own resolution checker (``avro.compatibility``, the
``dev`` extra), not a rewrite of the rules: a field added without a default, a type changed to
one the old type does not promote to, an enum symbol removed without a default, a field removed
that the reader needs: each is reported with the checker's message.
"""

from __future__ import annotations

import itertools
import json
import sys

from trackflow.schemas.registry import SchemaRegistry, SchemaVersion, default_registry


def _compatible(reader: SchemaVersion, writer: SchemaVersion) -> list[str]:
    """Why ``reader`` cannot read what ``writer`` wrote ([] when it can)."""
    import avro.schema
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        avro.schema.parse(json.dumps(reader.schema)), avro.schema.parse(json.dumps(writer.schema)))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    return sorted({str(m) for m in result.messages} | {str(p) for p in result.locations}) or \
        ["incompatible"]


def breaking_steps(registry: SchemaRegistry | None = None) -> list[str]:
    """One line per version that cannot read the version before it."""
    reg = registry or default_registry()
    problems = []
    for name in reg.names():
        versions = reg.versions(name)
        for before, after in itertools.pairwise(versions):
            reasons = _compatible(after, before)
            if reasons:
                problems.append(f"{name} v{after.version} cannot read v{before.version}: "
                                f"{'; '.join(reasons)}")
    return problems


def main() -> int:
    problems = breaking_steps()
    for line in problems:
        print(f"schema evolution: {line}", file=sys.stderr)
    if not problems:
        reg = default_registry()
        steps = sum(len(reg.versions(n)) - 1 for n in reg.names())
        print(f"schema evolution: {steps} version steps, each reads the one before it")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
