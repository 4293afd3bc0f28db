"""The faster NF4 and HQQ weight recipes give torchao's own bits (engine/quantsim/weight_recipes.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tui_quantreport.engine.quantsim.kinds import kind_of
from tui_quantreport.engine.quantsim.schemes import SCHEMES
from tui_quantreport.engine.quantsim.weight_recipes import NF4_CODES, hqq_proximal, nf4_dequantized

LINEAR = kind_of(nn.Linear(4, 4))


def _bits(t: torch.Tensor) -> torch.Tensor:
    if not t.is_floating_point():
        return t
    return t.contiguous().view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _awkward(rows: int, cols: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Gaussian weights with the values a recipe can get wrong: NaN, infinities, signed zeros, an
    all-zero block, values exactly halfway between two NF4 codes and one step either side."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows * cols, generator=g)
    w[:64] = 0.0
    w[64:128] = -0.0
    w[150], w[300], w[450] = float("nan"), float("inf"), -float("inf")
    codes = torch.tensor(NF4_CODES)
    halfway = (codes[:-1] + codes[1:]) / 2
    for i, values in enumerate((halfway, torch.nextafter(halfway, codes[1:]), torch.nextafter(halfway, codes[:-1]))):
        start = 1024 + 64 * i
        w[start : start + 15] = values
        w[start + 15] = 1.0  # the block's absmax: the values are their own scaled values
    return w.view(rows, cols).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(256, 128), (64, 512), (16384,)])
def test_nf4_equals_torchao_to_nf4(dtype, shape):
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import to_nf4

    rows, cols = (shape[0], shape[1]) if len(shape) == 2 else (shape[0] // 64, 64)
    w = _awkward(rows, cols, dtype).reshape(shape)
    expected = to_nf4(w, 64, 256).get_original_weight()
    assert _same(nf4_dequantized(w, 64, 256), expected)
    smooth = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype) * 0.02
    assert _same(nf4_dequantized(smooth, 64, 256), to_nf4(smooth, 64, 256).get_original_weight())


def test_nf4_refuses_as_torchao_does():
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import to_nf4

    for w in (torch.randn(64, 100), torch.randn(8, 8, 64, 64)):  # scalers not a multiple of 256; 4-D
        with pytest.raises(AssertionError) as ours:
            nf4_dequantized(w, 64, 256)
        with pytest.raises(AssertionError) as theirs:
            to_nf4(w, 64, 256)
        assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("group", [32, 128])
def test_hqq_solver_equals_torchao(dtype, group):
    from torchao.quantization.quant_primitives import _choose_qparams_and_quantize_affine_hqq

    g = torch.Generator().manual_seed(2)
    for w in (
        torch.randn(128, 256, generator=g),
        torch.randn(64, 512, generator=g) * 0.02,
        _awkward(64, 256, torch.float32),
    ):
        w = w.to(dtype)
        theirs = _choose_qparams_and_quantize_affine_hqq(
            w, nbits=4, group_size=group, axis=1, compute_dtype=dtype, device=w.device
        )
        ours = _choose_qparams_and_quantize_affine_hqq(
            w, nbits=4, group_size=group, axis=1, compute_dtype=dtype, device=w.device, optimize_weights=hqq_proximal
        )
        for a, b in zip(ours[:3], theirs[:3]):
            assert _same(a, b)


def test_hqq_solver_other_parameters_equal_torchao():
    """The solver's parameters (another norm, no early stop, the L1 branch) take the same path as torchao's."""
    from torchao.quantization.quant_primitives import optimize_weights_proximal_legacy

    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(3)).reshape(-1, 64)
    lo, hi = w.min(dim=1, keepdim=True)[0], w.max(dim=1, keepdim=True)[0]
    scale = (15 / (hi - lo)).clamp(max=2e4)
    zero = torch.round(-lo * scale)
    for params in (
        {"lp_norm": 0.7, "beta": 1e1, "kappa": 1.01, "iters": 20, "early_stop": True},
        {"lp_norm": 1, "beta": 5.0, "kappa": 1.05, "iters": 7, "early_stop": False},
        {"lp_norm": 0.5, "beta": 20.0, "kappa": 1.0, "iters": 3, "early_stop": False},
    ):
        theirs = optimize_weights_proximal_legacy(w, scale, zero, [0, 15], axis=1, opt_params=dict(params))
        ours = hqq_proximal(w, scale, zero, [0, 15], axis=1, opt_params=dict(params))
        assert all(_same(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("name", ["nf4", "int4_hqq_g128"])
def test_schemes_use_the_exact_recipes(name):
    """The schemes' weights are the fast recipes' and equal the torchao path they replaced."""
    from torchao.quantization.quant_primitives import (
        _choose_qparams_and_quantize_affine_hqq,
        _dequantize_affine_tinygemm,
    )
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import to_nf4

    w = torch.randn(128, 512, generator=torch.Generator().manual_seed(4)) * 0.05
    got = SCHEMES[name].weight(w, LINEAR)
    if name == "nf4":
        expected = to_nf4(w, 64, 256).get_original_weight()
    else:
        q, scale, zero, _ = _choose_qparams_and_quantize_affine_hqq(
            w, nbits=4, group_size=128, axis=1, compute_dtype=w.dtype, device=w.device
        )
        expected = _dequantize_affine_tinygemm(
            q.to(torch.int32),
            (1, 128),
            scale.reshape(128, -1),
            zero.reshape(128, -1),
            torch.int32,
            0,
            15,
            output_dtype=w.dtype,
        )
    assert _same(got, expected)
