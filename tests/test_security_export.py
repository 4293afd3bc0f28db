"""Generated code is data: hostile module names, class names, specs and plan fields go through
every exporter, and the file holds only the exporter's own statements (checked with ``ast``),
printable comments, and the names as literals; running it does nothing else."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from tui_quantreport.engine.plan import ActivationQParams, Plan

pytest.importorskip("torchao", reason="the exports need torchao")

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("torchao", "pt2e", "qconfig_mapping")

#: Names a model can give its modules (nn.ModuleDict keys, add_module): each tries to end a
#: comment, a string or a docstring, or to move the terminal.
HOSTILE = [
    "nl\nimport os; getattr(os, 'system')('touch PWNED_nl')",
    "cr\rgetattr(__import__('os'), 'system')('touch PWNED_cr')",
    'dq"""\nopen("PWNED_doc", "w")\n"""',
    "sq'''\nopen('PWNED_sq', 'w')\n'''",
    "bs\\",
    "nul\x00x",
    "sur\ud800x",
    "uni\u00e9\u4e2d\u202e",
    "esc\x1b]0;title\x07\x1b]52;c;cHduZWQ=\x07",
    "ls\u2028open('PWNED_ls','w')",
    "ff\x0cvt\x0b",
    "brace{__import__('os')}",
    "re:fc",
    "_default",
    "L" * 10_000,
]
BENIGN = [f"m{i}" for i in range(len(HOSTILE))]

MODEL_SOURCE = """
import torch
from torch import nn

NAMES = {names!r}


class {cls}(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleDict({{name: nn.Linear(8, 8) for name in NAMES}})

    def forward(self, x):
        for block in self.blocks.values():
            x = torch.relu(block(x))
        return x


def build_model():
    torch.manual_seed(0)
    return {cls}()


def calibration_batches():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 8, generator=g) for _ in range(2)]
"""


def _model_file(directory: Path, names: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.py"
    path.write_text(MODEL_SOURCE.format(names=names, cls="Hostile"), encoding="utf-8")
    return path


def _plan(names: list[str], model_class: str, source: str) -> Plan:
    schemes = ["dynamic", "static_per_tensor", "weight_only", "static_per_channel", "float"]
    qparams = ActivationQParams(0.02, 3, "quint8", 0, 127)
    modules = {f"blocks.{name}": schemes[i % len(schemes)] for i, name in enumerate(names)}
    activation = {fqn: qparams for fqn, scheme in modules.items() if scheme.startswith("static")}
    return Plan(modules, model_class, "0" * 16, "x86", activation, 2, 12.5, source=source)


def _export(target: str, directory: Path, names: list[str], model_class: str, source: str):
    from tui_quantreport.engine.apply.pt2e_target import export_pt2e
    from tui_quantreport.engine.apply.qconfig_target import export_qconfig_mapping
    from tui_quantreport.engine.apply.torchao_target import export_torchao
    from tui_quantreport.engine.spec import load_model, open_batches

    path = _model_file(directory, names)
    loaded = load_model(str(path))
    first = next(iter(open_batches(loaded)))
    exporter = {"torchao": export_torchao, "pt2e": export_pt2e, "qconfig_mapping": export_qconfig_mapping}[target]
    return path, exporter(loaded.model, _plan(names, model_class, source), str(path), first)


def _shape(tree: ast.Module) -> list[str]:
    """The file's statements with every literal assignment's value blanked: what the exporter's own code is."""
    shape = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            ast.literal_eval(node.value)  # data, and only data
            node = ast.Assign(targets=node.targets, value=ast.Constant(None))
        shape.append(ast.dump(node))
    return shape


def _hostile_dir(tmp_path: Path) -> Path:
    return tmp_path / 'we\'ird""" dir\nx'


@pytest.mark.parametrize("target", TARGETS)
def test_hostile_names_reach_the_file_only_as_literals_and_printable_comments(target, tmp_path):
    hostile_class = 'Evil"""\nimport os\x1b[2J'
    hostile_source = "plan\r\nos.system('touch PWNED_plan')\x00.json"
    _, benign = _export(target, tmp_path / "benign", BENIGN, "Hostile", "plan.json")
    path, export = _export(target, _hostile_dir(tmp_path), HOSTILE, hostile_class, hostile_source)
    text = export.text
    text.encode("utf-8")  # no lone surrogate reaches the file
    assert "\x00" not in text and "\r" not in text and "\x0c" not in text and "\x1b" not in text
    tree = ast.parse(text)
    assert _shape(tree) == _shape(ast.parse(benign.text)), "the file's statements do not depend on the names"
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            assert token.string.isprintable(), token.string
    # The names are in the file as data: exactly the planned ones.
    literals = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)]
    named = {s for s in _strings(literals) if s.startswith("blocks.")}
    plan = _plan(HOSTILE, "", "")
    assert named and named <= set(plan.modules)
    if target == "torchao":
        assert named == set(plan.quantized)
    assert str(path) in _strings(literals)


def _strings(value) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(k) | _strings(v) for k, v in value.items())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


RUN = """
import json, runpy, sys
ns = runpy.run_path(sys.argv[1])  # imports the file (not its __main__ block)
target = sys.argv[2]
if target == "torchao":
    model = ns["quantize"](ns["build_model"]().eval())
    names = sorted(n for n, m in model.named_modules() if type(getattr(m, "weight", None)).__module__.startswith("torchao"))
elif target == "pt2e":
    ns["quantizer"]()
    names = sorted(ns["KEEP_FLOAT"])
else:
    ns["qconfig_mapping"]()
    names = sorted(ns["ASSIGNED"])
print(json.dumps(names))
"""


@pytest.mark.parametrize("target", TARGETS)
def test_running_a_file_for_hostile_names_does_nothing_else(target, tmp_path):
    hostile_class = 'Evil"""\nopen("PWNED_class", "w")'
    path, export = _export(target, _hostile_dir(tmp_path), HOSTILE, hostile_class, "plan\nopen('PWNED_src','w')")
    out = tmp_path / "run"
    out.mkdir()
    written = export.write(out / "export.py")
    before = sorted(os.listdir(out))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(written[0]), target],
        cwd=out,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(os.listdir(out)) == before, "running the file created files"
    assert not list(tmp_path.rglob("PWNED*"))
    names = json.loads(done.stdout.strip().splitlines()[-1])
    quantized = _plan(HOSTILE, "", "").quantized
    if target == "torchao":
        assert names == sorted(quantized)  # exactly the planned modules ("blocks.re:fc" is a name, not a pattern)
    elif target == "qconfig_mapping":
        assert names == sorted(quantized)


def test_the_torchao_json_sidecar_holds_hostile_names_as_json_strings(tmp_path):
    from tui_quantreport.engine.apply.torchao_target import load_config_json

    _, export = _export("torchao", _hostile_dir(tmp_path), HOSTILE, "Hostile", "plan.json")
    written = export.write(tmp_path / "cfg.py")
    config = load_config_json(str(written[1]))
    assert set(config.fqn_to_config) == {e[0] for e in export.recipe["entries"]}
    json.loads(written[1].read_text(encoding="utf-8"))


def test_no_exporter_executes_generated_text():
    """verify applies an export through the library API: nothing that exports or verifies calls exec()
    (the model's own file is run by the spec loader, as Python would run it)."""
    for path in (REPO / "tui_quantreport" / "engine" / "apply").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("exec", "eval")
        ]
        assert not calls, f"{path} calls {calls[0].func.id}()"  # type: ignore[attr-defined]
