"""Calibration sessions: progress, cancelling, errors, and models torch.ao already prepared."""

import warnings

import pytest
import torch
from torch import nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import prepare_fx

from tui_quantreport.engine import (
    CalibrationCancelled,
    CalibrationError,
    Session,
    Settings,
    Stats,
    evaluate,
    load_model,
    open_batches,
)
from tui_quantreport.engine.report import Status


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


def test_progress_reports_every_batch_with_the_total():
    session = Session(_model())
    seen = []
    stats = session.calibrate([torch.randn(3, 4)] * 5, Settings.build(), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert stats.batches == 5


def test_max_batches_limits_calibration_and_unknown_length_is_none():
    session = Session(_model())
    seen = []
    batches = (torch.randn(3, 4) for _ in range(10))
    stats = session.calibrate(batches, Settings.build(), max_batches=3, progress=lambda d, t: seen.append((d, t)))
    assert stats.batches == 3
    assert seen[-1] == (3, 3)
    seen.clear()
    session.calibrate(
        (torch.randn(3, 4) for _ in range(2)), Settings.build(), progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(1, None), (2, None)]


def test_cancel_between_batches_removes_hooks_and_restores_mode():
    model = _model().train()
    session = Session(model)
    done = []
    with pytest.raises(CalibrationCancelled):
        session.calibrate(
            [torch.randn(3, 4)] * 10,
            Settings.build(),
            progress=lambda d, t: done.append(d),
            should_cancel=lambda: len(done) >= 2,
        )
    assert done == [1, 2]
    assert model.training and all(m.training for m in model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_rejected_batch_names_batch_module_and_cause():
    session = Session(_model())
    batches = [torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 7)]
    with pytest.raises(CalibrationError) as caught:
        session.calibrate(batches, Settings.build())
    error = caught.value
    assert error.batch == 3 and error.module == "0"
    assert str(error).startswith("batch 3 was rejected in module '0' (Linear): RuntimeError: mat1 and mat2")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in session.model.modules())


def test_calibration_runs_in_eval_mode_without_grad():
    seen = {}

    class Probe(nn.Module):
        def forward(self, x):
            seen["training"] = self.training
            seen["grad"] = torch.is_grad_enabled()
            return x

    model = nn.Sequential(nn.Linear(2, 2), Probe()).train()
    session = Session(model)
    session.calibrate([torch.randn(1, 2)], Settings.build())
    assert seen == {"training": False, "grad": False}
    assert model.training


def test_module_called_twice_per_batch_counts_both_calls():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(self.fc(x))

    session = Session(Twice())
    stats = session.calibrate([torch.randn(2, 3)] * 4, Settings.build())
    assert stats.point("fc", "pre").calls == 8


def test_fx_prepared_model_observers_are_told_apart_and_left_untouched():
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (torch.randn(2, 4),))
    before = {k: v.clone() for k, v in prepared.state_dict().items()}
    session = Session(prepared)
    helpers = [fqn for fqn, m in session.catalog.modules.items() if m.is_quant_helper]
    assert helpers and all(fqn.startswith("activation_post_process_") for fqn in helpers)
    settings = Settings.build()
    stats = session.calibrate([torch.randn(5, 4) for _ in range(3)], settings)
    report = evaluate(session.catalog, stats, settings)
    outlier = report.detectors["outlier_detector"].findings
    assert not set(helpers) & set(outlier)  # observers are not judged as user modules
    after = prepared.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_prepared_model_per_channel_reads_the_qconfig():
    loaded = load_model("convnet_per_tensor")
    session = Session(loaded.model)
    settings = Settings.build(["per_channel"])
    report = evaluate(session.catalog, Stats.empty(), settings)
    findings = report.detectors["per_channel_detector"].findings
    assert findings and all(f.status is Status.RECOMMEND for f in findings.values())
    assert all(
        f.values
        == {"per_channel_supported": True, "per_channel_used": False, "weight_only": False, "weight_row_range": None}
        for f in findings.values()
    )


