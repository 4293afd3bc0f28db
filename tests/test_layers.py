"""The package's floor plan: each module belongs to a layer and imports only what its layer may.

An AST walk over ``tui_quantreport/`` (no import is executed) finds every import of the package,
at module level or inside a function, and checks it against the layers' rules. The EXCEPTIONS lists
below are empty (every import follows the rules, no package import sits inside an engine function,
and there is no import cycle); a new violation fails, naming itself.

Imports under ``if TYPE_CHECKING:`` are types only: they are not counted in cycles, and the front
ends (``cli``, ``tui``) may name engine types that way.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = "tui_quantreport"
ENGINE = PKG + ".engine"

# The layers, bottom to top, and what each may import (its own layer is always allowed).
LAYERS = (
    "core",
    "model",
    "stats",
    "calibration",
    "detectors",
    "quantsim",
    "assess",
    "io",
    "apply",
    "pipeline",
    "cli",
    "tui",
    "program",
)
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "model": frozenset({"core"}),
    "stats": frozenset({"core"}),
    "calibration": frozenset({"core", "model", "stats"}),
    "detectors": frozenset({"core", "model", "stats", "calibration"}),
    "quantsim": frozenset({"core", "model", "stats"}),
    "assess": frozenset({"core", "model", "stats", "calibration", "detectors", "quantsim"}),
    "io": frozenset({"core", "model", "stats", "calibration", "detectors", "quantsim", "assess"}),
    "apply": frozenset({"core", "model", "stats", "calibration", "detectors", "quantsim", "assess", "io"}),
    "pipeline": frozenset(LAYERS[:9]),
    "cli": frozenset({"core", "pipeline"}),
    "tui": frozenset({"core", "pipeline"}),
    # The program's entry point chooses the front end (a headless command or the app): the one place
    # that may see both, so that neither front end imports the other.
    "program": frozenset({"core", "pipeline", "cli", "tui"}),
}

# Today's files, mapped to the layer they belong to (most by their folder; the flat files of
# ``engine/`` one by one). A module not named here is an error: a new file must choose its layer.
FLAT: dict[str, str] = {
    PKG: "core",
    PKG + ".__main__": "program",
    # ``tui-quantreport``'s entry point (the package's main()): it starts the app or runs a command,
    # so it sees cli and tui; the commands themselves (cli's other modules) are layer "cli".
    PKG + ".cli": "program",
    ENGINE: "pipeline",  # the engine's public names: the one facade over every layer
    ENGINE + ".pipeline": "pipeline",  # THE orchestration: load, calibrate, evaluate, measure, assess
    ENGINE + ".errors": "core",
    ENGINE + ".escape": "core",
    ENGINE + ".params": "core",
    ENGINE + ".module_info": "core",
    ENGINE + ".bounded": "core",
    ENGINE + ".defaults": "core",
    ENGINE + ".stats_path": "core",
    ENGINE + ".model_lock": "core",
    ENGINE + ".plan": "core",  # the one plan (+ ActivationQParams, the plan JSON, PlanError)
    ENGINE + ".spec": "model",
    ENGINE + ".graph_file": "model",
    ENGINE + ".graph": "model",
    ENGINE + ".graph_eager": "model",
    ENGINE + ".module_kinds": "model",
    ENGINE + ".fingerprint": "model",
    ENGINE + ".modules": "model",
    ENGINE + ".channel_axis": "core",  # a parameter kind (torch-free): params parse it
    ENGINE + ".model_outputs": "model",
    ENGINE + ".batches": "model",
    ENGINE + ".model_state": "model",
    ENGINE + ".quantsim.kinds": "model",
    ENGINE + ".session": "calibration",
    ENGINE + ".observer": "calibration",
    ENGINE + ".instrument": "calibration",
    ENGINE + ".graph_calibration": "calibration",
    ENGINE + ".merged_batches": "calibration",
    ENGINE + ".observe": "calibration",
    ENGINE + ".graph_runner": "calibration",
    ENGINE + ".layout": "calibration",
    ENGINE + ".distributed": "calibration",
    ENGINE + ".settings": "detectors",
    ENGINE + ".evaluation": "detectors",
    ENGINE + ".severity": "assess",
    ENGINE + ".layers": "assess",
    ENGINE + ".report": "core",  # the report as plain data (torch-free; the "report data")
    ENGINE + ".export": "io",
    ENGINE + ".statsfile": "io",
    ENGINE + ".launch_tree": "io",
    ENGINE + ".kept_plan": "io",
    ENGINE + ".planner_report": "io",
    ENGINE + ".measured_render": "io",
}
FOLDERS: dict[str, str] = {
    ENGINE + ".core": "core",
    ENGINE + ".stats": "stats",
    ENGINE + ".detectors": "detectors",
    ENGINE + ".quantsim": "quantsim",
    ENGINE + ".apply": "apply",
    PKG + ".tui": "tui",
    PKG + ".cli": "cli",
}


def layer_of(module: str) -> str:
    if module in FLAT:
        return FLAT[module]
    for folder, layer in FOLDERS.items():
        if module == folder or module.startswith(folder + "."):
            return layer
    raise AssertionError(f"{module} has no layer: add it to FLAT or FOLDERS in tests/test_layers.py")


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of the package, or a third-party name as written
    line: int
    deferred: bool  # inside a function
    type_checking: bool  # under ``if TYPE_CHECKING:``


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PKG).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    """The package module an imported dotted name lives in (``pkg.mod.Name`` -> ``pkg.mod``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, deferred: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            in_function = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            guarded = type_checking or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                names = [source + "." + alias.name for alias in child.names]
            for name in names:
                if name == PKG or name.startswith(PKG + "."):
                    target = _resolve(name)
                    if target and target != module:
                        found.append(Import(module, target, child.lineno, deferred, type_checking))
                else:
                    found.append(Import(module, name, child.lineno, deferred, type_checking))
            visit(child, in_function, guarded)

    visit(tree, False, False)
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]
INTERNAL = [imp for imp in IMPORTS if imp.target in MODULES]


