"""Degenerate data and models: never a crash, always a clear finding.

Each case of ``docs/detectors.md`` where the reference raises or
returns nonsense: we report a status and a reason instead. Where the reference
raises, the test shows it raising on the same model and batches.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from reference_models import (  # noqa: E402
    DYNAMIC,
    EQUALIZATION,
    OUTLIER,
    PER_CHANNEL,
    PER_TENSOR_QCONFIG,
    QConfigMapping,
    our_run,
    prepare,
    reference_report,
)

from tui_quantreport.engine import ParamError, Session, Settings, Status  # noqa: E402

OBSERVING = (DYNAMIC, EQUALIZATION, OUTLIER)


def run(model, batches, **kwargs):
    """Our report and stats, on the model itself (no copy)."""
    return our_run(model, batches, copy_model=False, **kwargs)


def finding(report, detector, fqn):
    return report.detectors[detector].findings[fqn]


# ------------------------------------------------------------------ constant data


def constant_model() -> nn.Module:
    """Linear "0" (ordinary) then Linear "1" with an all-zero weight and bias (constant output)."""
    torch.manual_seed(50)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
    return model


CONSTANT_BATCHES = [torch.full((8, 4), 2.0) for _ in range(3)]


def test_constant_input_is_classified_constant_with_null_stat():
    report, _ = run(constant_model(), CONSTANT_BATCHES)
    first = finding(report, DYNAMIC, "0")
    assert first.values["pre_observer_data_dist"] == "constant"
    assert first.values["pre_observer_comp_stat"] is None
    # Its output differs per output feature but is the same in every batch: S = 1, stationary.
    assert first.values["post_observer_data_dist"] == "stationary"
    assert first.values["post_observer_comp_stat"] == pytest.approx(1.0)
    assert first.status is Status.OK
    # A constant output (all zeros): no choice can be made, said plainly.
    second = finding(report, DYNAMIC, "1")
    assert second.values["post_observer_data_dist"] == "constant"
    assert second.values["post_observer_comp_stat"] is None
    assert second.values["dynamic_recommended"] is False
    assert second.status is Status.NOT_APPLICABLE
    assert "same single value" in second.reason and "S is undefined" in second.reason


def test_constant_input_reference_raises():
    """The reference's comparison statistic divides by the epoch range: 0 raises."""
    model = constant_model()
    prepared = prepare(model, QConfigMapping().set_global(PER_TENSOR_QCONFIG), CONSTANT_BATCHES[0])
    with pytest.raises(ValueError, match="Range for Epoch is 0"):
        reference_report(prepared, DYNAMIC, CONSTANT_BATCHES)
    with pytest.raises(ValueError, match="range of the input data for module 0 is 0"):
        reference_report(prepared, EQUALIZATION, CONSTANT_BATCHES)


def test_equalization_constant_input_is_not_applicable():
    report, _ = run(constant_model(), CONSTANT_BATCHES)
    f = finding(report, EQUALIZATION, "0")
    assert f.status is Status.NOT_APPLICABLE
    assert "input" in f.reason and "global range 0" in f.reason
    assert f.values["recommended"] is False and f.values["channel_metric"] == []
    # The ranges that led there are still shown.
    assert f.values["input_channel_min"] == [2.0] * 4 == f.values["input_channel_max"]


def test_equalization_zero_weight_is_not_applicable():
    """W == 0 (an all-zero weight): not applicable, naming the weight; the reference raises."""
    torch.manual_seed(51)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        model[1].weight.zero_()
    batches = [torch.randn(16, 4) for _ in range(3)]
    report, _ = run(model, batches)
    f = finding(report, EQUALIZATION, "1")
    assert f.status is Status.NOT_APPLICABLE
    assert "weight" in f.reason and "global range 0" in f.reason
    assert f.values["weight_channel_min"] == [0.0] * 4 == f.values["weight_channel_max"]
    assert finding(report, EQUALIZATION, "0").status in (Status.OK, Status.RECOMMEND)
    prepared = prepare(model, QConfigMapping().set_global(PER_TENSOR_QCONFIG), batches[0])
    with pytest.raises(ValueError, match="range of the weight data for module 1 is 0"):
        reference_report(prepared, EQUALIZATION, batches)