def test_untraceable_sample_with_keyword_batches_calibrates():
    loaded = load_model("untraceable")
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(loaded.model)
    session = Session(loaded.model)
    settings = Settings.build()
    stats = session.calibrate(open_batches(loaded), settings)
    report = evaluate(session.catalog, stats, settings)
    assert stats.batches > 0
    assert any(
        f.status is Status.OK or f.recommended for f in report.detectors["dynamic_vs_static_detector"].findings.values()
    )


def test_evaluation_before_calibration_reports_everything_not_observed():
    session = Session(_model())
    report = evaluate(session.catalog, Stats.empty(), Settings.build())
    dyn = report.detectors["dynamic_vs_static_detector"].findings
    assert {f.status for f in dyn.values()} == {Status.NOT_OBSERVED}
    assert {f.status for f in report.detectors["outlier_detector"].findings.values()} == {Status.NOT_OBSERVED}
    # Per-channel needs no data: on x86 the planned default is already per channel.
    assert report.recommended_modules() == []


def test_changing_an_observed_parameter_marks_it_stale():
    session = Session(_model())
    settings = Settings.build()
    stats = session.calibrate([torch.randn(6, 4)] * 3, settings)
    assert evaluate(session.catalog, stats, settings).stale_params == ()
    changed = settings.with_param("outlier", "reference_percentile", 0.9)
    report = evaluate(session.catalog, stats, changed)
    assert report.stale_params == ("outlier_detector.reference_percentile",)
    finding = report.detectors["outlier_detector"].findings["0"]
    assert finding.status is Status.NOT_APPLICABLE and "calibrate again" in finding.reason
    # A threshold is applied from the kept stats: nothing stale.
    assert evaluate(session.catalog, stats, settings.with_param("outlier", "ratio_threshold", 9)).stale_params == ()
    # A detector that was off during calibration needs data; per-channel needs none.
    only_outlier = session.calibrate([torch.randn(6, 4)] * 3, Settings.build(["outlier"]))
    assert evaluate(session.catalog, only_outlier, Settings.build()).stale_params == (
        "dynamic_vs_static_detector",
        "input_weight_equalization_detector",
        "dead_channel_detector",
        "under_calibrated_detector",
    )
    assert evaluate(session.catalog, stats, settings.with_enabled("per_channel", False)).stale_params == ()


def test_open_batches_keeps_the_length_of_a_list_source():
    loaded = load_model("drifting_mlp")
    batches = open_batches(loaded)
    assert len(batches) == 24
    assert sum(1 for _ in batches) == 24


def test_ranked_modules_put_the_most_flagged_first():
    loaded = load_model("showcase")
    session = Session(loaded.model)
    settings = Settings.build()
    report = evaluate(session.catalog, session.calibrate(open_batches(loaded), settings), settings)
    ranked = report.ranked_modules()
    counts = [len(detectors) for _, detectors in ranked]
    assert counts == sorted(counts, reverse=True) and counts[0] >= 3
    assert {fqn for fqn, _ in ranked} == set(report.recommended_modules())


def test_calibrate_records_the_settings_that_decided_what_was_observed():
    session = Session(_model())
    settings = Settings.build(["outlier"]).with_param("outlier", "reference_percentile", 0.9)
    stats = session.calibrate([torch.randn(6, 4)] * 2, settings)
    assert stats.observed == {"ch_axis": None, "outlier_detector": True, "outlier_detector.reference_percentile": 0.9}
    assert evaluate(
        session.catalog, stats, settings.with_param("outlier", "reference_percentile", 0.5)
    ).stale_params == ("outlier_detector.reference_percentile",)


# -- the grouped per-batch path (small tensors held to the end of the batch) -------------------


def _same_number(a, b):
    return a == b or (a != a and b != b)  # NaN equals NaN here


