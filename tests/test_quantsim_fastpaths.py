"""The simulation's fast paths equal the paths they replace, value for value.

- :meth:`SqnrAccumulator.prepared_terms` (the reference folded in once) equals :meth:`SqnrAccumulator.terms`;
- the in-place fake quantization of a fresh output equals the out-of-place one;
- the dynamic per-tensor qparams, remembered, equal the scalar arithmetic they skip;
- a plan's simulated forward equals its input, weight and output quantization written out, and the
  input shared by two readers (quantized once) gives what quantizing it twice gives;
- the range pass without the advice statistics, then with them, measures what one pass with them does.

NaN and infinite values, empty tensors, non-contiguous inputs and float16/bfloat16 inputs included.
"""

from __future__ import annotations

import math

import pytest
import torch
from measure_helpers import sample_measurer
from torch import nn

from tui_quantreport.engine import ModelCatalog
from tui_quantreport.engine.quantsim import SCHEMES, ErrorAnalysis
from tui_quantreport.engine.quantsim.error_analysis import _InputMemo, _simulated_forward
from tui_quantreport.engine.quantsim.kinds import kind_of
from tui_quantreport.engine.quantsim.qparams import (
    FAST_FAKE_QUANT_MIN,
    _dynamic_qparams,
    fake_quantize_dynamic,
    fake_quantize_float32,
    fake_quantize_float32_,
    fake_quantize_weight,
    inverse_scale,
    scalar_affine_qparams,
)
from tui_quantreport.engine.quantsim.schemes import InputContext, StaticInput
from tui_quantreport.engine.quantsim.sqnr import PreparedReference, Scratch, SqnrAccumulator


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where the other has NaN, same dtype and shape."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    nan = torch.isnan(a)
    return bool(torch.equal(nan, torch.isnan(b))) and bool(torch.equal(a[~nan], b[~nan]))


def _pairs():
    torch.manual_seed(0)
    y = torch.randn(6, 40)
    yield "float32", y, y + 0.01 * torch.randn_like(y)
    yield "approx larger than the reference", y, 3 * y
    yield "approx with NaN", y, torch.where(y > 1.5, torch.nan, y)
    yield "approx with inf", y, torch.where(y > 1.5, torch.inf, y)
    yield "reference with NaN", torch.where(y > 1.5, torch.nan, y), y
    yield "zeros", torch.zeros(6, 40), torch.zeros(6, 40)
    yield "zero reference", torch.zeros(6, 40), y
    yield "exact", y, y.clone()
    yield "empty", torch.zeros(0, 40), torch.zeros(0, 40)
    yield "non-contiguous approx", y, (y.t().contiguous() * 1.01).t()
    yield "float16", y.half(), (y * 1.01).half()
    yield "bfloat16", y.bfloat16(), (y * 1.01).bfloat16()
    big = torch.randn(50, dtype=torch.float64) * 1e300
    yield "float64 near its largest value", big, big * (1 + 1e-3)
    yield "float64 approx, float32 reference", y, (y * 1.01).double()


@pytest.mark.parametrize("case", [c[0] for c in _pairs()])
def test_add_prepared_equals_add(case):
    _, reference, approx = next(c for c in _pairs() if c[0] == case)
    prepared = PreparedReference(reference)
    plain, fast = SqnrAccumulator(), SqnrAccumulator()
    # Several calls with the same prepared reference: the cached scale is reused, then changed.
    for factor in (1.0, 1.0, 4.0, 1.0):
        a = approx * factor if factor != 1.0 else approx
        before = a.clone()
        plain.add(reference, a)
        fast.append(*SqnrAccumulator.prepared_terms(prepared, a))
        assert _same(a, before)  # the approximation is not modified
    assert len(plain.signal) == len(fast.signal) == 4
    for p, f in zip(plain.signal + plain.noise, fast.signal + fast.noise):
        assert _same(p, f)
    assert plain.result() == fast.result()