def test_constant_channel_counted_and_not_recommended():
    """Input channel 1 is constant in every batch, channel 3 in batch 0 only.

    Outlier: constant_batches counts both (as the reference does). Equalization:
    i_1 == 0 makes s_1 infinite, so channel 1 is not recommended (the others are
    judged as usual; the reference computes the same).
    """
    torch.manual_seed(52)
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    batches = []
    for b in range(4):
        x = torch.randn(32, 4)
        x[:, 1] = 0.7
        if b == 0:
            x[:, 3] = -1.5
        batches.append(x)
    report, _ = run(model, batches)
    outlier = finding(report, OUTLIER, "0").values
    assert outlier["constant_batches"] == [0, 4, 0, 1]
    assert outlier["batches_used"] == [4, 4, 4, 4]
    assert outlier["percentile_ratio"][1] == pytest.approx(1.0)
    equalization = finding(report, EQUALIZATION, "0")
    assert math.isinf(equalization.values["channel_metric"][1])
    assert equalization.values["channel_recommended"][1] is False
    assert equalization.status in (Status.OK, Status.RECOMMEND)
    prepared = prepare(model, QConfigMapping().set_global(PER_TENSOR_QCONFIG), batches[0])
    reference = reference_report(prepared, OUTLIER, batches)["0"]
    assert reference["constant_batch_counts"].tolist() == outlier["constant_batches"]
    ref_eq = reference_report(prepared, EQUALIZATION, batches)["0"]
    assert ref_eq["input_weight_equalization_recommended"] == equalization.values["channel_recommended"]


# ------------------------------------------------------------------ NaN and infinity


def nan_inf_model():
    torch.manual_seed(53)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()


def nan_inf_batches():
    torch.manual_seed(54)
    batches = [torch.randn(16, 4) for _ in range(3)]
    batches[0][0, 1] = float("nan")
    batches[1][2, 2] = float("inf")
    return batches


def test_nan_and_inf_are_reported_not_raised():
    report, stats = run(nan_inf_model(), nan_inf_batches())
    assert stats.batches == 3
    for fqn in ("0", "2"):
        dynamic = finding(report, DYNAMIC, fqn)
        assert dynamic.status is Status.NOT_APPLICABLE
        assert "NaN or infinite" in dynamic.reason
        assert dynamic.values["post_observer_data_dist"] == "non-finite"
        assert dynamic.values["post_observer_comp_stat"] is None
        assert dynamic.values["dynamic_recommended"] is False
        equalization = finding(report, EQUALIZATION, fqn)
        assert equalization.status is Status.NOT_APPLICABLE
        assert "NaN or infinite" in equalization.reason
        assert equalization.values["recommended"] is False
    for fqn in ("0", "1", "2"):
        assert "NaN or infinite" in finding(report, OUTLIER, fqn).reason
    first = finding(report, OUTLIER, "0").values
    # Channel 1 held a NaN: its ratio is undefined and it is not flagged.
    assert math.isnan(first["percentile_ratio"][1]) and first["outliers_detected"][1] is False
    # Channels that never held one keep ordinary ratios.
    assert math.isfinite(first["percentile_ratio"][0]) and math.isfinite(first["percentile_ratio"][3])
    # Inf alone (no NaN) reaches the ReLU's output: the statistics table marks that point non-finite.
    post = {p.role: p for p in report.modules["0"].points}["post"]
    assert post.calls == 3


def test_nan_point_summary_is_marked_non_finite():
    report, stats = run(nan_inf_model(), nan_inf_batches())
    assert not stats.point("0", "pre").finite  # the stats know
    pre = {p.role: p for p in report.modules["0"].points}["pre"]
    assert pre.calls == 3
    assert pre.finite is False


def test_nan_everywhere_outlier_is_not_ok():
    """A NaN in one batch reaches every channel of the next module: no ratio is defined there.

    Claiming "every channel stays within the threshold" is then false; like the
    other detectors, the finding should say it cannot judge.
    """
    report, _ = run(nan_inf_model(), nan_inf_batches())
    f = finding(report, OUTLIER, "2")
    assert all(math.isnan(r) for r in f.values["percentile_ratio"])
    assert f.status is not Status.OK
    assert "Every channel" not in f.reason


