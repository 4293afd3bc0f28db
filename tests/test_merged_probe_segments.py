"""A dynamic per-tensor input under a merged batch: every probe segment quantized in one call (the fused
rows kernel where numba is installed, else one reduction and torch's ops with a scale per segment) gives,
bit for bit, each segment quantized alone (the per-tensor path it replaces), and the cases it does not
take fall back to the pieces one by one. Each case runs on both paths."""

from __future__ import annotations

import pytest
import torch

from tui_quantreport.engine.quantsim import fused, qparams
from tui_quantreport.engine.quantsim.hostsync import device_path
from tui_quantreport.engine.quantsim.merged_probes import Segments, per_segment
from tui_quantreport.engine.quantsim.qparams import (
    FAST_FAKE_QUANT_MIN,
    fake_quantize_dynamic,
    fake_quantize_dynamic_segments,
)

QMIN, QMAX = 0, 255


@pytest.fixture(params=["fused", "torch"])
def path(request, monkeypatch):
    """Which one-call form runs: numba's rows kernel (skipped without numba) or torch's ops."""
    if request.param == "fused":
        if fused.kernels() is None:
            pytest.skip(f"fused kernels: {fused.unavailable_reason()}")
        monkeypatch.setattr(qparams, "_FUSED", True)
    else:
        monkeypatch.setattr(qparams, "_FUSED", False)
    return request.param


