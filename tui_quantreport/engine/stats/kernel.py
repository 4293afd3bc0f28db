"""An optional compiled kernel: per channel min, max and exact k-th smallest in one read.

Installed with the ``fast`` extra (``pip install tui-quantreport[fast]``: numba,
wheels only, no compiler). Without numba nothing here is compiled and the
calibration uses the torch/NumPy path of :mod:`.selection`; with it, see
:func:`channel_stats` for when the kernel is used (measured, see
``benchmarks/README.md``, "Selection kernel").

For a float tensor viewed as ``(A, C, B)`` (channel ``c`` holds the ``n = A*B``
values ``x[:, c, :]``), one pass over the tensor in its own memory layout (no
transposed copy) keeps, per channel, the running min, max, a NaN count and a
small buffer of *candidates* for the top ``m = n - k`` values:

- a value enters the buffer only if it is above the channel's threshold
  (``-inf`` at first, or an estimate from a strided sample of the tensor);
- when the buffer holds more than ``2m`` values it is compacted: the ``m``
  largest are kept (an in-place introselect) and the threshold rises to the
  smallest of them.

Every value not kept is at most the threshold, and the buffer always holds at
least ``m`` values at or above it once anything was discarded, so the ``m``-th
largest of the buffer is the ``m``-th largest of the channel: the ``k``-th
smallest, which is what ``torch.quantile(..., interpolation="lower")`` and
``torch.kthvalue`` return, taken from the tensor's own values (bit for bit,
signed zeros aside: ``-0.0 == 0.0`` for every path). Ties need no special case
(a value equal to the threshold cannot change the ``m``-th largest). A sample
threshold that was too high (fewer than ``m`` values above it) is detected at
the end and that channel is selected in full. NaN is never a candidate: a
channel holding NaN gets NaN for min, max and every order statistic, as the
NumPy path gives.

A second kernel, :func:`top_stats`, serves channel-last short rows where only the
top few values are wanted (``m = n - k <= TOP_MAX_M``, e.g. the 97.5th percentile of
256 or 1,024 values): it merges each row into per-channel sorted top lists,
vectorised across channels, with no transposed copy and no sort (see
``_kernel_numba.top_rows``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from tui_quantreport.engine.stats import _kernel_numba

_TORCH_FLOAT32 = torch.float32

#: Which selection runs on host tensors: "auto" (the kernel where measured faster, when numba
#: is installed), "numba" (the kernel wherever it applies) or "torch" (never the kernel).
ENV = "TUI_QUANTREPORT_SELECTION"

#: Values sampled per channel to start the threshold (0: no sample, start at -inf).
SAMPLE = 1024

_compiled: Any = None
_failed: str | None = None
#: Seconds the first use spent importing numba and loading (or compiling) the kernel.
first_use_seconds: float | None = None


#: "auto" uses the kernel on tensors at least this big (and with more than one channel): below,
#: the NumPy path's transposed copy stays in cache and NumPy's SIMD sort/partition (AVX-512 here)
#: beats it; above, the copy costs more than the kernel's whole pass (measured, see
#: benchmarks/README.md "Selection kernel").
AUTO_MIN_NUMEL = 1 << 22


def use_kernel(x3: Any) -> bool:
    """Whether the host path should reduce the float tensor ``x3`` ``(A, C, B)`` with the kernel."""
    chosen = mode()
    if chosen == "torch" or x3.dtype != _TORCH_FLOAT32:
        return False
    if chosen == "auto" and (x3.numel() < AUTO_MIN_NUMEL or x3.shape[1] < 2):
        return False
    return available()


#: "auto" selects the top ``m = n - k`` values of channel-last rows (:func:`top_stats`) with the
#: kernel up to this ``m``: its work grows with ``m`` (about ``2m`` vectorised min/max per value),
#: the NumPy path's (a transposed copy and a sort) does not (measured, see benchmarks/README.md
#: "Short rows").
TOP_MAX_M = 32


def use_top(x3: Any, ks: list[int]) -> np.ndarray | None:
    """The ``(1, P, C)`` int32 view :func:`top_stats` reads when "auto" (or "numba") should
    select on the host float32 tensor ``x3`` ``(A, C, B)`` with it, else None.

    Only where each of the ``A * B`` positions holds every channel side by side (channel-last
    memory: ``B == 1``, or a channels-last layout), so the view needs no copy.
    """
    a, c, b = x3.shape
    if not top_applies(x3.dtype, c, a * b, ks):
        return None
    positions = x3.transpose(1, 2)
    if not positions.is_contiguous():
        return None
    return positions.reshape(1, a * b, c).numpy().view(np.int32)


def top_applies(dtype: Any, channels: int, n: int, ks: list[int]) -> bool:
    """Whether :func:`top_stats` should select ``ks`` among ``n`` values in each of ``channels``
    side-by-side channels of ``dtype`` (the rule behind :func:`use_top`)."""
    if not ks or dtype != _TORCH_FLOAT32 or channels < 2 or n - min(ks) > TOP_MAX_M:
        return False
    return mode() != "torch" and available()


def top_stats(bits: np.ndarray, n: int, ks: list[int]) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """``(channel_min, channel_max, {k: k-th smallest per channel})`` from ``bits`` ``(T, P, C)``
    (int32 views of float32, C-contiguous; channel ``(t, c)`` holds ``bits[t, :, c]``, ``P == n``),
    flattened over ``(t, c)``. The kernel keeps the ``n - min(ks)`` largest values of each channel
    (see :data:`TOP_MAX_M`). A channel holding NaN has NaN everywhere (as in :func:`channel_stats`)."""
    k = _kernels()
    if k is None:
        raise RuntimeError(_failed)
    t, p, c = bits.shape
    low = min(ks)
    if p != n or low < 0 or max(ks) >= n:
        raise ValueError(f"order statistics {ks} out of range for {n} values per channel")
    order = sorted(set(ks))
    out_min = np.empty(t * c, np.float32)
    out_max = np.empty(t * c, np.float32)
    out_q = np.empty((len(order), t * c), np.float32)
    offsets = np.array([kk - low for kk in order], np.int64)
    k.top_rows(bits, n - low, offsets, out_min.view(np.int32), out_max.view(np.int32), out_q.view(np.int32))
    return out_min, out_max, {kk: out_q[i] for i, kk in enumerate(order)}


def mode() -> str:
    value = os.environ.get(ENV, "auto").strip().lower()
    return value if value in ("auto", "numba", "torch") else "auto"


def available() -> bool:
    """Whether the kernel can run here (numba installed and the kernel loaded)."""
    return _kernels() is not None


def unavailable_reason() -> str | None:
    _kernels()
    return _failed


def _kernels() -> Any:
    global _compiled, _failed, first_use_seconds
    if _compiled is not None or _failed is not None:
        return _compiled
    start = time.perf_counter()
    try:
        import numba  # noqa: F401
    except ImportError:
        _failed = "numba is not installed (pip install 'tui-quantreport[fast]')"
        return None
    try:
        _compiled = _kernel_numba.build()
    except Exception as exc:  # noqa: BLE001 - any failure leaves the NumPy path in place
        _failed = f"the numba kernel did not load: {type(exc).__name__}: {exc}"
        return None
    first_use_seconds = time.perf_counter() - start
    return _compiled


def channel_stats(
    x3: np.ndarray, ks: list[int], *, sample: int | None = None, full: bool = False, slack: float = 2.0
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """``(channel_min, channel_max, [k-th smallest per channel for k in ks])`` of ``x3`` ``(A, C, B)``.

    ``x3`` is float32, any strides (read where it lies). A channel holding NaN has NaN
    everywhere. ``full``: no partial selection (every value is a candidate: a one-pass full
    introselect, for comparison).
    """
    k = _kernels()
    if k is None:
        raise RuntimeError(_failed)
    if x3.dtype != np.float32:
        raise TypeError(f"the kernel reads float32, not {x3.dtype}")
    a, c, b = x3.shape
    n = a * b
    order = sorted(set(ks))
    if not order or order[0] < 0 or order[-1] >= n:
        raise ValueError(f"order statistics {ks} out of range for {n} values per channel")
    ks_arr = np.asarray(order, np.int64)
    m = n - order[0]
    out_min = np.empty(c, np.int32)
    out_max = np.empty(c, np.int32)
    out_q = np.empty((len(order), c), np.int32)
    out_nan = np.zeros(c, np.bool_)
    limit = n if full or slack * m >= n else int(slack * m)
    s = min(SAMPLE, n // 16) if sample is None else sample
    if full or limit == n or s < 64:
        s = 0
    rows = b == 1 or x3.strides[1] < x3.strides[2]
    bits = x3.view(np.int32)
    threshold = np.full(c, np.iinfo(np.int32).min, np.int32)  # keys strictly above are candidates
    if s:
        k.start_thresholds(bits, m, s, threshold)
    buf = np.empty((c, limit + 1 if rows else limit + b + 1), np.int32)
    count = np.zeros(c, np.int64)
    lo = np.full(c, np.iinfo(np.int32).max, np.int32)
    hi = np.full(c, np.iinfo(np.int32).min, np.int32)
    nans = np.zeros(c, np.int32)
    (k.scan_rows if rows else k.scan_runs)(bits, m, limit, threshold, buf, count, lo, hi, nans)
    k.finish(bits, ks_arr, threshold, buf, count, lo, hi, nans, out_min, out_max, out_q, out_nan)
    lo, hi, q = _floats(out_min), _floats(out_max), _floats(out_q)
    if out_nan.any():
        lo[out_nan] = hi[out_nan] = np.nan
        q[:, out_nan] = np.nan
    picked = {kk: q[i] for i, kk in enumerate(order)}
    return lo, hi, [picked[kk] for kk in ks]


def _floats(keys: np.ndarray) -> np.ndarray:
    """The float32 values whose order keys are ``keys`` (the key map is its own inverse)."""
    return (keys ^ ((keys >> 31) & np.int32(0x7FFFFFFF))).view(np.float32)
