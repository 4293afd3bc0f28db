"""The fused fake-quantization kernels (numba, the ``fast`` extra) give the same bits as the torch
ops they replace: random data, halfway ties, signed zeros, NaN and infinities, empty, non-contiguous
and half-precision inputs. Skipped where numba is not installed."""

from __future__ import annotations

import math

import pytest
import torch
from measure_helpers import sample_measurer

from tui_quantreport.engine.quantsim import fused, qparams
from tui_quantreport.engine.quantsim.qparams import (
    fake_quantize_dynamic,
    fake_quantize_float32,
    fake_quantize_float32_,
    fake_quantize_static,
    inverse_scale,
    scalar_affine_qparams,
)

pytestmark = pytest.mark.skipif(fused.kernels() is None, reason=f"fused kernels: {fused.unavailable_reason()}")


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32) if t.dtype == torch.float32 else t.contiguous().view(torch.int16)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit (signed zeros and NaN payloads included)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


@pytest.fixture
def torch_path(monkeypatch):
    """Calls the qparams functions with the fused kernels switched off (the path they replace)."""

    def run(fn, *args, **kwargs):
        with monkeypatch.context() as m:
            m.setattr(qparams, "_FUSED", False)
            return fn(*args, **kwargs)

    return run


def _nasty(n: int, scale: float) -> torch.Tensor:
    x = torch.randn(n) * 50 * scale
    x[:200] = (torch.randint(-400, 400, (200,)).float() + 0.5) * scale  # halfway cases
    special = [0.0, -0.0, math.nan, math.inf, -math.inf, 1e30, -1e30, 3e38, -3e38, 1e-45, -1e-45]
    x[200 : 200 + len(special)] = torch.tensor(special)
    x[300:340] = -0.0
    return x


def test_the_fused_path_is_on_with_numba_and_starts_where_the_torch_ops_did():
    assert fused.ENABLED and qparams._FUSED
    assert qparams.FAST_FAKE_QUANT_MIN == fused.MIN_NUMEL == 2048


@pytest.mark.parametrize("qmin,qmax", [(0, 127), (0, 255), (-128, 127)])
def test_per_tensor_kernel_equals_the_torch_ops_bit_for_bit(qmin, qmax, torch_path):
    torch.manual_seed(0)
    for trial in range(40):
        lo, hi = sorted((torch.randn(2) * 10.0 ** (trial % 7 - 3)).tolist())
        scale, zp = scalar_affine_qparams(lo, hi, qmin, qmax)
        inv = inverse_scale(scale)
        x = _nasty(3 * fused.MIN_NUMEL + 7, scale)
        expected = torch_path(fake_quantize_float32, x, scale, zp, qmin, qmax, inv)
        assert _same(fake_quantize_float32(x, scale, zp, qmin, qmax, inv), expected)
        copy = x.clone()
        assert fake_quantize_float32_(copy, scale, zp, qmin, qmax, inv) is copy
        assert _same(copy, expected)
        # Off NaN, the same values as torch's own kernel (which maps NaN to a grid value).
        finite = ~torch.isnan(x)
        reference = torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)
        assert torch.equal(expected[finite], reference[finite])
        assert torch.isnan(expected[~finite]).all()


def test_per_tensor_kernel_declines_what_it_does_not_read(torch_path):
    torch.manual_seed(1)
    scale, zp = scalar_affine_qparams(-3.0, 5.0, 0, 255)
    inv = inverse_scale(scale)
    wide = torch.randn(64, 96)
    strided = wide.t()  # not contiguous: the torch ops take it, the same values as a copy
    assert fused.fake_quantize(strided, scale, zp, 0, 255, inv) is None
    assert _same(
        fake_quantize_float32(strided, scale, zp, 0, 255, inv),
        fake_quantize_float32(strided.contiguous(), scale, zp, 0, 255, inv),
    )
    assert fused.fake_quantize(wide.double(), scale, zp, 0, 255, inv) is None
    assert fused.fake_quantize(wide.requires_grad_(), scale, zp, 0, 255, inv) is None
    empty = torch.empty(0)
    assert _same(
        fake_quantize_float32(empty, scale, zp, 0, 255, inv),
        torch_path(fake_quantize_float32, empty, scale, zp, 0, 255, inv),
    )
    assert fused.fake_quantize(empty, scale, zp, 0, 255, inv) is not None  # nothing to write, nothing wrong


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_static_and_dynamic_of_half_precision_inputs_are_unchanged(dtype, torch_path):
    torch.manual_seed(2)
    x = (torch.randn(8, 40, 64) * 3).to(dtype)
    scale, zp = scalar_affine_qparams(-4.0, 6.0, 0, 127)
    assert _same(fake_quantize_static(x, scale, zp, 0, 127), torch_path(fake_quantize_static, x, scale, zp, 0, 127))
    for per_token in (True, False):
        ours = fake_quantize_dynamic(x, 0, 127, per_token=per_token)
        assert _same(ours, torch_path(fake_quantize_dynamic, x, 0, 127, per_token=per_token))


