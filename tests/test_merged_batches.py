"""Merged calibration batches: several batches run as one forward, folded in batch by batch, give
the very stats of the batches run one by one (every tensor bit for bit, every count), and the
calibration falls back to one batch at a time where the model mixes batch items, modifies an
observed tensor in place, rejects the merged batch, or the memory cap allows no group."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from tui_quantreport.engine import CalibrationError, Session, Settings
from tui_quantreport.engine import merged_batches as mb


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        width = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
        return torch.equal(a.contiguous().view(width), b.contiguous().view(width))
    return torch.equal(a, b)


def _assert_identical(one_by_one, merged):
    assert merged.batches == one_by_one.batches
    assert merged.points.keys() == one_by_one.points.keys()
    for key, point in one_by_one.points.items():
        tensors, meta = point.state()
        other_tensors, other_meta = merged.points[key].state()
        assert other_meta == meta, key
        assert other_tensors.keys() == tensors.keys(), key
        for name, tensor in tensors.items():
            assert _same_tensor(other_tensors[name], tensor), (key, name)
    assert merged.layouts == one_by_one.layouts
    assert merged.weights.keys() == one_by_one.weights.keys()


def _both(monkeypatch, model, batches, **kwargs):
    """(stats one batch at a time, stats merged, batches the merged run folded from merged forwards)."""
    settings = Settings.build()
    with monkeypatch.context() as m:
        m.setenv(mb.ENV, "0")
        alone = Session(model).calibrate(batches, settings, **kwargs)
    session = Session(model)
    merged = session.calibrate(batches, settings, **kwargs)
    return alone, merged, session.merged_batches


@pytest.mark.parametrize(
    "sample,count",
    [("drifting_mlp", 12), ("convnet_per_tensor", 11), ("large_generated", 3), ("tiny_transformer", 11)],
)
def test_merged_batches_give_the_stats_of_one_batch_at_a_time(monkeypatch, sample, count):
    monkeypatch.setattr(mb, "MERGED_TENSOR_BYTES", 1 << 30)  # merge whatever the tensors' size
    module = importlib.import_module(f"sample_models.{sample}")
    torch.manual_seed(0)
    model = module.build_model().eval()
    batches = module.calibration_batches()[:count]
    alone, merged, folded = _both(monkeypatch, model, batches)
    assert folded == count - 1  # every batch after the first came from a merged forward (groups of 8, then the rest)
    _assert_identical(alone, merged)


@pytest.mark.parametrize("sample,count", [("large_generated", 6), ("convnet_per_tensor", 11), ("tiny_transformer", 11)])
def test_a_calibration_alike_merges_from_its_first_batch_with_the_same_stats(monkeypatch, sample, count):
    """The second calibration of a session, its batches like the first's: the layouts and the passed
    check are kept, so the first batch merges too; every statistic is still what one batch at a time gives."""
    monkeypatch.setattr(mb, "MERGED_TENSOR_BYTES", 1 << 30)
    module = importlib.import_module(f"sample_models.{sample}")
    torch.manual_seed(0)
    model = module.build_model().eval()
    batches = module.calibration_batches()[:count]
    settings = Settings.build()
    session = Session(model)
    session.calibrate(batches, settings)
    assert session.merged_batches == count - 1  # the first batch alone: it sizes the groups and checks the rule
    again = session.calibrate(batches, settings)
    assert session.merged_batches == count  # the first batch merged too
    with monkeypatch.context() as m:
        m.setenv(mb.ENV, "0")
        _assert_identical(Session(model).calibrate(batches, settings), again)


class _BatchMean(nn.Module):
    """Mixes batch items: each row minus the batch's mean (a merged batch has another mean)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        y = self.a(x)
        return self.b(y - y.mean(dim=0, keepdim=True))


class _InPlace(nn.Module):
    """Modifies an observed output in place after it was observed."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        y = self.a(x)
        y.mul_(2.0)
        return self.b(y)


class _SeqFirst(nn.Module):
    """Observed tensors with the batch on dim 1 (sequence first)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x):  # x: (batch, 3, 6); observed: (3, batch, 8)
        return self.b(self.a(x.transpose(0, 1).contiguous()))


@pytest.mark.parametrize("model_class", [_BatchMean, _InPlace, _SeqFirst])
def test_models_that_break_the_rule_are_calibrated_one_batch_at_a_time(monkeypatch, model_class):
    torch.manual_seed(1)
    model = model_class().eval()
    shape = (4, 3, 6) if model_class is _SeqFirst else (4, 6)
    batches = [torch.randn(shape) * (i + 1) for i in range(7)]
    alone, merged, folded = _both(monkeypatch, model, batches)
    assert folded == 0
    _assert_identical(alone, merged)


