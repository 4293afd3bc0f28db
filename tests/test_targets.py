"""Deployment targets: the registry, each target's activation recipe held against the real
library (torch.ao's dynamic Linear, PT2E's X86InductorQuantizer, torchao's quantize_), the
recommended plan using only what the target runs, and --target on the command line.

"Predicted" is the simulation with the target's recipe; "achieved" is the real library's output
on the same probe batches (``verify``, or the real kernel side by side).
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import one_line, run
from target_models import batches_token_linear, build_token_linear
from torch import nn

from tui_quantreport.engine.apply.targets import NAMES, TARGETS, TargetError, default_target, resolve
from tui_quantreport.engine.plan import Plan, PlanError

MODELS = Path(__file__).parent / "target_models.py"
TINY = str(Path(__file__).parent / "models" / "tiny.py")


def spec(name: str) -> tuple[str, str]:
    """(model spec, calibration spec) of a case in tests/target_models.py."""
    return f"{MODELS}:build_{name}", f"{MODELS}:batches_{name}"


def sqnr(reference: list[torch.Tensor], approx: list[torch.Tensor]) -> float:
    signal = sum(float((r.double() ** 2).sum()) for r in reference)
    noise = sum(float(((r.double() - a.double()) ** 2).sum()) for r, a in zip(reference, approx))
    return 10 * math.log10(signal / noise)


def simulated(model: nn.Module, probes: list, plan: dict[str, str], target) -> float:
    """The simulation's end-to-end SQNR of ``plan`` with ``target``'s recipe (ranges from the probes)."""
    from tui_quantreport.engine.modules import ModelCatalog
    from tui_quantreport.engine.quantsim import ErrorAnalysis

    analysis = ErrorAnalysis(model, ModelCatalog.build(model), probes, target=target)
    result = analysis.plan_sqnr(analysis.plan(plan))
    assert result.db is not None, result.reason
    return result.db


# The registry.


def test_every_target_declares_its_exporter_applier_recipe_and_what_it_runs():
    import importlib

    assert list(TARGETS) == [
        "torchao-cpu",
        "torchao-cuda",
        "pt2e-x86-static",
        "pt2e-x86-dynamic",
        "qconfig-x86",
        "qconfig-qnnpack",
    ]
    for target in TARGETS.values():
        for path in (target.exporter, target.applier_path):
            module, _, function = path.partition(":")
            assert callable(getattr(importlib.import_module(module), function)), path
        assert target.recipe.activation_bits in (7, 8) and target.supported and target.file_label
    # The old `config --target` names still select a target.
    assert resolve("torchao").name == "torchao-cpu" and resolve("qconfig_mapping").name == "qconfig-x86"
    assert resolve("pt2e").name == "pt2e-x86-static" and {"torchao", "pt2e", "qconfig_mapping"} <= set(NAMES)
    assert default_target("cpu").name == "torchao-cpu" and default_target("cuda:0").name == "torchao-cuda"
    with pytest.raises(TargetError, match="unknown target 'tpu'; choose one of torchao-cpu, "):
        resolve("tpu")


def test_the_targets_and_schemes_facts_are_one_torch_free_registry_under_the_same_names():
    """The facts (core) and what exports, applies and simulates them (apply, quantsim) are
    registered under the same names, in the same order, and the facts are the very objects the
    apply layer and the simulation use; the facts load without torch."""
    from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS, SCHEME_TITLES
    from tui_quantreport.engine.core.targets import TARGET_FACTS, TargetFacts, resolve_facts
    from tui_quantreport.engine.quantsim.schemes import SCHEMES

    assert list(SCHEMES) == list(SCHEME_FACTS)
    assert all(scheme.facts is SCHEME_FACTS[name] for name, scheme in SCHEMES.items())
    assert list(SCHEME_TITLES) == list(SCHEME_FACTS)  # every scheme has its words, torch-free
    assert all(scheme.title == SCHEME_TITLES[name] for name, scheme in SCHEMES.items())
    assert list(TARGETS) == list(TARGET_FACTS)
    for name, target in TARGETS.items():
        facts = TARGET_FACTS[name]
        assert isinstance(target, TargetFacts)
        assert all(getattr(target, f) == getattr(facts, f) for f in TargetFacts.__dataclass_fields__)
    planned_static = ["static_per_tensor", "static_per_channel", "dynamic"]
    assert resolve("pt2e", None).name == resolve_facts("pt2e").name == "pt2e-x86-static"
    assert resolve_facts("pt2e", planned_static).name == "pt2e-x86-static"
    assert resolve_facts("pt2e", ["dynamic", "static_per_tensor"]).name == "pt2e-x86-dynamic"
    code = (
        "import sys, tui_quantreport.engine.core.targets, tui_quantreport.engine.core.scheme_facts, "
        "tui_quantreport.engine.core.recipes, tui_quantreport.engine.core.library, "
        "tui_quantreport.engine.apply.targets; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr


def test_runs_gives_a_reason_for_each_scheme_a_target_does_not_run():
    cpu, pt2e, pt2e_dyn, qx86 = (
        TARGETS[n] for n in ("torchao-cpu", "pt2e-x86-static", "pt2e-x86-dynamic", "qconfig-x86")
    )
    conv2d, linear, embedding = ("conv", (8, 3, 3, 3)), ("linear", (8, 4)), ("embedding", (10, 4))
    for scheme in ("weight_only", "dynamic", "static_per_channel", "static_per_tensor"):
        assert cpu.runs(scheme, *linear) is None
        assert "Conv2d is left float" in (cpu.runs(scheme, *conv2d) or "")
    assert cpu.runs("weight_only", *embedding) is None and cpu.runs("dynamic", *embedding)
    assert pt2e.runs("static_per_channel", *conv2d) is None and "no weight-only" in (
        pt2e.runs("weight_only", *linear) or ""
    )
    assert "this target is static" in (pt2e.runs("dynamic", *linear) or "")
    assert pt2e_dyn.runs("dynamic", *linear) is None and pt2e_dyn.runs("dynamic", *conv2d)
    assert "no dynamic quantized convolution" in (qx86.runs("dynamic", *conv2d) or "")
    assert "no int8 weight-only" in (qx86.runs("weight_only", *linear) or "")


# Dynamic activations: one scale per tensor (torch.ao, PT2E) or per token (torchao).


@pytest.mark.parametrize(("name", "engine"), [("qconfig-x86", "x86"), ("qconfig-qnnpack", "qnnpack")])
def test_torch_ao_dynamic_linear_on_btf_inputs_is_predicted_within_half_a_db(name, engine):
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model, probes = build_token_linear(), batches_token_linear()
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        real = quantize_dynamic(copy.deepcopy(model), {nn.Linear: per_channel_dynamic_qconfig})
        assert type(real.fc) is torch.ao.nn.quantized.dynamic.Linear
        with torch.no_grad():
            achieved = sqnr([model(x) for x in probes], [real(x) for x in probes])
    finally:
        torch.backends.quantized.engine = previous
    predicted = simulated(model, probes, {"fc": "dynamic"}, TARGETS[name])
    assert abs(predicted - achieved) < 0.5, (predicted, achieved)
    # torchao's per-token recipe would be far off for the same kernel: the recipe is the target's.
    per_token = simulated(model, probes, {"fc": "dynamic"}, TARGETS["torchao-cpu"])
    assert per_token - achieved > 3.0, (per_token, achieved)


def test_pt2e_dynamic_is_per_tensor_and_predicted_within_half_a_db():
    from tui_quantreport.engine.pipeline import load_subject, verify_plan

    model_spec, calibration = spec("token_linear")
    result = verify_plan(load_subject(model_spec, None, calibration, target="pt2e-x86-dynamic"))
    assert result.target == "pt2e-x86-dynamic" and result.quantized == ["fc"]
    assert result.export_predicted_db is not None and result.achieved_db is not None
    assert abs(result.achieved_db - result.export_predicted_db) < 0.5, result.to_text()
    assert result.predicted_db == pytest.approx(result.export_predicted_db)  # one number: the plan's


def test_torchao_linear_on_4d_inputs_is_quantized_per_token(tmp_path):
    """torchao's dynamic config takes one scale per token for inputs of rank >= 3 (4-D included),
    and so does the simulation for torchao-cpu: predicted = achieved."""
    from tui_quantreport.engine.modules import ModelCatalog
    from tui_quantreport.engine.pipeline import load_subject, verify_plan
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.spec import load_model

    model_spec, calibration = spec("linear_4d")
    catalog = ModelCatalog.build(load_model(model_spec, calibration).model)
    plan = Plan({"fc": "dynamic"}, catalog.class_name, catalog.fingerprint, probe_batches=4, target="torchao-cpu")
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan.to_json_data()))
    subject = load_subject(model_spec, str(path), calibration)
    assert subject.target is not None and subject.target.name == "torchao-cpu"  # the plan's target
    result = verify_plan(subject)
    assert "PerRow()" in subject.target.export(subject).text
    assert result.achieved_db is not None and result.export_predicted_db is not None
    assert abs(result.achieved_db - result.export_predicted_db) < 0.5, result.to_text()
    # One scale per tensor (what the simulation did for 4-D before) is more than 1 dB off.
    per_tensor = simulated(subject.model, subject.batches(4), {"fc": "dynamic"}, TARGETS["qconfig-qnnpack"])
    assert abs(per_tensor - result.achieved_db) > 1.0, (per_tensor, result.achieved_db)


# PT2E and torch.ao static: pooling on its input's grid, fused ReLU ranges, 7-bit activations.


@pytest.mark.parametrize("case", ["pool", "relu", "relu_module"])
def test_pt2e_static_is_predicted_within_1_db_of_verify(case):
    from tui_quantreport.engine.pipeline import load_subject, verify_plan

    model_spec, calibration = spec(case)
    subject = load_subject(model_spec, None, calibration, target="pt2e-x86-static")
    assert subject.plan.target == "pt2e-x86-static"
    assert set(subject.plan.quantized.values()) <= {"static_per_channel", "static_per_tensor"}
    result = verify_plan(subject)
    assert result.achieved_db is not None and result.export_predicted_db is not None
    assert abs(result.achieved_db - result.export_predicted_db) < 1.0, result.to_text()
    assert not [f for f in result.findings if f.kind == "gap"]


def test_pt2e_pooling_on_its_inputs_grid_is_what_makes_the_prediction_right():
    import dataclasses

    from tui_quantreport.engine.apply.quantsim_bridge import predict_export
    from tui_quantreport.engine.pipeline import load_subject, verify_plan

    model_spec, calibration = spec("pool")
    subject = load_subject(model_spec, None, calibration, target="pt2e-x86-static")
    result = verify_plan(subject)
    assert result.achieved_db is not None
    target = subject.target
    assert target is not None
    float_pool = dataclasses.replace(target, recipe=dataclasses.replace(target.recipe, shared_qparams_ops=False))
    without, _ = predict_export(subject, target.export(subject), float_pool, subject.batches(4))
    assert without is not None and without - result.achieved_db > 1.0, (without, result.achieved_db)


@pytest.mark.parametrize(
    ("model", "what"),
    [
        ("convnet_per_tensor", "conv + nn.ReLU outputs quantized after the ReLU where pooling reads them"),
        ("showcase", "torch.cat's inputs quantized on one shared grid"),
    ],
)
def test_pt2e_static_on_the_samples_achieves_the_prediction_within_1_db(model, what):
    """PT2E's X86InductorQuantizer (global config, per-channel weights) quantizes a conv + nn.ReLU
    output on the range after the ReLU where an int8 op (pooling, flatten, cat) reads it, and all
    of torch.cat's inputs with one observer; without modeling them the prediction is 2-3 dB high."""
    from tui_quantreport.engine.pipeline import load_subject, verify_plan

    subject = load_subject(model, None, None, target="pt2e-x86-static")
    result = verify_plan(subject)
    assert result.achieved_db is not None and result.export_predicted_db is not None
    assert abs(result.achieved_db - result.export_predicted_db) < 1.0, (what, result.to_text())


