"""The one plan (``engine/plan.py``): torch-free, one reader of ``plan/1`` with one set of rules,
and the same bytes written for the same plan wherever it is made."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

import tui_quantreport.engine.apply.targets  # noqa: F401  (registers the target names)
import tui_quantreport.engine.quantsim.schemes  # noqa: F401  (registers the scheme names)
from tui_quantreport.engine.errors import ParamError
from tui_quantreport.engine.plan import ActivationQParams, Plan, PlanError, read_plan_file

QP = ActivationQParams(0.02, 3, "quint8", 0, 127)


def _plan(**changes) -> Plan:
    plan = Plan(
        {"fc1": "static_per_tensor", "fc2": "dynamic", "head": "float"},
        "Net",
        "2:abc",
        "x86",
        {"fc1": QP, "fc2": QP},
        4,
        29.25,
        "torchao-cpu",
    )
    return replace(plan, **changes)


def test_the_plan_module_imports_no_torch():
    code = (
        "import sys, tui_quantreport.engine.plan, tui_quantreport.engine.apply.targets; "
        "print(sorted(m for m in ('torch', 'numpy', 'torchao') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_json_is_pinned_and_reads_back():
    text = _plan().to_json()
    assert json.loads(text) == {
        "format": "tui-quantreport.plan/1",
        "model": {"class": "Net", "fingerprint": "2:abc"},
        "backend": "x86",
        "target": "torchao-cpu",
        "probe_batches": 4,
        "predicted_sqnr_db": 29.25,
        "modules": {
            "fc1": {
                "scheme": "static_per_tensor",
                "activation": {"scale": 0.02, "zero_point": 3, "dtype": "quint8", "quant_min": 0, "quant_max": 127},
            },
            "fc2": {"scheme": "dynamic", "activation": None},  # only a static scheme records its qparams
            "head": {"scheme": "float", "activation": None},
        },
    }
    again = Plan.from_json_data(json.loads(text), "p.json")
    assert again == _plan() and again.to_json() == text and again.source == "p.json"
    assert again.static_activation == {"fc1": QP} and again.activation_of("fc2") is None


def test_edits_keep_the_qparams_and_drop_the_prediction():
    plan = _plan().with_schemes({"fc2": "static_per_channel", "absent": "dynamic"})
    assert dict(plan.modules) == {"fc1": "static_per_tensor", "fc2": "static_per_channel", "head": "float"}
    assert plan.activation_of("fc2") == QP and plan.predicted_sqnr_db is None and plan.probe_batches == 4
    assert plan.with_scheme(["fc1"], "float").quantized == {"fc2": "static_per_channel"}
    with pytest.raises(ParamError):
        _plan().with_scheme(["fc1"], "int3")
    with pytest.raises(ParamError):
        _plan(modules={"fc1": "int3"})


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"format": "tui-quantreport.plan/2"}, "format"),
        ({"model": {"class": "Net"}}, "'model'"),
        ({"backend": "tpu"}, "unknown backend 'tpu'"),
        ({"target": ""}, "unknown target ''"),
        ({"target": "tpu"}, "unknown target 'tpu'"),
        ({"modules": {"fc1": {"scheme": "int3"}}}, "scheme 'int3'"),
        ({"modules": {"fc1": {"scheme": "static_per_tensor", "activation": None}}}, "no calibrated"),
        ({"modules": {"fc1": {"scheme": "dynamic", "activation": {"scale": -1}}}}, "'activation'"),
        ({"probe_batches": None}, "probe_batches"),
        ({"probe_batches": True}, "probe_batches"),
        ({"probe_batches": 1_000_001}, "probe_batches"),
        ({"predicted_sqnr_db": "29"}, "predicted_sqnr_db"),
    ],
)
def test_one_set_of_rules_each_refusal_one_line(change, fragment):
    data = {**_plan().to_json_data(), **change}
    with pytest.raises(PlanError, match=fragment) as info:
        Plan.from_json_data(data, "evil\x1b[2J.json")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_a_plan_file_for_the_app_is_read_within_bounds(tmp_path):
    path = tmp_path / "a.plan.json"
    path.write_text(_plan().to_json())
    data, where = read_plan_file(f"  {path}  ")
    assert data == _plan().to_json_data() and where == str(path.resolve())
    for text, fragment in (("", "give the path"), (str(tmp_path / "missing.json"), "does not exist")):
        with pytest.raises(PlanError, match=fragment):
            read_plan_file(text)
    path.write_text('{"format": "other"}')
    with pytest.raises(PlanError, match="not a tui-quantreport plan"):
        read_plan_file(str(path))
    path.write_text("[" * 50 + "]" * 50)
    with pytest.raises(PlanError, match="nested"):
        Plan.load(path)
