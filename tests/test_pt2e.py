"""Exported graphs (torch.export / PT2E), torchao-quantized models, .pt2 files, and no hard
dependency on torch.ao.quantization."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from pt2e_models import CALIBRATION, float_model, save_program
from torch import nn

from sample_models.pt2e_prepared import per_tensor_weight_config
from tui_quantreport.cli import main
from tui_quantreport.engine import Session, Settings, Status, evaluate
from tui_quantreport.engine.graph import is_exported_graph

pt2e = pytest.importorskip("torchao.quantization.pt2e.quantize_pt2e", reason="torchao's PT2E flow is not installed")
x86 = pytest.importorskip("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer")


@pytest.fixture(autouse=True)
def _trust_our_own_pt2_files():
    """These tests open .pt2 files they saved themselves: as --trust-pickle does."""
    from tui_quantreport.engine.graph_file import trust_pickle

    trust_pickle()
    yield
    trust_pickle(False)


ROOT = Path(__file__).resolve().parent.parent


def _batches() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    # Growing scale: some points non-stationary; a few outlier channels.
    batches = []
    for i in range(8):
        x = torch.randn(4, 3, 8, 8, generator=generator) * (1.0 + 0.6 * i)
        x[:, 1] *= 6.0
        batches.append(x)
    return batches


def _exported(model: nn.Module | None = None) -> torch.fx.GraphModule:
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(
            model or float_model(), (torch.randn(2, 3, 8, 8),), dynamic_shapes=({0: batch},)
        ).module()


def _prepared(config=None, configure=None) -> torch.fx.GraphModule:
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(config or x86.get_default_x86_inductor_quantization_config())
    if configure is not None:
        configure(quantizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pt2e.prepare_pt2e(_exported(), quantizer)


def _report(model, batches=None):
    session = Session(model)
    settings = Settings.build()
    stats = session.calibrate(batches or _batches(), settings)
    return session, stats, evaluate(session.catalog, stats, settings)


def _close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


# Loading and showing -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["exported", "prepared"])
def test_tree_is_rebuilt_from_the_module_stacks(kind):
    graph = _exported() if kind == "exported" else _prepared()
    assert is_exported_graph(graph)
    catalog = Session(graph).catalog
    users = {fqn: m.class_name for fqn, m in catalog.modules.items() if not m.is_quant_helper}
    assert users == {
        "": "ConvLinear",
        "conv": "Conv2d",
        "relu": "ReLU",
        "pool": "AdaptiveAvgPool2d",
        "flatten": "Flatten",
        "head": "Sequential",
        "head.0": "Linear",
        "head.1": "ReLU",
        "head.2": "Linear",
        "norm": "LayerNorm",
    }
    assert catalog.modules["head"].children == ("head.0", "head.1", "head.2")
    assert catalog.modules["head.0"].is_weighted and catalog.modules["head.0"].is_linear
    assert catalog.modules["conv"].is_weighted and not catalog.modules["conv"].is_linear
    assert catalog.axis_rules["norm"][:2] == ("norm", 4) and not catalog.modules["norm"].is_weighted
    assert catalog.kinds["head.0"].name == "linear" and catalog.kinds["conv"].name == "conv"
    assert "_guards_fn" not in catalog.modules  # export's guard: not the user's module, not a helper
    helpers = {fqn: m.class_name for fqn, m in catalog.modules.items() if m.is_quant_helper}
    if kind == "exported":
        assert helpers == {}
    else:
        assert "PerChannelMinMaxObserver" in helpers.values() and "HistogramObserver" in helpers.values()
        assert all(catalog.modules[h].parent == "" and h in catalog.modules[""].children for h in helpers)


def test_calibrating_a_graph_leaves_it_as_it_was(monkeypatch):
    graph = _prepared()
    graph(torch.randn(2, 3, 8, 8))  # observers have state worth keeping
    code = graph.code
    metas = [
        (n.name, str(n.op), str(n.target), repr(sorted(n.meta.keys())), repr(n.meta.get("nn_module_stack")))
        for n in graph.graph.nodes
    ]
    state = {k: v.clone() for k, v in graph.state_dict().items()}
    observer_attrs = {
        name: {k: v for k, v in vars(m).items() if not k.startswith("_") and not isinstance(v, torch.Tensor)}
        for name, m in graph.named_modules()
        if "activation_post_process" in name
    }

    def refuse(self, mode=True):
        raise AssertionError("train()/eval() called on an exported graph")

    monkeypatch.setattr(type(graph), "train", refuse)
    monkeypatch.setattr(type(graph), "eval", refuse)
    _report(graph)
    monkeypatch.undo()
    assert graph.code == code
    assert metas == [
        (n.name, str(n.op), str(n.target), repr(sorted(n.meta.keys())), repr(n.meta.get("nn_module_stack")))
        for n in graph.graph.nodes
    ]
    after = graph.state_dict()
    assert set(after) == set(state)
    for key, value in state.items():
        assert torch.equal(after[key], value), key
    for name, attrs in observer_attrs.items():
        module = graph.get_submodule(name)
        assert {k: v for k, v in vars(module).items() if k in attrs} == attrs


# Node-level observation: the same numbers as the eager model -------------------------


@pytest.mark.parametrize("kind", ["exported", "prepared"])
def test_graph_and_eager_give_the_same_statistics_and_findings(kind):
    graph = _exported() if kind == "exported" else _prepared()
    _, eager_stats, eager = _report(float_model())
    _, graph_stats, graphed = _report(graph)

    assert set(graph_stats.points) == set(eager_stats.points)
    for key, ours in graph_stats.points.items():
        theirs = eager_stats.points[key]
        assert ours.calls == theirs.calls, key
        assert ours.shapes == theirs.shapes, key
        assert ours.global_min == theirs.global_min and ours.global_max == theirs.global_max, key
        assert _close(ours.comparison_stat, theirs.comparison_stat), key
        assert torch.equal(ours.channel_min, theirs.channel_min) and torch.equal(
            ours.channel_max, theirs.channel_max
        ), key
    assert {k: v.axis for k, v in graph_stats.layouts.items()} == {k: v.axis for k, v in eager_stats.layouts.items()}
    assert set(graph_stats.weights) == set(eager_stats.weights)
    for fqn, w in graph_stats.weights.items():
        assert torch.equal(w.channel_min, eager_stats.weights[fqn].channel_min)
        assert torch.equal(w.channel_max, eager_stats.weights[fqn].channel_max)

    flagged = 0
    for name, det in eager.detectors.items():
        mine = graphed.detectors[name]
        assert dict(mine.findings.statuses) == dict(det.findings.statuses), name
        for fqn in det.findings:
            a, b = mine.findings[fqn].values, det.findings[fqn].values
            assert set(a) == set(b), (name, fqn)
            # What the quantizer annotated is the graph's own fact ("static" there, None eagerly).
            for key in set(b) - {"quantizer_input"}:
                assert _close(a[key], b[key]), (name, fqn, key, a[key], b[key])
        flagged += len(det.recommended)
    assert flagged >= 3  # the comparison covers recommendations, not only "ok"


def _measured(model, stats, catalog_session):
    from tui_quantreport.engine.quantsim import ErrorAnalysis
    from tui_quantreport.engine.quantsim.availability import measurable
    from tui_quantreport.engine.severity import measure

    subject, catalog, skipped = measurable(catalog_session)
    return measure(ErrorAnalysis.from_stats(subject, catalog, _batches()[:4], stats, "x86"), sensitivity=True), skipped


@pytest.mark.parametrize("kind", ["exported", "prepared"])
def test_graph_and_eager_give_the_same_measured_error(kind, monkeypatch):
    """Issue 9 item 3: the SQNR work applies unchanged. The graph is measured on a copy whose
    Linear/Conv nodes are real modules again and whose leaves are submodules: local SQNR per
    scheme, the advice variants, who quantizes each tensor, the recommended plan, its end-to-end
    SQNR and the sensitivity equal the eager model's; the user's graph is left as it was."""
    graph = _exported() if kind == "exported" else _prepared()
    eager_session, eager_stats, _ = _report(float_model())
    graph_session, graph_stats, _ = _report(graph)
    code = graph.code
    state = {k: v.clone() for k, v in graph.state_dict().items()}

    def refuse(self, mode=True):
        raise AssertionError("train()/eval() called on the user's exported graph")

    monkeypatch.setattr(type(graph), "train", refuse)
    monkeypatch.setattr(type(graph), "eval", refuse)
    theirs, _ = _measured(float_model(), eager_stats, eager_session)
    ours, skipped = _measured(graph, graph_stats, graph_session)
    monkeypatch.undo()

    assert skipped == {}
    assert set(ours.modules) == {"conv", "head.0", "head.2"} and ours.modules == theirs.modules
    assert ours.quantizer_of == theirs.quantizer_of and ours.quantizer_of["pool"] == "head.0"
    assert ours.plan == theirs.plan and ours.plan_sqnr_db == theirs.plan_sqnr_db is not None
    assert ours.modules["head.2"].sensitivity_db == theirs.modules["head.2"].sensitivity_db is not None
    assert graph.code == code
    assert all(torch.equal(graph.state_dict()[k], v) for k, v in state.items())


def test_the_report_on_a_graph_carries_the_measured_error(capsys):
    code = main(["report", "pt2e_prepared", "--format", "json", "--batches", "4"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    measured = data["measured"]
    assert set(measured["modules"]) == {"conv1", "conv2", "fc1", "fc2"}
    assert measured["plan"]["sqnr_db"] is not None
    assert "not available" not in err


def test_a_node_without_module_stack_is_shown_under_the_root_and_observed():
    graph = _prepared()
    relu = next(n for n in graph.graph.nodes if n.name == "relu")
    saved = relu.meta.pop("nn_module_stack")
    try:
        session, stats, report = _report(graph)
    finally:
        relu.meta["nn_module_stack"] = saved
    assert "relu" not in report.modules  # the module it came from is unknown now
    unattributed = [m for m in report.modules.values() if m.parent == "" and m.class_name.endswith(".relu")]
    assert [m.fqn for m in unattributed] == ["[relu]"] and unattributed[0].is_leaf
    assert unattributed[0].fqn in session.catalog.modules[""].children
    point = stats.point(unattributed[0].fqn, "pre")
    assert point is not None and point.calls == len(_batches())
    assert report.detectors["outlier_detector"].findings.statuses[unattributed[0].fqn] in (Status.OK, Status.RECOMMEND)


def test_a_rejected_batch_names_the_original_module():
    from tui_quantreport.engine import CalibrationError

    session = Session(_prepared())
    with pytest.raises(CalibrationError, match=r"batch 1 was rejected") as info:
        session.calibrate([torch.randn(2, 5, 8, 8)], Settings.build())
    assert "conv" in str(info.value) or "Guard" in str(info.value)


# Detectors read the quantizer's choices ------------------------------------------------


def test_per_channel_reads_the_weight_observer_the_quantizer_attached():
    def configure(quantizer):
        quantizer.set_module_name_qconfig("conv", per_tensor_weight_config())
        quantizer.set_module_name_qconfig("head.2", None)

    session, _, report = _report(_prepared(configure=configure))
    schemes = session.catalog.weight_schemes
    assert schemes["conv"].per_channel is False and "MinMaxObserver" in schemes["conv"].description
    assert schemes["head.0"].per_channel is True and "PerChannelMinMaxObserver" in schemes["head.0"].description
    assert schemes["head.2"].source == "none"
    statuses = report.detectors["per_channel_detector"].findings.statuses
    assert statuses == {"conv": Status.RECOMMEND, "head.0": Status.OK, "head.2": Status.NOT_APPLICABLE}


def test_dynamic_vs_static_reads_the_dynamic_annotation():
    graph = _prepared(x86.get_default_x86_inductor_quantization_config(is_dynamic=True))
    session, _, report = _report(graph)
    assert session.catalog.activation_schemes == {"conv": "dynamic", "head.0": "dynamic", "head.2": "dynamic"}
    findings = report.detectors["dynamic_vs_static_detector"].findings
    for fqn in ("conv", "head.0", "head.2"):
        assert findings[fqn].values["quantizer_input"] == "dynamic"
        assert findings[fqn].status is Status.OK
        assert "dynamic" in findings[fqn].reason
    # The same data on the static graph: the non-stationary ones are recommended dynamic.
    _, _, static = _report(_prepared())
    dynamic_now = {
        f for f, s in static.detectors["dynamic_vs_static_detector"].findings.statuses.items() if s is Status.RECOMMEND
    }
    assert dynamic_now & {"head.0", "head.2"}, "the test data should make a Linear non-stationary"
    assert static.detectors["dynamic_vs_static_detector"].findings["head.0"].values["quantizer_input"] == "static"


def test_converted_graph_shows_quantized_modules_and_recommends_nothing_for_them():
    graph = _prepared()
    for batch in _batches():
        graph(batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = pt2e.convert_pt2e(graph)
    _, stats, report = _report(converted)
    for fqn in ("conv", "head.0", "head.2"):
        assert report.modules[fqn].quantized.startswith("int8 weights per channel")
        for det in report.detectors.values():
            if fqn in det.findings:
                assert det.findings.statuses[fqn] is Status.NOT_APPLICABLE
                assert det.findings[fqn].headline == "Already quantized"
    assert set(stats.weights) == {"conv", "head.0", "head.2"}  # dequantized from the int8 constants
    assert stats.point("relu", "pre").calls == len(_batches())


# torchao quantize_ ---------------------------------------------------------------------


def test_torchao_quantized_modules_are_shown_and_not_recommended_again(capsys, tmp_path):
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    quantize_(model[0], Int8WeightOnlyConfig())
    batches = [torch.randn(4, 16) * (i + 1) for i in range(6)]
    _, _, report = _report(model, batches)
    assert report.modules["0"].quantized == "int8 weights per row (Int8Tensor)"
    assert report.modules["2"].quantized == ""
    for det in report.detectors.values():
        if "0" in det.findings:
            assert det.findings.statuses["0"] is Status.NOT_APPLICABLE
            assert det.findings["0"].headline == "Already quantized" and "Int8Tensor" in det.findings["0"].reason
    assert report.detectors["per_channel_detector"].findings.statuses["2"] is Status.OK
    assert "0" not in report.recommended_modules()

    path = tmp_path / "quantized.py"
    path.write_text(
        "import torch\nfrom torch import nn\n"
        "from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_\n"
        "def build_model():\n    torch.manual_seed(0)\n"
        "    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))\n"
        "    quantize_(m, Int8DynamicActivationInt8WeightConfig())\n    return m\n"
        "def calibration_batches():\n    return [torch.randn(4, 16) for _ in range(3)]\n"
    )
    assert main(["report", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    from report_shape import validate_report

    validate_report(data)
    for det in data["detectors"].values():
        assert all(entry["status"] != "recommend" for fqn, entry in det["modules"].items() if fqn in ("0", "2"))


# .pt2 files ----------------------------------------------------------------------------


def test_a_saved_program_loads_and_reports(tmp_path, capsys):
    from report_shape import validate_report

    program = tmp_path / "convlinear.pt2"
    save_program(program)
    assert main(["report", str(program), "--format", "json"]) == 0  # its saved example inputs
    data = json.loads(capsys.readouterr().out)
    validate_report(data)
    assert data["model"]["class"] == "ConvLinear" and data["calibration"]["batches"] == 1
    assert set(data["detectors"]["per_channel_detector"]["modules"]) == {"conv", "head.0", "head.2"}

    (tmp_path / "cal.py").write_text(CALIBRATION)
    assert main(["report", str(program), "--calibration", str(tmp_path / "cal.py"), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    validate_report(data)
    assert data["calibration"]["batches"] == 5


def test_a_factory_may_return_an_exported_program(tmp_path, capsys):
    path = tmp_path / "program.py"
    path.write_text(
        "import torch\nfrom torch import nn\n"
        "def build_model():\n    torch.manual_seed(0)\n"
        "    return torch.export.export(nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval(), (torch.randn(3, 4),))\n"
        "def calibration_batches():\n    return [torch.randn(3, 4) for _ in range(3)]\n"
    )
    assert main(["report", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"]["class"] == "Sequential"
    assert set(data["detectors"]["per_channel_detector"]["modules"]) == {"0"}


def _rewrite(src: Path, dst: Path, change) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, change(info.filename, zin.read(info.filename)))


def _newer_schema(name: str, data: bytes) -> bytes:
    if "/models/" in name and name.endswith(".json"):
        doc = json.loads(data)
        doc["schema_version"]["major"] += 50
        return json.dumps(doc).encode()
    return data


def _newer_archive(name: str, data: bytes) -> bytes:
    return b"99" if name.endswith("archive_version") else data


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("garbage", "is not a readable .pt2 archive"),
        ("truncated", "is not a readable .pt2 archive"),
        ("empty", "is not a readable .pt2 archive"),
        ("other_zip", "is a zip archive but not a torch.export program"),
        ("newer_schema", "was saved by a newer torch"),
        ("newer_archive", "saved by a newer torch"),
        ("missing", "does not exist"),
    ],
)
def test_a_bad_pt2_file_is_one_line_and_exit_2(tmp_path, capsys, case, expected):
    good = tmp_path / "good.pt2"
    save_program(good)
    bad = tmp_path / f"{case}.pt2"
    if case == "garbage":
        bad.write_bytes(b"definitely not a zip archive" * 10)
    elif case == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "other_zip":
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("hello.txt", "hi")
    elif case == "newer_schema":
        _rewrite(good, bad, _newer_schema)
    elif case == "newer_archive":
        _rewrite(good, bad, _newer_archive)
    for argv in (["report", str(bad)], [str(bad)]):
        capsys.readouterr()
        assert main(argv) == 2
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, captured.err
        assert lines[0].startswith("tui-quantreport: error: ") and expected in lines[0], lines[0]
        assert "Traceback" not in captured.err + captured.out


# The bundled sample --------------------------------------------------------------------


def test_the_pt2e_sample_is_listed_and_finds_what_its_description_says(capsys):
    assert main(["samples"]) == 0
    assert "pt2e_prepared" in capsys.readouterr().out
    assert main(["report", "pt2e_prepared", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    per_channel = data["detectors"]["per_channel_detector"]["modules"]
    assert per_channel["conv2"]["status"] == "recommend"
    assert per_channel["conv1"]["status"] == "ok" and per_channel["fc1"]["status"] == "ok"
    assert per_channel["fc2"]["status"] == "not_applicable"
    dynamic = data["detectors"]["dynamic_vs_static_detector"]["modules"]
    assert dynamic["fc1"]["status"] == "recommend" and dynamic["fc1"]["quantizer_input"] == "static"


# No hard dependency on torch.ao.quantization -------------------------------------------


def test_the_engine_imports_nothing_from_torch_ao_at_import_time():
    """No module-level import of torch.ao (or torchao) anywhere in the engine."""
    offenders = []
    for path in (ROOT / "tui_quantreport" / "engine").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(("torch.ao", "torchao"))]
    assert offenders == []


BLOCKED = r"""
import sys, importlib.abc
import torch  # torch itself may load torch.ao.quantization: drop it, and refuse it from now on
for name in [n for n in sys.modules if n.startswith(("torch.ao.quantization", "torch.ao.nn", "torchao"))]:
    del sys.modules[name]

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.startswith(("torch.ao.quantization", "torch.ao.nn", "torchao")):
            raise ImportError(f"{name} is not in this torch build")
        return None

