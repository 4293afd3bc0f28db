"""Per-batch reductions, accumulation, merging, and the per-batch path's contracts."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from tui_quantreport.engine import Session, Settings
from tui_quantreport.engine.stats import selection, summarize
from tui_quantreport.engine.stats.selection import kth_smallest, lower_quantile_index


@pytest.mark.parametrize("shape", [(16, 8, 500), (3, 5, 1), (1, 4, 3000), (64, 2, 17)])
@pytest.mark.parametrize("q", [0.0, 0.5, 0.9, 0.975, 1.0])
def test_kth_smallest_equals_torch_quantile_lower(shape, q):
    gen = torch.Generator().manual_seed(sum(shape))
    x3 = torch.randn(shape, generator=gen)
    x3[:, 0, :] = 1.5  # a constant channel
    n = shape[0] * shape[2]
    rows = x3.transpose(0, 1).reshape(shape[1], -1)
    expected = torch.quantile(rows, q, dim=1, interpolation="lower")
    assert torch.equal(kth_smallest(x3, lower_quantile_index(q, n)), expected)


def test_kth_smallest_never_reorders_the_input():
    x = torch.randn(1, 6, 1000)
    before = x.clone()
    kth_smallest(x, 900)
    assert torch.equal(x, before)


def test_device_path_selection_is_exact(monkeypatch):
    """The path taken on accelerators (torch.kthvalue, no host copy) gives the same answer."""
    x3 = torch.randn(8, 4, 300)
    host = kth_smallest(x3, 2000)
    monkeypatch.setattr(selection, "on_host", lambda x: False)
    assert torch.equal(kth_smallest(x3, 2000), host)


def test_lower_quantile_index_matches_torch_at_float32_boundaries():
    # 0.975 * (n - 1) lands near an integer for some n; torch rounds in float32.
    for n in (2, 41, 81, 121, 401, 1001, 65536):
        values = torch.arange(n, dtype=torch.float32)
        expected = torch.quantile(values, 0.975, interpolation="lower").item()
        assert lower_quantile_index(0.975, n) == int(expected)


def test_summarize_reduces_along_the_requested_axis():
    x = torch.randn(4, 3, 5, 6)
    s = summarize(x, 1, (0.5,))
    per_channel = x.transpose(0, 1).reshape(3, -1)
    assert torch.equal(torch.as_tensor(s.channel_min), per_channel.min(dim=1).values)
    assert torch.equal(torch.as_tensor(s.channel_max), per_channel.max(dim=1).values)
    expected = torch.quantile(per_channel, 0.5, dim=1, interpolation="lower")
    assert torch.equal(torch.as_tensor(s.percentiles[0.5]), expected)
    last = summarize(x, 3, ())
    assert last.channel_min.shape == (6,)


def test_summarize_gives_nan_for_channels_holding_nan():
    x = torch.randn(10, 3)
    x[4, 1] = math.nan
    s = summarize(x, 1, (0.975,))
    assert math.isnan(s.percentiles[0.975][1])
    assert not math.isnan(s.percentiles[0.975][0])
    # Like torch.amin/amax, the channel's min and max are NaN too.
    assert math.isnan(s.channel_min[1]) and math.isnan(s.channel_max[1])


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3)).eval()


def _batches(count, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 6, generator=gen) * (1 + 0.3 * i) for i in range(count)]


def _calibrate(model, batches):
    session = Session(model)
    settings = Settings.build()
    return session.calibrate(batches, settings)


def test_stats_merge_equals_stats_of_all_batches():
    model = _mlp()
    batches = _batches(10)
    whole = _calibrate(model, batches)
    merged = _calibrate(model, batches[:4]).merge(_calibrate(model, batches[4:]))
    assert merged.batches == whole.batches == 10
    assert merged.points.keys() == whole.points.keys()
    for key, point in whole.points.items():
        other = merged.points[key]
        assert other.calls == point.calls
        assert other.global_min == point.global_min and other.global_max == point.global_max
        assert other.range_sum == pytest.approx(point.range_sum, rel=1e-6)
        assert torch.equal(other.channel_min, point.channel_min)
        assert torch.equal(other.channel_max, point.channel_max)
        assert other.reduced.keys() == point.reduced.keys()
        for reducer, result in point.reduced.items():
            ours, theirs = result.state()[0], other.reduced[reducer].state()[0]
            assert ours.keys() == theirs.keys()
            for name, tensor in ours.items():  # sums of floats to rounding, counts exactly
                assert torch.allclose(theirs[name].double(), tensor.double(), rtol=1e-6), (reducer, name)


def _stats_bytes(stats) -> int:
    total = 0
    for point in stats.points.values():
        for t in (point.channel_min, point.channel_max):
            total += 0 if t is None else t.numel() * t.element_size()
        for result in point.reduced.values():
            total += sum(t.numel() * t.element_size() for t in result.state()[0].values())
    return total


def test_stats_size_does_not_grow_with_batches():
    model = _mlp()
    small = _calibrate(model, _batches(10))
    large = _calibrate(model, _batches(100))
    assert large.batches == 100
    assert _stats_bytes(small) == _stats_bytes(large) > 0


class _HostReadTrap:
    """Makes every host read of a tensor value raise while armed."""

    NAMES = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")

    def __init__(self, monkeypatch):
        self.armed = False
        self.hits: list[str] = []
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, original))

    def _wrap(self, name, original):
        trap = self

        def guarded(self, *args, **kwargs):
            if trap.armed:
                trap.hits.append(name)
                raise AssertionError(f"host read {name}() in the per-batch path")
            return original(self, *args, **kwargs)

        return guarded


@pytest.mark.parametrize("dense", [True, False])
def test_host_and_device_paths_give_identical_stats(monkeypatch, dense):
    """The NumPy path used for CPU tensors and the torch path used on accelerators agree exactly."""
    model = _mlp()
    batches = _batches(6)
    if not dense:  # repeated values (zeros) and a NaN take the sorting branch and the NaN handling
        batches = [b.clamp(min=0) for b in batches]
        batches[2][0, 3] = math.nan
    host = _calibrate(model, batches)
    monkeypatch.setattr(selection, "on_host", lambda x: False)
    device = _calibrate(model, batches)
    assert host.points.keys() == device.points.keys()
    for key, a in host.points.items():
        b = device.points[key]
        assert (a.calls, a.shapes) == (b.calls, b.shapes)
        same = lambda x, y: x == y or (math.isnan(x) and math.isnan(y))  # noqa: E731
        assert same(a.global_min, b.global_min) and same(a.global_max, b.global_max)
        assert same(a.range_sum, b.range_sum)
        assert torch.equal(a.channel_min.nan_to_num(7.0), b.channel_min.nan_to_num(7.0))
        assert torch.equal(a.channel_max.nan_to_num(7.0), b.channel_max.nan_to_num(7.0))
        assert a.reduced.keys() == b.reduced.keys()
        for reducer, result in a.reduced.items():
            ours, theirs = result.state()[0], b.reduced[reducer].state()[0]
            for name, tensor in ours.items():
                assert torch.equal(tensor.nan_to_num(7.0), theirs[name].nan_to_num(7.0)), (reducer, name)


def test_per_batch_path_reads_nothing_back_to_the_host(monkeypatch):
    """No .item()/.cpu()/.tolist()/bool() while batches run (the accelerator path)."""
    monkeypatch.setattr(selection, "on_host", lambda x: False)
    trap = _HostReadTrap(monkeypatch)
    model = _mlp()
    data = _batches(5)

    def batches():
        for batch in data:
            trap.armed = True
            yield batch
            trap.armed = False

    stats = _calibrate(model, batches())
    assert trap.hits == []
    assert stats.batches == 5
    assert stats.point("0", "pre").reduced  # the outlier statistics were recorded


class _SharedInput(nn.Module):
    """One activation read by two leaves: it is one distinct tensor at three points."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 2), nn.Linear(8, 2)

    def forward(self, x):
        y = self.a(x)
        return self.b(y) + self.c(y)