def test_torch_ao_fused_relu_range_after_a_functional_relu():
    """torch.ao's converted conv + F.relu emits int8 on the range after the ReLU: with the recipe's
    fused ReLU ranges the prediction is the achieved SQNR; without, more than 1 dB low."""
    import dataclasses

    from tui_quantreport.engine.apply.quantsim_bridge import predict_export
    from tui_quantreport.engine.pipeline import load_subject, verify_plan

    model_spec, calibration = spec("relu")
    subject = load_subject(model_spec, None, calibration, target="qconfig-x86")
    result = verify_plan(subject)
    assert result.achieved_db is not None and result.export_predicted_db is not None
    assert abs(result.achieved_db - result.export_predicted_db) < 0.5, result.to_text()
    target = subject.target
    assert target is not None
    unfused = dataclasses.replace(target, recipe=dataclasses.replace(target.recipe, fused_relu=False))
    without, _ = predict_export(subject, target.export(subject), unfused, subject.batches(4))
    assert without is not None and result.achieved_db - without > 1.0, (without, result.achieved_db)


# torchao-cpu, the default: the plan only uses what it runs; predicted = achieved.


def test_the_torchao_cpu_plan_keeps_conv2d_float_and_says_why(capsys):
    model_spec, calibration = spec("pool")
    code, out, err = run(
        capsys, "report", model_spec, "--calibration", calibration, "--format", "json", "--probe-batches", "2"
    )
    assert code == 0, err
    measured = json.loads(out)["measured"]
    assert measured["target"] == "torchao-cpu" and measured["plan"]["target"] == "torchao-cpu"
    assert measured["plan"]["modules"]["conv"]["scheme"] == "float"  # no weight-only Conv2d
    int8 = ("static_per_tensor", "static_per_channel", "dynamic", "weight_only")
    refused = [r for r in measured["target_refused"] if r["scheme"] in int8]
    assert {(r["module"], r["scheme"]) for r in refused} == {("conv", s) for s in int8}
    assert all("Conv2d is left float" in r["reason"] for r in refused)
    # The formats whose kernels need CUDA are refused by the CPU target, on every module, with why.
    cuda_only = {r["scheme"] for r in measured["target_refused"] if "CUDA" in r["reason"]}
    assert {"fp8_dynamic_per_row", "nvfp4"} <= cuda_only
    code, text, err = run(capsys, "report", model_spec, "--calibration", calibration, "--probe-batches", "2")
    assert code == 0 and "recommended plan for target torchao-cpu" in text
    assert "Not run by torchao-cpu (never in the plan):" in text and "weight_only on conv: torchao 0.18" in text
    # Another target, another plan: PT2E static quantizes the conv.
    code, out, err = run(
        capsys,
        "report",
        model_spec,
        "--calibration",
        calibration,
        "--format",
        "json",
        "--probe-batches",
        "2",
        "--target",
        "pt2e-x86-static",
    )
    measured = json.loads(out)["measured"]
    assert measured["target"] == "pt2e-x86-static"
    assert measured["plan"]["modules"]["conv"]["scheme"].startswith("static")


