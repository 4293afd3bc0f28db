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

import functools
import math
import struct

import numpy as np
import torch

from tui_quantreport.engine.errors import ParamError
from tui_quantreport.engine.plan import ActivationQParams
from tui_quantreport.engine.quantsim import fused
from tui_quantreport.engine.quantsim.hostsync import host_reads

EPS = torch.finfo(torch.float32).eps
F32_MAX = float(torch.finfo(torch.float32).max)
#: The smallest double a float32 subtraction rounds to infinity (F32_MAX plus half its ulp).
F32_OVERFLOW = F32_MAX + 2.0**103

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


#: Per-tensor activation qparams as plain numbers: the plan file's record (torch-free, one class
#: for the simulation and the exporters).
QParams = ActivationQParams


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
    # A range wider than float32's largest value: the width in float64 (torch's observer would
    # give an infinite scale, so every quantized value NaN). Taken for every element and chosen
    # by torch.where, so nothing is read back to the host.
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
    scale, zp = scalar_affine_qparams(min_val, max_val, qmin, qmax)
    return QParams(scale, zp, "quint8", qmin, qmax)


def fake_quantize_weight(weight: torch.Tensor, per_channel: bool, axis: int = 0) -> torch.Tensor:
    """``weight`` through qint8 symmetric fake quantization (per tensor, or per channel on ``axis``).

    Computed in float32 and returned in the weight's dtype.
    """
    w = weight.detach().to(torch.float32)
    if per_channel and w.dim() > 1:
        moved = w.movedim(axis, 0).reshape(w.shape[axis], -1)
        lo, hi = moved.amin(dim=1), moved.amax(dim=1)  # aminmax(dim=) is 20x slower on CPU
        scale, zp = symmetric_qparams(lo, hi)
        shape = [1] * w.dim()
        shape[axis] = -1
        out = _fake_quantize_symmetric(w, scale.view(shape))
    else:
        lo, hi = torch.aminmax(w)
        scale, zp = symmetric_qparams(lo, hi)
        out = _fake_quantize_symmetric(w, scale.reshape(()))
    return out.to(weight.dtype)


def fake_quantize_weights(weights: torch.Tensor, per_channel: bool, axis: int = 0) -> torch.Tensor:
    """:func:`fake_quantize_weight` for a stack of same-shaped weights (dim 0 is the stack;
    ``axis`` is the output-channel axis of each weight). The same values, in a few ops
    for the whole stack instead of a few per weight."""
    w = weights.detach().to(torch.float32)
    count = w.shape[0]
    if per_channel and w.dim() > 2:
        moved = w.movedim(axis + 1, 1).reshape(count, w.shape[axis + 1], -1)
        lo, hi = moved.amin(dim=2), moved.amax(dim=2)  # aminmax(dim=) is 20x slower on CPU
        scale, _ = symmetric_qparams(lo, hi)
        shape = [1] * w.dim()
        shape[0], shape[axis + 1] = count, w.shape[axis + 1]
        out = _fake_quantize_symmetric(w, scale.view(shape))
    else:
        flat = w.reshape(count, -1)
        lo, hi = flat.amin(dim=1), flat.amax(dim=1)  # aminmax(dim=) is 20x slower on CPU
        scale, _ = symmetric_qparams(lo, hi)
        out = _fake_quantize_symmetric(w, scale.view([count] + [1] * (w.dim() - 1)))
    return out.to(weights.dtype)


