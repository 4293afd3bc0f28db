"""Exact per-channel order statistics without ``torch.quantile``'s limits.

For every channel ``c`` of a ``(A, C, B)`` float32 tensor, the ``k``-th smallest
(0-based) of its ``A * B`` values: what ``torch.quantile(...,
interpolation="lower")`` returns for ``k = floor(q (n-1))``, with no input-size
limit.

On the host (CPU tensors) the work is one contiguous per-channel copy and, in
place on it, NumPy's introselect (``np.partition``: linear time, about 7x faster
than ``torch.kthvalue``) or NumPy's vectorised sort. The sort is used for short
rows (as fast as selecting, and it yields each channel's min and max for free)
and where values repeat a lot (post-ReLU zeros, quantized inputs), which slow
introselect down by 10x or more. On other devices ``torch.kthvalue`` is used:
it stays on the device and needs no host synchronisation.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

#: Rows this short are sorted outright: as fast as selecting (faster below ~1000
#: values), and immune to repeats.
SORT_BELOW = 1024
#: Values probed per row to estimate how often values repeat.
REPEAT_PROBE = 256
#: Share of equal neighbours in the sorted probe above which rows are sorted.
REPEAT_SHARE = 0.05


@lru_cache(maxsize=4096)
def lower_quantile_index(q: float, n: int) -> int:
    """The 0-based sorted index that ``torch.quantile(..., interpolation="lower")`` reads.

    torch computes the rank in float32 (``q * (n - 1)``) and floors it; doing the
    same here keeps our answers identical at the boundaries. Beyond 2**24 values (rows
    torch.quantile refuses) ``n - 1`` itself may round up to ``n`` in float32: clamped to the
    last index.
    """
    rank = np.float32(q) * np.float32(n - 1)
    return min(int(math.floor(float(rank))), n - 1)


def on_host(x: torch.Tensor) -> bool:
    """Whether ``x`` lives in host memory, where NumPy can read it without a device sync."""
    return x.device.type == "cpu"


def host_rows(x3: torch.Tensor) -> np.ndarray:
    """A contiguous ``(C, A*B)`` NumPy copy of a host tensor, ours to reorder (never a view).

    torch's blocked transpose copies 2-3x faster than NumPy's for channel-last layouts.
    """
    a, c, b = x3.shape
    return x3.transpose(0, 1).clone(memory_format=torch.contiguous_format).numpy().reshape(c, a * b)


def order_rows(rows: np.ndarray, ks: list[int]) -> bool:
    """Reorder each row in place so that the ``ks`` positions hold their order statistics.

    Returns True when the rows were fully sorted (so column 0 is each row's
    minimum and column -1 its maximum, NaN sorting last).
    """
    if rows.shape[1] <= SORT_BELOW or _repeats_a_lot(rows):
        rows.sort(axis=1)
        return True
    rows.partition(ks, axis=1)
    return False


def _repeats_a_lot(rows: np.ndarray) -> bool:
    """Whether a strided probe of the rows holds many equal values (cheap: C x 256 values)."""
    step = max(1, rows.shape[1] // REPEAT_PROBE)
    probe = np.sort(rows[:, ::step], axis=1)
    equal = np.count_nonzero(probe[:, 1:] == probe[:, :-1])
    return bool(equal > REPEAT_SHARE * probe.size)


def kth_smallest(x3: torch.Tensor, k: int) -> torch.Tensor:
    """Per-channel ``k``-th smallest value (0-based) of ``x3`` shaped ``(A, C, B)``.

    NaN sorts last here; callers that need NaN to propagate (as
    ``torch.quantile`` does) mask those channels themselves.
    """
    if on_host(x3):
        rows = host_rows(x3)
        order_rows(rows, [k])
        return torch.from_numpy(rows[:, k].copy())
    c = x3.shape[1]
    return x3.transpose(0, 1).reshape(c, -1).kthvalue(k + 1, dim=1).values