def test_per_row_kernel_equals_the_torch_ops_bit_for_bit(torch_path):
    torch.manual_seed(3)
    for trial in range(30):
        x = torch.randn(6, 17, 64) * torch.logspace(-4, 4, 17).view(1, 17, 1) + (trial % 3)
        x[:, :, :5] = -0.0
        x[0, 3, 7] = (torch.floor(x[0, 3, 7] * 100) + 0.5) / 100
        if trial % 2:
            x[1] = x[1].abs()  # rows with no negative values: the zero point at qmin, low bound +0
        for qmin, qmax in ((0, 127), (0, 255)):
            ours = fake_quantize_dynamic(x, qmin, qmax, per_token=True)
            expected = torch_path(fake_quantize_dynamic, x, qmin, qmax, per_token=True)
            assert _same(ours, expected)
            rows = x.reshape(-1, 64)
            lo, hi = torch.aminmax(rows, dim=1)
            scale, zp = qparams.affine_qparams(lo, hi, qmin, qmax)
            assert torch.equal(
                ours.reshape(-1, 64), torch.fake_quantize_per_channel_affine(rows, scale, zp, 0, qmin, qmax)
            )


@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf, 3e38])
def test_per_row_kernel_hands_non_finite_scales_to_the_general_path(special, torch_path):
    torch.manual_seed(4)
    x = torch.randn(8, 256)
    x[3, 10] = special
    if special == 3e38:
        x[3, 11] = -3e38  # a width beyond float32
    assert fused.fake_quantize_rows(x, 0, 127, float(qparams.EPS)) is None
    ours = fake_quantize_dynamic(x, 0, 127, per_token=True)
    assert _same(ours, torch_path(fake_quantize_dynamic, x, 0, 127, per_token=True))


def test_per_row_kernel_on_strided_and_tiny_rows(torch_path):
    torch.manual_seed(5)
    x = torch.randn(64, 48, 3)[:, :, 1]  # not contiguous: reshape copies, the kernel reads the copy
    assert _same(
        fake_quantize_dynamic(x, 0, 255, per_token=True), torch_path(fake_quantize_dynamic, x, 0, 255, per_token=True)
    )
    one = torch.randn(2048, 1)  # one value per row: scale from a single value
    assert _same(
        fake_quantize_dynamic(one, 0, 255, per_token=True),
        torch_path(fake_quantize_dynamic, one, 0, 255, per_token=True),
    )
    flat = torch.zeros(16, 128)  # all zeros: the smallest scale
    assert _same(
        fake_quantize_dynamic(flat, 0, 255, per_token=True),
        torch_path(fake_quantize_dynamic, flat, 0, 255, per_token=True),
    )


def test_float64_norm_without_a_copy_equals_torch_bit_for_bit():
    from tui_quantreport.engine.quantsim import sqnr

    assert fused._norm_lanes() is not None  # this machine's torch order was found
    torch.manual_seed(6)
    scratch = sqnr.Scratch()
    for n in (1, 3, 4, 5, 1023, 40000, 131077):
        x = torch.randn(n) * 10.0 ** float(torch.randn(()))
        expected = torch.linalg.vector_norm(x, dtype=torch.float64)
        assert _same64(fused.norm64(x), expected)
        rows = torch.randn(6, n) * 3
        assert _same64(fused.norm64(rows, 1), torch.linalg.vector_norm(rows, dim=1, dtype=torch.float64))
        assert _same64(fused.norm64(rows, -1), torch.linalg.vector_norm(rows, dim=1, dtype=torch.float64))
        if rows.numel() >= scratch.MIN_ELEMENTS:
            assert _same64(scratch.vector_norm64(rows, 1), torch.linalg.vector_norm(rows, dim=1, dtype=torch.float64))
    special = torch.randn(4, 3000)
    special[1, 7], special[2, 9], special[3, 11] = math.nan, math.inf, -math.inf
    special[0, :100] = -0.0
    ours, theirs = fused.norm64(special, 1), torch.linalg.vector_norm(special, dim=1, dtype=torch.float64)
    assert _same64(ours, theirs)
    assert torch.isnan(ours[1]) and ours[2] == math.inf and ours[3] == math.inf
    huge = torch.full((5000,), 3e38)  # squares beyond float32, not float64
    assert _same64(fused.norm64(huge), torch.linalg.vector_norm(huge, dtype=torch.float64))


def test_float64_norm_declines_what_it_does_not_read():
    x = torch.randn(64, 96)
    assert fused.norm64(x.t(), 1) is None  # not contiguous
    assert fused.norm64(x, 0) is None  # not the last axis
    assert fused.norm64(torch.randn(4, 5, 6), 1) is None
    assert fused.norm64(x.half()) is None and fused.norm64(x.bfloat16()) is None and fused.norm64(x.double()) is None
    assert fused.norm64(torch.empty(0)) is None


def _same64(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype == torch.float64
        and a.shape == b.shape
        and torch.equal(a.view(torch.int64), b.view(torch.int64))
    )


@pytest.mark.parametrize("sample", ["showcase", "tiny_transformer"])
def test_measured_error_is_the_same_with_and_without_the_fused_kernels(monkeypatch, sample):
    """End to end: every local measurement (all schemes, advice included) the same, fused or not."""
    from tui_quantreport.engine.quantsim import sqnr

    measure = sample_measurer(sample, advice=True)

    fused_run = measure()
    monkeypatch.setattr(qparams, "_FUSED", False)
    monkeypatch.setattr(sqnr, "_FUSED", False)
    assert measure() == fused_run


def test_the_register_kernel_equals_the_general_lane_kernel():
    k = fused.kernels()
    torch.manual_seed(7)
    for n in (1, 5, 4099):
        rows = torch.randn(3, n)
        a, b = torch.empty(3, dtype=torch.float64), torch.empty(3, dtype=torch.float64)
        k.norm_rows4(rows.numpy(), a.numpy())
        k.norm_rows(rows.numpy(), b.numpy(), 4)
        assert _same64(a, b)
