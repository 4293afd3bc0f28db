"""The quantization simulation, side by side with torch's observers and int8 kernels.

- qparams equal MinMaxObserver / PerChannelMinMaxObserver's for the same ranges;
- SQNR equals torchao's compute_error;
- a single Linear / Conv2d simulated equals torch.ao.nn.quantized's output within one step;
- end-to-end SQNR of a plan equals that of the model prepare_fx/convert_fx really produces;
- the model is left exactly as it was; degenerate data gives reasons, never NaN.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from tui_quantreport.engine import (
    ModelCatalog,
    load_model,
    open_batches,
)
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.export import write_atomic
from tui_quantreport.engine.plan import Plan, PlanError
from tui_quantreport.engine.quantsim import (
    FLOAT,
    SCHEMES,
    ErrorAnalysis,
    MeasurementCancelled,
    Sqnr,
    sqnr_db,
)
from tui_quantreport.engine.quantsim.qparams import (
    activation_qparams,
    affine_qparams,
    fake_quantize_weight,
    symmetric_qparams,
)
from tui_quantreport.engine.session import call_batch

ao = pytest.importorskip("torch.ao.quantization", reason="this torch build has no torch.ao.quantization")

RANGES = [(-3.0, 5.0), (0.0, 6.5), (0.25, 0.75), (-2.0, -0.5), (1.5, 1.5), (0.0, 0.0), (-1e-9, 1e-9), (-40.0, 0.1)]


def _analysis(model, probes, **kw):
    return ErrorAnalysis(model, ModelCatalog.build(model), probes, **kw)


# qparams against torch's observers


@pytest.mark.parametrize(
    "backend,reduce_range", [("x86", True), ("fbgemm", True), ("qnnpack", False), ("onednn", False)]
)
@pytest.mark.parametrize("lo,hi", RANGES)
def test_activation_qparams_equal_minmax_observer(backend, reduce_range, lo, hi):
    observer = ao.MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=reduce_range)
    observer(torch.tensor([lo, hi]))
    scale, zero_point = observer.calculate_qparams()
    ours = activation_qparams(lo, hi, backend)
    assert ours.scale == float(scale)
    assert ours.zero_point == int(zero_point)
    assert (ours.quant_min, ours.quant_max) == (observer.quant_min, observer.quant_max)


def test_per_tensor_weight_qparams_equal_observer():
    torch.manual_seed(0)
    for w in (torch.randn(16, 8), torch.randn(4, 3, 3, 3) * 0.01, torch.zeros(5, 5), torch.rand(3, 4)):
        observer = ao.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
        observer(w)
        scale, zp = observer.calculate_qparams()
        ours_scale, ours_zp = symmetric_qparams(w.amin(), w.amax())
        assert float(ours_scale) == float(scale) and int(ours_zp) == int(zp) == 0
        expected = torch.fake_quantize_per_tensor_affine(w, float(scale), int(zp), -128, 127)
        assert torch.equal(fake_quantize_weight(w, per_channel=False), expected)


@pytest.mark.parametrize("shape,axis", [((16, 8), 0), ((6, 3, 3, 3), 0), ((8, 12), 1)])
def test_per_channel_weight_qparams_equal_observer(shape, axis):
    torch.manual_seed(1)
    w = torch.randn(shape) * torch.logspace(-3, 1, shape[axis]).reshape(
        [-1 if d == axis else 1 for d in range(len(shape))]
    )
    observer = ao.PerChannelMinMaxObserver(ch_axis=axis, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    observer(w)
    scale, zp = observer.calculate_qparams()
    moved = w.movedim(axis, 0).reshape(shape[axis], -1)
    ours_scale, ours_zp = symmetric_qparams(moved.amin(1), moved.amax(1))
    assert torch.equal(ours_scale, scale) and torch.equal(ours_zp.long(), zp.long())
    expected = torch.fake_quantize_per_channel_affine(w, scale, zp.to(torch.int32), axis, -128, 127)
    assert torch.equal(fake_quantize_weight(w, per_channel=True, axis=axis), expected)


def test_affine_qparams_vectorised_equal_per_channel_observer():
    lo = torch.tensor([-1.0, 0.0, 0.5, -3.0])
    hi = torch.tensor([1.0, 2.0, 0.5, -1.0])
    observer = ao.PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.quint8, qscheme=torch.per_channel_affine, reduce_range=True
    )
    observer(torch.stack([lo, hi], dim=1))
    scale, zp = observer.calculate_qparams()
    ours_scale, ours_zp = affine_qparams(lo, hi, 0, 127)
    assert torch.equal(ours_scale, scale) and torch.equal(ours_zp.long(), zp.long())


# SQNR


def test_sqnr_equals_torchao_compute_error():
    utils = pytest.importorskip("torchao.quantization.utils", reason="torchao is not installed")
    torch.manual_seed(2)
    y = torch.randn(64, 32)
    for noise in (1e-1, 1e-3, 0.5):
        yhat = y + noise * torch.randn_like(y)
        assert sqnr_db(y, yhat).db == pytest.approx(float(utils.compute_error(y, yhat)), abs=1e-3)


def test_sqnr_degenerate_cases_have_reasons():
    y = torch.ones(4)
    assert sqnr_db(torch.zeros(4), torch.zeros(4)).reason == "SQNR undefined: the float output is all zeros"
    exact = sqnr_db(y, y.clone())
    assert exact.db is None and exact.infinite and exact.value == math.inf
    assert "NaN" in sqnr_db(torch.tensor([1.0, math.nan]), y[:2]).reason
    assert "quantized output holds NaN" in sqnr_db(y, torch.full((4,), math.inf)).reason


# Single modules against torch's int8 kernels


def _eager_quantized(module: nn.Module, probes, per_channel: bool):
    """The module converted by eager torch.ao (QuantStub -> quantized module -> DeQuantStub)."""
    model = nn.Sequential(ao.QuantStub(), copy.deepcopy(module), ao.DeQuantStub()).eval()
    weight = ao.default_per_channel_weight_observer if per_channel else ao.default_weight_observer
    model.qconfig = ao.QConfig(activation=ao.MinMaxObserver.with_args(reduce_range=True), weight=weight)
    prepared = ao.prepare(model)
    with torch.no_grad():
        for x in probes:
            prepared(x)
    return ao.convert(prepared)


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize(
    "make,shape",
    [(lambda: nn.Linear(24, 16), (32, 24)), (lambda: nn.Conv2d(3, 8, 3, padding=1), (4, 3, 10, 10))],
    ids=["linear", "conv2d"],
)
def test_single_module_matches_torch_int8_within_one_step(make, shape, per_channel):
    torch.backends.quantized.engine = "x86"
    torch.manual_seed(3)
    module = make().eval()
    probes = [torch.randn(shape) * 2 + 0.5 for _ in range(3)]
    converted = _eager_quantized(module, probes, per_channel)
    qmodule = converted[1]
    assert isinstance(qmodule, (ao.nnq.Linear, ao.nnq.Conv2d) if hasattr(ao, "nnq") else nn.Module)
    lo = min(float(x.min()) for x in probes)
    hi = max(float(x.max()) for x in probes)
    analysis = _analysis(module, probes, activation_ranges={"": (lo, hi)})
    scheme = "static_per_channel" if per_channel else "static_per_tensor"
    target = analysis.targets[""]
    quant_input = converted[0]
    assert float(quant_input.scale) == target.qparams.scale and int(quant_input.zero_point) == target.qparams.zero_point
    from tui_quantreport.engine.quantsim.schemes import InputContext

    ctx = InputContext(target.static, analysis.quant_min, analysis.quant_max)
    weight = analysis.quantized_weight("", SCHEMES[scheme])
    with torch.no_grad():
        for x in probes:
            ours = target.kind.call(module, SCHEMES[scheme].input(x, ctx), weight)
            real = converted(x)
            step = float(qmodule.scale)
            # The int8 module emits its output quantized (its output observer's qparams):
            # ours, put on the same grid, is within one step of it.
            on_grid = torch.fake_quantize_per_tensor_affine(ours, step, int(qmodule.zero_point), 0, 127)
            assert (on_grid - real).abs().max() <= step * 1.0001
            assert (ours - real).abs().max() <= step * 1.5


# End to end against prepare_fx / convert_fx


def _fx_quantized_modules(converted: nn.Module) -> set[str]:
    """The fqns convert_fx really turned into int8 modules (fused Conv/Linear+ReLU keep the first name)."""
    return {
        name
        for name, m in converted.named_modules()
        if type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))
        and callable(getattr(m, "weight", None))
    }


#: Samples whose converted model, under a *global* qconfig, quantizes ops the simulation does not
#: model: kept out of the global comparison with the mechanism, measured.
GLOBAL_QCONFIG_GAPS = {
    "large_generated": (
        "a global qconfig gives every LayerNorm, GELU and Sigmoid (fixed qparams 1/256) output and the "
        "functional mul and residual add of 200 blocks their own int8 observer; the simulation models only "
        "Linear/Conv modules and the ops that share their input's observer (15 dB real; 32 dB simulated, "
        "and 31.6 dB real with those ops' qconfig set to None)"
    ),
    "trained_lm": (
        "a global qconfig gives the LayerNorm and GELU outputs and the residual adds of both blocks their "
        "own int8 observer, which the simulation does not model (per channel: 27.6 dB real, 31.3 dB "
        "simulated; 31.3 dB real with LayerNorm, GELU and add set to None)"
    ),
}


def _convert_fx(model: nn.Module, probes, mapping, sample: str):
    quantize_fx = pytest.importorskip("torch.ao.quantization.quantize_fx")
    torch.backends.quantized.engine = "x86"
    example = probes[0] if isinstance(probes[0], tuple) else (probes[0],)
    try:
        prepared = quantize_fx.prepare_fx(copy.deepcopy(model), mapping, example)
        with torch.no_grad():
            for batch in probes:
                call_batch(prepared, batch)
        return quantize_fx.convert_fx(prepared)
    except Exception as exc:  # noqa: BLE001 - the reason goes into the skip message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        pytest.skip(f"prepare_fx/convert_fx cannot handle {sample}: {type(exc).__name__}: {first}")


def _samples() -> list[str]:
    from tui_quantreport.engine import list_samples

    return [s.name for s in list_samples()]


@pytest.mark.parametrize("sample", _samples())
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("mapping_kind", ["plan", "global"])
def test_plan_sqnr_matches_convert_fx(sample, per_channel, mapping_kind):
    """The SQNR of the model convert_fx really produces equals the simulated plan's within 0.5 dB.

    "plan": the QConfigMapping the plan exports (``set_global(None)``, one
    ``set_module_name`` per quantized module: engine/apply/qconfig_target.py).
    "global": one global qconfig, FX's everyday use, simulated with
    ``shared_qparams_ops=True`` (pools, ReLU, ... reading an int8 tensor emit its
    grid: outlier_channels' average pool rounds its means on conv2's output grid,
    38.2 -> 31.3 dB). Either way, the simulated plan quantizes exactly the modules
    convert_fx turned into int8 ones (FX leaves torch.nn containers such as
    nn.TransformerEncoder whole and float).
    """
    if mapping_kind == "global" and sample in GLOBAL_QCONFIG_GAPS:
        pytest.xfail(GLOBAL_QCONFIG_GAPS[sample])
    loaded = load_model(sample)
    model = loaded.model
    if isinstance(model, torch.fx.GraphModule):
        pytest.skip(f"{sample} is a torch.export graph already prepared by PT2E, not an eager model for prepare_fx")
    model.eval()
    probes = list(open_batches(loaded))[:4]
    analysis = _analysis(model, probes, shared_qparams_ops=mapping_kind == "global")
    scheme = "static_per_channel" if per_channel else "static_per_tensor"
    weight = ao.default_per_channel_weight_observer if per_channel else ao.default_weight_observer
    qconfig = ao.QConfig(activation=ao.MinMaxObserver.with_args(reduce_range=True), weight=weight)
    if mapping_kind == "global":
        mapping = ao.QConfigMapping().set_global(qconfig)
    else:
        mapping = ao.QConfigMapping().set_global(None)
        for fqn in analysis.quantizable:
            mapping.set_module_name(fqn, qconfig)
    converted = _convert_fx(model, probes, mapping, sample)
    quantized = _fx_quantized_modules(converted)
    assert quantized and quantized <= set(analysis.quantizable)
    with torch.no_grad():
        y = torch.cat([call_batch(model, b).flatten() for b in probes])
        yq = torch.cat([call_batch(converted, b).flatten() for b in probes])
    real = sqnr_db(y, yq).db
    plan = analysis.plan({fqn: scheme if fqn in quantized else FLOAT for fqn in analysis.quantizable})
    simulated = analysis.plan_sqnr(plan).db
    assert real is not None and simulated is not None
    assert simulated == pytest.approx(real, abs=0.5)


# Plans, sensitivity, restoring the model


def _state(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {name: m.training for name, m in model.named_modules()},
        {name: dict(m._forward_hooks) | dict(m._forward_pre_hooks) for name, m in model.named_modules()},
        {name: "forward" in vars(m) for name, m in model.named_modules()},
    )


def test_measurements_leave_the_model_as_it_was(showcase):
    model, catalog, probes, stats = showcase
    model.train()
    before = _state(model)
    analysis = ErrorAnalysis.from_stats(model, catalog, probes, stats)
    local = analysis.local_sqnr()
    plan = analysis.recommended_plan()
    analysis.plan_sqnr(plan)
    analysis.sensitivity(plan)
    after = _state(model)
    model.eval()
    assert before[1] == after[1] and before[2] == after[2] and before[3] == after[3]
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert set(local) == set(analysis.quantizable)
    assert all(set(v) == set(SCHEMES) for v in local.values())


def test_ranges_say_where_they_came_from(showcase):
    model, catalog, probes, stats = showcase
    with_stats = ErrorAnalysis.from_stats(model, catalog, probes, stats)
    assert {with_stats.range_source(f) for f in with_stats.quantizable} == {"calibration"}
    bare = ErrorAnalysis(model, catalog, probes)
    bare.local_sqnr(advice=False)
    assert {bare.range_source(f) for f in bare.quantizable} == {"probes"}


def test_plan_sqnr_orders_plans_and_float_plan_is_exact(showcase):
    model, catalog, probes, stats = showcase
    analysis = ErrorAnalysis.from_stats(model, catalog, probes, stats)
    everything = analysis.plan({f: "static_per_tensor" for f in analysis.quantizable})
    nothing = everything.with_scheme(analysis.quantizable, FLOAT)
    weight_only = everything.with_scheme(analysis.quantizable, "weight_only")
    assert analysis.plan_sqnr(nothing).infinite
    assert analysis.plan_sqnr(weight_only).value > analysis.plan_sqnr(everything).value
    recommended = analysis.recommended_plan()
    assert set(recommended.modules) == set(analysis.quantizable)
    assert analysis.plan_sqnr(recommended).value >= analysis.plan_sqnr(everything).value


def test_sensitivity_progress_cost_and_cancel(showcase):
    model, catalog, probes, stats = showcase
    analysis = ErrorAnalysis.from_stats(model, catalog, probes, stats)
    plan = analysis.recommended_plan()
    cost = analysis.cost("sensitivity", plan)
    assert cost.forward_passes >= len(plan.quantized) and cost.seconds is not None
    seen = []
    result = analysis.sensitivity(plan, progress=lambda done, total: seen.append((done, total)))
    assert list(result) == list(plan.quantized)
    assert seen[-1] == (len(plan.quantized), len(plan.quantized))
    with pytest.raises(MeasurementCancelled):
        analysis.sensitivity(plan, should_cancel=lambda: True)


def test_plan_json_round_trip_and_errors(tmp_path, showcase):
    model, catalog, probes, stats = showcase
    analysis = ErrorAnalysis.from_stats(model, catalog, probes, stats)
    plan = analysis.recommended_plan()
    plan = plan.with_prediction(analysis.plan_sqnr(plan).db, len(probes))
    path = write_atomic(tmp_path / "plan.json", plan.to_json(), what="plan")
    data = json.loads(path.read_text())
    assert data["format"] == "tui-quantreport.plan/1"
    assert data["model"] == {"class": catalog.class_name, "fingerprint": catalog.fingerprint}
    for entry in data["modules"].values():
        static = entry["scheme"] in ("static_per_tensor", "static_per_channel")
        assert (entry["activation"] is not None) == static
        if static:
            assert entry["activation"]["dtype"] == "quint8" and entry["activation"]["quant_max"] == 127
    loaded = Plan.load(path)
    assert loaded == plan and loaded.predicted_sqnr_db == plan.predicted_sqnr_db
    static = [f for f, s in plan.modules.items() if s in ("static_per_tensor", "static_per_channel")]
    assert {f: loaded.activation[f] for f in static} == {f: plan.activation[f] for f in static}
    bad = tmp_path / "bad.json"
    for text in ("{", '{"format": "x"}', json.dumps({**data, "modules": {"a": {"scheme": "int4"}}})):
        bad.write_text(text)
        with pytest.raises(PlanError) as info:
            Plan.load(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(UserError):
        Plan.load(tmp_path / "missing.json")
    with pytest.raises(UserError):
        plan.with_scheme(["x"], "int4")


# Degenerate data


class _Degenerate(nn.Module):
    def __init__(self):
        super().__init__()
        self.constant_in = nn.Linear(4, 4)
        self.zero_weight = nn.Linear(4, 4)
        self.zero_all = nn.Linear(4, 4, bias=False)
        self.never = nn.Linear(4, 4)
        self.nan_in = nn.Linear(4, 4)
        with torch.no_grad():
            self.zero_weight.weight.zero_()
            self.zero_all.weight.zero_()

    def forward(self, x):
        a = self.constant_in(torch.ones_like(x))
        b = self.zero_weight(x)
        c = self.zero_all(x)
        d = self.nan_in(torch.where(x > 1.5, torch.full_like(x, math.nan), x))
        return a + b + c + d


def test_degenerate_data_gives_reasons_not_nan():
    torch.manual_seed(4)
    model = _Degenerate().eval()
    probes = [torch.randn(8, 4) for _ in range(3)]
    analysis = _analysis(model, probes)
    local = analysis.local_sqnr()
    for fqn, by_scheme in local.items():
        for scheme, value in by_scheme.items():
            assert value.db is None or math.isfinite(value.db), (fqn, scheme)
            assert value.db is not None or value.reason.startswith("SQNR undefined: "), (fqn, scheme)
    assert local["constant_in"]["static_per_tensor"].defined
    assert local["zero_weight"]["weight_only"].infinite
    assert local["zero_all"]["weight_only"].reason == "SQNR undefined: the float output is all zeros"
    assert "never called" in local["never"]["static_per_channel"].reason
    assert "NaN" in local["nan_in"]["dynamic"].reason or "not finite" in local["nan_in"]["dynamic"].reason
    assert "not finite" in local["nan_in"]["static_per_tensor"].reason
    plan = analysis.recommended_plan()
    assert plan.modules["never"] == FLOAT
    result = analysis.plan_sqnr(plan)
    assert result.db is None and "NaN" in result.reason
    json.dumps(plan.to_json_data(), allow_nan=False)


def test_sqnr_is_frozen_plain_data():
    value = Sqnr(12.5)
    assert str(value) == "12.5 dB" and value.defined
    with pytest.raises(AttributeError):
        value.db = 3.0  # type: ignore[misc]


def test_static_outputs_option_float_leaves_the_output_unquantized():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(16, 8)).eval()
    probes = [torch.randn(32, 16) * 3 for _ in range(3)]
    int8 = _analysis(model, probes)
    as_float = _analysis(model, probes, static_outputs="float")
    plan = int8.plan({"0": "static_per_channel"})
    local = as_float.local_sqnr(advice=False)["0"]["static_per_channel"].db
    # Float outputs: the model's output is the module's simulated output, so plan == local.
    assert as_float.plan_sqnr(plan).db == pytest.approx(local, abs=1e-9)
    # int8 outputs (torch.ao's converted Linear): the output is rounded once more.
    assert int8.plan_sqnr(plan).db < local - 0.1
    assert int8.local_sqnr(advice=False)["0"]["static_per_channel"].db == pytest.approx(local, abs=1e-9)
    with pytest.raises(ValueError):
        _analysis(model, probes, static_outputs="int4")


def test_shared_qparams_ops_round_a_pool_on_its_input_grid():
    """With shared_qparams_ops an average pool reading a static module's int8 output re-rounds its
    means on that grid (a global torch.ao qconfig); without it the pool stays float (the plan's mapping)."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv1d(4, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    probes = [torch.randn(16, 4, 32) * 2 for _ in range(3)]
    plain = _analysis(model, probes)
    shared = _analysis(model, probes, shared_qparams_ops=True)
    plan = plain.plan({fqn: "static_per_tensor" for fqn in plain.quantizable})
    assert shared.plan_sqnr(plan).db < plain.plan_sqnr(plan).db - 1.0
    # Only the static modules' int8 outputs have a grid: weight-only plans are unaffected.
    weights_only = plan.with_scheme(plain.quantizable, "weight_only")
    assert shared.plan_sqnr(weights_only).db == pytest.approx(plain.plan_sqnr(weights_only).db, abs=1e-9)
    before = _state(model)
    shared.plan_sqnr(plan.with_scheme(["4"], "dynamic"))
    assert before[3] == _state(model)[3]  # no instance forward left behind


def test_a_weighted_layer_the_simulation_does_not_reproduce_says_so():
    """nn.MultiheadAttention holds in_proj_weight, not weight: its reason names what is simulated,
    not a missing weight."""
    model = nn.Module()
    model.attn = nn.MultiheadAttention(8, 2, batch_first=True)
    analysis = _analysis(model.eval(), [])
    assert analysis.unsupported["attn"].startswith("MultiheadAttention is not simulated")
    assert "no initialized weight" not in analysis.unsupported["attn"]


def test_int8_bits_per_weight_count_the_float32_scales():
    """8 bits a weight plus one float32 scale per output channel (or per tensor)."""
    from tui_quantreport.engine.quantsim import SCHEMES
    from tui_quantreport.engine.quantsim.kinds import kind_of

    kind = kind_of(torch.nn.Linear(1024, 512))
    assert SCHEMES["static_per_channel"].bits_per_weight((512, 1024), kind) == 8 + 32 / 1024
    assert SCHEMES["weight_only"].bits_per_weight((512, 1024), kind) == 8 + 32 / 1024
    assert SCHEMES["static_per_tensor"].bits_per_weight((512, 1024), kind) == 8 + 32 / (512 * 1024)