# ------------------------------------------------------------------ no data, no call


def test_zero_batches():
    torch.manual_seed(55)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)).eval()
    report, stats = run(model, [])
    assert stats.batches == 0 and report.batches == 0
    for detector in OBSERVING:
        findings = report.detectors[detector].findings
        assert findings, detector
        assert {f.status for f in findings.values()} == {Status.NOT_OBSERVED}, detector
        assert report.detectors[detector].recommended == []
    # The per-channel detector needs no data: it still judges every weighted module.
    assert {f.status for f in report.detectors[PER_CHANNEL].findings.values()} <= {Status.OK, Status.RECOMMEND}
    assert set(report.detectors[PER_CHANNEL].findings) == {"0", "3"}


class Branchy(nn.Module):
    """``b`` is only called when asked; ``shared`` is called twice per forward."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(56)
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.shared = nn.Linear(4, 4)

    def forward(self, x, use_b: bool = False):
        y = self.a(x)
        if use_b:
            y = self.b(y)
        return self.shared(torch.tanh(self.shared(y)))


def test_module_never_called_is_not_observed():
    report, stats = run(Branchy().eval(), [torch.randn(16, 4) for _ in range(3)])
    for detector in OBSERVING:
        f = finding(report, detector, "b")
        assert f.status is Status.NOT_OBSERVED, detector
        assert "never called" in f.reason
        assert not f.recommended
        assert "b" not in report.detectors[detector].recommended
        assert finding(report, detector, "a").status in (Status.OK, Status.RECOMMEND)
    assert finding(report, DYNAMIC, "b").values["dynamic_recommended"] is False
    assert stats.point("b", "pre").calls == 0
    assert not report.modules["b"].observed


def test_module_called_twice_contributes_both_calls():
    torch.manual_seed(62)
    batches = [torch.randn(16, 4) * (1 + b) for b in range(3)]
    model = Branchy().eval()
    seen = []
    handle = model.shared.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        report, stats = run(model, batches)
    finally:
        handle.remove()
    assert len(seen) == 6
    point = stats.point("shared", "pre")
    assert point.calls == 6 and report.modules["shared"].calls == 6
    ranges = [float(x.max() - x.min()) for x in seen]
    everything = torch.cat(seen)
    expected_s = (sum(ranges) / 6) / float(everything.max() - everything.min())
    values = finding(report, DYNAMIC, "shared").values
    assert values["pre_observer_comp_stat"] == pytest.approx(expected_s, rel=1e-6)
    outlier = finding(report, OUTLIER, "shared").values
    assert outlier["batches_used"] == [6, 6, 6, 6]
    assert outlier["channel_max"] == everything.amax(dim=0).tolist()
    # Module "a" is called once per batch.
    assert stats.point("a", "pre").calls == 3


# ------------------------------------------------------------------ odd inputs


def test_channel_count_changing_between_batches():
    """ch_axis=1 on (batch, tokens, features) with varying token counts: per-channel views are not applicable."""
    torch.manual_seed(57)
    model = nn.Sequential(nn.Linear(6, 4)).eval()
    batches = [torch.randn(2, t, 6) for t in (3, 5, 7)]
    report, stats = run(model, batches, ch_axis=1)
    for detector in (EQUALIZATION, OUTLIER):
        f = finding(report, detector, "0")
        assert f.status is Status.NOT_APPLICABLE, detector
        assert "changed its number of channels" in f.reason
        assert "(2, 3, 6)" in f.reason and "(2, 7, 6)" in f.reason
    dynamic = finding(report, DYNAMIC, "0")
    assert dynamic.status in (Status.OK, Status.RECOMMEND)
    ranges = [float(x.max() - x.min()) for x in batches]
    everything = torch.cat([x.flatten() for x in batches])
    assert dynamic.values["pre_observer_comp_stat"] == pytest.approx(
        (sum(ranges) / 3) / float(everything.max() - everything.min()), rel=1e-6
    )
    assert stats.point("0", "pre").channels is None
    # With the automatic axis (features, the last one) the same batches are fine.
    auto, _ = run(model, batches)
    assert finding(auto, OUTLIER, "0").status in (Status.OK, Status.RECOMMEND)
    assert len(finding(auto, OUTLIER, "0").values["channel_max"]) == 6


def test_integer_input_to_embedding():
    torch.manual_seed(58)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2)).eval()
    batches = [torch.randint(0, 10, (3, 5)) for _ in range(2)]
    report, stats = run(model, batches)
    embedding = finding(report, OUTLIER, "0")
    # Indices are not activations: counted as calls, never judged (their "channels" are positions).
    assert embedding.status is Status.NOT_APPLICABLE
    assert "int64" in embedding.reason and "not an activation" in embedding.reason
    assert stats.point("0", "pre").calls == 2
    assert stats.layout("0", "pre").integer
    for detector in OBSERVING:
        assert finding(report, detector, "1").status in (Status.OK, Status.RECOMMEND), detector


class HFStyle(nn.Module):
    """forward(input_ids=..., attention_mask=...), and a submodule called with a keyword argument."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(59)
        self.embed = nn.Embedding(20, 8)
        self.proj = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids=None, attention_mask=None):
        h = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        h = self.proj(input=h)
        return self.head(h.mean(dim=1))