def test_each_distinct_tensor_is_reduced_once_per_batch(monkeypatch):
    """The direct path (every tensor reduced when seen, as for big tensors)."""
    from tui_quantreport.engine import observer as observer_module
    from tui_quantreport.engine.detectors.outlier import OutlierRatio

    monkeypatch.setattr(observer_module, "SMALL_NUMEL", 0)
    summaries, contributions = [], []
    real_summarize, real_contribution = observer_module.summarize, OutlierRatio.contribution

    def spy_summarize(x, axis, percentiles, known=None):
        summaries.append((id(x), percentiles, known is None))
        return real_summarize(x, axis, percentiles, known=known)

    def spy_contribution(self, summary, x3):
        contributions.append(id(summary))
        return real_contribution(self, summary, x3)

    monkeypatch.setattr(observer_module, "summarize", spy_summarize)
    monkeypatch.setattr(OutlierRatio, "contribution", spy_contribution)
    torch.manual_seed(0)
    stats = _calibrate(_SharedInput().eval(), [torch.randn(5, 4)])
    # y = a(x) is seen at a's output and at b's and c's inputs: its channel min and max are
    # computed once, its percentile once (reusing them), its outlier terms once.
    assert len(summaries) == len({s for s in summaries})
    fresh = [tensor for tensor, _, new in summaries if new]
    assert len(fresh) == len(set(fresh)) == 4  # x, y and the two outputs
    assert len(contributions) == len(set(contributions)) == 2  # x and y
    b, c = stats.point("b", "pre").reduced, stats.point("c", "pre").reduced
    assert b.keys() == c.keys()
    assert all(torch.equal(b[r].state()[0][k], c[r].state()[0][k]) for r in b for k in b[r].state()[0])


