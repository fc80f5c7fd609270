"""The import rules of the house, read from the source (ast), and dvc.yaml's code deps checked against them.

Units: each sub-package of ``benchmark`` (``core``, ``data``, ...), the entry modules (``benchmark/<command>.py``) and
``models``. Every import statement counts, also those inside functions. A stage of dvc.yaml must depend on exactly the
packages its command imports (transitively), so it re-runs whenever code it runs changes, and only then.
"""

from __future__ import annotations

import ast
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "data", "scoring", "weights", "training", "evaluation", "reporting", "tools")
ALLOWED: dict[str, set[str]] = {
    "core": set(),  # imports nothing of the project
    "data": {"core"},
    "scoring": {"core"},
    "weights": {"core", "models"},
    "training": {"core", "data", "scoring", "weights", "models"},
    "evaluation": {"core", "data", "scoring", "weights", "models"},  # never training
    "reporting": {"core", "data", "scoring", "weights", "evaluation", "models"},  # never training
    "tools": {"core", "data", "scoring", "weights", "training", "evaluation", "reporting", "models"},
    "entry": {*PACKAGES, "models"},
    "models": set(),  # never benchmark
}


def _modules() -> dict[str, Path]:
    """Every project module by dotted name."""
    out = {}
    for top in ("benchmark", "models"):
        for path in sorted((REPO / top).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """The project modules ``name`` imports (the longest known prefix of each imported name)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            parts = target.split(".")
            for i in range(len(parts), 0, -1):
                candidate = ".".join(parts[:i])
                if candidate in MODULES:
                    if candidate != name:
                        yield candidate
                    break


GRAPH = {name: set(_imports(name, path)) for name, path in MODULES.items()}


def _unit(module: str) -> str:
    if module == "models" or module.startswith("models."):
        return "models"
    parts = module.split(".")
    if len(parts) == 1:
        return "benchmark"  # the package's own __init__
    return parts[1] if parts[1] in PACKAGES else "entry"


def test_every_module_belongs_to_a_unit() -> None:
    entries = sorted(m for m in MODULES if _unit(m) == "entry")
    assert entries == [
        f"benchmark.{c}"
        for c in (
            "bench",
            "complexity",
            "configure",
            "convert",
            "deblur",
            "evaluate",
            "fetch",
            "figures",
            "params",
            "report",
            "train",
        )
    ]
    assert set(_unit(m) for m in MODULES) == {*PACKAGES, "entry", "models", "benchmark"}


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_imports_follow_the_rules(unit: str) -> None:
    bad = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _unit(module) == unit
        for target in targets
        if _unit(target) not in (ALLOWED[unit] | {unit}) and _unit(target) != "benchmark"
    )
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_models_never_import_benchmark() -> None:
    assert not [m for m in GRAPH if m.startswith("models") and any(t.startswith("benchmark") for t in GRAPH[m])]


def test_no_import_circle() -> None:
    """No module reaches itself through its imports (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not circles, f"import circles: {circles}"


def test_the_rule_test_sees_lazy_imports(tmp_path: Path) -> None:
    """The walk counts an import inside a function body (the old config.py imported data lazily)."""
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from benchmark.training.loop import run_training\n")
    assert set(_imports("benchmark.core.x", source)) == {"benchmark.training.loop"}


def test_the_package_root_holds_no_code() -> None:
    """``benchmark/__init__.py`` is imported by every command but is no stage's dep: it must stay a docstring."""
    tree = ast.parse((REPO / "benchmark" / "__init__.py").read_text())
    assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in tree.body)


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(GRAPH[current])
        parts = current.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES)
    return seen


def _stages() -> dict[str, dict]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_dvc_code_deps_are_exactly_what_the_command_imports(stage: str) -> None:
    spec = _stages()[stage]
    words = shlex.split(spec["cmd"])
    module = words[words.index("-m") + 1]
    needed = {_unit(m) for m in _closure(module)} - {"benchmark", "entry"}
    deps = {d if isinstance(d, str) else next(iter(d)) for d in spec["deps"]}
    code = {d.removeprefix("benchmark/") for d in deps if d.startswith("benchmark/") or d == "models"}
    entry = f"{module.split('.')[-1]}.py"
    assert entry in code, f"{stage}: its command's module benchmark/{entry} is not a dep"
    assert code - {entry} == needed, f"{stage}: deps {sorted(code - {entry})} vs imported {sorted(needed)}"
    uncovered = [m for m in _closure(module) if _unit(m) == "entry" and m != module]
    assert not uncovered, f"{stage}: imports other entry modules {uncovered}"
