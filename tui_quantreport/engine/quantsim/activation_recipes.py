"""Exact, faster forms of torchao's fp4 casts and its int8 per-token activation recipe.

The dynamic schemes run these on every input of every module, per probe batch, so their cost is
per element. Each gives the bits torchao's own path gives (``tests/test_activation_recipes.py``
holds them equal with ``torch.equal`` on the raw bits: float32 and bfloat16, NaN, infinities,
signed zeros, all-zero blocks and rows, values halfway between two codes, subnormal and huge
scales):

- :func:`e2m1_values`: torchao's ``f4_unpacked_to_f32(f32_to_f4_unpacked(v))`` for the values its
  fp4 recipes cast (already clamped to ``[-6, 6]``). torchao encodes each value with ~20 integer
  ops on its bits (a magic adder for round to nearest even, masks for the subnormal and the
  saturated case), packs two codes a byte, unpacks and decodes them again with ~15 more. The e2m1
  grid is ``0, 0.5, 1, 1.5`` (step 1/2), ``2, 3`` (step 1) and ``4, 6`` (step 2): rounding ``|v|``
  to its step with ``torch.round`` (half to even) is round to nearest even on the fp4 code too,
  since an even multiple of the step is exactly a code with an even mantissa. The sign is copied
  back (``-0.0`` too). NaN stays NaN, where torchao makes some code of its bits: both recipes
  below only cast NaN where the value is multiplied by a NaN scale afterwards (MX), or check
  first (NVFP4).
- :func:`mx_dequantized`: ``MXTensor.to_mx(x, dtype, 32, RCEIL).dequantize(x.dtype)``: torchao's
  scale (``_to_mx_rceil``'s eager ops, without its per-call check for a compiled graph) and its
  ``get_fp_scale``; the fp4 cast is :func:`e2m1_values`, and the tensor subclass is not built.
- :func:`nvfp4_dequantized`: ``NVFP4Tensor.to_nvfp4(x, per_tensor_scale=s).dequantize(x.dtype)``
  (``nvfp4_quantize``'s two-level scaling, the same ops), with :func:`e2m1_values` as the cast where
  no value can be NaN before the cast: finite reciprocal block scales, which a NaN, infinite or zero
  per-tensor scale never gives (read back once per call, on the host only). Elsewhere, and off the host, torchao's path.
- :func:`float8_dequantized`: torchao's ``_choose_scale_float8`` (``amax / 448`` per row of the
  last axis or per tensor, in the input's dtype, then float32), ``_quantize_affine_float8`` and
  ``_dequantize_affine_float8``: the same ops without the custom-op wrappers and the scale's
  expansion to the tensor's shape (a broadcast gives the same values), which cost more than the
  arithmetic on an activation of a few thousand values.
- :func:`int8_per_token_asym_dequantized`: torchao's ``_apply_int8_act_asym_per_token_quant_dequant``
  (``choose_qparams_affine`` asymmetric on ``[-128, 127]`` per row of the last axis, quantize,
  dequantize: the same ops in the same dtype) without its int8 round trip, which is the identity
  on the clamped integers when every scale is finite (then every value is). Checked per call on
  the host; elsewhere torchao's own function.
"""

from __future__ import annotations

import torch

from tui_quantreport.engine.quantsim.hostsync import host_reads

E2M1_MAX = 6.0
#: torchao's MX block.
MX_BLOCK = 32
#: The e8m0 exponent bias (torchao's ``E8M0_EXPONENT_BIAS``).
_E8M0_BIAS = 127
#: torchao's NVFP4 block.
NVFP4_BLOCK = 16


#: torch's own float32 value of each of the 256 e4m3fn codes (made on first use).
_E4M3_TABLE: torch.Tensor | None = None
#: From this many elements the table is faster than torch's conversion on the host (measured:
#: 48 vs 62 us at 8,192, 77 vs 119 at 16,384, 400 vs 595 us for a (64, 1024) fp8 row recipe; below
#: ~4,096 its own ops cost more than they save).
E4M3_TABLE_MIN = 8192


