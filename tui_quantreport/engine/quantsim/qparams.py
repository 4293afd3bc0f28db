"""Quantization parameters, computed exactly as torch's observers compute them.

Activations are ``quint8``, per-tensor affine, from a min/max range, as
``MinMaxObserver(dtype=torch.quint8, reduce_range=...)`` computes them; the
backend decides ``reduce_range`` (fbgemm and x86 use 7 bits, ``[0, 127]``;
qnnpack and onednn 8 bits, ``[0, 255]``), as in ``get_default_qconfig``.
Weights are ``qint8`` symmetric, per tensor (``MinMaxObserver(dtype=torch.qint8,
qscheme=torch.per_tensor_symmetric)``) or per output channel
(``PerChannelMinMaxObserver(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)``).

The formulas (``torch.ao.quantization.observer``, ``_calculate_qparams``), all in
float32, with ``eps`` = float32 machine epsilon::

    min_neg = min(min, 0); max_pos = max(max, 0)
    affine:    scale = max((max_pos - min_neg) / (qmax - qmin), eps)
               zero_point = clamp(qmin - round(min_neg / scale), qmin, qmax)
    symmetric: scale = max(max(-min_neg, max_pos) / ((qmax - qmin) / 2), eps); zero_point = 0

One deliberate difference: a range wider than float32's largest value (data near
3.4e38) gets its width computed in float64, where torch's observer would give an
infinite scale (and NaN outputs); finite data then always has finite qparams.

Vectorised over channels; no torch.ao import needed (tests hold these against
the observers side by side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from tui_quantreport.engine.errors import ParamError

EPS = torch.finfo(torch.float32).eps
F32_MAX = float(torch.finfo(torch.float32).max)

#: Whether each backend's default qconfig reduces the activation range to 7 bits.
REDUCE_RANGE = {"fbgemm": True, "x86": True, "qnnpack": False, "onednn": False}

#: qint8 weights: the full signed range, as torch's default weight observers use.
WEIGHT_QMIN, WEIGHT_QMAX = -128, 127


def activation_range(backend: str) -> tuple[int, int]:
    """``(quant_min, quant_max)`` of quint8 activations on ``backend``."""
    try:
        reduce = REDUCE_RANGE[backend]
    except KeyError:
        raise ParamError(f"unknown backend {backend!r}; choose one of {', '.join(REDUCE_RANGE)}") from None
    return (0, 127) if reduce else (0, 255)


@dataclass(frozen=True)
class QParams:
    """Per-tensor activation qparams as plain numbers (what a plan file records)."""

    scale: float
    zero_point: int
    dtype: str
    quant_min: int
    quant_max: int

    def to_json_data(self) -> dict:
        return {
            "scale": self.scale, "zero_point": self.zero_point, "dtype": self.dtype,
            "quant_min": self.quant_min, "quant_max": self.quant_max,
        }


def affine_qparams(
    min_val: torch.Tensor, max_val: torch.Tensor, quant_min: int, quant_max: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Affine (asymmetric) scale and zero point, elementwise over ``min_val``/``max_val``.

    Returns float32 scales and int32 zero points on the inputs' device.
    """
    min_val = min_val.to(torch.float32)
    max_val = max_val.to(torch.float32)
    min_neg = torch.minimum(min_val, torch.zeros_like(min_val))
    max_pos = torch.maximum(max_val, torch.zeros_like(max_val))
    scale = (max_pos - min_neg) / float(quant_max - quant_min)
    overflow = torch.isinf(scale) & torch.isfinite(min_neg) & torch.isfinite(max_pos)
    if bool(overflow.any()):
        # A range wider than float32's largest value: the width in float64 (torch's
        # observer would give an infinite scale, so every quantized value NaN).
        wide = ((max_pos.double() - min_neg.double()) / float(quant_max - quant_min)).to(torch.float32)
        scale = torch.where(overflow, wide, scale)
    scale = torch.clamp(scale, min=EPS)
    zero_point = quant_min - torch.round(min_neg / scale).to(torch.int32)
    zero_point = torch.clamp(zero_point, quant_min, quant_max)
    return scale, zero_point