@pytest.mark.parametrize("n", [0, 7, FAST_FAKE_QUANT_MIN - 1, FAST_FAKE_QUANT_MIN, 3 * FAST_FAKE_QUANT_MIN + 5])
@pytest.mark.parametrize("qmin,qmax", [(0, 127), (0, 255)])
def test_in_place_fake_quantization_equals_out_of_place(n, qmin, qmax):
    torch.manual_seed(n)
    scale, zp = scalar_affine_qparams(-2.0, 3.0, qmin, qmax)
    x = torch.randn(n) * 3
    if n > 6:
        x[:6] = torch.tensor([math.nan, math.inf, -math.inf, 1e30, -0.0, (7 + 0.5) * scale])
    inv = inverse_scale(scale)
    expected = fake_quantize_float32(x, scale, zp, qmin, qmax, inv)
    assert _same(fake_quantize_float32_(x.clone(), scale, zp, qmin, qmax, inv), expected)
    if n > 1:  # a non-contiguous tensor, quantized in place
        grid = torch.randn(n, 3)
        column = grid[:, 1]
        expected = fake_quantize_float32(column, scale, zp, qmin, qmax, inv)
        assert _same(fake_quantize_float32_(column, scale, zp, qmin, qmax, inv), expected)
        if n >= FAST_FAKE_QUANT_MIN:  # below, torch's kernel gives a new tensor
            assert _same(grid[:, 1], expected)


