"""The import layering holds: every module imports only its own layer or layers below it.

Layers, bottom to top (docs/architecture.md draws the same picture):

0. errors, choices, fsutil, records, registry, integrity, recipe — plain data, files and their hashes
1. data, scoring, options, models, worlds, ledger, training, presets, retrieval
2. locate — the request's sets; guard — the output guard (records, worlds, models, ledger below it)
3. verify — plan, evaluate, judge, attacks, metrics
4. methods — unlearning and editing (may use verification's metrics, never the reverse)
5. report
6. pipeline, demo, panel, preflight — jobs that train, unlearn and verify, and the checks before them
7. cli, service — the thin edges (the command line; the HTTP service, its queue and worker)

Every ``import`` counts, including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import expunge

PACKAGE = Path(expunge.__file__).parent
LAYERS = {
    "errors": 0, "choices": 0, "fsutil": 0, "records": 0, "registry": 0, "integrity": 0, "recipe": 0,
    "data": 1, "scoring": 1, "options": 1, "models": 1, "worlds": 1, "ledger": 1, "training": 1,
    "presets": 1, "retrieval": 1, "prompts": 1,
    "locate": 2, "guard": 2,
    "verify": 3,
    "methods": 4,
    "report": 5,
    "pipeline": 6, "demo": 6, "panel": 6, "preflight": 6, "sharding": 6, "planner": 6,
    "cli": 7, "service": 7,
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def _top(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, name.split(".")[1]) for line, name in found if name.startswith("expunge.") and "." in name]


def test_every_module_has_a_layer() -> None:
    unknown = sorted({_top(p) for p in _modules()} - set(LAYERS))
    assert not unknown, f"give these top-level modules a layer in tests/test_layering.py: {unknown}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    mine = LAYERS[_top(path)]
    upward = [f"line {line}: expunge.{name} (layer {LAYERS[name]})" for line, name in _imports(path)
              if name in LAYERS and LAYERS[name] > mine]
    assert not upward, f"{path.relative_to(PACKAGE)} (layer {mine}) imports upwards: {upward}"


def test_the_rules_of_the_issue_hold() -> None:
    # Spelled out, in case someone renumbers the layers: nothing below methods imports methods,
    # pipeline, demo or cli; methods do not import the report.
    for path in _modules():
        names = {name for _, name in _imports(path)}
        if LAYERS[_top(path)] < LAYERS["methods"]:
            assert not names & {"methods", "pipeline", "demo", "panel", "cli"}, path
        if _top(path) == "methods":
            assert "report" not in names, path
