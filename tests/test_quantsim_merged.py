"""Plan evaluation over the probes merged into one batch equals one probe at a time, double for double.

Every plan and what-if toggle SQNR (combined and per output) is the same double with the probes
merged and without, on the samples; a model that mixes the rows of a batch, and one that refuses
a bigger batch, fall back to one probe at a time (and say why); a dynamic input is quantized per
probe segment, with the qparams each probe alone would take.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tui_quantreport.engine import ModelCatalog, Session, Settings, load_model, open_batches
from tui_quantreport.engine.quantsim import SCHEMES, ErrorAnalysis, ProbeRecorder
from tui_quantreport.engine.quantsim.merged_probes import MERGE_MAX_BYTES, Segments, per_segment
from tui_quantreport.engine.quantsim.probes import merge_probes


def _sample_analysis(sample: str, k: int = 4) -> ErrorAnalysis:
    loaded = load_model(sample)
    session = Session(loaded.model)
    recorder = ProbeRecorder(open_batches(loaded), k)
    stats = session.calibrate(recorder, Settings.build())
    return ErrorAnalysis.from_stats(loaded.model, session.catalog, recorder.probes, stats)


def _plans(analysis: ErrorAnalysis, limit: int | None = None) -> list[dict[str, str]]:
    """Whole-model plans (static per channel, dynamic, a mix) and what-if toggles of the mix."""
    fqns = list(analysis.targets)
    eligible = {
        name: [f for f in fqns if analysis._ineligible(analysis.targets[f], SCHEMES[name]) is None]
        for name in ("static_per_channel", "dynamic", "weight_only")
    }
    static = dict.fromkeys(eligible["static_per_channel"], "static_per_channel")
    dynamic = dict.fromkeys(eligible["dynamic"], "dynamic")
    cycle = ("static_per_channel", "dynamic", "weight_only", "static_per_tensor")
    mix = {f: cycle[i % len(cycle)] for i, f in enumerate(fqns) if f in eligible["static_per_channel"]}
    toggles = []
    for fqn in list(mix)[: limit if limit is not None else 6]:
        off = dict(mix)
        off.pop(fqn)  # toggled to float
        toggles.append(off)
    return [static, dynamic, mix, *toggles]


def _evaluate(analysis: ErrorAnalysis, plans: list[dict[str, str]], merged: bool) -> list:
    analysis.merge_probes = merged
    analysis._plan_cache.clear()
    analysis._plan_outputs.clear()
    results = []
    for modules in plans:
        plan = analysis.plan(modules)
        results.append((analysis.plan_sqnr(plan), analysis.plan_output_sqnr(plan)))
    return results


@pytest.mark.parametrize(
    "sample,k,limit",
    [("drifting_mlp", 4, None), ("showcase", 4, None), ("tiny_transformer", 4, None), ("large_generated", 2, 2)],
)
def test_merged_plan_evaluation_equals_one_probe_at_a_time(sample, k, limit):
    analysis = _sample_analysis(sample, k)
    plans = _plans(analysis, limit)
    merged = _evaluate(analysis, plans, merged=True)
    assert analysis._merge is not None  # the rule was checked
    alone = _evaluate(analysis, plans, merged=False)
    assert merged == alone
    for sqnr, _ in merged:
        assert sqnr.defined, sqnr.reason


def test_the_samples_batch_major_throughout_run_merged():
    analysis = _sample_analysis("drifting_mlp")
    assert analysis._merged_probes() is not None, analysis.merge_reason
    assert analysis.merge_reason == ""


class _MixesRows(nn.Module):
    """Centres each feature over the batch: a row's output depends on the other rows."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 8)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.fc2(h - h.mean(dim=0, keepdim=True))


class _FixedBatch(nn.Module):
    """Refuses any batch but its own size."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 8)

    def forward(self, x):
        if x.shape[0] != 5:
            raise ValueError("this model takes batches of 5")
        return self.fc2(torch.relu(self.fc1(x)))


class _TrainModeNorm(nn.Module):
    """Batch normalization with batch statistics (as in train mode): a row's output depends on the others."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 8)

    def forward(self, x):
        h = torch.nn.functional.batch_norm(self.fc1(x), None, None, training=True)
        return self.fc2(torch.relu(h))


def _small_analysis(model: nn.Module) -> ErrorAnalysis:
    torch.manual_seed(0)
    model.eval()
    probes = [torch.randn(5, 16) for _ in range(4)]
    session = Session(model)
    stats = session.calibrate(probes, Settings.build())
    return ErrorAnalysis.from_stats(model, ModelCatalog.build(model), probes, stats)


@pytest.mark.parametrize(
    "model,why",
    [(_MixesRows, "mixes its rows"), (_TrainModeNorm, "mixes its rows"), (_FixedBatch, "refused the merged batch")],
)
def test_a_model_that_mixes_or_refuses_rows_falls_back(model, why):
    analysis = _small_analysis(model())
    plans = _plans(analysis)
    merged = _evaluate(analysis, plans, merged=True)
    assert analysis._merged_probes() is None
    assert why in analysis.merge_reason
    assert merged == _evaluate(analysis, plans, merged=False)
    assert all(sqnr.defined for sqnr, _ in merged)


def test_probes_that_are_not_alike_do_not_merge():
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    assert merge_probes([a]) is None  # one probe: nothing to merge
    assert merge_probes([a, torch.randn(4, 9)]) is None  # trailing shapes differ
    assert merge_probes([a, b.double()]) is None  # dtypes differ
    assert merge_probes([(a, 1), (b, 2)]) is None  # a non-tensor that differs
    assert merge_probes([(a, torch.randn(3, 8)), (b, torch.randn(3, 8))]) is None  # dim 0 not one batch size
    assert merge_probes([torch.tensor(1.0), torch.tensor(2.0)]) is None  # no batch dimension
    merged = merge_probes([{"x": a, "n": None}, {"x": torch.randn(2, 8), "n": None}])
    assert merged is not None and merged.sizes == (4, 2) and merged.batch["x"].shape == (6, 8)
    assert MERGE_MAX_BYTES > 0


def test_a_dynamic_input_is_quantized_per_probe_segment():
    from tui_quantreport.engine.quantsim.qparams import fake_quantize_dynamic

    torch.manual_seed(3)
    pieces = [torch.randn(3, 10) * s for s in (0.1, 1.0, 30.0)]
    segments = Segments()
    quantize = per_segment(lambda x: fake_quantize_dynamic(x, 0, 255, per_token=False), segments)
    segments.sizes = (3, 3, 3)
    together = quantize(torch.cat(pieces))
    alone = torch.cat([fake_quantize_dynamic(p, 0, 255, per_token=False) for p in pieces])
    assert torch.equal(together, alone)
    segments.sizes = None
    assert not torch.equal(quantize(torch.cat(pieces)), alone)  # one range for all: another result