def test_verify_on_the_showcase_for_torchao_cpu_achieves_the_prediction(capsys):
    code, out, err = run(capsys, "verify", "showcase", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["target"] == "torchao-cpu"
    assert abs(data["achieved_sqnr_db"] - data["predicted_sqnr_db"]) < 0.5, data
    assert abs(data["achieved_sqnr_db"] - data["export_predicted_sqnr_db"]) < 0.5, data
    assert not data["changes"] and not data["findings"]  # nothing planned that torchao skips


def test_verify_on_a_small_transformers_model_for_torchao_cpu_achieves_the_prediction():
    pytest.importorskip("transformers")
    from tui_quantreport.engine.pipeline import load_subject, verify_plan

    model_spec, calibration = spec("tiny_llama")
    subject = load_subject(model_spec, None, calibration)
    assert subject.plan.target == "torchao-cpu" and len(subject.plan.quantized) >= 10
    result = verify_plan(subject)
    assert result.achieved_db is not None and result.predicted_db is not None
    assert abs(result.achieved_db - result.predicted_db) < 0.5, result.to_text()
    assert not result.changes and not result.findings


# The plan file and the command line.


def test_the_plan_file_records_its_target_and_old_plans_still_read(tmp_path):
    plan = Plan({"fc": "dynamic"}, "M", "abc", "qnnpack", target="torchao-cpu")
    data = plan.to_json_data()
    assert data["target"] == "torchao-cpu"
    assert Plan.from_json_data(data).target == "torchao-cpu"
    old = dict(data)
    del old["target"]
    assert Plan.from_json_data(old).target == ""
    assert "target" not in Plan.from_json_data(old).to_json_data()
    bad = dict(data, target="tpu")
    with pytest.raises(PlanError, match="unknown target 'tpu'"):
        Plan.from_json_data(bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["report", TINY, "--target", "tpu"],
        ["verify", "showcase", "--target", "tpu"],
        ["config", "showcase", "--target", "tpu", "--output", "x.py"],
        [TINY, "--target", "tpu"],
    ],
)
def test_a_bad_target_is_one_line_and_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    one_line(code, err, "--target", "unknown target 'tpu'", "torchao-cpu")