def test_each_distinct_small_tensor_is_held_once_and_reduced_in_its_group(monkeypatch):
    """The grouped path: small tensors are held once (by identity and version), one reduction per shape."""
    from tui_quantreport.engine import observer as observer_module
    from tui_quantreport.engine.detectors.outlier import OutlierRatio

    groups, contributions = [], []
    real_group, real_contribution = observer_module.summarize_group, OutlierRatio.contribution

    def spy_group(tensors, axis, percentiles):
        groups.append(([id(t) for t in tensors], tuple(tensors[0].shape)))
        return real_group(tensors, axis, percentiles)

    def spy_contribution(self, summary, x3):
        contributions.append(id(summary))
        return real_contribution(self, summary, x3)

    def no_summarize(*args, **kwargs):
        raise AssertionError("a small tensor was reduced on its own")

    monkeypatch.setattr(observer_module, "summarize_group", spy_group)
    monkeypatch.setattr(observer_module, "summarize", no_summarize)
    monkeypatch.setattr(OutlierRatio, "contribution", spy_contribution)
    torch.manual_seed(0)
    stats = _calibrate(_SharedInput().eval(), [torch.randn(5, 4)])
    held = [i for ids, _ in groups for i in ids]
    assert len(held) == len(set(held)) == 4  # x, y and the two outputs, each once
    assert sorted(shape for _, shape in groups) == [(5, 2), (5, 4), (5, 8)]  # b's and c's outputs share a group
    assert len(contributions) == len(set(contributions)) == 2  # x's group and y's group, once each
    b, c = stats.point("b", "pre").reduced, stats.point("c", "pre").reduced
    assert b.keys() == c.keys()
    assert all(torch.equal(b[r].state()[0][k], c[r].state()[0][k]) for r in b for k in b[r].state()[0])


