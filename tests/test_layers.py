"""The package's import graph follows DESIGN.md's layers: nothing imports upward, and no
two modules import each other, directly or around a loop (imports inside functions
count too)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "geosid"

# layer -> the layers it may import (besides itself). `errors` and `config` are the
# foundation every layer may use; config holds the cell settings, so it reads geo.
ALLOWED = {
    "schemas": set(),
    "errors": {"schemas"},
    "geo": {"errors"},
    "config": {"geo", "errors"},
    "lake": {"schemas", "errors", "config"},
    "sources": {"lake", "geo", "schemas", "errors", "config"},
    "embedding": {"geo", "schemas", "errors", "config"},
    "quantization": {"geo", "errors"},
    "jobs": {"lake", "sources", "geo", "embedding", "quantization", "schemas", "errors", "config"},
    "trainer": {"lake", "geo", "schemas", "errors", "config"},
    "pipeline": {"jobs", "trainer", "lake", "sources", "geo", "embedding", "quantization", "schemas", "errors", "config"},
    "cli": {"pipeline", "config", "errors"},
}
# DAG files may also read the light registries at parse time (for their params).
DAG_EXTRA = {"geosid.sources.registry", "geosid.quantization.base", "geosid.embedding.templates"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every geosid module `path` imports, at module level or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("geosid")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("geosid") and node.level == 0:
            base = node.module
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                out.add(candidate if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists()
                        or (PACKAGE.parent / candidate.replace(".", "/") / "__init__.py").exists() else base)  # fmt: skip
    return out


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "geosid"


GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m != "geosid"))
def test_nothing_imports_upward(module):
    own = layer(module)
    bad = sorted(m for m in GRAPH[module] if m != "geosid" and layer(m) != own and layer(m) not in ALLOWED[own])
    assert not bad, f"{module} ({own}) imports {bad}; {own} may import {sorted(ALLOWED[own])}"


def test_no_import_loops():
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH.get(module, ())):
            target = target if target in GRAPH else target.rsplit(".", 1)[0]
            if target == module or target not in GRAPH:
                continue
            if state.get(target) == 1:
                loop = path[path.index(target):] + [target]
                # a package importing its own submodules (re-exports) is not a loop
                if not all(m.startswith(loop[0] + ".") or m == loop[0] for m in loop) or len(loop) > 2:
                    raise AssertionError("import loop: " + " -> ".join(loop))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_dag_files_only_wire_the_pipeline():
    for dag in sorted((ROOT / "dags").glob("*.py")):
        used = imports(dag)
        bad = sorted(m for m in used if m != "geosid" and layer(m) != "pipeline" and m not in DAG_EXTRA)
        assert not bad, f"{dag.name} imports {bad}: DAGs call geosid.pipeline"


def test_jobs_hold_only_stages_and_the_cli_no_orchestration():
    assert sorted(p.stem for p in (PACKAGE / "jobs").glob("*.py")) == [
        "__init__", "embed", "geo", "ingest", "sequences_kernel", "validate",
    ]  # fmt: skip
    cli = (PACKAGE / "cli.py").read_text()
    assert "lake.read" not in cli and "_models" not in cli and "geosid.jobs" not in cli and "geosid.trainer" not in cli