def test_pt2e_folds_batchnorm_into_the_conv_before_quantizing_its_weight():
    """prepare_pt2e folds an eval conv -> BatchNorm into the conv's weight before it quantizes it;
    with per-tensor weights the folded weight's range is what counts: the simulation folds too
    (the target's recipe) and lands on verify's achieved SQNR; unfolded it is far too high."""
    import dataclasses

    from tui_quantreport.engine.apply.quantsim_bridge import predict_export
    from tui_quantreport.engine.pipeline import load_subject, verify_plan

    model_spec = str(Path(__file__).parent / "format_models.py")
    subject = load_subject(
        f"{model_spec}:build_conv_bn", None, f"{model_spec}:batches_conv_bn", target="pt2e-x86-static"
    )
    per_tensor = subject.plan.with_schemes({"features.0": "static_per_tensor", "features.3": "static_per_tensor"})
    subject = dataclasses.replace(subject, plan=per_tensor)
    result = verify_plan(subject)
    assert result.achieved_db is not None and result.export_predicted_db is not None
    assert abs(result.achieved_db - result.export_predicted_db) < 1.0, result.to_text()
    target = subject.target
    assert target is not None and target.recipe.fold_batchnorm
    unfolded = dataclasses.replace(target, recipe=dataclasses.replace(target.recipe, fold_batchnorm=False))
    without, _ = predict_export(subject, target.export(subject), unfolded, subject.batches(4))
    assert without is not None and without - result.achieved_db > 3.0, (without, result.achieved_db)


def test_batchnorm_folding_keeps_the_float_model_and_its_names():
    from format_models import batches_conv_bn, build_conv_bn

    from tui_quantreport.engine.quantsim.batchnorm_fold import conv_bn_pairs, fold_batchnorm

    model = build_conv_bn()
    assert conv_bn_pairs(model) == [("features.0", "features.1"), ("features.3", "features.4")]
    before = model.features[0].weight.detach().clone()
    folded = fold_batchnorm(model)
    assert folded is not model and torch.equal(model.features[0].weight, before)  # the original is untouched
    assert [n for n, _ in folded.named_modules()] == [n for n, _ in model.named_modules()]
    assert not torch.equal(folded.features[0].weight, model.features[0].weight)
    x = batches_conv_bn()[0]
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    plain = build_token_linear()  # nothing to fold: the model itself
    assert fold_batchnorm(plain) is plain