def _short(module: str) -> str:
    return module.removeprefix(PKG + ".")


def layer_violations() -> set[tuple[str, str]]:
    out = set()
    for imp in INTERNAL:
        src, dst = layer_of(imp.importer), layer_of(imp.target)
        if src == dst or dst in ALLOWED[src]:
            continue
        if imp.type_checking:
            continue  # types only: no runtime coupling
        out.add((_short(imp.importer), _short(imp.target)))
    return out


def deferred_engine_imports() -> set[tuple[str, str]]:
    return {
        (_short(imp.importer), _short(imp.target))
        for imp in INTERNAL
        if imp.deferred and not imp.type_checking and imp.importer.startswith(ENGINE)
    }


def import_cycles() -> set[tuple[str, ...]]:
    """Strongly connected components of more than one module (deferred imports counted)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in INTERNAL:
        if not imp.type_checking:
            graph[imp.importer].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: set[tuple[str, ...]] = set()

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.add(tuple(sorted(_short(m) for m in component)))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for module in sorted(MODULES):
            if module not in index:
                connect(module)
    finally:
        sys.setrecursionlimit(limit)
    return cycles


def _diff(found: set, allowed: set, what: str) -> str:
    new = sorted(found - allowed)
    gone = sorted(allowed - found)
    lines = []
    if new:
        lines.append(f"new {what} (fix the import, do not add an exception):")
        lines += [f"    {item!r}," for item in new]
    if gone:
        lines.append(f"{what} no longer found: remove these from the exceptions:")
        lines += [f"    {item!r}," for item in gone]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The violations left: none. The lists stay (empty) so that a new violation fails with what it is.
# ---------------------------------------------------------------------------------------------

LAYER_EXCEPTIONS: set[tuple[str, str]] = set()
DEFERRED_EXCEPTIONS: set[tuple[str, str]] = set()
CYCLE_EXCEPTIONS: set[tuple[str, ...]] = set()


def test_every_module_has_a_layer():
    for module in MODULES:
        assert layer_of(module) in LAYERS


def test_layers_import_only_what_they_may():
    found = layer_violations()
    assert found == LAYER_EXCEPTIONS, _diff(found, LAYER_EXCEPTIONS, "layer violations")


def test_no_package_import_inside_an_engine_function():
    found = deferred_engine_imports()
    assert found == DEFERRED_EXCEPTIONS, _diff(found, DEFERRED_EXCEPTIONS, "function-level imports in the engine")


def test_no_import_cycle():
    found = import_cycles()
    assert found == CYCLE_EXCEPTIONS, _diff(found, CYCLE_EXCEPTIONS, "import cycles")


def test_engine_never_imports_textual_or_rich():
    bad = sorted(
        f"{_short(imp.importer)}:{imp.line} imports {imp.target}"
        for imp in IMPORTS
        if imp.importer.startswith(ENGINE) and imp.target.split(".")[0] in {"textual", "rich"}
    )
    assert not bad, bad


def test_core_is_torch_free_at_import_time():
    bad = sorted(
        f"{_short(imp.importer)}:{imp.line} imports {imp.target}"
        for imp in IMPORTS
        if layer_of(imp.importer) == "core"
        and not imp.deferred
        and not imp.type_checking
        and imp.target.split(".")[0] in {"torch", "torchao", "numpy", "numba", "transformers"}
    )
    assert not bad, bad


def test_the_walk_sees_deferred_and_type_checking_imports():
    # The checks above are only as good as the walk: it must see imports inside functions and
    # tell the ``TYPE_CHECKING`` ones apart, or every list above would be silently empty.
    assert any(imp.deferred for imp in INTERNAL)
    assert any(imp.type_checking for imp in INTERNAL)
    assert any(imp.importer == ENGINE + ".session" for imp in INTERNAL)


MAX_LINES = 700


def test_no_file_over_700_lines():
    long = {
        _short(module).replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py"): n
        for module, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines (split them): {long}"


MAX_FUNCTION_LINES = 80

#: Functions allowed over the limit, each with why (a hot path split into calls would cost per call).
#: None today; the list may only shrink.
LONG_FUNCTIONS: dict[str, str] = {}


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append((prefix + node.name, node))
            found += _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            found += _functions(node, prefix + node.name + ".")
        else:
            found += _functions(node, prefix)
    return found


def long_functions() -> dict[str, int]:
    """{``path:Class.function``: lines, from ``def`` to its last line, docstring included} over the limit."""
    out = {}
    for path in MODULES.values():
        where = path.relative_to(ROOT / PKG).as_posix()
        for name, node in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                out[f"{where}:{name}"] = lines
    return out


def test_no_function_over_80_lines():
    found = long_functions()
    new = {name: n for name, n in found.items() if name not in LONG_FUNCTIONS}
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines (split them into helpers): {new}"
    gone = sorted(set(LONG_FUNCTIONS) - set(found))
    assert not gone, f"no longer over {MAX_FUNCTION_LINES} lines: remove from LONG_FUNCTIONS: {gone}"


def test_the_function_walk_measures_methods_and_nested_functions():
    # A method (a class's function) and a function nested in one are measured too, by their full name.
    names = {name for path in MODULES.values() for name, _ in _functions(ast.parse(path.read_text(encoding="utf-8")))}
    assert "ErrorAnalysis.__init__" in names
    assert any(name.count(".") >= 2 for name in names)
