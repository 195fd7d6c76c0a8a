"""The package keeps its shape: imports go down the stages, no import cycle, one home per contract.

Every clamp import counts, including one inside a function (a lazy import is still a tie a reader must
follow).  The order, bottom first, is the data path: the leaf contracts (errors, fields, import paths,
names, the phase rule, random streams, the results store), then tasks, model, interventions, training,
study, analysis, execution, bench and the command line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from helpers import ROOT

PKG = ROOT / "clamp"
ORDER = ["corrections errors fields fingerprint importpath names phase rng store", "tasks", "model", "interventions", "training", "study",
         "analysis", "execution", "bench", "cli __main__"]
RANK = {m: i for i, layer in enumerate(ORDER) for m in layer.split()}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.with_suffix("").relative_to(ROOT).parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """Every ``clamp`` module this file imports (anywhere in it), with the line, resolved to a known module."""
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != module and t != "clamp":  # the root package re-exports lazily for users
                out.append((node.lineno, t))
    return out


def _rank(module: str) -> int | None:
    parts = module.split(".")
    return RANK.get(parts[1]) if len(parts) > 1 else None


def test_every_top_level_module_has_a_place_in_the_order():
    tops = {m.split(".")[1] for m in MODULES if m != "clamp"}
    assert tops <= set(RANK), f"add {sorted(tops - set(RANK))} to ORDER"


def test_imports_only_go_down_the_stages():
    bad = []
    for module, path in MODULES.items():
        here = _rank(module)
        for line, target in _imports(module, path):
            there = _rank(target)
            if here is not None and there is not None and there > here:
                bad.append(f"{path.relative_to(ROOT)}:{line} -> {target}")
    assert not bad, "imports going up the stages:\n" + "\n".join(bad)


def test_no_import_cycles():
    edges = {m: {t for _, t in _imports(m, p)} for m, p in MODULES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def _definitions(pattern: str) -> list[str]:
    rx = re.compile(pattern, re.M)
    return sorted(str(p.relative_to(ROOT)) for p in PKG.rglob("*.py") if rx.search(p.read_text()))


def test_one_definition_of_each_contract():
    assert _definitions(r"^def crossing_time\(") == ["clamp/phase.py"]
    assert _definitions(r"^def stop_point\(") == ["clamp/phase.py"]
    assert _definitions(r"^class PhaseRule\b") == ["clamp/phase.py"]
    assert _definitions(r"^def read_metric_rows\(") == ["clamp/store.py"]
    assert _definitions(r"^def metric_rows_text\(") == ["clamp/store.py"]
    assert _definitions(r"^def resolve\(") == ["clamp/importpath.py"]
    assert _definitions(r"^def import_path\(") == ["clamp/importpath.py"]
    assert _definitions(r"^def load_study\(") == ["clamp/study/load.py"]
    assert _definitions(r"^def (crossed|load_object|load_function|object_path)\(") == []
    # the resolver imports user code by name; the others are packages loading their own modules lazily
    assert _definitions(r"importlib\.import_module\(") == [
        "clamp/__init__.py", "clamp/analysis/stats/__init__.py", "clamp/importpath.py", "clamp/interventions/__init__.py",
        "clamp/interventions/kinds/__init__.py", "clamp/tasks/__init__.py"]


def test_every_builtin_kind_is_exported_and_the_version_has_one_source():
    import importlib.metadata

    import clamp
    from clamp.interventions.registry import builtin_kinds

    assert set(builtin_kinds()) <= set(clamp.__all__) and set(builtin_kinds()) <= set(dir(clamp))
    assert clamp.__version__ == importlib.metadata.version("clamp")


def test_no_reference_to_files_the_repository_does_not_hold():
    texts = [p for p in [*PKG.rglob("*.py"), *(ROOT / "studies").glob("*.py"), *(ROOT / "docs").rglob("*.md"),
                         ROOT / "README.md"]]
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in texts
           for m in re.findall(r"\b(SCIENCE\.md|NNSIGHT\.md|STYLE\.md|REVIEW-\w+\.md)", p.read_text())]
    assert not bad, bad
