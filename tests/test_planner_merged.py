"""Merged sensitivity passes (a unit's schemes and the probe batches as one batch): equal to the full
passes value for value, and each fallback (rows mixed by the model, an output that is not per row,
probe batches of different shapes, merging turned off) gives the full passes' numbers too."""

from __future__ import annotations

import torch
from torch import nn

from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.quantsim import ErrorAnalysis
from tui_quantreport.engine.quantsim.merged_sensitivity import row_local
from tui_quantreport.engine.quantsim.sensitivity import Item, Sensitivity, uncached

SCHEMES = ("static_per_tensor", "dynamic", "weight_only", "fp8_dynamic_per_tensor")


class Block(nn.Module):
    def __init__(self, width: int, mix_rows: bool = False):
        super().__init__()
        self.up = nn.Linear(width, 2 * width)
        self.down = nn.Linear(2 * width, width)
        self.mix_rows = mix_rows

    def forward(self, x):
        h = torch.relu(self.up(x))
        if self.mix_rows:  # depends on the other rows of the batch (as BatchNorm in train mode would)
            h = h - h.mean(dim=0, keepdim=True)
        return x + self.down(h)


class Net(nn.Module):
    def __init__(self, width: int = 16, mix_rows: bool = False, pooled: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(8, width)
        self.layers = nn.ModuleList([Block(width), Block(width, mix_rows), Block(width)])
        self.head = nn.Linear(width, 4)
        self.pooled = pooled

    def forward(self, x):
        x = self.inp(x)
        for layer in self.layers:
            x = layer(x)
        y = self.head(x)
        return y.sum(dim=0) if self.pooled else y


def _items(analysis: ErrorAnalysis) -> list[Item]:
    return [Item((fqn,), s) for fqn in analysis.targets for s in SCHEMES]


def _measured(model: nn.Module, probes: list[torch.Tensor], **kwargs):
    analysis = ErrorAnalysis(model, ModelCatalog.build(model), probes, schemes=SCHEMES)
    sens = Sensitivity(analysis, **kwargs)
    items = _items(analysis)
    return sens, sens.measure(items), uncached(analysis, items)


def _probes(*rows: int, width: int = 8) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [torch.randn(r, 5, width, generator=generator) * 3 for r in rows]


def test_merged_passes_equal_the_full_passes_exactly():
    sens, got, want = _measured(Net(), _probes(3, 3))
    assert got == want
    assert sens.merge_fallback is None and sens.merge_verified
    assert sens.merged_units == len({item.members for item in got})
    # One merged pass per unit (and its checks), not one per (scheme, probe batch).
    assert sens.passes < len(got)


def test_a_model_that_mixes_batch_rows_falls_back_and_says_why():
    sens, got, want = _measured(Net(mix_rows=True), _probes(3, 3))
    assert got == want
    assert sens.merge_fallback is not None and "differed from the full pass" in sens.merge_fallback
    assert sens.merged_units == 0


def test_an_output_that_is_not_per_row_falls_back():
    sens, got, want = _measured(Net(pooled=True), _probes(3, 3))
    assert got == want
    assert sens.merge_fallback is not None
    assert sens.merged_units == 0


def test_probe_batches_of_different_shapes_merge_the_schemes_batch_by_batch():
    probes = [*_probes(3), torch.randn(2, 7, 8)]
    sens, got, want = _measured(Net(), probes)
    assert got == want
    assert sens.merge_fallback is None and sens.merged_units > 0
    assert sens._probe_groups() == [[0], [1]]


def test_merging_turned_off_measures_pass_by_pass():
    sens, got, want = _measured(Net(), _probes(3, 3), merge=False)
    assert got == want
    assert sens.merge_fallback == "merged passes are turned off" and sens.merged_units == 0
    assert sens.passes >= len(got)


def test_a_tiny_memory_bound_splits_the_schemes_over_passes_and_changes_nothing():
    sens, got, want = _measured(Net(), _probes(3, 3), cache_mb=1e-4)
    assert got == want
    assert sens.merge_fallback is None
    units = len({item.members for item in got})
    assert sens.passes >= units * len(SCHEMES)  # one scheme per pass


def test_only_row_by_row_input_quantization_takes_the_probe_batches_as_one_piece():
    assert row_local("weight_only") and row_local("static_per_tensor") and row_local("dynamic")
    assert not row_local("fp8_dynamic_per_tensor")


def test_a_cancel_inside_a_merged_pass_restores_the_model_and_a_rerun_measures_the_rest():
    import pytest

    from tui_quantreport.engine.quantsim import MeasurementCancelled

    model = Net()
    analysis = ErrorAnalysis(model, ModelCatalog.build(model), _probes(3, 3), schemes=SCHEMES)
    items = _items(analysis)
    sens = Sensitivity(analysis)
    done: list[int] = []
    after = [0]

    def cancel() -> bool:
        if len(done) < len(SCHEMES):  # the first unit is measured whole
            return False
        after[0] += 1
        return after[0] > 2  # the loop's check, the merged pass's, then the quantized module's forward

    with pytest.raises(MeasurementCancelled):
        sens.measure(items, lambda d, t: done.append(d), cancel)
    assert len(sens.results) == len(SCHEMES)
    assert not any("forward" in m.__dict__ for m in model.modules())  # every swapped forward put back
    assert sens.measure(items) == uncached(analysis, items)