def _assert_same_stats(grouped: Stats, direct: Stats) -> None:
    """Bit for bit: counts, shapes, min/max, percentile terms; the range sum within float rounding."""
    assert grouped.batches == direct.batches
    assert grouped.points.keys() == direct.points.keys()
    assert dict(grouped.layouts) == dict(direct.layouts)
    for key, a in grouped.points.items():
        b = direct.points[key]
        assert (a.calls, a.shapes, a.axis, a.empty) == (b.calls, b.shapes, b.axis, b.empty), key
        assert _same_number(a.global_min, b.global_min) and _same_number(a.global_max, b.global_max), key
        assert _same_number(a.range_sum, b.range_sum) or abs(a.range_sum - b.range_sum) <= 1e-12 * abs(b.range_sum)
        for x, y in ((a.channel_min, b.channel_min), (a.channel_max, b.channel_max)):
            assert (x is None) == (y is None), key
            if x is not None:
                assert x.dtype == y.dtype and torch.equal(x.nan_to_num(7.0), y.nan_to_num(7.0)), key
        assert a.reduced.keys() == b.reduced.keys(), key
        for reducer, result in a.reduced.items():
            ours, theirs = result.state()[0], b.reduced[reducer].state()[0]
            assert ours.keys() == theirs.keys()
            for name, tensor in ours.items():
                assert torch.equal(tensor.nan_to_num(7.0), theirs[name].nan_to_num(7.0)), (key, reducer, name)


def _both_paths(monkeypatch, model, batches, settings=None):
    """(stats with small tensors grouped, stats with every tensor reduced at once), fresh sessions."""
    from tui_quantreport.engine import observer as observer_module

    settings = settings or Settings.build()
    grouped = Session(model).calibrate(batches, settings)
    with monkeypatch.context() as m:
        m.setattr(observer_module, "SMALL_NUMEL", 0)
        direct = Session(model).calibrate(batches, settings)
    return grouped, direct


class _Twice(nn.Module):
    """A module called twice per batch, an integer input, a 1-D and a float64 activation."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.act = nn.ReLU()
        self.emb = nn.Embedding(10, 6)
        self.norm = nn.LayerNorm(6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        y = self.act(self.fc(x)) + self.emb((x.nan_to_num(0.0, 0.0, 0.0).abs() * 3).clamp(max=9).long()[:, 0])
        y = self.act(self.fc(y))  # fc and act: a second call in the same batch
        y = self.norm(y)
        return self.out(y).double().float() + self.out(y[0])  # a 1-D call of out


@pytest.mark.parametrize("name", ["drifting_mlp", "tiny_transformer", "untraceable", "large_generated", "showcase"])
def test_grouped_path_gives_the_stats_of_the_direct_path(monkeypatch, name):
    loaded = load_model(name)
    batches = list(open_batches(loaded))[:4]
    grouped, direct = _both_paths(monkeypatch, loaded.model, batches)
    _assert_same_stats(grouped, direct)


def test_grouped_path_handles_repeated_calls_integers_nan_and_zeros(monkeypatch):
    torch.manual_seed(3)
    model = _Twice().eval()
    batches = [torch.randn(5, 6) * (i + 1) for i in range(5)]
    batches[1][2, 3] = float("nan")
    batches[2][:, 1] = 0.0
    batches[3][0, 0] = float("inf")
    grouped, direct = _both_paths(monkeypatch, model, batches)
    _assert_same_stats(grouped, direct)
    assert grouped.point("fc", "pre").calls == 10


class _MutatesAfter(nn.Module):
    """fc1's output is modified in place after fc1 returned it (an in-place activation after it)."""

    def __init__(self, always: bool = True):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)
        self.always = always

    def forward(self, x):
        y = self.fc1(x)
        if self.always or x[0, 0] > 10:  # the third batch only (its marker): learned late
            y.mul_(-2.0).add_(1.0)
        return self.fc2(y)