def e4m3_to_float32(codes: torch.Tensor) -> torch.Tensor:
    """``codes.to(torch.float32)`` for a float8_e4m3fn tensor, the same bits (NaN codes included):
    on the host from :data:`E4M3_TABLE_MIN` elements, each code looked up in a table of torch's own
    conversion of all 256 codes (torch's CPU conversion from e4m3fn runs ~7 ns an element, scalar;
    the lookup ~1.4 ns at 65K elements); otherwise torch's conversion."""
    global _E4M3_TABLE
    if codes.device.type != "cpu" or codes.numel() < E4M3_TABLE_MIN:
        return codes.to(torch.float32)
    table = _E4M3_TABLE
    if table is None:
        table = _E4M3_TABLE = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).to(torch.float32)
    return table.index_select(0, codes.reshape(-1).view(torch.uint8).to(torch.int32)).view(codes.shape)


def e2m1_values(v: torch.Tensor) -> torch.Tensor:
    """float32 ``v`` in ``[-6, 6]`` (or NaN) rounded to the nearest fp4 e2m1 value, ties to even."""
    a = v.abs()
    step_inverse = torch.where(a < 2.0, 2.0, torch.where(a >= 4.0, 0.5, 1.0))
    rounded = torch.round(a * step_inverse).div_(step_inverse)
    return rounded.copysign_(v)