sys.meta_path.insert(0, Block())
import torch.ao
for attr in ("quantization", "nn"):
    if hasattr(torch.ao, attr):
        delattr(torch.ao, attr)
from torch import nn
from tui_quantreport.engine import DETECTORS, Session, Settings, evaluate
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
for m in (model, torch.export.export(model, (torch.randn(3, 4),)).module()):
    session = Session(m)
    stats = session.calibrate([torch.randn(3, 4) for _ in range(3)], Settings.build())
    report = evaluate(session.catalog, stats, Settings.build())
    assert list(report.detectors) == list(DETECTORS), report
assert not [n for n in sys.modules if n.startswith(("torch.ao.quantization", "torchao"))]
print("ok")
"""


def test_the_engine_works_on_a_torch_without_torch_ao_quantization():
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_helpers_are_recognized_by_class_name_for_torch_ao_and_torchao():
    from torch.ao.quantization import FakeQuantize, MinMaxObserver
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize as AoFakeQuantize
    from torchao.quantization.pt2e.observer import HistogramObserver

    from tui_quantreport.engine.modules import is_quant_helper

    for helper in (MinMaxObserver(), FakeQuantize(), HistogramObserver(), AoFakeQuantize()):
        assert is_quant_helper(helper), type(helper)
    assert not is_quant_helper(nn.Linear(2, 2))


def test_an_fx_traced_graph_is_observed_as_an_eager_model():
    traced = torch.fx.symbolic_trace(float_model())
    assert not is_exported_graph(traced)
    _, stats, _ = _report(traced)
    _, eager_stats, _ = _report(float_model())
    assert set(stats.points) == set(eager_stats.points)


def test_the_app_accepts_a_calibration_file_without_build_model(tmp_path):
    from tui_quantreport.engine import SpecError
    from tui_quantreport.engine.spec import BATCHES_FACTORY, check_spec

    (tmp_path / "cal.py").write_text(CALIBRATION)
    check_spec(str(tmp_path / "cal.py"), BATCHES_FACTORY)
    with pytest.raises(SpecError, match="defines no build_model"):
        check_spec(str(tmp_path / "cal.py"))


def test_a_qat_prepared_graph_is_observed_without_touching_it():
    class ConvBN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.relu, self.fc = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(self.relu(self.bn(self.conv(x))).mean((2, 3)))

    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config(is_qat=True))
    batch = torch.export.Dim("batch", min=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = torch.export.export(ConvBN().train(), (torch.randn(4, 3, 8, 8),), dynamic_shapes=({0: batch},)).module()
        graph = pt2e.prepare_qat_pt2e(graph, quantizer)
    state = {k: v.clone() for k, v in graph.state_dict().items()}
    session, stats, report = _report(graph, [torch.randn(4, 3, 8, 8) for _ in range(3)])
    modules = session.catalog.modules
    assert {f: m.class_name for f, m in modules.items() if not m.is_quant_helper} == {
        "": "ConvBN",
        "conv": "Conv2d",
        "bn": "BatchNorm2d",
        "relu": "ReLU",
        "fc": "Linear",
    }
    assert {m.class_name for m in modules.values() if m.is_quant_helper} == {"FusedMovingAvgObsFakeQuantize"}
    assert session.catalog.weight_schemes["conv"].per_channel and session.catalog.weight_schemes["fc"].per_channel
    assert stats.point("fc", "pre").calls == 3
    after = graph.state_dict()
    assert all(torch.equal(after[k], v) for k, v in state.items())  # BN running stats and fake quantizers

    # Measured on a converted copy moved to eval behaviour: fc is simulated; conv, whose weight the
    # QAT graph computes (BatchNorm folded in), is listed with why, never silently dropped.
    from tui_quantreport.engine.quantsim.availability import analysis_for

    code = graph.code
    analysis = analysis_for(session, [torch.randn(4, 3, 8, 8) for _ in range(2)], stats, "x86")
    assert analysis.quantizable == ("fc",)
    assert "computed in the graph" in analysis.unsupported["conv"]
    local = analysis.local_sqnr()
    assert local["fc"]["dynamic"].db is not None and local["conv"]["dynamic"].reason.startswith("SQNR undefined")
    assert graph.code == code and all(torch.equal(graph.state_dict()[k], v) for k, v in state.items())


def test_the_report_on_a_pt2e_model_has_no_library_chatter():
    """Importing torchao on a CPU build logs "Failed to load ..._C_mxfp8...so" (its CUDA kernels) and
    torch logs a pytree deprecation: noise the user cannot act on, kept off stderr while a model
    file is imported; our own note about unmeasured graphs stays."""
    proc = subprocess.run(
        [sys.executable, "-m", "tui_quantreport", "report", "pt2e_prepared", "--batches", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Failed to load" not in proc.stderr and "register_constant" not in proc.stderr
    assert "SmallConvLinear" in proc.stdout


@pytest.mark.parametrize(
    "argv", [["config", "pt2e_prepared", "--target", "torchao", "--output", "OUT"], ["verify", "pt2e_prepared"]]
)
def test_config_and_verify_on_a_graph_are_one_line(argv, capsys, tmp_path):
    """A plan is applied to the eager model a graph came from: said in one line, nothing written."""
    argv = [str(tmp_path / "q.torchao.py") if a == "OUT" else a for a in argv]
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "is an exported graph" in err and "convert_pt2e" in err
    assert list(tmp_path.iterdir()) == []


def test_a_gpt2_style_graph_is_measured_as_its_eager_model():
    """HF Conv1D (view, addmm, view) and the embeddings, one of them tied to lm_head, become real
    modules in the measured copy: every module's SQNR and the plan equal the eager model's."""
    transformers = pytest.importorskip("transformers")
    from tui_quantreport.engine.quantsim import ErrorAnalysis
    from tui_quantreport.engine.quantsim.availability import analysis_for
    from tui_quantreport.engine.severity import measure

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    lm = transformers.GPT2LMHeadModel(config).eval()

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, ids):
            return self.lm(input_ids=ids).logits

    batches = [torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = torch.export.export(Logits(), (batches[0],)).module()
    graph_session, graph_stats, _ = _report(graph, batches)
    from tui_quantreport.engine.apply.targets import TARGETS

    target = TARGETS["torchao-cpu"]  # the default target, named on both sides
    analysis = analysis_for(graph_session, batches[:2], graph_stats, target=target)
    assert analysis.unsupported == {}
    ours = measure(analysis)
    eager_session, eager_stats, _ = _report(Logits(), batches)
    theirs = measure(
        ErrorAnalysis.from_stats(Logits(), eager_session.catalog, batches[:2], eager_stats, "x86", target=target)
    )
    assert {"lm.transformer.wte", "lm.transformer.h.0.attn.c_attn", "lm.lm_head"} <= set(ours.modules)
    assert ours.modules == theirs.modules and ours.plan_sqnr_db == theirs.plan_sqnr_db
