"""Each shared default is defined once, in ``engine/defaults.py``, and read where it is used."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from tui_quantreport.engine import defaults


def test_backends_are_the_one_list():
    from tui_quantreport.engine.detectors.per_channel import PerChannelDetector
    from tui_quantreport.engine.modules import ALL_BACKENDS

    backend = next(p for p in PerChannelDetector.params if p.name == "backend")
    assert tuple(backend.choices) == defaults.BACKENDS
    assert backend.default == defaults.DEFAULT_BACKEND in defaults.BACKENDS
    assert ALL_BACKENDS == frozenset(defaults.BACKENDS)


def test_minimum_gain_is_the_one_default():
    from tui_quantreport.engine.report import Report
    from tui_quantreport.engine.severity import DEFAULT_MIN_GAIN_DB
    from tui_quantreport.tui.panes.detector_sidebar import MIN_GAIN

    assert DEFAULT_MIN_GAIN_DB == MIN_GAIN.default == defaults.MIN_GAIN_DB
    field = next(f for f in dataclasses.fields(Report) if f.name == "min_gain_db")
    assert field.default == defaults.MIN_GAIN_DB


def test_probe_batches_are_the_one_default():
    from tui_quantreport.tui.main_screen import PROBE_BATCHES

    assert PROBE_BATCHES == defaults.PROBE_BATCHES


def test_defaults_are_torch_free():
    import subprocess
    import sys

    code = "import sys, tui_quantreport.engine.defaults; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_layer_reads_the_defaults():
    import inspect

    from tui_quantreport.engine import pipeline, quantsim
    from tui_quantreport.engine.apply import api, qconfig_target
    from tui_quantreport.engine.detectors.per_channel import BACKEND_DEFAULT_PER_CHANNEL
    from tui_quantreport.engine.quantsim import error_analysis

    assert quantsim.DEFAULT_PROBE_BATCHES == api.DEFAULT_PROBE_BATCHES == defaults.PROBE_BATCHES
    assert inspect.signature(pipeline.calibrated_analysis).parameters["probes"].default == defaults.PROBE_BATCHES
    assert error_analysis.DEFAULT_MIN_GAIN_DB == defaults.MIN_GAIN_DB
    assert tuple(qconfig_target.BACKEND_ENGINE) == defaults.BACKENDS
    assert set(BACKEND_DEFAULT_PER_CHANNEL) == set(defaults.BACKENDS)  # a fact for every backend


def test_the_command_line_reads_the_defaults():
    from tui_quantreport.cli import build_parsers
    from tui_quantreport.cli.calibrate import build_calibrate_parser

    _, report, _ = build_parsers()
    backend = next(a for a in report._actions if a.dest == "backend")
    assert tuple(backend.choices) == defaults.BACKENDS
    assert report.get_default("probe_batches") == defaults.PROBE_BATCHES
    assert report.get_default("min_gain") == build_calibrate_parser().get_default("min_gain") == defaults.MIN_GAIN_DB


def _number(node) -> bool:
    """A literal number other than 0 (0 reads "none", not a default)."""
    return isinstance(node, ast.Constant) and type(node.value) in (int, float) and bool(node.value)


def _named(name: str) -> bool:
    lowered = name.lower().replace("-", "_")
    return ("probes" in lowered or "probe_batch" in lowered or "min_gain" in lowered) and "max" not in lowered


def _spelled_at(node) -> str | None:
    """What ``node`` spells instead of reading ``engine/defaults.py``, if anything."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        if len(values) == len(node.elts) and set(values) == set(defaults.BACKENDS):
            return "spells the backend list"
    elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None and _number(node.value):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and _named(target.id):
                return f"sets {target.id} to {node.value.value!r}"
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
        given = [*node.args.defaults, *node.args.kw_defaults]
        for arg, default in zip(args[len(args) - len(given) :], given, strict=True):
            if default is not None and _number(default) and _named(arg.arg):
                return f"defaults {arg.arg} to {default.value!r}"
    elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
        flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        for keyword in node.keywords:
            if keyword.arg == "default" and _number(keyword.value) and any(map(_named, flags)):
                return f"gives {flags[0]} the default {keyword.value.value!r}"
    return None


def _spelled_defaults(path: Path) -> list[str]:
    """Where a file spells a shared default instead of reading it: the backend list as a literal
    (a tuple, list or set of exactly the backends' names), or a constant, argument or option named
    for probe batches or the minimum gain set to a number."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.name}:{node.lineno} {said}" for node in ast.walk(tree) if (said := _spelled_at(node))]


def test_no_module_spells_a_shared_default():
    package = Path(defaults.__file__).resolve().parent.parent
    spelled = [
        where
        for path in sorted(package.rglob("*.py"))
        if path.resolve() != Path(defaults.__file__).resolve()
        for where in _spelled_defaults(path)
    ]
    assert not spelled, spelled


def test_the_literal_check_finds_a_spelled_default(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "BACKENDS = ('fbgemm', 'x86', 'qnnpack', 'onednn')\n"
        "DEFAULT_PROBES = 4\n"
        "def measure(probe_batches: int = 4): ...\n"
        "def judge(*, min_gain_db: float = 1.0): ...\n"
        "parser.add_argument('--probe-batches', default=4)\n"
    )
    assert len(_spelled_defaults(sample)) == 5