def _fake_quantize_symmetric(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``torch.fake_quantize_per_{tensor,channel}_affine(w, scale, 0, -128, 127)`` (zero point 0),
    vectorised: the same float32 values (``round(w * (1.0f / scale))`` clamped, times the scale),
    a NaN kept NaN."""
    with torch.no_grad():
        y = w * torch.reciprocal(scale)
        y.round_()
        y.clamp_(WEIGHT_QMIN, WEIGHT_QMAX)
        return y.mul_(scale)


#: From this many elements on, :func:`fake_quantize_float32` uses the fused kernel of :mod:`.fused`
#: (with numba) or four vectorised in-place ops instead of ``torch.fake_quantize_per_tensor_affine``
#: (a scalar CPU kernel that also writes a backward mask: 20x slower on 64K elements, faster only
#: on small tensors).
FAST_FAKE_QUANT_MIN = fused.MIN_NUMEL


#: Whether the fused kernels are tried (numba installed and not disabled: decided once per process).
_FUSED = fused.ENABLED


def inverse_scale(scale: float) -> float:
    """``1.0f / scale`` in float32, as torch's fake-quantize kernels compute it."""
    inverse = 1.0 / scale
    return _f32(inverse) if abs(inverse) <= F32_MAX else math.copysign(math.inf, inverse)  # see scalar_affine_qparams


def fake_quantize_float32(
    x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int, inv_scale: float
) -> torch.Tensor:
    """``torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)`` for a float32 ``x``.

    Bit for bit the same values (the kernel computes ``(clamp(zp + nearbyint(x * inv_scale),
    qmin, qmax) - zp) * scale`` in float32; the integers are exact in float32, so clamping
    ``round(x * inv_scale)`` to ``[qmin - zp, qmax - zp]`` is the same), except that a NaN
    stays NaN (torch's kernel turns it into ``(qmin - zp) * scale``). Call it under no_grad.
    """
    if x.numel() < FAST_FAKE_QUANT_MIN:
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)
    if _FUSED:
        out = fused.fake_quantize(x, scale, zero_point, qmin, qmax, inv_scale)
        if out is not None:
            return out
    y = torch.mul(x, inv_scale)
    y.round_()
    y.clamp_(qmin - zero_point, qmax - zero_point)
    return y.mul_(scale)


def fake_quantize_float32_(
    x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int, inv_scale: float
) -> torch.Tensor:
    """:func:`fake_quantize_float32` in place, for a float32 ``x`` nobody else holds (the fresh
    output of a Linear or convolution): the same ops on the same values, without a new tensor.
    Returns ``x`` (or, below :data:`FAST_FAKE_QUANT_MIN` elements, torch's kernel's new tensor)."""
    if x.numel() < FAST_FAKE_QUANT_MIN:
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)
    if _FUSED and fused.fake_quantize(x, scale, zero_point, qmin, qmax, inv_scale, inplace=True) is not None:
        return x
    x.mul_(inv_scale)
    x.round_()
    x.clamp_(qmin - zero_point, qmax - zero_point)
    return x.mul_(scale)


