"""The simulation's vectorised fake quantization equals torch's own kernels, value for value."""

from __future__ import annotations

import pytest
import torch

from tui_quantreport.engine.quantsim.qparams import (
    FAST_FAKE_QUANT_MIN,
    _fake_quantize_rows,
    affine_qparams,
    fake_quantize_dynamic,
    fake_quantize_float32,
    fake_quantize_weight,
    fake_quantize_weights,
    inverse_scale,
    scalar_affine_qparams,
)


@pytest.mark.parametrize("qmin,qmax", [(0, 127), (0, 255)])
def test_per_tensor_fast_path_equals_torch(qmin, qmax):
    torch.manual_seed(0)
    for trial in range(50):
        lo, hi = sorted((torch.randn(2) * 10.0 ** (trial % 7 - 3)).tolist())
        scale, zp = scalar_affine_qparams(lo, hi, qmin, qmax)
        x = torch.randn(4 * FAST_FAKE_QUANT_MIN) * (hi - lo) + (hi + lo) / 2
        x[:100] = (torch.randint(-400, 400, (100,)).float() + 0.5) * scale  # halfway cases
        x[100:106] = torch.tensor([1e30, -1e30, 0.0, 3e38, -3e38, 1e-45])
        expected = torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)
        assert torch.equal(fake_quantize_float32(x, scale, zp, qmin, qmax, inverse_scale(scale)), expected)


def test_per_row_and_dynamic_fast_paths_equal_torch():
    torch.manual_seed(1)
    x = torch.randn(6, 40, 64) * torch.logspace(-3, 3, 40).view(1, 40, 1) + 2
    rows = x.reshape(-1, 64)
    lo, hi = torch.aminmax(rows, dim=1)
    scale, zp = affine_qparams(lo, hi, 0, 127)
    expected = torch.fake_quantize_per_channel_affine(rows, scale, zp, 0, 0, 127)
    assert torch.equal(_fake_quantize_rows(rows, scale, zp, 0, 127), expected)
    assert torch.equal(fake_quantize_dynamic(x, 0, 127, per_token=True), expected.reshape(x.shape))
    flat_lo, flat_hi = torch.aminmax(x)
    s, z = affine_qparams(flat_lo, flat_hi, 0, 127)
    assert torch.equal(
        fake_quantize_dynamic(x, 0, 127, per_token=False),
        torch.fake_quantize_per_tensor_affine(x, float(s), int(z), 0, 127),
    )


@pytest.mark.parametrize("shape,axis", [((16, 8), 0), ((6, 3, 3, 3), 0), ((5, 7, 3), 0), ((16, 8), 1)])
def test_stacked_weight_quantization_equals_one_by_one_and_torch(shape, axis):
    torch.manual_seed(2)
    stack = torch.randn(4, *shape) * torch.logspace(-3, 2, 4).view(4, *[1] * len(shape))
    for per_channel in (True, False):
        together = fake_quantize_weights(stack, per_channel, axis)
        for i in range(4):
            alone = fake_quantize_weight(stack[i], per_channel, axis)
            assert torch.equal(together[i], alone)
    w = stack[0]
    moved = w.movedim(axis, 0).reshape(shape[axis], -1)
    bound = torch.maximum(-moved.amin(1).clamp(max=0), moved.amax(1).clamp(min=0))
    scale = torch.clamp(bound / 127.5, min=torch.finfo(torch.float32).eps)
    expected = torch.fake_quantize_per_channel_affine(
        w, scale, torch.zeros(shape[axis], dtype=torch.int32), axis, -128, 127
    )
    assert torch.equal(fake_quantize_weight(w, True, axis), expected)


def test_without_the_fused_kernels_the_torch_ops_run():
    """numba absent (or the fused kernels switched off): decided once, at import; the torch ops
    (the path the fused kernels are held to) give the values from 2,048 elements on."""
    import os
    import subprocess
    import sys

    code = (
        "from tui_quantreport.engine.quantsim import fused, qparams\n"
        "print(fused.ENABLED, qparams._FUSED, qparams.FAST_FAKE_QUANT_MIN, fused.kernels())"
    )
    env = {**os.environ, "TUI_QUANTREPORT_FAKE_QUANT": "torch"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "2048", "None"]
