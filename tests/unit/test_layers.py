"""Layers, bottom up: schemas/ and providers/ (no Faust, no Kafka), agents/, streams/. No module
imports from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Per folder, the packages it must not import: ours above it, and Kafka/Faust for the bottom.
FORBIDDEN = {
    "schemas": ("trackflow.streams", "trackflow.agents", "trackflow.providers", "faust",
                "aiokafka", "confluent_kafka"),
    "providers": ("trackflow.streams", "trackflow.agents", "faust", "aiokafka",
                  "confluent_kafka"),
    "agents": ("trackflow.streams",),
}


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from trackflow import streams`` names the package in the alias.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _is_under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_a_layer_above_it(layer: str) -> None:
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"expected Python modules under {layer}/"
    forbidden = FORBIDDEN[layer]
    bad = [f"{path.relative_to(ROOT)}:{line} imports {module}"
           for path in files for line, module in _imported_modules(path)
           if _is_under(module, forbidden)]
    assert not bad, f"expected {layer}/ to import none of {forbidden}, found: {bad}"