def symmetric_qparams(
    min_val: torch.Tensor, max_val: torch.Tensor, quant_min: int = WEIGHT_QMIN, quant_max: int = WEIGHT_QMAX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric signed scale (zero point 0), elementwise."""
    min_val = min_val.to(torch.float32)
    max_val = max_val.to(torch.float32)
    min_neg = torch.minimum(min_val, torch.zeros_like(min_val))
    max_pos = torch.maximum(max_val, torch.zeros_like(max_val))
    bound = torch.maximum(-min_neg, max_pos)
    scale = torch.clamp(bound / (float(quant_max - quant_min) / 2), min=EPS)
    return scale, torch.zeros(scale.shape, dtype=torch.int32, device=scale.device)


def activation_qparams(min_val: float, max_val: float, backend: str) -> QParams | None:
    """quint8 per-tensor qparams for a calibrated range; None when the range is not finite
    (or, for float64 data, beyond float32's range, where torch's qparams cannot be computed)."""
    if not (math.isfinite(min_val) and math.isfinite(max_val)) or min_val > max_val:
        return None
    if max(-min_val, max_val) > F32_MAX:
        return None
    qmin, qmax = activation_range(backend)
    scale, zp = affine_qparams(torch.tensor(min_val), torch.tensor(max_val), qmin, qmax)
    return QParams(float(scale), int(zp), "quint8", qmin, qmax)


def fake_quantize_weight(weight: torch.Tensor, per_channel: bool, axis: int = 0) -> torch.Tensor:
    """``weight`` through qint8 symmetric fake quantization (per tensor, or per channel on ``axis``).

    Computed in float32 and returned in the weight's dtype.
    """
    w = weight.detach().to(torch.float32)
    if per_channel and w.dim() > 1:
        moved = w.movedim(axis, 0).reshape(w.shape[axis], -1)
        scale, zp = symmetric_qparams(moved.amin(dim=1), moved.amax(dim=1))
        out = torch.fake_quantize_per_channel_affine(w, scale, zp, axis, WEIGHT_QMIN, WEIGHT_QMAX)
    else:
        scale, zp = symmetric_qparams(w.amin(), w.amax())
        out = torch.fake_quantize_per_tensor_affine(w, scale.reshape(()), zp.reshape(()), WEIGHT_QMIN, WEIGHT_QMAX)
    return out.to(weight.dtype)


def fake_quantize_static(x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> torch.Tensor:
    """``x`` through per-tensor affine fake quantization with fixed qparams (computed in float32)."""
    if x.dtype == torch.float32:
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)
    return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, qmin, qmax).to(x.dtype)


def fake_quantize_dynamic(x: torch.Tensor, qmin: int, qmax: int, per_token: bool) -> torch.Tensor:
    """``x`` quantized with qparams taken from this very tensor: per tensor, or per row of its last axis."""
    xf = x if x.dtype == torch.float32 else x.float()
    if xf.numel() == 0:
        return x
    if per_token and xf.dim() >= 2:
        rows = xf.reshape(-1, xf.shape[-1])
        lo, hi = torch.aminmax(rows, dim=1)
        scale, zp = affine_qparams(lo, hi, qmin, qmax)
        out = torch.fake_quantize_per_channel_affine(rows, scale, zp, 0, qmin, qmax).reshape(xf.shape)
    elif xf.device.type == "cpu":
        # One host read of the extremes; then scalar arithmetic in float32, as the observer does.
        lo, hi = torch.aminmax(xf)
        scale, zp = scalar_affine_qparams(float(lo), float(hi), qmin, qmax)
        out = torch.fake_quantize_per_tensor_affine(xf, scale, zp, qmin, qmax)
    else:
        lo, hi = torch.aminmax(xf)
        scale, zp = affine_qparams(lo, hi, qmin, qmax)
        out = torch.fake_quantize_per_tensor_affine(xf, scale, zp, qmin, qmax)
    return out if out.dtype == x.dtype else out.to(x.dtype)


def scalar_affine_qparams(lo: float, hi: float, qmin: int, qmax: int) -> tuple[float, int]:
    """:func:`affine_qparams` for one range, in NumPy float32 scalars (bit for bit the same)."""
    f32 = np.float32
    min_neg = f32(min(lo, 0.0))
    max_pos = f32(max(hi, 0.0))
    if not (math.isfinite(min_neg) and math.isfinite(max_pos)):
        return math.nan, 0
    if float(max_pos) - float(min_neg) > F32_MAX:
        # The float32 width would overflow (as in affine_qparams): take it in float64.
        scale = f32((float(max_pos) - float(min_neg)) / (qmax - qmin))
    else:
        scale = max((max_pos - min_neg) / f32(qmax - qmin), f32(EPS))
    zp = qmin - int(np.round(min_neg / scale))
    return float(scale), min(max(zp, qmin), qmax)
