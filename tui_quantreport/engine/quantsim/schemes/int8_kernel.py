"""torchao's int8 Linear kernel math in bfloat16 (``Int8Tensor``'s ``aten.linear``, torchao 0.18).

In float32 a float matmul of fake-quantized values is torchao's output (>= 120 dB). In
bfloat16 it is not (35-43 dB): torchao multiplies the integers exactly and rescales in steps,
each rounded to bfloat16. This replays those steps in the same order:

- dynamic / static activations (``int_scaled_matmul`` then the zero-point correction)::

      a = (int32(x_int8 @ w_int8^T) * x_scale).to(bf16)          # float32 product, one rounding
      b = ((x_zp * x_scale) * rowsum(w_int8)).to(bf16)            # float32, one rounding
      y = ((a - b) [bf16] * w_scale [float32] + bias).to(bf16)

- weight-only (per row): ``(x @ w_int8.to(bf16)) [bf16] * w_scale.to(bf16) + bias``, all in bf16.

The integer matmul is exact in float64 (|sum| <= K * 128 * 128 < 2**53). The qparams follow
torchao's ``choose_qparams_affine``, which computes them in the input's dtype (bfloat16 here)
before holding the scale in float32; a static scale is the plan's (the activation grid
``[0, 255]`` is torchao's int8 ``[-128, 127]`` shifted by 128).
"""

from __future__ import annotations

import torch

from tui_quantreport.engine.quantsim.qparams import EPS, WEIGHT_QMAX, WEIGHT_QMIN
from tui_quantreport.engine.quantsim.schemes.base import InputContext

BF16 = torch.bfloat16


def kernel_applies(scheme, x: torch.Tensor, ctx: InputContext) -> bool:
    """Whether ``scheme`` on ``x`` is one this module replays: an int8-four scheme on a bfloat16
    input, on torchao's 8-bit activation grid."""
    facts = scheme.facts
    if facts.family != "int8" or facts.preference is None or x.dtype != BF16:
        return False
    return facts.activation == "none" or (ctx.quant_min, ctx.quant_max) == (0, 255)


def int8_weight(weight: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values as float32, float32 scale per row (N, 1) or per tensor (1, 1)) of a Linear
    weight, as torchao's ``choose_qparams_affine`` takes them: the scale computed in the
    weight's own dtype (bfloat16 here), then held in float32."""
    w = weight.detach()
    if per_channel:
        lo, hi = w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True)
    else:
        lo, hi = w.amin().reshape(1, 1), w.amax().reshape(1, 1)
    bound = torch.maximum(-torch.clamp(lo, max=0), torch.clamp(hi, min=0))
    scale = torch.clamp(bound / (float(WEIGHT_QMAX - WEIGHT_QMIN) / 2), min=EPS).to(torch.float32)
    q = torch.round(w * (1.0 / scale)).clamp_(WEIGHT_QMIN, WEIGHT_QMAX)
    return q, scale


def _activation(scheme, x: torch.Tensor, ctx: InputContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(int8 values (M, K), scale (M or 1, 1), int8 zero point (M or 1, 1)), all float32.
    Dynamic qparams as torchao's ``choose_qparams_affine`` (asymmetric, int8): computed in the
    input's dtype, the scale then held in float32."""
    rows = x.reshape(-1, x.shape[-1])
    if scheme.facts.activation == "static":
        assert ctx.static is not None
        scale = torch.full((1, 1), ctx.static.scale, dtype=torch.float32, device=x.device)
        zp = torch.full((1, 1), float(ctx.static.zero_point + (-128 - ctx.quant_min)), device=x.device)
    else:
        if ctx.per_token(x):
            lo, hi = rows.amin(dim=1, keepdim=True), rows.amax(dim=1, keepdim=True)
        else:
            lo, hi = rows.amin().reshape(1, 1), rows.amax().reshape(1, 1)
        min_neg, max_pos = torch.clamp(lo, max=0), torch.clamp(hi, min=0)
        s = torch.clamp((max_pos - min_neg) / 255.0, min=EPS)
        zp = torch.clamp(-128 - torch.round(min_neg / s), -128, 127).to(torch.float32)
        scale = s.to(torch.float32)
    q = torch.clamp(torch.round(rows * (1.0 / scale)) + zp, -128, 127)
    return q, scale, zp


def int8_linear_bf16(
    scheme, x: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None, ctx
) -> torch.Tensor:
    """``F.linear`` of bfloat16 ``x`` with the int8 weight (:func:`int8_weight`) as torchao's kernel computes it."""
    out_shape = (*x.shape[:-1], weight_q.shape[0])
    if scheme.facts.activation == "none":
        m = torch.mm(x.reshape(-1, x.shape[-1]), weight_q.t().to(BF16))
        y = m * weight_scale.reshape(-1).to(BF16)
        if bias is not None:
            y = y + bias
        return y.reshape(out_shape)
    xq, x_scale, x_zp = _activation(scheme, x, ctx)
    acc = (xq.double() @ weight_q.double().t()).to(torch.float32)
    a = (acc * x_scale).to(BF16)
    b = ((x_zp * x_scale) * weight_q.sum(dim=1)).to(BF16)
    y = (a - b) * weight_scale.reshape(-1)
    if bias is not None:
        y = y + bias
    return y.to(BF16).reshape(out_shape)
