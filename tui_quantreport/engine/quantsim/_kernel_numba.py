"""The numba kernels behind :mod:`.fused`, built by :func:`build` (numba is imported there, on first use).

Compiled on first use and cached on disk (``cache=True``: numba's cache beside this file), like
:mod:`..stats._kernel_numba`.
Every operation is a float32 operation on float32 values (``fastmath`` off), in the order the
torch ops they replace take them, so the results are the same bits: ``np.rint`` rounds half to
even as ``torch.round`` does, and a comparison with NaN is false, so a NaN passes the clamp as
it passes ``torch.clamp``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def fake_quantize(x, out, scale, inv_scale, low, high):  # pragma: no cover - compiled
    """``out = clamp(rint(x * inv_scale), low, high) * scale`` over 1-D float32 arrays (``out``
    may be ``x``). A value equal to a bound keeps its own sign of zero, as ``torch.clamp`` does."""
    for i in range(x.shape[0]):
        q = np.rint(x[i] * inv_scale)
        if q < low:
            q = low
        elif q > high:
            q = high
        out[i] = q * scale


def fake_quantize_rows(rows, out, width, eps, zero_sign):  # pragma: no cover - compiled
    """Each row of a 2-D float32 ``rows`` quantized with the affine qparams of its own range
    (``qparams._fake_quantize_dynamic_rows``'s fast path, op for op). Returns False, writing
    nothing, when some row's scale is not finite (NaN, infinity, or a width beyond float32):
    the caller then takes the general path.

    ``zero_sign`` is added to each rounded value: ``-0.0`` leaves every value as it is (the
    per-channel kernel's rounding, a ``-0.0`` kept), ``+0.0`` turns a ``-0.0`` into ``+0.0`` and
    leaves the rest (the per-tensor kernel's integer zero point arithmetic, for each row taken as
    a tensor of its own: a merged batch's probe segments)."""
    n, k = rows.shape
    scales = np.empty(n, dtype=np.float32)
    lows = np.empty(n, dtype=np.float32)
    zero = np.float32(0.0)
    for r in range(n):
        lo = rows[r, 0]
        hi = lo
        for j in range(1, k):
            v = rows[r, j]
            if v < lo:
                lo = v
            elif v > hi:
                hi = v
            elif v != v:
                return False
        if lo != lo:
            return False
        min_neg = lo if lo < zero else zero
        max_pos = hi if hi > zero else zero
        scale = (max_pos - min_neg) / width
        if not np.isfinite(scale):
            return False
        if scale < eps:
            scale = eps
        scales[r] = scale
        lows[r] = np.rint(min_neg / scale) + zero
    for r in range(n):
        scale = scales[r]
        inv = np.float32(1.0) / scale
        low = lows[r]
        high = low + width
        for j in range(k):
            q = np.rint(rows[r, j] * inv) + zero_sign
            if q < low:
                q = low
            elif q > high:
                q = high
            out[r, j] = q * scale
    return True


def norm_rows(rows, out, lanes):  # pragma: no cover - compiled
    """``out[r] = sqrt(sum of float64(rows[r, j]) ** 2)`` for a 2-D float32 ``rows``, in the order
    torch's vectorised float64 norm takes it (``lanes`` running sums over consecutive elements,
    added left to right, then the rest one by one): no float64 copy of ``rows``."""
    n = rows.shape[1]
    body = n - n % lanes
    acc = np.zeros(lanes, dtype=np.float64)
    for r in range(rows.shape[0]):
        acc[:] = 0.0
        for d in range(0, body, lanes):
            for lane in range(lanes):
                v = np.float64(rows[r, d + lane])
                acc[lane] = acc[lane] + v * v
        total = acc[0]
        for lane in range(1, lanes):
            total = total + acc[lane]
        for d in range(body, n):
            v = np.float64(rows[r, d])
            total = total + v * v
        out[r] = np.sqrt(total)


def norm_rows4(rows, out):  # pragma: no cover - compiled
    """:func:`norm_rows` with 4 lanes, its running sums in registers (AVX2's 4 doubles)."""
    n = rows.shape[1]
    body = n - n % 4
    for r in range(rows.shape[0]):
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        for d in range(0, body, 4):
            v0 = np.float64(rows[r, d])
            v1 = np.float64(rows[r, d + 1])
            v2 = np.float64(rows[r, d + 2])
            v3 = np.float64(rows[r, d + 3])
            a0 = a0 + v0 * v0
            a1 = a1 + v1 * v1
            a2 = a2 + v2 * v2
            a3 = a3 + v3 * v3
        total = ((a0 + a1) + a2) + a3
        for d in range(body, n):
            v = np.float64(rows[r, d])
            total = total + v * v
        out[r] = np.sqrt(total)


def build() -> SimpleNamespace:
    """Import numba and compile the kernels above (compiled, or loaded from numba's cache, on their first call)."""
    from numba import njit

    def jit(fn):
        return njit(cache=True, nogil=True)(fn)

    return SimpleNamespace(
        fake_quantize=jit(fake_quantize),
        fake_quantize_rows=jit(fake_quantize_rows),
        norm_rows=jit(norm_rows),
        norm_rows4=jit(norm_rows4),
    )
