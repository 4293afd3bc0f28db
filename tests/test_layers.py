"""The package's floor plan: each module belongs to a layer and imports only what its layer may.

An AST walk over ``tui_quantreport/`` (no import is executed) finds every import of the package,
at module level or inside a function, and checks it against the layers' rules. Today's violations
are listed below as EXCEPTIONS; the lists may only shrink: a new violation fails, and so does an
exception that no longer occurs (so the lists stay exact and show what is left to move).

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
}

# Today's files, mapped to the layer they belong to (most by their folder; the flat files of
# ``engine/`` one by one). A module not named here is an error: a new file must choose its layer.
FLAT: dict[str, str] = {
    PKG: "core",
    PKG + ".__main__": "cli",
    ENGINE: "pipeline",  # the engine's public names: the one facade over every layer
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
    ENGINE + ".channel_axis": "model",
    ENGINE + ".model_outputs": "model",
    ENGINE + ".batches": "model",
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
}
FOLDERS: dict[str, str] = {
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
# Today's violations. These lists may only shrink (docs/architecture.md says why each group is left).
# ---------------------------------------------------------------------------------------------

LAYER_EXCEPTIONS: set[tuple[str, str]] = {
    ("cli.app", "engine.export"),
    ("cli.app", "engine.spec"),
    ("cli.app", "tui.app"),
    ("cli.apply", "engine.apply.api"),
    ("cli.apply", "engine.apply.common"),
    ("cli.apply", "engine.apply.targets"),
    ("cli.calibrate", "engine.distributed"),
    ("cli.calibrate", "engine.quantsim"),
    ("cli.calibrate", "engine.quantsim.availability"),
    ("cli.calibrate", "engine.severity"),
    ("cli.calibrate", "engine.statsfile"),
    ("cli.common", "engine.export"),
    ("cli.common", "engine.spec"),
    ("cli.common", "engine.statsfile"),
    ("cli.options", "engine.apply.targets"),
    ("cli.options", "engine.detectors"),
    ("cli.options", "engine.graph_file"),
    ("cli.options", "engine.quantsim.schemes"),
    ("cli.report", "engine.quantsim"),
    ("cli.report", "engine.quantsim.availability"),
    ("cli.report", "engine.quantsim.planner"),
    ("cli.report", "engine.quantsim.probes"),
    ("cli.report", "engine.severity"),
    ("cli.report", "engine.statsfile"),
    ("engine.distributed", "engine.statsfile"),
    ("engine.params", "engine.channel_axis"),
    ("engine.quantsim.analysis_base", "engine.session"),
    ("engine.quantsim.availability", "engine.apply.targets"),
    ("engine.quantsim.depth", "engine.session"),
    ("engine.quantsim.error_analysis", "engine.apply.targets.recipe"),
    ("engine.quantsim.error_analysis", "engine.detectors.under_calibrated"),
    ("engine.quantsim.schemes.base", "engine.apply.recipes"),
    ("engine.quantsim.schemes.torchao_base", "engine.apply.library"),
    ("engine.quantsim.sensitivity", "engine.session"),
    ("engine.session", "engine.settings"),
    ("engine.severity", "engine.planner_report"),
    ("tui.controllers.export", "engine.apply.api"),
    ("tui.controllers.export", "engine.apply.targets"),
    ("tui.controllers.export", "engine.export"),
    ("tui.controllers.export", "engine.spec"),
    ("tui.controllers.measure", "engine.layers"),
    ("tui.controllers.measure", "engine.quantsim.depth"),
    ("tui.controllers.measure", "engine.quantsim.planner"),
    ("tui.controllers.navigation", "engine.layers"),
    ("tui.controllers.plan", "engine.kept_plan"),
    ("tui.controllers.plan", "engine.quantsim"),
    ("tui.controllers.session", "engine.launch_tree"),
    ("tui.controllers.session", "engine.severity"),
    ("tui.findings_panel", "engine.severity"),
    ("tui.frontier_plot", "engine.planner_report"),
    ("tui.frontier_screen", "engine.planner_report"),
    ("tui.layer_table", "engine.layers"),
    ("tui.messages", "engine.planner_report"),
    ("tui.messages", "engine.quantsim.planner"),
    ("tui.model_session", "engine.apply.api"),
    ("tui.model_session", "engine.detectors"),
    ("tui.model_session", "engine.evaluation"),
    ("tui.model_session", "engine.quantsim"),
    ("tui.model_session", "engine.quantsim.availability"),
    ("tui.model_session", "engine.session"),
    ("tui.model_session", "engine.settings"),
    ("tui.model_session", "engine.severity"),
    ("tui.model_session", "engine.spec"),
    ("tui.model_session", "engine.stats"),
    ("tui.model_session", "engine.statsfile"),
    ("tui.sqnr_panel", "engine.quantsim.schemes"),
    ("tui.user_settings", "engine.export"),
}
DEFERRED_EXCEPTIONS: set[tuple[str, str]] = {
    ("engine.apply.api", "engine.apply.quantsim_bridge"),
    ("engine.apply.api", "engine.errors"),
    ("engine.apply.api", "engine.graph"),
    ("engine.apply.api", "engine.modules"),
    ("engine.apply.api", "engine.quantsim"),
    ("engine.apply.api", "engine.spec"),
    ("engine.apply.common", "engine.apply.recipes"),
    ("engine.apply.common", "engine.export"),
    ("engine.apply.common", "engine.spec"),
    ("engine.apply.common", "tui_quantreport"),
    ("engine.apply.pt2e_target", "engine.apply.recipes"),
    ("engine.apply.pt2e_target", "engine.apply.torchao_target"),
    ("engine.apply.qconfig_target", "engine.apply.recipes"),
    ("engine.apply.qconfig_target", "engine.apply.torchao_target"),
    ("engine.apply.qconfig_target", "engine.quantsim.qparams"),
    ("engine.apply.quantsim_bridge", "engine.apply.targets"),
    ("engine.apply.quantsim_bridge", "engine.quantsim"),
    ("engine.apply.quantsim_bridge", "engine.session"),
    ("engine.apply.quantsim_bridge", "engine.settings"),
    ("engine.apply.quantsim_bridge", "engine.spec"),
    ("engine.apply.targets", "engine.apply.pt2e_target"),
    ("engine.apply.targets.base", "engine.quantsim.schemes"),
    ("engine.apply.torchao_target", "engine.apply.recipes"),
    ("engine.apply.torchao_target", "engine.errors"),
    ("engine.apply.torchao_target", "engine.escape"),
    ("engine.apply.verify", "engine.quantsim.reference"),
    ("engine.bounded", "engine.escape"),
    ("engine.distributed", "engine.modules"),
    ("engine.distributed", "engine.spec"),
    ("engine.distributed", "engine.statsfile"),
    ("engine.launch_tree", "engine.errors"),
    ("engine.launch_tree", "engine.export"),
    ("engine.launch_tree", "engine.spec"),
    ("engine.params", "engine.channel_axis"),
    ("engine.quantsim.availability", "engine.apply.targets"),
    ("engine.quantsim.availability", "engine.graph_eager"),
    ("engine.quantsim.availability", "engine.quantsim.error_analysis"),
    ("engine.quantsim.depth", "engine.quantsim.error_analysis"),
    ("engine.quantsim.depth", "engine.session"),
    ("engine.quantsim.schemes.base", "engine.apply.recipes"),
    ("engine.severity", "engine.quantsim.schemes"),
    ("engine.stats.kernel", "engine.stats._kernel_numba"),
}
# None left: the plan (torch-free, in the core) learns the scheme and target names from their
# registries, so neither the schemes nor the targets import the exporters' plan reader any more.
CYCLE_EXCEPTIONS: set[tuple[str, ...]] = set({})  # written as a literal so the lists stay rewritable in one form


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
