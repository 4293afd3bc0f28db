"""Optional fused fake-quantization kernels (numba, the ``fast`` extra).

The simulation's vectorised fake quantization is four torch ops over the tensor (multiply,
round, clamp, multiply: four passes over memory, each paying torch's per-op cost). With numba
installed, :mod:`._kernel_numba` does the same float32 operations in one pass, the same bits
(held side by side in ``tests/test_quantsim_kernels.py``). Without numba, or with
``TUI_QUANTREPORT_FAKE_QUANT=torch``, nothing here runs and the torch ops give the values.

Which path runs is decided once per process (:data:`ENABLED`, from the environment and whether
numba is importable, without importing it); the kernels are compiled, or loaded from numba's
disk cache, on first use. Only tensors of at least :data:`MIN_NUMEL` (per tensor) or
:data:`ROWS_MIN_NUMEL` (per token) elements take them: below, torch's own ops are cheaper than
a call into numba.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np
import torch

from tui_quantreport.engine.quantsim import _kernel_numba

#: "auto" (the kernels where numba is installed) or "torch" (never).
ENV = "TUI_QUANTREPORT_FAKE_QUANT"

#: Per-tensor fake quantization takes the fused kernel from this many elements (measured,
#: ``benchmarks/fused_bench.py``: at 1,024 torch's own fake-quantize kernel is still faster, from
#: 4,096 the fused kernel is; the four torch ops it replaces start at the same size).
MIN_NUMEL = 2048

#: Per-token dynamic quantization takes the fused kernel from this many elements (it replaces a
#: row reduction and a dozen ops: 10x at 16 rows of 64).
ROWS_MIN_NUMEL = 1024


def _enabled() -> bool:
    if os.environ.get(ENV, "auto").strip().lower() == "torch":
        return False
    return importlib.util.find_spec("numba") is not None


#: Whether the fused kernels are used in this process (decided once, at import).
ENABLED = _enabled()

_compiled: Any = None
_failed: str | None = None
_F32 = np.float32


def kernels() -> Any:
    """The compiled kernels module, or None (numba absent, disabled, or failed to load)."""
    global _compiled, _failed
    if _compiled is not None or _failed is not None:
        return _compiled
    if not ENABLED:
        _failed = "disabled" if importlib.util.find_spec("numba") is not None else "numba is not installed"
        return None
    try:
        _compiled = _kernel_numba.build()
    except Exception as exc:  # noqa: BLE001 - any failure leaves the torch path in place
        _failed = f"the numba kernels did not load: {type(exc).__name__}: {exc}"
    return _compiled


def unavailable_reason() -> str | None:
    kernels()
    return _failed


def _fits(x: torch.Tensor) -> bool:
    return x.dtype is torch.float32 and x.device.type == "cpu" and x.is_contiguous() and not x.requires_grad


def fake_quantize(
    x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int, inv_scale: float, *, inplace: bool = False
) -> torch.Tensor | None:
    """``clamp(round(x * inv_scale), qmin - zp, qmax - zp) * scale`` in one pass over a contiguous
    float32 host ``x`` (into ``x`` itself with ``inplace``); None where the kernel does not apply
    (then the caller's torch ops give the same values)."""
    k = _compiled if _compiled is not None else kernels()
    if k is None or not _fits(x):
        return None
    out = x if inplace else torch.empty_like(x)
    k.fake_quantize(
        x.view(-1).numpy(),
        out.view(-1).numpy(),
        _F32(scale),
        _F32(inv_scale),
        _F32(qmin - zero_point),
        _F32(qmax - zero_point),
    )
    return out


_KEEP_ZERO_SIGN = _F32(-0.0)
_POSITIVE_ZERO = _F32(0.0)


def fake_quantize_rows(
    rows: torch.Tensor, qmin: int, qmax: int, eps: float, *, per_tensor: bool = False
) -> torch.Tensor | None:
    """Each row of a contiguous float32 host ``rows`` (2-D) through affine fake quantization with
    its own range's qparams, in two passes; None where the kernel does not apply or a row's scale
    is not finite (the caller's general path handles those). The values of torch's per-channel
    kernel (a rounded ``-0.0`` kept), or with ``per_tensor`` those of its per-tensor kernel on each
    row alone (a rounded ``-0.0`` is ``+0.0`` there)."""
    k = _compiled if _compiled is not None else kernels()
    if k is None or not _fits(rows) or rows.dim() != 2 or rows.shape[1] == 0:
        return None
    out = torch.empty_like(rows)
    return out if _quantize_rows(k, rows.numpy(), out.numpy(), qmin, qmax, eps, per_tensor) else None


def fake_quantize_segments(
    x: torch.Tensor, segments: int, qmin: int, qmax: int, eps: float, *, per_tensor: bool
) -> torch.Tensor | None:
    """:func:`fake_quantize_rows` over ``x`` (contiguous, float32, on the host, ``x.shape[0]`` a
    multiple of ``segments``) as ``segments`` rows, in ``x``'s shape: a merged batch's probe
    segments, each quantized with its own range. This runs once per dynamic module and batch, so
    it reshapes through NumPy's views (cheaper than torch's)."""
    k = _compiled if _compiled is not None else kernels()
    if k is None or x.requires_grad:
        return None
    rows = x.numpy().reshape(segments, -1)
    if rows.shape[1] == 0:
        return None
    # torch's allocator (its alignment: a matmul reading the result takes the path it takes on any
    # tensor torch made), written through a NumPy view.
    result = torch.empty_like(x)
    out = result.numpy().reshape(segments, -1)
    return result if _quantize_rows(k, rows, out, qmin, qmax, eps, per_tensor) else None


def _quantize_rows(
    k: Any, rows: np.ndarray, out: np.ndarray, qmin: int, qmax: int, eps: float, per_tensor: bool
) -> bool:
    """The rows kernel's call, its float32 arguments made once per (qmin, qmax, eps)."""
    args = _ROWS_ARGS.get((qmin, qmax, eps))
    if args is None:
        args = _ROWS_ARGS[(qmin, qmax, eps)] = (_F32(qmax - qmin), _F32(eps))
    return bool(k.fake_quantize_rows(rows, out, *args, _POSITIVE_ZERO if per_tensor else _KEEP_ZERO_SIGN))


#: ``(qmax - qmin, eps)`` as float32 scalars, by (qmin, qmax, eps): this runs per dynamic module and batch.
_ROWS_ARGS: dict[tuple[int, int, float], tuple[np.float32, np.float32]] = {}


#: Running sums torch's float64 norm keeps (its SIMD width in doubles), found by :func:`_norm_lanes`.
_lanes: int | None = None
_lanes_checked = False


def _norm_lanes() -> int | None:
    """How many running sums make :func:`norm64` equal to torch's float64 norm here, checked
    once against torch on probe rows of several lengths (None: no count matched, the norm
    kernel is not used). torch's CPU kernels take the widest SIMD the machine has."""
    global _lanes, _lanes_checked
    if _lanes_checked:
        return _lanes
    _lanes_checked = True
    k = kernels()
    if k is None:
        return None
    generator = torch.Generator().manual_seed(0)
    probes = [torch.randn(3, n, generator=generator) * 1e3 for n in (1, 7, 33, 1000, 4099, 65537)]
    for lanes in (4, 8, 2, 16, 1):
        if all(torch.equal(_norm(k, p, lanes), torch.linalg.vector_norm(p.double(), dim=1)) for p in probes):
            _lanes = lanes
            break
    return _lanes


def _norm(k: Any, rows: torch.Tensor, lanes: int) -> torch.Tensor:
    out = torch.empty(rows.shape[0], dtype=torch.float64)
    if lanes == 4:  # the common case (AVX2), its sums in registers
        k.norm_rows4(rows.numpy(), out.numpy())
    else:
        k.norm_rows(rows.numpy(), out.numpy(), lanes)
    return out


def norm64(t: torch.Tensor, dim: int | None = None) -> torch.Tensor | None:
    """``torch.linalg.vector_norm(t, dim=dim, dtype=torch.float64)`` of a contiguous float32 host
    ``t`` (``dim``: None, or the last of a 2-D ``t``), the same value, without the float64 copy
    torch makes; None where it does not apply."""
    k = _compiled if _compiled is not None else kernels()
    if k is None or not _fits(t) or t.numel() == 0:
        return None
    if dim is None:
        rows = t.view(1, -1)
    elif t.dim() == 2 and dim in (1, -1):
        rows = t
    else:
        return None
    lanes = _lanes if _lanes_checked else _norm_lanes()
    if lanes is None:
        return None
    out = _norm(k, rows, lanes)
    return out.view(()) if dim is None else out
