"""Layers: providers/ and schemas/ import nothing of ours from the layers above them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOWER_LAYERS = ("providers", "schemas")
UPPER_PACKAGES = ("trackflow.streams", "trackflow.agents")


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


def _is_upper(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in UPPER_PACKAGES)


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_do_not_import_streams_or_agents(layer: str) -> None:
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"expected Python modules under {layer}/"
    bad = [f"{path.relative_to(ROOT)}:{line} imports {module}"
           for path in files for line, module in _imported_modules(path) if _is_upper(module)]
    assert not bad, (f"expected {layer}/ to import nothing from trackflow.streams or "
                     f"trackflow.agents, found: {bad}")
