"""Weights quantized together (a stack of same-shaped weights, one library call) equal the same
weights quantized one at a time, value for value, for every scheme with a stacked form; and the
local pass gives the same SQNRs (the same doubles) with and without stacking, and with and without
an input two modules read being quantized once."""

from __future__ import annotations

import pytest
import torch
from measure_helpers import sample_measurer
from torch import nn

from tui_quantreport.engine import Session, Settings
from tui_quantreport.engine.quantsim import SCHEMES, ErrorAnalysis
from tui_quantreport.engine.quantsim.kinds import kind_of
from tui_quantreport.engine.quantsim.schemes import Scheme

pytest.importorskip("torchao")


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal element for element: NaN where NaN (a NaN's sign bit is no value), every other
    element bit for bit (the sign of zero included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a, b = a.contiguous().reshape(-1), b.contiguous().reshape(-1)
    nan = torch.isnan(a)
    if not torch.equal(nan, torch.isnan(b)):
        return False
    return torch.equal(a[~nan].view(torch.uint8), b[~nan].view(torch.uint8))


def _stacks(shape: tuple[int, ...], dtype: torch.dtype):
    torch.manual_seed(3)
    scales = torch.logspace(-3, 2, 4).view(4, *[1] * len(shape))
    w = torch.randn(4, *shape) * scales
    w[1, 0] = 0.0  # an all-zero row
    w[1, 1] = -0.0
    w[2, 2, :5] = 1e4  # an outlier run inside one group
    w[3, 3] = (torch.randint(-8, 8, (shape[1:])).float() + 0.5) / 7  # halfway values
    yield "mixed", w.to(dtype)
    yield "NaN and inf", torch.where(w > 1.5, torch.nan, torch.where(w < -1.5, -torch.inf, w)).to(dtype)


def _stacked_schemes():
    names = []
    for name, scheme in SCHEMES.items():
        if type(scheme).weights is not Scheme.weights:
            names.append(name)
    return names


@pytest.mark.parametrize("name", _stacked_schemes())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_stacked_weights_equal_one_at_a_time(name, dtype):
    scheme = SCHEMES[name]
    kind = kind_of(nn.Linear(256, 64))
    assert kind is not None
    checked = 0
    for _, stack in _stacks((64, 256), dtype):
        together = scheme.weights(stack, kind)
        if together is None:
            continue
        for i in range(stack.shape[0]):
            assert _same(together[i], scheme.weight(stack[i], kind)), (name, i)
        checked += 1
    if name not in ("int4_hqq_g128", "fp8_dynamic_per_tensor", "fp8_static"):
        assert checked, f"{name} has no stacked form for a Linear weight"


@pytest.mark.parametrize("name", ["int4_sym_g32", "int4_sym_per_channel"])
def test_stacked_conv_weights_equal_one_at_a_time(name):
    scheme = SCHEMES[name]
    kind = kind_of(nn.Conv2d(64, 16, 3))
    assert kind is not None
    torch.manual_seed(4)
    stack = torch.randn(3, 16, 64, 3, 3) * torch.logspace(-2, 1, 3).view(3, 1, 1, 1, 1)
    together = scheme.weights(stack, kind)
    assert together is not None
    for i in range(3):
        assert _same(together[i], scheme.weight(stack[i], kind))


@pytest.mark.parametrize("sample", ["tiny_transformer"])
def test_local_sqnr_is_the_same_with_and_without_stacked_weights(monkeypatch, sample):
    measure = sample_measurer(sample, advice=False)

    calls = []
    for name in _stacked_schemes():
        scheme_type = type(SCHEMES[name])

        def counted(self, stacked, kind, _weights=scheme_type.weights):
            calls.append(self.name)
            return _weights(self, stacked, kind)

        monkeypatch.setattr(scheme_type, "weights", counted)
    stacked = measure()
    assert any(SCHEMES[name].facts.family != "int8" for name in calls)  # the stacked forms ran
    for name in _stacked_schemes():
        monkeypatch.setattr(type(SCHEMES[name]), "weights", Scheme.weights)
    alone = measure()
    assert alone == stacked
    assert any(s.db is not None for m in stacked.values() for s in m.sqnr.values())


class _TwoReaders(nn.Module):
    """Two Linear read one normalized tensor (a gated block's branches), then a third reads another."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(64)
        self.gate = nn.Linear(64, 64)
        self.fc_in = nn.Linear(64, 128)
        self.fc_out = nn.Linear(128, 64)

    def forward(self, x):
        h = self.norm(x)
        return x + torch.sigmoid(self.gate(h)) * self.fc_out(torch.relu(self.fc_in(h)))


def test_an_input_two_modules_read_is_quantized_once_with_the_same_sqnrs(monkeypatch):
    from tui_quantreport.engine import ModelCatalog
    from tui_quantreport.engine.quantsim import measurer

    torch.manual_seed(5)
    model = _TwoReaders().eval()
    batches = [torch.randn(4, 8, 64) * 2 for _ in range(3)]
    session = Session(model)
    stats = session.calibrate(batches, Settings.build())

    def measure():
        analysis = ErrorAnalysis.from_stats(model, ModelCatalog.build(model), batches[:2], stats)
        return analysis.local_measurements(advice=True)

    quantized = []
    inputs = measurer.LastInput.inputs

    def counted(self, x, steps):
        before = len(self.results) if self.source is x and self.version == x._version else 0
        out = inputs(self, x, steps)
        quantized.append(len(self.results) - before)
        return out

    monkeypatch.setattr(measurer.LastInput, "inputs", counted)
    shared = measure()
    # gate quantizes h; fc_in reads the same h and quantizes nothing new; fc_out quantizes its own input
    assert quantized[1] == 0 and quantized[0] > 0 and quantized[2] > 0
    import tui_quantreport.engine.quantsim.local_pass as local_pass

    monkeypatch.setattr(local_pass, "LastInput", _NoShare)  # each module quantizes its own input
    alone = measure()
    assert alone == shared
    assert any(s.db is not None for m in shared.values() for s in m.sqnr.values())


class _NoShare:
    """A stand-in for the pass's shared input memo that keeps nothing."""

    def inputs(self, x, steps):
        return {key: x if quantize is None else quantize(x) for key, _share, quantize in steps}

    def clear(self) -> None:
        pass


class _SameShapes(nn.Module):
    """Same-shaped Linear modules (one stack of weights for every scheme) and one of another shape."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 64)
        self.b = nn.Linear(64, 64)
        self.c = nn.Linear(64, 64)
        self.head = nn.Linear(64, 8)

    def forward(self, x):
        return self.head(self.c(torch.relu(self.b(self.a(x)))))


def test_one_stack_shared_by_every_scheme_gives_each_weight_alone():
    from tui_quantreport.engine import ModelCatalog
    from tui_quantreport.engine.quantsim.local_pass import stack_weights

    torch.manual_seed(6)
    model = _SameShapes().eval()
    with torch.no_grad():
        model.b.weight[3] = 0.0  # an all-zero row
        model.c.weight[:, :5] = 1e4  # an outlier run
    analysis = ErrorAnalysis(model, ModelCatalog.build(model), [torch.randn(4, 64)])
    analysis._weights[("b", SCHEMES["static_per_tensor"].weight_key)] = model.b.weight.detach().clone()  # kept
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    stack_weights(analysis)
    assert all(_same(p, before[name]) for name, p in model.named_parameters())  # the model untouched
    stacked = {key for key in analysis._weights if key[0] in ("a", "b", "c")}
    assert any(key[1] == SCHEMES[name].weight_key for key in stacked for name in _stacked_schemes())
    for name in analysis.schemes:
        scheme = SCHEMES[name]
        for fqn in ("a", "b", "c"):
            kept = analysis._weights.get((fqn, scheme.weight_key))
            if kept is None or (fqn == "b" and scheme.weight_key == SCHEMES["static_per_tensor"].weight_key):
                continue
            target = analysis.targets[fqn]
            assert _same(kept, scheme.weight(target.module.weight.detach(), target.kind)), (name, fqn)