def _alone(x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    return torch.cat([fake_quantize_dynamic(p, QMIN, QMAX, per_token=False) for p in torch.split(x, list(sizes))])


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def _cases():
    g = torch.Generator().manual_seed(7)
    yield "gaussian at mixed scales", torch.cat([torch.randn(8, 32, generator=g) * s for s in (1e-3, 1.0, 30.0, 1e6)])
    # Values k + 0.5 on a segment whose range is [0, 255]: scale 1, every value a tie for nearbyint.
    ties = torch.arange(0, 256, dtype=torch.float32).view(8, 32) + 0.5
    ties[0, 0], ties[-1, -1] = 0.0, 255.0
    yield "ties", torch.cat([ties, ties * 0.37, -ties, ties + 1000.0])
    zero = torch.zeros(8, 32)
    zero[3, 4] = -0.0
    yield (
        "zero, constant and one-signed segments",
        torch.cat([zero, torch.full((8, 32), 3.25), torch.rand(8, 32, generator=g), -torch.rand(8, 32, generator=g)]),
    )
    yield "3-D rows", torch.randn(4 * 2, 5, 7, generator=g)
    yield "subnormal", torch.randn(16, 16, generator=g) * 1e-40
    yield (
        "negative zeros on a one-signed segment",
        torch.cat([-torch.rand(8, 32, generator=g), torch.full((8, 32), -0.0)] * 2),
    )


def _large_case():
    return torch.randn(4 * FAST_FAKE_QUANT_MIN // 16, 16, generator=torch.Generator().manual_seed(11)) * 3


@pytest.mark.parametrize("name", [c[0] for c in _cases()])
@pytest.mark.parametrize("qrange", [(QMIN, QMAX), (-128, 127)])
def test_segments_in_one_call_equal_each_alone(name, qrange, path):
    x = next(c for c in _cases() if c[0] == name)[1]
    sizes = (x.shape[0] // 4,) * 4
    ours = fake_quantize_dynamic_segments(x, sizes, *qrange)
    assert ours is not None, "this case takes the one-call form"
    alone = torch.cat([fake_quantize_dynamic(p, *qrange, per_token=False) for p in torch.split(x, list(sizes))])
    assert torch.equal(_bits(ours), _bits(alone))


def test_segments_past_the_small_size_take_the_fused_kernel_alone(path):
    """Segments of FAST_FAKE_QUANT_MIN elements and more: numba's kernel takes them in one call (the
    same bits as each alone); torch's ops leave them to the pieces (each alone takes its faster path)."""
    x = _large_case()
    sizes = (x.shape[0] // 4,) * 4
    ours = fake_quantize_dynamic_segments(x, sizes, QMIN, QMAX)
    if path == "torch":
        assert ours is None
    else:
        assert ours is not None and torch.equal(_bits(ours), _bits(_alone(x, sizes)))


def test_per_segment_takes_the_one_call_form_and_gives_the_same_values(path):
    x = next(_cases())[1]
    sizes = (8, 8, 8, 8)
    segments = Segments()
    calls = []

    def together(t, s):
        calls.append(s)
        return fake_quantize_dynamic_segments(t, s, QMIN, QMAX)

    quantize = per_segment(lambda t: fake_quantize_dynamic(t, QMIN, QMAX, per_token=False), segments, together)
    segments.sizes = sizes
    assert torch.equal(_bits(quantize(x)), _bits(_alone(x, sizes)))
    assert calls == [sizes]


def test_what_it_does_not_take_falls_back_to_the_pieces(path):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(32, 32, generator=g)
    sizes = (8, 8, 8, 8)
    segments = Segments()
    segments.sizes = sizes
    quantize = per_segment(
        lambda t: fake_quantize_dynamic(t, QMIN, QMAX, per_token=False),
        segments,
        lambda t, s: fake_quantize_dynamic_segments(t, s, QMIN, QMAX),
    )
    nan = x.clone()
    nan[3, 3] = float("nan")
    inf = x.clone()
    inf[20, 1] = float("inf")
    big = _large_case()
    big[5, 5] = float("nan")
    refused = {
        "NaN": (nan, sizes),
        "infinity": (inf, sizes),
        "unequal segments": (x, (8, 8, 10, 6)),
        "NaN in segments past the small size": (big, (big.shape[0] // 4,) * 4),
        "bfloat16": (x.bfloat16(), sizes),
        "not contiguous": (x.t(), sizes),
    }
    for why, (t, s) in refused.items():
        assert fake_quantize_dynamic_segments(t, s, QMIN, QMAX) is None, why
        if t.dtype == torch.float32 and t.is_contiguous():
            segments.sizes = s
            ours, theirs = quantize(t), _alone(t, s)
            same_nan = torch.equal(torch.isnan(ours), torch.isnan(theirs))
            assert same_nan and torch.equal(ours[~torch.isnan(ours)], theirs[~torch.isnan(theirs)]), why
    with device_path():  # off the host the extremes are not read back: the pieces one by one
        assert fake_quantize_dynamic_segments(x, sizes, QMIN, QMAX) is None


def test_a_merged_plan_evaluation_takes_the_one_call_form(monkeypatch, path):
    """The plan's dynamic Linear inputs under a merged batch go through the one-call form (not a
    fallback to the probes one at a time), and the SQNR is the same double as one probe at a time."""
    from torch import nn

    from tui_quantreport.engine import Session, Settings
    from tui_quantreport.engine.quantsim import ErrorAnalysis, qparams
    from tui_quantreport.engine.quantsim.schemes import dynamic as dynamic_scheme

    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(32, 48), nn.GELU(), nn.Linear(48, 16)).eval()
    probes = [torch.randn(8, 32) * s for s in (0.5, 1.0, 2.0, 4.0)]
    session = Session(model)
    stats = session.calibrate(probes, Settings.build())
    analysis = ErrorAnalysis.from_stats(model, session.catalog, probes, stats)
    taken = []

    def counted(x, sizes, qmin, qmax):
        out = qparams.fake_quantize_dynamic_segments(x, sizes, qmin, qmax)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(dynamic_scheme, "fake_quantize_dynamic_segments", counted)
    plan = analysis.plan(dict.fromkeys(analysis.targets, "dynamic"))
    merged = analysis.plan_sqnr(plan)
    assert taken and all(taken), "every dynamic input of the merged batch took the one-call form"
    analysis.merge_probes = False
    analysis._plan_cache.clear()
    alone = analysis.plan_sqnr(plan)
    assert merged == alone and merged.defined


@pytest.mark.parametrize("shape", [(4 * 3, 5, 64), (4 * 2, 16, 40), (4 * 8, 33)])
def test_a_per_token_input_is_quantized_whole_with_each_segment_s_values(shape, path):
    """Per-token dynamic inputs (rank >= 3 under torchao's recipe, or every rank with
    ``per_token_min_ndim=2``): each row of the last axis has its own qparams and no row crosses a
    probe segment, so the merged tensor quantized at once is, bit for bit, each probe's alone."""
    from tui_quantreport.engine.quantsim.schemes import SCHEMES, InputContext

    g = torch.Generator().manual_seed(12)
    x = torch.randn(*shape, generator=g) * torch.rand(shape[-1], generator=g) * 5
    x[0, ...] = -0.0
    ctx = InputContext(None, -128, 127, 3 if len(shape) == 3 else 2)
    assert ctx.per_token(x)
    scheme = SCHEMES["dynamic"]
    sizes = (shape[0] // 4,) * 4
    together = scheme.segments_function(ctx)(x, sizes)
    alone = torch.cat([scheme.input(p, ctx) for p in torch.split(x, list(sizes))])
    assert together is not None and torch.equal(_bits(together), _bits(alone))
