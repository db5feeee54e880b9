"""The house rules of the package layout (docs/architecture.md), checked on the source so they cannot rot.

- The core (``MedXAILib``) never imports Slicer, Qt, CTK or VTK.
- Imports run one way: only ``MedXAILib/cli.py`` and the commands themselves import ``MedXAILib.commands``.
- Every file under ``MedXAILib/`` stays under 700 lines (one job per module).
- No import cycles inside ``MedXAILib/`` (:func:`test_no_import_cycles`). Counted: every import statement anywhere
  in a module — at the top, inside functions (it still runs, later, and still ties the two modules together) and
  under ``if TYPE_CHECKING:`` (a design dependency all the same). ``from P import x`` is an edge to the submodule
  ``P.x`` when ``x`` is one, else to the package ``P`` (its ``__init__``). Not counted: the implicit import of a
  module's parent packages, which Python performs for every submodule (counting it would call every package whose
  ``__init__`` re-exports a submodule a cycle with that submodule).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "MedXAILib"
MAX_LINES = 700
GUI_PACKAGES = {"slicer", "qt", "ctk", "vtk", "vtkmodules", "MedXAI", "MedXAILogicLib", "MedXAIPanelLib"}


def _modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_names() -> dict[str, Path]:
    return {_dotted(p): p for p in _modules()}


def _absolute_module(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from … import`` names, relative levels resolved against ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _edges(path: Path, known: dict[str, Path]) -> set[str]:
    """The MedXAILib modules ``path`` imports (see the module docstring for what is counted)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _dotted(path) if path.name == "__init__.py" else _dotted(path).rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            mod = _absolute_module(node, package)
            subs = {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known}
            out |= subs
            if mod in known and len(subs) < len(node.names):
                out.add(mod)
    out.discard(_dotted(path))
    return out


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in graph:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))
    return cycles


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every imported module of a file as an absolute dotted name, with its line (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _dotted(path) if path.name == "__init__.py" else _dotted(path).rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _absolute_module(node, package)
            found.append((node.lineno, mod))
            found += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_core_never_imports_the_gui(path: Path) -> None:
    bad = [(n, m) for n, m in _imports(path) if m.split(".")[0] in GUI_PACKAGES]
    assert not bad, f"{path.relative_to(ROOT)} imports the GUI layer: {bad}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_only_the_cli_imports_the_commands(path: Path) -> None:
    rel = path.relative_to(CORE).as_posix()
    if rel == "cli.py" or rel.startswith("commands/"):
        return
    bad = [(n, m) for n, m in _imports(path) if m == "MedXAILib.commands" or m.startswith("MedXAILib.commands.")]
    assert not bad, f"MedXAILib/{rel} imports the CLI layer (lines {[n for n, _ in bad]}); move the helper down"


def test_every_core_file_is_under_the_line_limit() -> None:
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in _modules()}
    long = {name: n for name, n in sizes.items() if n >= MAX_LINES}
    assert not long, f"split these modules (limit {MAX_LINES} lines): {long}"


def test_the_import_scanner_sees_relative_imports(tmp_path: Path) -> None:
    """The rules above rely on resolving ``from ..commands import x``; check the resolver on a known file."""
    mods = dict((m, n) for n, m in _imports(CORE / "commands" / "segment.py"))
    assert "MedXAILib.commands.common" in mods and "MedXAILib.io" in mods


def test_no_import_cycles() -> None:
    """Modules inside MedXAILib import each other one way only (see the module docstring for what is counted)."""
    known = _module_names()
    graph = {name: _edges(path, known) for name, path in known.items()}
    cycles = import_cycles(graph)
    assert not cycles, "import cycles (move what two modules share into the lower one): " + "; ".join(
        " ↔ ".join(c) for c in cycles)


def test_the_cycle_finder_finds_planted_cycles_and_counts_function_level_imports(tmp_path: Path) -> None:
    """An independent check of the two pieces above: a graph with known cycles, and a known function-level edge."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set(), "g": {"g"}}
    assert sorted(import_cycles(graph)) == [["a", "b", "c"], ["d", "e"]]
    known = _module_names()
    runner = _edges(CORE / "benchmark" / "runner.py", known)
    assert "MedXAILib.benchmark.distributed" in runner  # imported inside run_benchmark only
    assert "MedXAILib.benchmark.units" in runner
    catalogue = _edges(CORE / "models" / "catalogue.py", known)
    assert {"MedXAILib.models.zoo", "MedXAILib.models.nnunet_sources"} <= catalogue  # from . import a, b
    assert "MedXAILib.models" not in catalogue
