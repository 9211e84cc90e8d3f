"""Package layers: core imports neither side, the Spark and TorchRec sides never import each other, no cycles."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "embeddings", "recsys")


def modules_of(package: str) -> list[str]:
    root = REPO / package
    return sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for p in root.rglob("*.py")
    )


def imported_top_levels(modules: list[str]) -> set[str]:
    """Import ``modules`` in a fresh interpreter; the top-level packages it then holds."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_core_imports_neither_side_nor_spark_nor_torch():
    loaded = imported_top_levels(modules_of("core"))
    assert not loaded & {"embeddings", "recsys", "pyspark", "torch"}


def test_spark_side_never_imports_the_torchrec_side_or_torch():
    loaded = imported_top_levels(modules_of("embeddings"))
    assert "recsys" not in loaded and "torch" not in loaded


def test_core_names_no_heavy_dependency():
    heavy = {"pyspark", "torch", "torchrec", "fbgemm_gpu", "great_expectations", "airflow"}
    assert {m: sorted(n & heavy) for m, n in external_imports().items() if m.startswith("core") and n & heavy} == {}


def test_torchrec_side_never_imports_the_spark_side():
    assert "embeddings" not in imported_top_levels(modules_of("recsys"))


def test_only_the_spark_launcher_of_the_torchrec_side_names_pyspark():
    # (mlflow imports pyspark itself where it is installed, so this reads our import statements)
    naming = sorted(m for m, names in external_imports().items() if m.startswith("recsys") and "pyspark" in names)
    assert naming == ["recsys.launch_spark"]


def _source(module: str) -> str:
    path = REPO / Path(*module.split("."))
    return (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text()


def _imported_names(module: str) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(_source(module))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def external_imports() -> dict[str, set[str]]:
    """Module -> top-level packages its import statements name (anywhere in its body)."""
    return {m: {n.split(".")[0] for n in _imported_names(m)} for p in PACKAGES for m in modules_of(p)}


def import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports anywhere in its body (function-level imports included)."""
    known = {m for p in PACKAGES for m in modules_of(p)}
    return {m: {n for n in _imported_names(m) if n in known and n != m} for m in known}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycles():
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize(
    "side, other", [("embeddings", "recsys"), ("recsys", "embeddings"), ("core", "embeddings"), ("core", "recsys")]
)
def test_no_module_of_one_side_names_the_other_anywhere(side, other):
    graph = import_graph()
    offenders = {
        m: sorted(t for t in ts if t.split(".")[0] == other) for m, ts in graph.items() if m.split(".")[0] == side
    }
    assert {m: ts for m, ts in offenders.items() if ts} == {}


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