def fake_quantize_static(x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> torch.Tensor:
    """``x`` through per-tensor affine fake quantization with fixed qparams (computed in float32)."""
    inv = inverse_scale(scale)
    if x.dtype == torch.float32:
        return fake_quantize_float32(x, scale, zero_point, qmin, qmax, inv)
    return fake_quantize_float32(x.float(), scale, zero_point, qmin, qmax, inv).to(x.dtype)


def fake_quantize_dynamic(x: torch.Tensor, qmin: int, qmax: int, per_token: bool) -> torch.Tensor:
    """``x`` quantized with qparams taken from this very tensor: per tensor, or per row of its last axis."""
    xf = x if x.dtype == torch.float32 else x.float()
    if xf.numel() == 0:
        return x
    if per_token and xf.dim() >= 2:
        rows = xf.reshape(-1, xf.shape[-1])
        out = _fake_quantize_dynamic_rows(rows, qmin, qmax).reshape(xf.shape)
    elif host_reads(xf):
        # One host read of the extremes; then scalar arithmetic in float32, as the observer does.
        lo, hi = torch.aminmax(xf)
        t_scale, t_zp, t_inv = _dynamic_qparams(float(lo), float(hi), qmin, qmax)
        out = (
            torch.fake_quantize_per_tensor_affine(xf, t_scale, t_zp, qmin, qmax)
            if xf.numel() < FAST_FAKE_QUANT_MIN or not math.isfinite(t_scale)
            else fake_quantize_float32(xf, t_scale, t_zp, qmin, qmax, t_inv)
        )
    else:
        lo, hi = torch.aminmax(xf)
        scale, zp = affine_qparams(lo, hi, qmin, qmax)
        out = torch.fake_quantize_per_tensor_affine(xf, scale, zp, qmin, qmax)
    return out if out.dtype == x.dtype else out.to(x.dtype)


def fake_quantize_dynamic_segments(
    x: torch.Tensor, sizes: tuple[int, ...], qmin: int, qmax: int
) -> torch.Tensor | None:
    """``torch.cat([fake_quantize_dynamic(piece, qmin, qmax, False) for piece in x's row segments])``
    (``sizes`` rows each on dim 0: a merged batch's probes) in one reduction and one kernel call, or None
    where this form does not apply: off the host, segments of unequal size, a tensor not float32 and
    contiguous, or a segment whose range or scale is not finite (NaN and infinities: the pieces one by
    one). With the fused kernels (numba), one call of :func:`fused.fake_quantize_segments` over the
    segments as rows (with the sign of zero each piece alone gets); without them, torch's ops below,
    for segments under :data:`FAST_FAKE_QUANT_MIN` elements (larger ones: None, each piece alone
    takes the faster path).

    The same values: each segment's extremes (min and max select, so they do not depend on the
    reduction's shape), the same cached host qparams, and :func:`fake_quantize_float32`'s ops (the
    per-tensor kernel's values where nothing is NaN) with one scale per segment: ``x * inv``, round,
    ``+ 0.0`` (the kernel's zero is +0.0), clamp to ``[qmin - zp, qmax - zp]``, ``* scale`` in
    float32. Held equal, bit for bit, to the pieces one by one by ``tests/test_merged_probe_segments.py``."""
    k = _equal_segments(sizes)
    if (
        not k
        or x.dtype is not torch.float32
        or x.dim() == 0
        or x.shape[0] != k * sizes[0]
        or not host_reads(x)
        or not x.is_contiguous()
        or x.numel() == 0
    ):
        return None
    small = x.numel() // k < FAST_FAKE_QUANT_MIN
    if _FUSED:
        # One call: each segment's range, its qparams and its values (a segment whose scale is not
        # finite: None, the pieces one by one). A small piece alone takes torch's per-tensor kernel
        # (a rounded -0.0 is +0.0 there), a large one fake_quantize_float32's ops (kept -0.0).
        fused_out = fused.fake_quantize_segments(x, k, qmin, qmax, _EPS32, per_tensor=small)
        if fused_out is not None:
            return fused_out
    if not small:
        return None
    segments = x.view(k, -1)
    key = (tuple(segments.amin(dim=1).tolist()), tuple(segments.amax(dim=1).tolist()), qmin, qmax)
    qparams = _SEGMENT_QPARAMS.get(key)
    if qparams is None:
        params = [_dynamic_qparams(lo, hi, qmin, qmax) for lo, hi in zip(key[0], key[1])]
        if not all(math.isfinite(scale) for scale, _zp, _inv in params):  # NaN or infinite extremes too
            return None
        if len(_SEGMENT_QPARAMS) >= _DYNAMIC_QPARAMS_MAX:
            _SEGMENT_QPARAMS.clear()
        qparams = _SEGMENT_QPARAMS[key] = tuple(
            torch.tensor(column, dtype=torch.float32).unsqueeze(1)
            for column in zip(*((inv, qmin - zp, qmax - zp, scale) for scale, zp, inv in params))
        )
    return _segment_ops(segments, *qparams, positive_zero=True).view_as(x)


def _segment_ops(
    segments: torch.Tensor,
    inverse: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    scale: torch.Tensor,
    *,
    positive_zero: bool,
) -> torch.Tensor:
    """:func:`fake_quantize_float32`'s ops with one scale per segment (row of ``segments``; the
    columns ``1.0f / scale``, ``qmin - zp``, ``qmax - zp`` and ``scale`` broadcast against them):
    ``x * inv``, round, clamp, ``* scale`` in float32. ``positive_zero``: a -0.0 the rounding gives
    becomes +0.0, as in torch's per-tensor kernel (its integer zero point arithmetic), which
    :func:`fake_quantize_float32` takes below :data:`FAST_FAKE_QUANT_MIN` elements."""
    y = torch.mul(segments, inverse)
    y.round_()
    if positive_zero:
        y.add_(0.0)
    y.clamp_(min=low, max=high)
    return y.mul_(scale)


def fake_quantize_static_segments(
    x: torch.Tensor, scales: list[float], zero_points: list[int], inverses: list[float], qmin: int, qmax: int
) -> torch.Tensor | None:
    """``torch.stack([fake_quantize_float32(x[i], scales[i], zero_points[i], qmin, qmax, inverses[i])
    for i ...])``: segment i (``x[i]``, dim 0) quantized with its own fixed qparams, in one chain of
    ops, the same values. None where it does not apply: off the host, ``x`` not float32 and
    contiguous, a scale not finite and positive. A segment under :data:`FAST_FAKE_QUANT_MIN` elements
    takes torch's per-tensor kernel there (a NaN aside: the kernel turns it into a number, this
    keeps it NaN), a larger one the same ops as here. Held equal, bit for bit, by
    ``tests/test_deferred_measure.py``."""
    if (
        x.dtype is not torch.float32
        or x.dim() == 0
        or len(scales) != x.shape[0]
        or not host_reads(x)
        or not x.is_contiguous()
        or not all(math.isfinite(s) and s > 0 for s in scales)
        or not all(math.isfinite(i) for i in inverses)
    ):
        return None
    n = x.shape[0]
    segments = x.view(n, -1)
    columns = [
        torch.tensor(column, dtype=torch.float32).unsqueeze(1)
        for column in (inverses, [qmin - zp for zp in zero_points], [qmax - zp for zp in zero_points], scales)
    ]
    small = segments.shape[1] < FAST_FAKE_QUANT_MIN
    return _segment_ops(segments, *columns, positive_zero=small).view_as(x)


@functools.lru_cache(maxsize=64)
def _equal_segments(sizes: tuple[int, ...]) -> int:
    """The number of segments where there are at least two, all of one size; else 0."""
    return len(sizes) if len(sizes) >= 2 and all(size == sizes[0] for size in sizes) else 0


#: :func:`fake_quantize_dynamic_segments`'s per-segment (``1.0f / scale``, ``qmin - zp``, ``qmax - zp``,
#: scale) columns by the segments' extremes: a dynamic module's input has the same extremes in every plan that leaves the modules
#: before it alone (a what-if toggle's), and building two small tensors costs more than the kernel.
_SEGMENT_QPARAMS: dict[tuple, tuple[torch.Tensor, ...]] = {}


#: :func:`scalar_affine_qparams` and :func:`inverse_scale` by (min, max, qmin, qmax): the same
#: probes give the same extremes at a dynamic module's input in every plan that leaves the
#: modules before it alone, and the scalar arithmetic costs as much as the tiny tensors' ops.
_DYNAMIC_QPARAMS: dict[tuple[float, float, int, int], tuple[float, int, float]] = {}
_DYNAMIC_QPARAMS_MAX = 4096


def _dynamic_qparams(lo: float, hi: float, qmin: int, qmax: int) -> tuple[float, int, float]:
    """(scale, zero point, ``1.0f / scale``) of a range, remembered (a pure function of its arguments;
    -0.0 and 0.0, equal as keys, give the same qparams)."""
    key = (lo, hi, qmin, qmax)
    cached = _DYNAMIC_QPARAMS.get(key)
    if cached is None:
        scale, zp = scalar_affine_qparams(lo, hi, qmin, qmax)
        cached = (scale, zp, inverse_scale(scale) if math.isfinite(scale) else math.nan)
        if len(_DYNAMIC_QPARAMS) >= _DYNAMIC_QPARAMS_MAX:
            _DYNAMIC_QPARAMS.clear()
        _DYNAMIC_QPARAMS[key] = cached
    return cached


_F32 = struct.Struct("f")
_EPS32 = float(EPS)


def _f32(value: float) -> float:
    """``value`` rounded to the nearest float32 (as a Python float)."""
    return _F32.unpack(_F32.pack(value))[0]


def _fake_quantize_rows(
    rows: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """``torch.fake_quantize_per_channel_affine(rows, scale, zero_point, 0, qmin, qmax)``, vectorised:
    the same float32 values (``(clamp(zp + round(x * (1.0f / scale)), qmin, qmax) - zp) * scale``
    per row, the integers exact in float32), a NaN kept NaN."""
    with torch.no_grad():
        zp = zero_point.to(torch.float32).unsqueeze(1)
        y = rows * torch.reciprocal(scale).unsqueeze(1)
        y.round_()
        y.clamp_(min=qmin - zp, max=qmax - zp)
        return y.mul_(scale.unsqueeze(1))


def _fake_quantize_dynamic_rows(rows: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Each row of a float32 ``rows`` quantized with the affine qparams of its own range:
    ``_fake_quantize_rows(rows, *affine_qparams(row mins, row maxes))``, the same values in
    half the ops (this runs per call of a dynamic module: its cost is the ops' count).

    Where every scale is finite (no NaN, no infinity, no float32 overflow of a range's width),
    ``min_neg / scale`` lies in ``[-(qmax - qmin), 0]``, so the zero point needs neither its
    int32 round trip nor its clamp, and the clamp bounds ``qmin - zp`` and ``qmax - zp`` are
    ``round(min_neg / scale)`` (+0.0 for a zero, as the integer path gives) and that plus
    ``qmax - qmin``, exact small integers in float32. Otherwise it takes the general path.
    """
    if _FUSED and rows.numel() >= fused.ROWS_MIN_NUMEL and host_reads(rows):
        out = fused.fake_quantize_rows(rows, qmin, qmax, _EPS32)
        if out is not None:
            return out
    lo, hi = rows.amin(dim=1), rows.amax(dim=1)  # aminmax(dim=) is 20x slower on CPU
    min_neg = lo.clamp(max=0.0)  # a zero's sign changes neither the width nor the zero point
    max_pos = hi.clamp(min=0.0)
    if not host_reads(rows):
        # No host read to choose the path: the general one, the same values for every row.
        scale, zp = affine_qparams(lo, hi, qmin, qmax)
        return _fake_quantize_rows(rows, scale, zp, qmin, qmax)
    scale = torch.sub(max_pos, min_neg).div_(float(qmax - qmin))
    if not bool(torch.isfinite(scale).all()):
        scale, zp = affine_qparams(lo, hi, qmin, qmax)
        return _fake_quantize_rows(rows, scale, zp, qmin, qmax)
    scale.clamp_(min=EPS)
    low = torch.div(min_neg, scale).round_().add_(0.0).unsqueeze(1)
    high = low + float(qmax - qmin)
    y = rows * torch.reciprocal(scale).unsqueeze(1)
    y.round_()
    y.clamp_(min=low, max=high)
    return y.mul_(scale.unsqueeze(1))


def scalar_affine_qparams(lo: float, hi: float, qmin: int, qmax: int) -> tuple[float, int]:
    """:func:`affine_qparams` for one range, bit for bit the same, in Python floats.

    Each float32 operation is done in double and rounded to float32 once: for +, -, *
    and / of float32 operands that is the correctly rounded float32 result (double has
    more than 2 x 24 + 2 bits), so no float32 type is needed (NumPy's scalars cost ~1 us an op).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or max(-lo, hi) > F32_MAX:
        return _numpy_affine_qparams(lo, hi, qmin, qmax)
    min_neg = _f32(min(lo, 0.0))
    max_pos = _f32(max(hi, 0.0))
    if max_pos - min_neg >= F32_OVERFLOW:
        # The float32 width would overflow (as in affine_qparams): take it in float64.
        scale = _f32((max_pos - min_neg) / (qmax - qmin))
    else:
        scale = max(_f32(_f32(max_pos - min_neg) / (qmax - qmin)), _EPS32)
    zp = qmin - round(_f32(min_neg / scale))
    return scale, min(max(zp, qmin), qmax)


def _numpy_affine_qparams(lo: float, hi: float, qmin: int, qmax: int) -> tuple[float, int]:
    """:func:`scalar_affine_qparams` for non-finite or float32-overflowing ends (NaN scale when not finite)."""
    f32 = np.float32
    with np.errstate(over="ignore"):
        min_neg = f32(min(lo, 0.0))
        max_pos = f32(max(hi, 0.0))
    if not (math.isfinite(min_neg) and math.isfinite(max_pos)):
        return math.nan, 0
    return scalar_affine_qparams(float(min_neg), float(max_pos), qmin, qmax)