def test_the_memory_cap_limits_the_group(monkeypatch):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    batches = [torch.randn(4, 6) for _ in range(9)]
    monkeypatch.setattr(mb, "MEMORY_CAP", 1)  # not even two batches fit: no merging
    alone, merged, folded = _both(monkeypatch, model, batches)
    assert folded == 0
    _assert_identical(alone, merged)
    monkeypatch.setattr(mb, "MEMORY_CAP", 1 << 30)
    monkeypatch.setattr(mb, "MAX_MERGED", 3)  # groups of three: 2-4, 5-7, then 8-9
    alone, merged, folded = _both(monkeypatch, model, batches)
    assert folded == 8
    _assert_identical(alone, merged)


def test_uneven_batches_and_tuples_and_dicts(monkeypatch):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 8)
            self.b = nn.Linear(8, 3)

        def forward(self, x, scale=None):
            y = self.a(x)
            return self.b(y * scale if scale is not None else y)

    torch.manual_seed(3)
    model = Two().eval()
    tuples = [(torch.randn(4, 6), torch.randn(4, 1)) for _ in range(5)] + [(torch.randn(2, 6), torch.randn(2, 1))]
    alone, merged, folded = _both(monkeypatch, model, tuples)
    assert folded == 4  # the short batch ends the group before it and runs alone
    _assert_identical(alone, merged)
    dicts = [{"x": torch.randn(4, 6), "scale": torch.randn(4, 1)} for _ in range(5)]
    alone, merged, folded = _both(monkeypatch, model, dicts)
    assert folded == 4
    _assert_identical(alone, merged)


def test_a_rejected_batch_is_named_and_progress_counts_each_batch(monkeypatch):
    class Picky(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 3)

        def forward(self, x):
            if torch.isnan(x).any():
                raise ValueError("NaN in the batch")
            return self.a(x)

    torch.manual_seed(4)
    batches = [torch.randn(4, 6) for _ in range(6)]
    seen = []
    Session(Picky().eval()).calibrate(batches, Settings.build(), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 6) for i in range(1, 7)]
    batches[3] = batches[3].clone()
    batches[3][1, 2] = float("nan")
    with pytest.raises(CalibrationError) as caught:
        Session(Picky().eval()).calibrate(batches, Settings.build())
    assert caught.value.batch == 4
    assert "batch 4 was rejected" in str(caught.value)


def test_no_merging_where_a_batch_must_not_run_twice(monkeypatch):
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 3)).eval()
    batches = [torch.randn(4, 6) for _ in range(5)]
    session = Session(model)
    session.calibrate(batches, Settings.build(), rerun_failures=False)
    assert session.merged_batches == 0


def test_big_tensors_are_not_merged_and_a_passed_check_is_remembered(monkeypatch):
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 8)).eval()
    big = [torch.randn(512, 64) for _ in range(4)]  # 128 KiB observed tensors: per-op cost is not the bound
    session = Session(model)
    session.calibrate(big, Settings.build())
    assert session.merged_batches == 0
    small = [torch.randn(4, 64) for _ in range(5)]
    calls = []
    real = Session._record

    def spy(self, observer, batch):
        calls.append(batch.shape[0])
        return real(self, observer, batch)

    monkeypatch.setattr(Session, "_record", spy)
    settings = Settings.build()
    session.calibrate(small, settings)
    assert session.merged_batches == 4
    assert calls == [4, 16]  # the check: batch 2 alone, then batches 2-5 as one
    calls.clear()
    again = session.calibrate(small, settings)
    # The check passed before and the layouts are known: all five batches as one (the first too), no batch alone.
    assert calls == [20] and session.merged_batches == 5
    with monkeypatch.context() as m:
        m.setenv(mb.ENV, "0")
        _assert_identical(Session(model).calibrate(small, settings), again)


def test_a_refused_check_is_remembered(monkeypatch):
    """A model that breaks the rule is not tried again by the next calibration alike (the first
    batch alone and the group's merged forward, thrown away each time); other batches are."""
    torch.manual_seed(7)
    model = _SeqFirst().eval()
    batches = [torch.randn(4, 3, 6) * (i + 1) for i in range(6)]
    calls = []
    real = Session._record

    def spy(self, observer, batch):
        calls.append(tuple(batch.shape))
        return real(self, observer, batch)

    monkeypatch.setattr(Session, "_record", spy)
    session, settings = Session(model), Settings.build()
    session.calibrate(batches, settings)
    assert session.merged_batches == 0 and calls  # tried once: refused
    calls.clear()
    again = session.calibrate(batches, settings)
    assert calls == [] and session.merged_batches == 0  # not tried again
    with monkeypatch.context() as m:
        m.setenv(mb.ENV, "0")
        _assert_identical(Session(model).calibrate(batches, settings), again)
    other = [torch.randn(5, 3, 6) for _ in range(6)]  # another batch shape: checked again
    session.calibrate(other, settings)
    assert calls and session.merged_batches == 0


def test_no_merging_in_a_model_with_torch_ao_fake_quantize_modules(monkeypatch):
    from torch.ao.quantization import FakeQuantize

    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(6, 8), FakeQuantize(), nn.Linear(8, 3)).eval()
    batches = [torch.randn(4, 6) * (i + 1) for i in range(6)]
    alone, merged, folded = _both(monkeypatch, model, batches)
    assert folded == 0
    _assert_identical(alone, merged)