def _dynamic_before(x: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """The per-tensor CPU path of fake_quantize_dynamic before its qparams were remembered."""
    xf = x if x.dtype == torch.float32 else x.float()
    if xf.numel() == 0:
        return x
    lo, hi = torch.aminmax(xf)
    scale, zp = scalar_affine_qparams(float(lo), float(hi), qmin, qmax)
    out = (
        fake_quantize_float32(xf, scale, zp, qmin, qmax, inverse_scale(scale))
        if math.isfinite(scale)
        else torch.fake_quantize_per_tensor_affine(xf, scale, zp, qmin, qmax)
    )
    return out if out.dtype == x.dtype else out.to(x.dtype)


def _inputs():
    torch.manual_seed(3)
    small, big = torch.randn(8, 32) * 2 + 0.5, torch.randn(64, 96) * 2 + 0.5
    yield "small", small
    yield "big", big
    yield "small with NaN", torch.where(small > 2, torch.nan, small)
    yield "big with NaN", torch.where(big > 3, torch.nan, big)
    yield "small with inf", torch.where(small > 2, torch.inf, small)
    yield "big with -inf", torch.where(big > 3, -torch.inf, big)
    yield "empty", torch.zeros(0, 32)
    yield "constant", torch.full((8, 32), 1.5)
    yield "zeros", torch.zeros(8, 32)
    yield "non-contiguous", big.t()
    yield "float16", small.half()
    yield "bfloat16", big.bfloat16()
    yield "beyond float32 (float64)", small.double() * 1e39


@pytest.mark.parametrize("case", [c[0] for c in _inputs()])
@pytest.mark.parametrize("qmin,qmax", [(0, 127), (0, 255)])
def test_dynamic_per_tensor_equals_the_path_it_replaces(case, qmin, qmax):
    x = next(c for c in _inputs() if c[0] == case)[1]
    for _ in range(2):  # the second call finds its qparams remembered
        assert _same(fake_quantize_dynamic(x, qmin, qmax, per_token=False), _dynamic_before(x, qmin, qmax))


def test_remembered_dynamic_qparams_equal_the_arithmetic():
    for lo, hi in [(-0.0, 0.0), (0.0, -0.0), (-1.0, -0.0), (-0.0, 2.5), (-3.5, 7.25), (1e-30, 1e-29), (5.0, 5.0)]:
        for qmin, qmax in ((0, 127), (0, 255)):
            for _ in range(2):
                scale, zp = scalar_affine_qparams(lo, hi, qmin, qmax)
                assert _dynamic_qparams(lo, hi, qmin, qmax) == (scale, zp, inverse_scale(scale))
    scale, zp, inv = _dynamic_qparams(math.nan, 1.0, 0, 127)
    assert math.isnan(scale) and math.isnan(inv)


def _forward_before(module, kind, scheme, ctx, wq, out):
    """The simulated forward as it was written before its fast paths (one module, no memo)."""
    run = kind.bind(module)

    def forward(x):
        x = scheme.input(x, ctx) if x.is_floating_point() else x
        y = run(x, wq)
        if out is not None:
            y = fake_quantize_float32(y, out.scale, out.zero_point, out.quant_min, out.quant_max, out.inv_scale)
        return y

    return forward


def _modules():
    torch.manual_seed(4)
    yield "linear, small", nn.Linear(32, 16), torch.randn(8, 32)
    yield "linear, big", nn.Linear(96, 128), torch.randn(64, 96)
    yield "linear, 3-D", nn.Linear(32, 64), torch.randn(4, 16, 32)
    yield "conv2d", nn.Conv2d(3, 8, 3, padding=1), torch.randn(4, 3, 16, 16)
    yield "conv1d, no bias", nn.Conv1d(4, 4, 3, bias=False), torch.randn(2, 4, 600)


@pytest.mark.parametrize("case", [c[0] for c in _modules()])
# The int8 schemes' fast paths (torch's fake-quantize kernels, the input memo, the int8 output step);
# the other formats run their recipe as it is (held against torchao in test_formats).
@pytest.mark.parametrize("scheme_name", [n for n, s in SCHEMES.items() if s.facts.preference is not None])
@pytest.mark.parametrize("with_output", [False, True])
def test_simulated_forward_equals_the_steps_written_out(case, scheme_name, with_output):
    _, module, x = next(c for c in _modules() if c[0] == case)
    module.eval()
    kind = kind_of(module)
    scheme = SCHEMES[scheme_name]
    ctx = InputContext(StaticInput.from_range(-1.5, 2.0, 0, 127), 0, 127)
    out = StaticInput.from_range(-0.8, 1.1, 0, 127) if with_output and scheme.needs_range else None
    wq = fake_quantize_weight(module.weight, scheme.per_channel_weights, kind.weight_out_axis)
    inputs = [x, torch.where(x > 1.8, torch.nan, x), torch.where(x > 1.8, torch.inf, x)]
    if x.dim() == 2:
        inputs.append(x.t().contiguous().t())  # non-contiguous
    with torch.no_grad():
        for memo in (None, _InputMemo()):
            fast = _simulated_forward(module, kind, scheme, ctx, wq, out, None, memo)
            before = _forward_before(module, kind, scheme, ctx, wq, out)
            for xi in inputs:
                copy = xi.clone()
                assert _same(fast(xi), before(xi))
                assert _same(fast(xi), before(xi))  # again: the memo's result, when it keeps one
                assert _same(xi, copy)


class _TwoReaders(nn.Module):
    """Two Linear modules read one tensor; ``bump`` modifies it in place between the two reads."""

    def __init__(self, bump: bool, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.a = nn.Linear(width, width)
        self.b = nn.Linear(width, width)
        self.head = nn.Linear(width, 4)
        self.bump = bump

    def forward(self, x):
        h = self.norm(x)
        a = torch.relu(self.a(h))
        if self.bump:
            h.mul_(1.5)
        return self.head(a * torch.sigmoid(self.b(h)))


@pytest.mark.parametrize("merge", [True, False])  # the probes as one merged forward, or one at a time
@pytest.mark.parametrize("bump", [False, True])
@pytest.mark.parametrize("width", [16, 128])  # below and above FAST_FAKE_QUANT_MIN elements a batch
def test_an_input_shared_by_two_readers_gives_what_quantizing_it_twice_gives(monkeypatch, bump, width, merge):
    torch.manual_seed(5)
    model = _TwoReaders(bump, width).eval()
    probes = [torch.randn(32, width) for _ in range(3)]
    # a and b share their calibrated range (so their qparams): only the in-place change tells them apart.
    ranges = {"a": (-2.5, 3.0), "b": (-2.5, 3.0)}
    analysis = ErrorAnalysis(model, ModelCatalog.build(model), probes, ranges)
    analysis.merge_probes = merge
    forwards = 1 if merge and analysis._merged_probes() is not None else len(probes)
    assert (forwards == 1) == merge  # these probes merge (row-wise model, equal shapes)
    keep = _InputMemo.keep
    for scheme in ("static_per_tensor", "static_per_channel"):
        plan = analysis.plan({f: scheme for f in analysis.quantizable})
        kept: list[int] = []

        def counting(self, *args, kept=kept):
            kept.append(1)
            keep(self, *args)

        monkeypatch.setattr(_InputMemo, "keep", counting)
        shared = analysis.plan_sqnr(plan)
        # a, then b reusing a's quantized input unless it was modified in between, then head.
        assert len(kept) == (3 if bump else 2) * forwards
        analysis._plan_cache.clear()
        monkeypatch.setattr(_InputMemo, "keep", lambda self, *args: None)  # every input quantized
        twice = analysis.plan_sqnr(plan)
        analysis._plan_cache.clear()
        assert shared.db is not None and shared == twice


def test_range_pass_without_then_with_advice_equals_one_with_advice(showcase):
    model, catalog, probes, stats = showcase
    one = ErrorAnalysis(model, catalog, probes)  # no calibrated ranges: a range pass either way
    at_once = one.local_measurements(advice=True)
    two = ErrorAnalysis(model, catalog, probes)
    without = two.local_measurements(advice=False)
    assert all(m.clipped is None and m.equalized is None for m in without.values())
    assert two.local_measurements(advice=True) == at_once
    plan_first = ErrorAnalysis.from_stats(model, catalog, probes, stats)
    given = ErrorAnalysis.from_stats(model, catalog, probes, stats)
    plan = given.recommended_plan()
    plan_first.plan_sqnr(plan)  # its range pass leaves the advice statistics out
    assert plan_first.local_measurements(advice=True) == given.local_measurements(advice=True)
    assert plan_first.plan_sqnr(plan) == given.plan_sqnr(plan)


def _norm_inputs():
    torch.manual_seed(6)
    d = torch.randn(3, 20000) * 10
    yield "rows", d, 1
    yield "whole", d, None
    yield "NaN and inf", torch.where(d > 25, torch.nan, torch.where(d < -25, torch.inf, d)), 1
    yield "float32 near its largest value", d * 1e37, 1
    yield "empty", torch.zeros(3, 0), 1
    yield "non-contiguous", d.t(), 1
    yield "float16", d.half(), 1
    yield "bfloat16", d.bfloat16(), None
    yield "float64", d.double(), 1


@pytest.mark.parametrize("case", [c[0] for c in _norm_inputs()])
def test_scratch_norm_equals_the_float64_norm(case):
    _, t, dim = next(c for c in _norm_inputs() if c[0] == case)
    scratch = Scratch()
    expected = torch.linalg.vector_norm(t, dim=dim, dtype=torch.float64)
    for _ in range(2):  # the second time in the kept buffer
        assert _same(scratch.vector_norm64(t, dim), expected)
    smaller = t[..., : t.shape[-1] // 2].contiguous()  # a smaller tensor in the same buffer
    assert _same(scratch.vector_norm64(smaller, dim), torch.linalg.vector_norm(smaller, dim=dim, dtype=torch.float64))


@pytest.mark.parametrize("sample", ["showcase", "outlier_channels", "drifting_mlp"])
def test_local_measurements_with_kept_buffers_equal_fresh_ones(monkeypatch, sample):
    measure = sample_measurer(sample, advice=True)

    kept = measure()
    monkeypatch.setattr(Scratch, "buffer", lambda self, slot, shape, dtype, device: torch.empty(shape, dtype=dtype))
    monkeypatch.setattr(
        Scratch, "vector_norm64", lambda self, t, dim=None: torch.linalg.vector_norm(t, dim=dim, dtype=torch.float64)
    )
    assert measure() == kept


def _per_token_before(x: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """The per-token path of fake_quantize_dynamic before its fast path."""
    from tui_quantreport.engine.quantsim.qparams import _fake_quantize_rows, affine_qparams

    xf = x if x.dtype == torch.float32 else x.float()
    if xf.numel() == 0:
        return x
    rows = xf.reshape(-1, xf.shape[-1])
    scale, zp = affine_qparams(rows.amin(dim=1), rows.amax(dim=1), qmin, qmax)
    out = _fake_quantize_rows(rows, scale, zp, qmin, qmax).reshape(xf.shape)
    return out if out.dtype == x.dtype else out.to(x.dtype)


def _token_inputs():
    torch.manual_seed(7)
    x = torch.randn(4, 12, 40) * torch.logspace(-3, 3, 12).view(1, 12, 1) + 0.3
    yield "mixed scales", x
    yield "all positive rows", x.abs() + 1
    yield "all negative rows", -x.abs() - 1
    yield "zero rows", torch.where(torch.arange(12).view(1, 12, 1) % 3 == 0, 0.0, x)
    yield "-0.0 rows", torch.where(torch.arange(12).view(1, 12, 1) % 3 == 0, -0.0, x)
    yield "constant rows", torch.full((2, 5, 40), -2.5)
    yield "NaN", torch.where(x > 2, torch.nan, x)
    yield "inf", torch.where(x > 2, torch.inf, x)
    yield "width beyond float32", torch.where(x > 0, 3e38, -3e38)
    yield "halfway values", (torch.randint(-300, 300, (3, 8, 40)).float() + 0.5) / 127
    yield "empty", torch.zeros(2, 0, 40)
    yield "non-contiguous", x.transpose(0, 1)
    yield "float16", x.clamp(-6e4, 6e4).half()
    yield "bfloat16", x.bfloat16()


@pytest.mark.parametrize("case", [c[0] for c in _token_inputs()])
@pytest.mark.parametrize("qmin,qmax", [(0, 127), (0, 255)])
def test_dynamic_per_token_equals_the_path_it_replaces(case, qmin, qmax):
    x = next(c for c in _token_inputs() if c[0] == case)[1]
    got, expected = fake_quantize_dynamic(x, qmin, qmax, per_token=True), _per_token_before(x, qmin, qmax)
    assert _same(got, expected)
    # bit for bit, the sign of zeros included
    assert torch.equal(torch.signbit(got[~torch.isnan(got)]), torch.signbit(expected[~torch.isnan(expected)]))


def _model_state(model: nn.Module):
    return (
        {name: m.training for name, m in model.named_modules()},
        {name: {k: v.clone() for k, v in m._buffers.items() if v is not None} for name, m in model.named_modules()},
        {name: {k: v for k, v in vars(m).items() if not k.startswith("_")} for name, m in model.named_modules()},
    )


def _same_state(a, b) -> bool:
    return (
        a[0] == b[0]
        and a[1].keys() == b[1].keys()
        and all(a[1][n].keys() == b[1][n].keys() and all(_same(a[1][n][k], b[1][n][k]) for k in a[1][n]) for n in a[1])
        and a[2] == b[2]
    )


def test_freeze_restores_what_the_session_freeze_restores():
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

    from tui_quantreport.engine.model_state import freeze_model_state

    def build():
        torch.manual_seed(8)
        model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
        model.add_module("obs", MinMaxObserver())
        model.add_module("chan", PerChannelMinMaxObserver(ch_axis=1))
        model[0].train()
        model[2].eval()
        model.obs.custom = "kept"
        return model

    def disturb(model):
        model.eval()
        model.obs(torch.randn(5, 4) * 7)
        model.chan(torch.randn(3, 4))  # resizes its per-channel buffers
        model.obs.custom = "changed"
        model.obs.added = 1
        model.chan.ch_axis = 0

    for freeze in ("session", "analysis"):
        model = build()
        before = _model_state(model)
        if freeze == "session":
            restore = freeze_model_state(model)
        else:
            restore = ErrorAnalysis(model, ModelCatalog.build(model), [torch.randn(2, 8)])._freeze()
        disturb(model)
        assert not _same_state(_model_state(model), before)
        restore()
        after = _model_state(model)
        if freeze == "session":
            expected = after
        else:
            assert _same_state(after, expected)