def mx_dequantized(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` (float32 or bfloat16, last axis a multiple of 32) through torchao's MX recipe (RCEIL
    scales; e4m3 for 8 bits, e2m1 for 4), dequantized to ``x.dtype``."""
    from torchao.prototype.mx_formats.mx_tensor import get_fp_scale

    shape = x.shape
    blocks = x.reshape(-1, shape[-1] // MX_BLOCK, MX_BLOCK)
    max_abs = torch.amax(torch.abs(blocks), -1).unsqueeze(-1)
    max_pos = 448.0 if bits == 8 else E2M1_MAX
    exponent, scaled = _rceil(blocks.to(torch.float32), max_abs.to(torch.float32), max_pos)
    if bits == 8:
        codes = scaled.to(torch.float8_e4m3fn)
        elements = e4m3_to_float32(codes) if x.dtype is torch.float32 else codes.to(x.dtype)
    else:
        elements = e2m1_values(scaled).to(x.dtype)
    scale = get_fp_scale(exponent.squeeze(-1)).reshape(-1, 1).to(x.dtype)
    return (elements.reshape(-1, MX_BLOCK) * scale).reshape(shape)


def _rceil(data: torch.Tensor, max_abs: torch.Tensor, max_pos: float) -> tuple[torch.Tensor, torch.Tensor]:
    """torchao's ``_to_mx_rceil`` as it runs in eager mode off Blackwell GPUs (its fallback branch,
    the same ops), without its check for a compiled graph or a fake tensor (~0.2 ms a call)."""
    descale = max_abs / max_pos
    exponent = torch.where(
        torch.isnan(descale),
        255,
        torch.where(
            torch.isinf(descale),
            254,
            (torch.clamp(torch.ceil(torch.log2(descale)), min=-_E8M0_BIAS, max=_E8M0_BIAS) + _E8M0_BIAS).to(
                torch.uint8
            ),
        ),
    )
    reciprocal = torch.where(
        exponent == 255,
        descale,
        torch.where(
            exponent == 254,
            2**-127,
            torch.where(exponent == 0, 1.0, torch.exp2(_E8M0_BIAS - exponent.to(torch.float32))),
        ),
    )
    return exponent, torch.clamp(data * reciprocal, min=-max_pos, max=max_pos)


def nvfp4_dequantized(x: torch.Tensor, per_tensor_scale: torch.Tensor) -> torch.Tensor:
    """``NVFP4Tensor.to_nvfp4(x, per_tensor_scale=...).dequantize(x.dtype)`` for a contiguous 2-D or
    3-D ``x`` (float32 or bfloat16, last axis a multiple of 16); ``per_tensor_scale`` a 0-d tensor,
    or ``(S, 1, 1)`` for a 3-D ``x``."""
    from torchao.prototype.mx_formats.nvfp4_tensor import E4M3_EPS, F8E4M3_MAX, NVFP4Tensor

    shape = x.shape
    data = x.float().reshape(shape[0], -1, NVFP4_BLOCK)
    block_scale = torch.amax(torch.abs(data), dim=-1) / E2M1_MAX
    outer = per_tensor_scale.squeeze(-1) if per_tensor_scale.dim() == 3 else per_tensor_scale
    block_fp8 = torch.clamp(block_scale.to(torch.float32) / outer, min=E4M3_EPS, max=F8E4M3_MAX).to(torch.float8_e4m3fn)
    reciprocal = (1.0 / outer) / block_fp8.to(torch.float32)
    # One read: a NaN per-tensor scale makes every reciprocal NaN, an infinite one the reciprocal of
    # the block holding the infinity (inf / inf), a zero one every reciprocal infinite.
    if not (host_reads(x) and bool(torch.isfinite(reciprocal).all())):
        # A NaN before the cast (torchao casts it to a code of its bits): torchao's own path.
        return NVFP4Tensor.to_nvfp4(x, per_tensor_scale=per_tensor_scale).dequantize(x.dtype)
    scaled = torch.clamp(data * reciprocal.unsqueeze(-1), -E2M1_MAX, E2M1_MAX).view(shape)
    elements = e2m1_values(scaled).view(*shape[:-1], shape[-1] // NVFP4_BLOCK, NVFP4_BLOCK)
    hp_scale = per_tensor_scale * block_fp8.to(torch.float).view(*shape[:-1], shape[-1] // NVFP4_BLOCK)
    return (elements * hp_scale.unsqueeze(-1)).view(shape).to(x.dtype)


FP8_MAX = 448.0  # torch.finfo(torch.float8_e4m3fn).max


def float8_scale(amax: torch.Tensor) -> torch.Tensor:
    """torchao's ``_choose_scale_float8`` from an ``amax`` (in the input's dtype): ``amax / 448`` in float32."""
    return (amax / FP8_MAX).to(torch.float32)


def float8_dequantized(x: torch.Tensor, per_row: bool, scale: torch.Tensor | None = None) -> torch.Tensor:
    """e4m3 fake quantization with torchao's float8 primitives' arithmetic: a float32 scale per row
    of the last axis or per tensor (``amax / 448``), or the given ``scale``; in ``x``'s dtype."""
    if scale is None:
        magnitude = x.abs()
        scale = float8_scale(magnitude.amax(dim=-1, keepdim=True) if per_row and x.dim() else magnitude.amax())
    scaled = torch.clamp(x.to(torch.float32) / scale, min=-FP8_MAX, max=FP8_MAX)
    return (e4m3_to_float32(scaled.to(torch.float8_e4m3fn)) * scale).to(x.dtype)


def int8_per_token_asym_dequantized(x: torch.Tensor) -> torch.Tensor:
    """torchao's ``_apply_int8_act_asym_per_token_quant_dequant(x)``, bit for bit."""
    from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import (
        _apply_int8_act_asym_per_token_quant_dequant,
    )

    if not host_reads(x) or x.dtype not in (torch.float32, torch.float16, torch.bfloat16) or x.dim() == 0:
        return _apply_int8_act_asym_per_token_quant_dequant(x)
    qmin, qmax = -128, 127
    # torchao's min(·, 0) / max(·, 0) against a zeros tensor; a zero's sign changes neither the
    # width nor the zero point, and NaN propagates either way.
    min_neg = torch.amin(x, dim=-1, keepdim=True).clamp_(max=0.0)
    max_pos = torch.amax(x, dim=-1, keepdim=True).clamp_(min=0.0)
    scale = torch.clamp((max_pos - min_neg) / float(qmax - qmin), min=torch.finfo(x.dtype).smallest_normal)
    if not bool(torch.isfinite(scale).all()):
        # A non-finite value or range: torchao's int8 cast of NaN decides the values.
        return _apply_int8_act_asym_per_token_quant_dequant(x)
    zero_point = torch.clamp(qmin - torch.round(min_neg / scale), qmin, qmax)
    quantized = torch.round(x * (1.0 / scale)).add_(zero_point).clamp_(qmin, qmax)
    return quantized.sub_(zero_point).mul_(scale)