def test_kwargs_only_inputs():
    torch.manual_seed(63)
    batches = [{"input_ids": torch.randint(0, 20, (4, 6)), "attention_mask": torch.ones(4, 6)} for _ in range(3)]
    model = HFStyle().eval()
    report, stats = run(model, batches)
    assert stats.batches == 3
    for fqn in ("embed", "proj", "head"):
        assert stats.point(fqn, "pre").calls == 3, fqn
    # "proj" got its input only as a keyword: still observed, on the features axis.
    assert stats.point("proj", "pre").channels == 8
    for detector in OBSERVING:
        for fqn in ("proj", "head"):
            assert finding(report, detector, fqn).status in (Status.OK, Status.RECOMMEND), (detector, fqn)


# ------------------------------------------------------------------ the model is left alone


def _hooks(model):
    return {
        fqn: (
            list(m._forward_hooks),
            list(m._forward_pre_hooks),
            list(getattr(m, "_forward_hooks_with_kwargs", {})),
            list(getattr(m, "_forward_pre_hooks_with_kwargs", {})),
        )
        for fqn, m in model.named_modules()
    }


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(before, after):
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_model_left_as_it_was():
    torch.manual_seed(60)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)
    )
    model.train()
    model[3].eval()  # a mixed state must come back as it was
    calls = []
    model[5].register_forward_hook(lambda m, a, o: calls.append("post"))
    model[0].register_forward_pre_hook(lambda m, a: calls.append("pre"))
    hooks, state = _hooks(model), _state(model)
    training = {fqn: m.training for fqn, m in model.named_modules()}
    requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}

    report, stats = run(model, [torch.randn(8, 3, 6, 6) for _ in range(3)])

    assert stats.batches == 3
    assert _hooks(model) == hooks
    _assert_same_state(state, _state(model))
    assert {fqn: m.training for fqn, m in model.named_modules()} == training
    assert {n: p.requires_grad for n, p in model.named_parameters()} == requires_grad
    # The user's own hooks ran during calibration and still run after it.
    assert calls.count("pre") == 3 and calls.count("post") == 3
    model.eval()(torch.randn(1, 3, 6, 6))
    assert calls.count("pre") == 4


def test_eager_prepared_model_observers_untouched():
    """An eager torch.ao prepare'd model: its observers keep their min/max (and histograms) exactly."""
    from torch.ao.quantization import get_default_qconfig

    torch.manual_seed(61)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)).eval()
    model.qconfig = get_default_qconfig("x86")  # HistogramObserver activations, per-channel weights
    prepared = _ao_prepare(model)
    with torch.no_grad():
        for _ in range(2):
            prepared(torch.randn(4, 3, 6, 6))
    observers = {fqn: m for fqn, m in prepared.named_modules() if fqn.endswith("activation_post_process")}
    assert observers
    mins = {fqn: float(m.min_val) for fqn, m in observers.items()}
    assert all(math.isfinite(v) for v in mins.values())
    hooks, state = _hooks(prepared), _state(prepared)

    report, stats = run(prepared, [torch.randn(4, 3, 6, 6) * 100 for _ in range(3)])

    assert stats.batches == 3
    _assert_same_state(state, _state(prepared))
    assert {fqn: float(m.min_val) for fqn, m in observers.items()} == mins
    assert _hooks(prepared) == hooks
    # The calibration data (100x larger) was seen by us, not recorded by the observers.
    assert report.modules["3"].points[0].maximum > 10 * max(float(m.max_val) for m in observers.values())
    # The model's qconfig is read: x86 default weights are per channel.
    assert finding(report, PER_CHANNEL, "0").values["per_channel_used"] is True