def test_stats_state_round_trips_exactly():
    """Stats as plain tensors and JSON metadata (what a safetensors file holds), and back."""
    import json

    from tui_quantreport.engine.stats import Stats

    model = _mlp()
    batches = _batches(4)
    batches[1][0, 0] = math.inf  # non-finite extremes survive the JSON metadata
    stats = _calibrate(model, batches)
    tensors, meta = stats.state()
    assert all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in tensors.values())
    meta = json.loads(json.dumps(meta, allow_nan=False))
    back = Stats.from_state(tensors, meta)
    assert (back.batches, back.observed) == (stats.batches, stats.observed)
    assert back.points.keys() == stats.points.keys() and back.weights.keys() == stats.weights.keys()
    for key, point in stats.points.items():
        other = back.points[key]
        assert (other.calls, other.axis, other.shapes) == (point.calls, point.axis, point.shapes)
        for name in ("global_min", "global_max", "range_sum"):
            a, b = getattr(point, name), getattr(other, name)
            assert a == b or (math.isnan(a) and math.isnan(b))
        assert torch.equal(other.channel_min.nan_to_num(7.0), point.channel_min.nan_to_num(7.0))
        assert torch.equal(other.channel_max.nan_to_num(7.0), point.channel_max.nan_to_num(7.0))
        assert other.reduced.keys() == point.reduced.keys()
        for reducer, result in point.reduced.items():
            ours, _ = result.state()
            theirs, _ = other.reduced[reducer].state()
            assert all(torch.equal(ours[k].nan_to_num(7.0), theirs[k].nan_to_num(7.0)) for k in ours)
    for fqn, weight in stats.weights.items():
        assert torch.equal(back.weights[fqn].channel_min, weight.channel_min)
    # A reducer is named by plain data, and rebuilt from it.
    from tui_quantreport.engine.stats import reducer_from_spec

    for point in stats.points.values():
        for reducer in point.reduced:
            assert reducer_from_spec(json.loads(json.dumps(reducer.spec()))) == reducer


@pytest.mark.parametrize(
    "shape, axis",
    [
        ((8, 32), 1),
        ((8, 32), 0),
        ((3, 5, 4), 1),
        ((2, 3), 0),
        ((5,), 0),
        ((), 0),
        ((7, 2, 2), 2),
        ((40, 6), 1),
        ((3, 700), 0),
    ],
)
@pytest.mark.parametrize("data", ["random", "special", "repeats"])
def test_a_group_reduction_equals_each_tensor_reduced_alone(shape, axis, data):
    """summarize_group (sorting network for short channels, sort or partition otherwise) gives,
    row for row, summarize's numbers: NaN, inf, post-ReLU zeros and repeated values included."""
    from tui_quantreport.engine.stats.grouped import summarize_group

    gen = torch.Generator().manual_seed(len(shape) * 31 + axis)
    tensors = [torch.randn(shape, generator=gen) for _ in range(5)]
    if data == "special" and tensors[0].numel() > 1:
        tensors[0].view(-1)[0] = math.nan
        tensors[1].view(-1)[-1] = math.inf
        tensors[2].view(-1)[0] = -math.inf
        tensors[3].clamp_(min=0)
    if data == "repeats":
        tensors = [t.round().clamp(min=0) for t in tensors]
    percentiles = (0.0, 0.5, 0.975, 1.0)
    group = summarize_group(tensors, axis, percentiles)
    for i, tensor in enumerate(tensors):
        alone = summarize(tensor, axis, percentiles)
        pairs = [(group.channel_min[i], alone.channel_min), (group.channel_max[i], alone.channel_max)]
        pairs += [(group.percentiles[p][i], alone.percentiles[p]) for p in percentiles]
        pairs += [(group.call_min[i], alone.call_min), (group.call_max[i], alone.call_max)]
        for ours, theirs in pairs:
            assert np.array_equal(ours, theirs, equal_nan=True), (i, ours, theirs)
