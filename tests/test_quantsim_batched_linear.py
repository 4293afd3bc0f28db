"""A small float32 Linear's scheme variants run as one batched matmul in the local pass; the SQNRs are the
same doubles as with one matmul per weight (the path it replaces), and where the batched kernel would
not give the same bits the pass keeps the per-weight matmuls."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tui_quantreport.engine import ModelCatalog
from tui_quantreport.engine.quantsim import ErrorAnalysis
from tui_quantreport.engine.quantsim import measurer as measurer_module
from tui_quantreport.engine.quantsim.sqnr import Scratch, SharedReference

pytest.importorskip("torchao")


class _Blocks(nn.Module):
    """Linear modules of several shapes, one without a bias, on 3-D inputs (tokens)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(32, 64)
        self.down = nn.Linear(64, 32, bias=False)
        self.gate = nn.Linear(32, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        h = self.down(torch.relu(self.up(x)))
        return self.head(h * torch.sigmoid(self.gate(x)))


def _analysis(model: nn.Module, probes: list[torch.Tensor]) -> ErrorAnalysis:
    return ErrorAnalysis(model, ModelCatalog.build(model), probes)


@pytest.mark.parametrize("advice", [False, True])
@pytest.mark.parametrize("shape", [(8, 32), (3, 5, 32)])
def test_batched_variants_give_the_sqnrs_of_one_matmul_per_weight(monkeypatch, advice, shape):
    torch.manual_seed(11)
    model = _Blocks().eval()
    probes = [torch.randn(*shape) * 2 for _ in range(3)]
    monkeypatch.setattr(measurer_module, "_BATCHED_EXACT", {})
    batched_first = _analysis(model, probes).local_measurements(advice=advice)
    checked = dict(measurer_module._BATCHED_EXACT)
    assert checked  # the batched form was tried (and checked against the per-weight matmuls)
    batched_again = _analysis(model, probes).local_measurements(advice=advice)  # the check's answer kept
    monkeypatch.setattr(measurer_module, "BATCHED_WEIGHT_ELEMENTS", 0)
    per_weight = _analysis(model, probes).local_measurements(advice=advice)
    assert batched_first == per_weight
    assert batched_again == per_weight


def test_a_batched_kernel_that_differs_is_not_used(monkeypatch):
    torch.manual_seed(12)
    model = _Blocks().eval()
    probes = [torch.randn(8, 32) for _ in range(2)]
    monkeypatch.setattr(measurer_module, "BATCHED_WEIGHT_ELEMENTS", 0)
    per_weight = _analysis(model, probes).local_measurements(advice=False)
    monkeypatch.undo()

    def off_by_a_bit(real):
        def batched(*args, **kwargs):
            out = real(*args, **kwargs)
            out.view(torch.int32).add_(1)  # one ulp away: another summation order's result
            return out

        return batched

    monkeypatch.setattr(measurer_module, "_BATCHED_EXACT", {})
    monkeypatch.setattr(torch, "baddbmm", off_by_a_bit(torch.baddbmm))
    monkeypatch.setattr(torch, "bmm", off_by_a_bit(torch.bmm))
    assert _analysis(model, probes).local_measurements(advice=False) == per_weight
    assert measurer_module._BATCHED_EXACT and not any(measurer_module._BATCHED_EXACT.values())


def _variants(x: torch.Tensor, n_out: int):
    """Variants in :func:`_grouped` order: three weights, four quantized inputs (one shared by two weights)."""
    k = x.shape[-1]
    weights = [torch.randn(n_out, k) for _ in range(3)]
    inputs = {
        "float": x,
        "coarse": torch.round(x * 4) / 4,
        "fine": torch.round(x * 64) / 64,
        "nan": torch.where(x > 1.5, torch.nan, x),
    }
    plan = [(0, "float"), (0, "coarse"), (1, "coarse"), (1, "fine"), (1, "nan"), (2, "fine")]
    variants = [measurer_module._Variant(f"v{i}", key, None, weights[w]) for i, (w, key) in enumerate(plan)]
    return variants, inputs


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(8, 32), (2, 4, 32), (1, 32)])
def test_batched_norms_equal_the_per_weight_ones_bit_for_bit(monkeypatch, bias, shape):
    torch.manual_seed(13)
    x = torch.randn(*shape)
    n_out = 24
    variants, inputs = _variants(x, n_out)
    b = torch.randn(n_out) if bias else None
    y = torch.nn.functional.linear(x, variants[0].weight, b)
    groups = measurer_module._weight_groups(variants)
    groups_t = [(w.t(), keys) for w, keys in groups]
    names = [v.name for v in variants]
    monkeypatch.setattr(measurer_module, "_BATCHED_EXACT", {})
    per_weight, batched = SharedReference(names), SharedReference(names)
    measurer_module._linear_variants(inputs, x, y, len(variants), groups_t, b, per_weight, Scratch())
    weights = tuple(v.weight for v in variants)
    for _ in range(2):  # the first call checks the kernel, the second takes its answer
        taken = measurer_module._batched_variants(inputs, x, y, variants, weights, groups, b, batched, Scratch())
        if not taken:  # this machine's batched kernel sums in another order: nothing was added
            assert batched.calls == 0
            return
    assert batched.calls == 2
    for got in batched._raw_noise:
        assert torch.equal(got.isnan(), per_weight._raw_noise[0].isnan())
        assert torch.equal(got.nan_to_num(), per_weight._raw_noise[0].nan_to_num())
    assert all(torch.equal(got, per_weight._raw_signal[0]) for got in batched._raw_signal)


def test_the_batched_form_is_left_to_host_tensors(monkeypatch):
    """Its first call reads the result back (the check): on an accelerator the per-weight matmuls run."""
    from tui_quantreport.engine.quantsim.hostsync import device_path

    torch.manual_seed(14)
    model = _Blocks().eval()
    probes = [torch.randn(8, 32) for _ in range(2)]
    monkeypatch.setattr(measurer_module, "_BATCHED_EXACT", {})
    with device_path():
        on_device = _analysis(model, probes).local_measurements(advice=False)
    assert measurer_module._BATCHED_EXACT == {}
    assert on_device == _analysis(model, probes).local_measurements(advice=False)
