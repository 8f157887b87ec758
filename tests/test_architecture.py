"""The package's shape: small modules, no import circles, no private names across modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "alhelpers"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) of every ``alhelpers`` import in a module, lazy ones too."""
    out = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "alhelpers"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "alhelpers":
                continue
            names = [a.name for a in node.names]
            subs = [n for n in names if f"{base}.{n}" in MODULES]
            out += [(f"{base}.{n}", []) for n in subs]
            rest = [n for n in names if n not in subs]
            if rest:
                out.append((base, rest))
    return out


def test_no_module_is_longer_than_600_lines() -> None:
    long = {n: len(p.read_text(encoding="utf-8").splitlines()) for n, p in MODULES.items()}
    assert {n: k for n, k in long.items() if k > MAX_LINES} == {}


def test_no_private_name_is_imported_from_another_module() -> None:
    found = [f"{name} imports {target}.{n}" for name, path in MODULES.items()
             for target, names in _imports(name, path) for n in names
             if n.startswith("_") and target != name]
    assert found == []


def test_no_import_circles() -> None:
    graph = {name: {t for t, _ in _imports(name, path) if t in MODULES and t != name}
             for name, path in MODULES.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" → ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} → {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert cycles == []


@pytest.mark.parametrize("name", ["alhelpers.al.seeding", "alhelpers.al.checkpoints", "alhelpers.al.rounds",
                                  "alhelpers.al.runs", "alhelpers.select.methods"])
def test_the_core_does_not_import_either_track(name: str) -> None:
    tracks = ("alhelpers.formation", "alhelpers.atomistic")
    assert [t for t, _ in _imports(name, MODULES[name]) if t.startswith(tracks)] == []


def _reachable(start: str) -> set[str]:
    """Every module an import chain from ``start`` reaches (lazy imports included)."""
    graph = {name: {t for t, _ in _imports(name, path) if t in MODULES and t != name} for name, path in MODULES.items()}
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("alhelpers.anymodel")))
def test_no_import_chain_runs_from_anymodel_into_atomistic(name: str) -> None:
    """One Track B stack, layered: :mod:`alhelpers.atomistic` (the study, its data and the project's
    potential with its adapter) uses :mod:`alhelpers.anymodel` (adapters, training, gradient
    features, committees and selection of any potential); nothing in ``anymodel`` reaches back up,
    directly, lazily or through another module."""
    assert sorted(t for t in _reachable(name) if t.startswith("alhelpers.atomistic")) == []


def test_tests_do_not_import_each_other_through_the_tests_package() -> None:
    """mace-torch installs a top-level ``tests`` package into site-packages, which shadows this
    folder as a namespace package: ``from tests.x import y`` then fails (it did in CI)."""
    folder = Path(__file__).resolve().parent
    offenders = [f"{p.name}:{n}" for p in sorted(folder.glob("*.py"))
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1)
                 if re.match(r"\s*(from tests[. ]|import tests\b)", line)]
    assert offenders == []


def test_the_fetch_and_featurize_notebooks_import_no_torch() -> None:
    """Notebooks 01 and 02 (and their stages) load neither torch nor scikit-learn: each of their
    kernels in a study would spend about 1.5 s importing what it never uses."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import alhelpers.data, alhelpers.layout, alhelpers.nb, alhelpers.stages\n"
            "from alhelpers.formation.config import ALConfig, EnsembleConfig, FeaturizeConfig, FetchConfig\n"
            "from alhelpers.formation.features import featurize\n"
            "FetchConfig(system='C'); FeaturizeConfig('C', 'snapshot', 'magpie'); EnsembleConfig()\n"
            "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"
