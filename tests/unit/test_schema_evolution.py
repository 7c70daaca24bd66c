"""The offline schema evolution check (``make lint``): the shipped versions pass, and the
breaking changes a registry with BACKWARD compatibility would refuse are caught."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trackflow.schemas.evolution import breaking_steps
from trackflow.schemas.registry import SchemaRegistry, default_registry

V1: dict[str, Any] = {"type": "record", "name": "Thing", "namespace": "dev.trackflow.test",
                      "fields": [{"name": "id", "type": "string"},
                                 {"name": "plays", "type": "int"},
                                 {"name": "kind", "type": {"type": "enum", "name": "Kind",
                                                           "symbols": ["a", "b"]}}]}


def with_change(change: Any) -> SchemaRegistry:
    v2 = copy.deepcopy(V1)
    change(v2)
    return SchemaRegistry.from_schemas({"Thing": {1: V1, 2: v2}})


def test_the_shipped_schemas_each_read_the_version_before() -> None:
    assert breaking_steps(default_registry()) == []


@pytest.mark.parametrize("change", [
    lambda s: s["fields"].append({"name": "album", "type": ["null", "string"],
                                  "default": None}),
    lambda s: s["fields"][1].update(type="long"),  # int promotes to long
    lambda s: s["fields"][2]["type"]["symbols"].append("c"),  # a new symbol old data lacks
    lambda s: s["fields"].pop(1),  # a field the reader no longer reads
], ids=["optional_field_added", "int_to_long", "enum_symbol_added", "field_removed"])
def test_compatible_changes_pass(change: Any) -> None:
    assert breaking_steps(with_change(change)) == []


@pytest.mark.parametrize("change", [
    lambda s: s["fields"].append({"name": "album", "type": "string"}),  # no default
    lambda s: s["fields"][1].update(type="string"),
    lambda s: s["fields"][2]["type"].update(symbols=["a"]),  # old data may hold "b"
], ids=["field_added_without_default", "int_to_string", "enum_symbol_removed"])
def test_breaking_changes_are_named(change: Any) -> None:
    problems = breaking_steps(with_change(change))
    assert len(problems) == 1 and problems[0].startswith("Thing v2 cannot read v1: "), problems