@pytest.mark.parametrize("always", [True, False])
def test_a_held_tensor_modified_in_place_is_measured_as_it_was_seen(monkeypatch, always):
    """fc1's output is seen at fc1's post point and then changed in place: its _version moves,
    so it is never read late; the batch is measured again with that point reduced at once."""
    torch.manual_seed(4)
    batches = [torch.randn(6, 4) for _ in range(4)]
    batches[2][0, 0] = 20.0
    model = _MutatesAfter(always).eval()
    grouped, direct = _both_paths(monkeypatch, model, batches)
    _assert_same_stats(grouped, direct)
    # What fc1 returned, before the change: its output's maximum over the batches.
    with torch.no_grad():
        expected = max(float(model.fc1(b).max()) for b in batches)
    assert grouped.point("fc1", "post").global_max == pytest.approx(expected, rel=0, abs=0)
    assert grouped.point("fc1", "post").calls == 4


def test_the_model_is_left_exactly_as_it_was():
    """No instance forward, hook or attribute is left on any module; an existing instance forward stays."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    custom = model[2].forward
    model[2].forward = custom  # a user's own instance-level forward (as accelerate sets)
    before = {name: dict(vars(m)) for name, m in model.named_modules()}
    Session(model).calibrate([torch.randn(3, 4) for _ in range(3)], Settings.build())
    after = {name: dict(vars(m)) for name, m in model.named_modules()}
    assert before.keys() == after.keys()
    for name in before:
        assert before[name].keys() == after[name].keys(), name
    assert "forward" not in vars(model[0]) and model[2].__dict__["forward"] is custom
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_transformer_encoder_layer_fast_path_decision_is_unchanged():
    """Observed inner modules keep nn.TransformerEncoderLayer off its fused path in every batch,
    as hooks did: each inner Linear is seen once per batch."""
    torch.manual_seed(6)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True, dropout=0.0)
    model = nn.Sequential(layer).eval()
    stats = Session(model).calibrate([torch.randn(2, 5, 16) for _ in range(4)], Settings.build())
    assert stats.point("0.linear1", "pre").calls == 4
    assert stats.point("0.linear2", "pre").calls == 4
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_errors_are_still_named_by_module_with_forward_wrappers():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(5, 2)).eval()
    with pytest.raises(CalibrationError) as raised:
        Session(model).calibrate([torch.randn(3, 4) for _ in range(2)], Settings.build())
    assert raised.value.module == "2" and raised.value.batch == 1
    assert all("forward" not in vars(m) for m in model.modules())


@pytest.mark.parametrize("name", ["tiny_transformer", "untraceable", "showcase"])
def test_a_second_calibration_on_the_session_equals_a_fresh_one(name):
    """What the session keeps (layouts, wrappers, weight ranges) changes nothing in the results."""
    loaded = load_model(name)
    batches = list(open_batches(loaded))[:3]
    settings = Settings.build()
    session = Session(loaded.model)
    session.calibrate(batches, settings)
    again = session.calibrate(batches, settings)
    fresh = Session(loaded.model).calibrate(batches, settings)
    _assert_same_stats(again, fresh)
    assert list(again.layouts) == list(fresh.layouts) and list(again.points) == list(fresh.points)
    assert again.state()[1] == fresh.state()[1]  # the saved form, metadata included, in the same order


def test_kept_layouts_are_used_only_for_a_batch_of_the_same_shapes(monkeypatch):
    from tui_quantreport.engine.layout import LayoutTracker

    attached = []
    real_attach = LayoutTracker.attach

    def spy(self, model, skip=frozenset()):
        attached.append(True)
        return real_attach(self, model, skip)

    monkeypatch.setattr(LayoutTracker, "attach", spy)
    model = _Twice().eval()
    session = Session(model)
    settings = Settings.build()
    session.calibrate([torch.randn(5, 6)], settings)
    session.calibrate([torch.randn(5, 6)], settings)  # same shapes: the layouts are kept
    assert len(attached) == 1
    session.calibrate([torch.randn(7, 6)], settings)  # another batch size: discovered again
    assert len(attached) == 2
    session.calibrate([torch.randn(7, 6)], Settings.build(["outlier"]))  # fewer points, same overrides: kept
    assert len(attached) == 2


def test_a_reducer_that_reads_the_tensor_gets_each_held_tensor(monkeypatch):
    """A reducer that is not elementwise (it reads tensor()) is fed per tensor on the grouped path too."""
    from dataclasses import dataclass

    from tui_quantreport.engine.stats import PointRequest, Reducer

    @dataclass(frozen=True)
    class _Sums:
        sums: torch.Tensor

    @dataclass(frozen=True)
    class _ChannelSum(Reducer):
        kind = "test_channel_sum"
        result = _Sums

        def contribution(self, summary, tensor):
            return tensor().sum(dim=(0, 2)).double().numpy()

        def start(self, contribution, ops):
            return ops.copy(contribution)

        def update(self, state, contribution, ops):
            ops.add(state, contribution, out=state)
            return state

        def freeze(self, state, ops):
            return _Sums(ops.to_cpu(state))

    from tui_quantreport.engine import observer as observer_module

    torch.manual_seed(7)
    model = _Twice().eval()
    batches = [torch.randn(4, 6) for _ in range(3)]
    plan = {("fc", "pre"): PointRequest.of(_ChannelSum()), ("out", "post"): PointRequest.of(_ChannelSum())}

    def run():
        return Session(model)._observe(batches, plan, max_batches=None, progress=None, should_cancel=None)

    grouped = run()
    with monkeypatch.context() as m:
        m.setattr(observer_module, "SMALL_NUMEL", 0)
        direct = run()
    for key in plan:
        ours, theirs = grouped.points[key].get(_ChannelSum()), direct.points[key].get(_ChannelSum())
        assert torch.allclose(ours.sums, theirs.sums, rtol=1e-12, atol=0)


def test_eval_fast_path_sets_the_flags_model_eval_sets_and_restores_them():
    """Where no class overrides train(), calibration sets only the flags still True, and ends with
    every flag as it was (mixed flags included); a class that overrides train() is called as before."""
    from tui_quantreport.engine.session import _eval

    def mixed() -> nn.Module:
        model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 2))).train()
        model[1].eval()
        model[1][1].train()
        return model

    fast, reference = mixed(), mixed()
    _eval(fast)
    reference.eval()
    assert [m.training for m in fast.modules()] == [m.training for m in reference.modules()]

    model = mixed()
    before = [m.training for m in model.modules()]
    Session(model).calibrate([torch.randn(3, 4)] * 2, Settings.build())
    assert [m.training for m in model.modules()] == before

    calls = []

    class Custom(nn.Linear):
        def train(self, mode=True):
            calls.append(mode)
            return super().train(mode)

    custom = nn.Sequential(Custom(4, 4), nn.ReLU()).train()
    calls.clear()
    Session(custom).calibrate([torch.randn(3, 4)], Settings.build())
    assert calls == [False] and custom.training and custom[0].training


def test_banked_points_freeze_to_tensors_of_their_own():
    """The grouped path freezes each point's arrays out of one copy of its bank: each tensor's
    storage holds that point's values alone (saved on its own), and equals the direct path's."""
    torch.manual_seed(3)
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(6)]).eval()
    batches = [torch.randn(4, 8) for _ in range(3)]
    grouped = Session(model).calibrate(batches, Settings.build())
    direct = Session(model).calibrate(batches, Settings.build(), rerun_failures=False)  # nothing held
    _assert_same_stats(grouped, direct)
    pointers = set()
    for point in grouped.points.values():
        tensors = [point.channel_min, point.channel_max]
        for result in point.reduced.values():
            tensors += [v for v in vars(result).values() if isinstance(v, torch.Tensor)]
        for tensor in tensors:
            assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
            assert tensor.data_ptr() not in pointers
            pointers.add(tensor.data_ptr())
