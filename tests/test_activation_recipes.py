"""The faster fp4 casts and int8 per-token recipe give torchao's own bits
(engine/quantsim/activation_recipes.py): NaN where torchao has NaN, and every other value the same
bits (signed zeros too), in float32 and bfloat16 (and float16 where torchao takes it)."""

from __future__ import annotations

import pytest
import torch

from tui_quantreport.engine.quantsim.activation_recipes import (
    e2m1_values,
    float8_dequantized,
    int8_per_token_asym_dequantized,
    mx_dequantized,
    nvfp4_dequantized,
)
from tui_quantreport.engine.quantsim.hostsync import device_path

TIES = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])  # halfway between two e2m1 values


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view({4: torch.int32, 2: torch.int16}[t.element_size()])


def _same(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """NaN exactly where torchao has NaN; every other value bit for bit."""
    if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
        return False
    nan = torch.isnan(theirs)
    return torch.equal(torch.isnan(ours), nan) and torch.equal(_bits(ours)[~nan], _bits(theirs)[~nan])


def _torchao_e2m1(v: torch.Tensor) -> torch.Tensor:
    from torchao.prototype.mx_formats.kernels import f4_unpacked_to_f32, f32_to_f4_unpacked

    return f4_unpacked_to_f32(f32_to_f4_unpacked(v))


def test_e2m1_rounding_equals_torchao_cast_on_every_tie_and_a_dense_grid():
    ties = torch.cat([TIES, -TIES])
    values = torch.cat(
        [
            torch.linspace(-6.0, 6.0, 480_001),  # steps of 2.5e-5: every code's neighbourhood
            ties,
            torch.nextafter(ties, torch.zeros_like(ties)),
            torch.nextafter(ties, ties * 2),
            torch.tensor([0.0, -0.0, 6.0, -6.0, 1e-45, -1e-45, 1e-38, -1e-38, 5.999999, -5.999999]),
        ]
    )
    assert _same(e2m1_values(values), _torchao_e2m1(values))


def _blocks(rows: int, cols: int, dtype: torch.dtype, block: int, seed: int = 0) -> torch.Tensor:
    """Gaussian blocks at scales from subnormal to near float32's max, with the values a recipe can
    get wrong: NaN, infinities, all-zero and all-minus-zero blocks, and values that land exactly
    halfway between two e2m1 values after scaling."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=g)
    scales = torch.logspace(-40, 37, rows).unsqueeze(-1)
    x = x * scales
    x[1, :block] = 0.0
    x[2, :block] = -0.0
    x[3, 5] = float("nan")
    x[4, 7] = float("inf")
    x[5, 9] = -float("inf")
    for r, k in ((6, 0), (7, -3), (8, 5)):  # the block's max 6 * 2**k: the ties are the scaled values
        x[r, : len(TIES)] = TIES * 2.0**k
        x[r, len(TIES) : 2 * len(TIES)] = -TIES * 2.0**k
        x[r, 2 * len(TIES) : block] = 0.1 * 2.0**k
        x[r, block - 1] = 6.0 * 2.0**k
    x[9, :] = 3e38 * torch.sign(x[9, :])
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("shape", [(64, 64), (40, 256)])
def test_mx_equals_torchao_mxtensor(dtype, bits, shape):
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.mx_tensor import MXTensor

    x = _blocks(*shape, dtype, 32)
    elem = torch.float8_e4m3fn if bits == 8 else torch.float4_e2m1fn_x2
    theirs = MXTensor.to_mx(x, elem, 32, scaling_mode=ScaleCalculationMode.RCEIL).dequantize(dtype)
    assert _same(mx_dequantized(x, bits), theirs)
    with device_path():  # no host read anywhere: the same path on every device
        assert _same(mx_dequantized(x, bits), theirs)


def _nvfp4_torchao(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor

    return NVFP4Tensor.to_nvfp4(x, per_tensor_scale=scale).dequantize(x.dtype)


def _nvfp4_cases(dtype: torch.dtype):
    from torchao.prototype.mx_formats.nvfp4_tensor import per_tensor_amax_to_scale

    g = torch.Generator().manual_seed(3)
    plain = torch.randn(48, 64, generator=g) * torch.logspace(-3, 3, 64)
    ties = _blocks(12, 64, torch.float32, 16)[6:9]  # the tie rows, finite
    spread = torch.randn(16, 32, generator=g) * torch.logspace(-30, 30, 16).unsqueeze(-1)
    cases = {
        "plain": plain,
        "ties": ties,
        "spread (blocks at the e4m3 scale's floor)": spread,
        "zero blocks": torch.where(torch.arange(64) < 16, 0.0, plain),
        "minus zero": -torch.zeros(4, 32),
        "all zero": torch.zeros(4, 32),
        "NaN": torch.where(plain > 2.5, float("nan"), plain),
        "inf": torch.where(plain > 2.5, float("inf"), plain),
        "tiny (reciprocal scale overflows)": plain * 1e-36,
        "subnormal": plain * 1e-42,
    }
    for name, x in cases.items():
        x = x.to(dtype).contiguous()
        yield name, x, per_tensor_amax_to_scale(torch.max(torch.abs(x)))
    stacked = torch.stack([plain[:16, :32] * 1e-3, plain[16:32, :32], plain[32:48, :32] * 1e3]).to(dtype)
    yield "stacked", stacked, per_tensor_amax_to_scale(torch.amax(torch.abs(stacked), dim=(1, 2), keepdim=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nvfp4_equals_torchao_nvfp4tensor(dtype):
    for name, x, scale in _nvfp4_cases(dtype):
        theirs = _nvfp4_torchao(x, scale)
        assert _same(nvfp4_dequantized(x, scale), theirs), name
        with device_path():  # off the host: torchao's own path, so the same values
            assert _same(nvfp4_dequantized(x, scale), theirs), name


def _int8_cases(dtype: torch.dtype):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 24, 100, generator=g) * torch.logspace(-3, 3, 24).view(1, 24, 1) + 0.3
    yield "mixed scales", x
    yield "ties", torch.arange(-128, 128, dtype=torch.float32).view(4, 64) * 0.5 + 0.25
    yield "zero rows", torch.where(torch.arange(24).view(1, 24, 1) % 3 == 0, 0.0, x)
    yield "constant rows", torch.full((3, 40), -2.5)
    yield "subnormal rows", x * 1e-41
    yield "NaN", torch.where(x > 2, float("nan"), x)
    yield "inf", torch.where(x > 2, float("inf"), x)
    yield "range beyond float32", torch.where(x > 0, 3e38, -3e38)
    yield "one row", x[0, 0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_int8_per_token_equals_torchao(dtype):
    from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import (
        _apply_int8_act_asym_per_token_quant_dequant,
    )

    for name, x in _int8_cases(dtype):
        x = x.to(dtype)
        theirs = _apply_int8_act_asym_per_token_quant_dequant(x)
        assert _same(int8_per_token_asym_dequantized(x), theirs), name
        with device_path():
            assert _same(int8_per_token_asym_dequantized(x), theirs), name


def _float8_torchao(x: torch.Tensor, per_row: bool, scale: torch.Tensor | None) -> torch.Tensor:
    from torchao.quantization.quant_primitives import (
        _choose_scale_float8,
        _dequantize_affine_float8,
        _quantize_affine_float8,
    )

    if scale is None:
        block = [1] * (x.dim() - 1) + [x.shape[-1]] if per_row and x.dim() else list(x.shape)
        scale = _choose_scale_float8(x, block_size=block, float8_dtype=torch.float8_e4m3fn)
    return _dequantize_affine_float8(_quantize_affine_float8(x, scale, torch.float8_e4m3fn), scale, x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("per_row", [True, False])
def test_float8_equals_torchao_primitives(dtype, per_row):
    cases = dict(_int8_cases(torch.float32))
    cases["halfway between e4m3 values"] = torch.tensor([448.0, 1.0625, 1.1875, -1.0625, 2.0**-7 * 1.5, 2.0**-10])
    cases["a scalar"] = torch.tensor(3.0)
    for name, x in cases.items():
        x = x.to(dtype)
        assert _same(float8_dequantized(x, per_row), _float8_torchao(x, per_row, None)), name
        static = torch.tensor(0.0123, dtype=torch.float32)  # a calibrated per-tensor scale
        assert _same(float8_dequantized(x, per_row, static), _float8_torchao(x, per_row, static)), name


@pytest.mark.parametrize("name", ["mxfp4", "mxfp8", "nvfp4", "8da4w_g32", "fp8_dynamic_per_row"])
def test_schemes_quantize_inputs_and_weights_as_torchao_does(name):
    """The schemes route through the faster forms and still give torchao's values."""
    from torch import nn

    from tui_quantreport.engine.quantsim.kinds import kind_of
    from tui_quantreport.engine.quantsim.schemes import SCHEMES
    from tui_quantreport.engine.quantsim.schemes.base import InputContext

    scheme = SCHEMES[name]
    x = _blocks(32, 64, torch.float32, 32, seed=5).view(2, 16, 64)
    weight = torch.randn(32, 64, generator=torch.Generator().manual_seed(6))
    if name.startswith("mx"):
        from torchao.prototype.mx_formats.config import ScaleCalculationMode
        from torchao.prototype.mx_formats.mx_tensor import MXTensor

        elem = torch.float8_e4m3fn if name == "mxfp8" else torch.float4_e2m1fn_x2

        def theirs(t):
            flat = t.reshape(-1, t.shape[-1]).contiguous()
            return MXTensor.to_mx(flat, elem, 32, scaling_mode=ScaleCalculationMode.RCEIL).dequantize(t.dtype)

    elif name == "nvfp4":
        from torchao.prototype.mx_formats.nvfp4_tensor import per_tensor_amax_to_scale

        x = torch.nan_to_num(x, nan=1.0, posinf=2.0, neginf=-2.0)  # finite: the faster path

        def theirs(t):
            flat = t.reshape(-1, t.shape[-1]).contiguous()
            return _nvfp4_torchao(flat, per_tensor_amax_to_scale(torch.max(torch.abs(flat))))

    elif name == "fp8_dynamic_per_row":

        def theirs(t):
            return _float8_torchao(t, True, None)

    else:
        from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import (
            _apply_int8_act_asym_per_token_quant_dequant as theirs,
        )
    ctx = InputContext(static=None, quant_min=0, quant_max=255)
    assert _same(scheme.input(x, ctx).reshape(-1, 64), theirs(x).reshape(-1, 64))
    if name != "8da4w_g32":
        assert _same(scheme.weight(weight, kind_of(nn.Linear(64, 32))), theirs(weight).reshape(weight.shape))