def _ao_prepare(model):
    import warnings

    from torch.ao.quantization import prepare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare(copy.deepcopy(model))


# ------------------------------------------------------------------ parameter validation


@pytest.mark.parametrize(
    "detector, name, value, words",
    [
        ("dynamic_vs_static", "tolerance", -0.1, "[0, 1]"),
        ("dynamic_vs_static", "tolerance", 1.5, "[0, 1]"),
        ("equalization", "ratio_threshold", 0, "(0, 1)"),
        ("equalization", "ratio_threshold", 1, "(0, 1)"),
        ("outlier", "reference_percentile", 0, "(0, 1)"),
        ("outlier", "reference_percentile", 1, "(0, 1)"),
        ("outlier", "ratio_threshold", 0.5, ">= 1"),
        ("outlier", "fraction_batches_used_threshold", 1.01, "[0, 1]"),
    ],
)
def test_param_out_of_range(detector, name, value, words):
    with pytest.raises(ParamError) as raised:
        Settings.build(params={detector: {name: value}})
    message = str(raised.value)
    assert name in message and words in message
    # The same sentence from command-line text.
    with pytest.raises(ParamError) as from_text:
        Settings.from_options(params=[f"{detector}.{name}={value}"])
    assert name in str(from_text.value) and words in str(from_text.value)


@pytest.mark.parametrize(
    "detector, name, value",
    [
        ("dynamic_vs_static", "tolerance", 0.0),
        ("dynamic_vs_static", "tolerance", 1.0),
        ("outlier", "ratio_threshold", 1.0),
        ("outlier", "fraction_batches_used_threshold", 0.0),
        ("outlier", "fraction_batches_used_threshold", 1.0),
        ("equalization", "ratio_threshold", 0.999),
    ],
)
def test_param_boundaries_accepted(detector, name, value):
    settings = Settings.build(params={detector: {name: value}})
    full = {"dynamic_vs_static": DYNAMIC, "outlier": OUTLIER, "equalization": EQUALIZATION}[detector]
    assert settings.params[full][name] == value


def test_unknown_backend_lists_the_backends():
    with pytest.raises(ParamError) as raised:
        Settings.build(params={"per_channel": {"backend": "tpu"}})
    message = str(raised.value)
    assert "backend" in message
    for backend in ("fbgemm", "x86", "qnnpack", "onednn"):
        assert backend in message


def test_rejected_batch_names_batch_and_module():
    """Not a detector case, but the other way calibration can fail: a clear error, no crash mid-report."""
    from tui_quantreport.engine import CalibrationError

    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(5, 2)).eval()
    session = Session(model)
    settings = Settings.build()
    with pytest.raises(CalibrationError) as raised:
        session.calibrate([torch.randn(2, 4)], settings)
    assert raised.value.batch == 1 and raised.value.module == "1"
    assert "batch 1" in str(raised.value) and "'1'" in str(raised.value)
    # Our hooks are gone even though calibration failed.
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
def test_quantized_and_sparse_activations_do_not_crash():
    """A converted (quantized) tensor is read through dequantize(); a sparse one is skipped."""

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.quantized_in = nn.Identity()
            self.sparse_in = nn.Identity()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            q = torch.quantize_per_tensor(x, 0.1, 0, torch.quint8)
            self.quantized_in(q)
            self.sparse_in(x.to_sparse())
            return self.fc(x)

    report, stats = run(Mixed().eval(), [torch.rand(3, 4) for _ in range(2)])
    quantized = stats.point("quantized_in", "pre")
    assert quantized.calls == 2 and quantized.channels == 4
    assert stats.point("sparse_in", "pre").calls == 0
    assert finding(report, OUTLIER, "sparse_in").status is Status.NOT_OBSERVED
