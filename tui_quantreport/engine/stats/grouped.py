"""Small host tensors reduced together, and the running statistics of many points at once.

On models with thousands of small activations, reducing each tensor on its own
costs a fixed ~20-100 µs of Python and dispatch per tensor, far more than the
values themselves. The calibration holds such tensors to the end of the batch
and hands each group of one shape, dtype and channel axis to
:func:`summarize_group`: one stack, one transposed copy and one sort (or
partition) for the whole group, giving the same numbers, bit for bit, as
:func:`~.accumulator.summarize` on each tensor (the same selection on the same
rows; min and max are exact).

The per-point accumulators of such points live as rows of a :class:`Bank`
(one per channel count, dtype and set of reducers), so one batch's calls are
folded in with a few fancy-indexed NumPy operations per group rather than a
dozen per point. A banked :class:`~.accumulator.Accumulator` reads its row back
when frozen, and leaves the bank (:meth:`Bank.row_state`) the first time a call
does not fit it, so every path gives the same result.
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from tui_quantreport.engine.stats import kernel
from tui_quantreport.engine.stats.accumulator import TensorSummary, by_percentile
from tui_quantreport.engine.stats.reducers import HOST_OPS, Reducer
from tui_quantreport.engine.stats.selection import lower_quantile_index, order_rows


def channel_split(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """``(A, C, B)`` of a tensor of ``shape`` viewed along ``axis`` (as :func:`~.accumulator.as_channels`)."""
    if not shape:
        return 1, 1, 1
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])


#: Channels with at most this many values per tensor are ordered with a sorting network (a
#: few dozen vectorised min/max over all the group's channels at once: ~7x faster than
#: NumPy's per-row sort for 8 values) rather than ``np.sort``.
NETWORK_UP_TO = 16


@lru_cache(maxsize=8)
def _network(m: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort comparators for ``m`` (a power of two) inputs, in order."""
    pairs = []
    p = 1
    while p < m:
        k = p
        while k >= 1:
            for j in range(k % p, m - k, 2 * k):
                for i in range(min(k, m - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def sorted_columns(columns: np.ndarray) -> list[np.ndarray]:
    """The rows of ``columns`` ``(n, R)`` sorted per column (row 0 the smallest), by a sorting network.

    Exact: each output is one of the column's values (min and max select, never compute). A
    column holding NaN comes out all NaN (min and max propagate it); callers mark such channels
    NaN anyway, as for the sorted path. Padding rows are +inf, after every real value.
    """
    n = columns.shape[0]
    m = 1 << max(0, (n - 1).bit_length())
    rows = list(columns)
    if m > n:
        pad = np.full(columns.shape[1], np.inf, columns.dtype)
        rows += [pad] * (m - n)
    for a, b in _network(m):
        lo = np.minimum(rows[a], rows[b])
        rows[b] = np.maximum(rows[a], rows[b])
        rows[a] = lo
    return rows[:n]


def summarize_group(tensors: list[torch.Tensor], axis: int, percentiles: tuple[float, ...]) -> TensorSummary:
    """Reduce host tensors of one shape and dtype along ``axis`` together.

    Returns one summary whose arrays have a leading axis, a row per tensor:
    ``channel_min``, ``channel_max`` and each percentile ``(T, C)``,
    ``call_min``/``call_max`` ``(T,)``. Row ``i`` equals
    ``summarize(tensors[i], axis, percentiles)`` exactly.
    """
    x = torch.stack(tensors)  # a fresh copy, ours to reorder (under no_grad: no graph)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    t = len(tensors)
    a, c, b = channel_split(tuple(tensors[0].shape), axis)
    x4 = x.reshape(t, a, c, b)
    if not percentiles:
        channel_min, channel_max = x4.amin(dim=(1, 3)).numpy(), x4.amax(dim=(1, 3)).numpy()
        return TensorSummary(channel_min, channel_max, channel_min.min(axis=1), channel_max.max(axis=1), {})
    n = a * b
    ks = [lower_quantile_index(p, n) for p in percentiles]
    if n <= NETWORK_UP_TO:
        ordered = sorted_columns(x4.permute(1, 3, 0, 2).reshape(n, t * c).numpy())
        channel_min, channel_max = ordered[0].copy(), ordered[-1].copy()
        picked = {p: ordered[k].copy() for p, k in zip(percentiles, ks)}
        return _finish(channel_min, channel_max, picked, t, c)
    if b == 1 and kernel.top_applies(x.dtype, c, n, ks):
        # Channel-last short rows, only the top few values wanted (the optional numba kernel):
        # no transposed copy, no sort; same numbers (the stacked copy is contiguous).
        channel_min, channel_max, by_k = kernel.top_stats(x4.reshape(t, a, c).numpy().view(np.int32), n, ks)
        return _finish(channel_min, channel_max, by_percentile(percentiles, ks, by_k), t, c)
    rows = x4.transpose(1, 2).contiguous().numpy().reshape(t * c, n)
    if order_rows(rows, ks):
        channel_min, channel_max = rows[:, 0].copy(), rows[:, -1].copy()
    else:
        channel_min = rows[:, : min(ks) + 1].min(axis=1)
        channel_max = rows[:, max(ks) :].max(axis=1)
    picked = {p: rows[:, k].copy() for p, k in zip(percentiles, ks)}
    return _finish(channel_min, channel_max, picked, t, c)


def _finish(
    channel_min: np.ndarray, channel_max: np.ndarray, picked: dict[float, np.ndarray], t: int, c: int
) -> TensorSummary:
    nan = np.isnan(channel_max)  # as summarize: a channel holding NaN has NaN min and percentiles
    if nan.any():
        channel_min[nan] = np.nan
        for q in picked.values():
            q[nan] = np.nan
    channel_min, channel_max = channel_min.reshape(t, c), channel_max.reshape(t, c)
    picked = {p: q.reshape(t, c) for p, q in picked.items()}
    return TensorSummary(channel_min, channel_max, channel_min.min(axis=1), channel_max.max(axis=1), picked)


def row_of(group: TensorSummary, i: int) -> TensorSummary:
    """Tensor ``i``'s own summary, as views of the group's rows."""
    return TensorSummary(
        group.channel_min[i],
        group.channel_max[i],
        group.call_min[i],
        group.call_max[i],
        {p: q[i] for p, q in group.percentiles.items()},
    )


def take(value: Any, index: Any) -> Any:
    """Rows ``index`` of an array, or of each array in a tuple or list (a contribution, a state)."""
    if isinstance(value, np.ndarray):
        return value[index]
    return type(value)(take(v, index) for v in value)


def bankable(reducers: tuple[Reducer, ...] | frozenset[Reducer]) -> bool:
    """Whether points with these reducers can share a bank (every reducer works row-wise)."""
    return _bankable(frozenset(reducers))


@lru_cache(maxsize=1024)
def _bankable(reducers: frozenset[Reducer]) -> bool:
    return all(getattr(r, "elementwise", False) for r in reducers)


def _leaves(state: Any) -> list[np.ndarray] | None:
    if isinstance(state, np.ndarray):
        return [state]
    if isinstance(state, (list, tuple)) and all(isinstance(v, np.ndarray) for v in state):
        return list(state)
    return None


class Bank:
    """The running statistics of points with one channel count, dtype and set of reducers.

    Row ``r`` holds what an :class:`~.accumulator.Accumulator` would hold:
    ``range_sum`` (float64), ``global_min``/``global_max``, ``channel_min``/``channel_max``
    and each reducer's state (its arrays stacked, one row per point).
    """

    def __init__(self, channels: int, dtype: np.dtype, reducers: tuple[Reducer, ...]):
        self.channels, self.dtype, self.reducers = channels, dtype, reducers
        self.size = 0
        cap = 8
        self.range_sum = np.zeros(cap, np.float64)
        self.global_min = np.zeros(cap, dtype)
        self.global_max = np.zeros(cap, dtype)
        self.channel_min = np.zeros((cap, channels), dtype)
        self.channel_max = np.zeros((cap, channels), dtype)
        #: reducer -> (its state's type: None for one array, else list/tuple; the stacked arrays)
        self.states: dict[Reducer, tuple[type | None, list[np.ndarray]]] = {}
        #: Once frozen (the calibration is over): per reducer, (result type, its arrays) or None.
        self._frozen: dict[Reducer, Any] | None = None
        self._frozen_items: list[tuple[Reducer, Any]] = []
        self._scalars: tuple[list[float], list[float], list[float]] = ([], [], [])
        self._rows: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])

    def _grow(self, need: int) -> None:
        cap = len(self.range_sum)
        if need <= cap:
            return
        new = max(need, 2 * cap)

        def grown(a: np.ndarray) -> np.ndarray:
            out = np.zeros((new, *a.shape[1:]), a.dtype)
            out[: self.size] = a[: self.size]
            return out

        self.range_sum, self.global_min, self.global_max = (
            grown(self.range_sum),
            grown(self.global_min),
            grown(self.global_max),
        )
        self.channel_min, self.channel_max = grown(self.channel_min), grown(self.channel_max)
        self.states = {r: (kind, [grown(a) for a in leaves]) for r, (kind, leaves) in self.states.items()}

    def start(self, group: TensorSummary, index: np.ndarray, span: np.ndarray, contributions: dict) -> np.ndarray:
        """New rows, started from the group's tensors ``index`` (one per point); returns the rows."""
        first = self.size
        self._grow(first + len(index))
        rows = np.arange(first, first + len(index))
        self.size += len(index)
        self.range_sum[rows] = span[index]
        self.global_min[rows] = group.call_min[index]
        self.global_max[rows] = group.call_max[index]
        self.channel_min[rows] = group.channel_min[index]
        self.channel_max[rows] = group.channel_max[index]
        for r in self.reducers:
            state = r.start(take(contributions[r], index), HOST_OPS)
            leaves = _leaves(state)
            if leaves is None:
                raise TypeError(f"{type(r).__name__}.start must return arrays to be banked")
            known = self.states.get(r)
            if known is None:
                kind = None if isinstance(state, np.ndarray) else type(state)
                stacked = [np.zeros((len(self.range_sum), *leaf.shape[1:]), leaf.dtype) for leaf in leaves]
                known = self.states[r] = (kind, stacked)
            for target, leaf in zip(known[1], leaves):
                target[rows] = leaf
        return rows

    def update(
        self, rows: np.ndarray, group: TensorSummary, index: np.ndarray, span: np.ndarray, contributions: dict
    ) -> None:
        """Fold the group's tensors ``index`` into ``rows`` (distinct rows, one call each), as Accumulator.update."""
        self.range_sum[rows] += span[index]
        self.global_min[rows] = np.minimum(self.global_min[rows], group.call_min[index])
        self.global_max[rows] = np.maximum(self.global_max[rows], group.call_max[index])
        self.channel_min[rows] = np.minimum(self.channel_min[rows], group.channel_min[index])
        self.channel_max[rows] = np.maximum(self.channel_max[rows], group.channel_max[index])
        for r in self.reducers:
            kind, stacked = self.states[r]
            gathered = [leaf[rows] for leaf in stacked]
            state = r.update(gathered[0] if kind is None else kind(gathered), take(contributions[r], index), HOST_OPS)
            for target, leaf in zip(stacked, _leaves(state) or []):
                target[rows] = leaf

    def frozen_row(self, row: int) -> tuple[torch.Tensor, torch.Tensor, dict[Reducer, Any]]:
        """Row ``row``'s channel min and max and each reducer's frozen result, as CPU tensors of
        their own (never views of the bank: each result is saved on its own).

        Each reducer's :meth:`~.reducers.Reducer.freeze` runs once on the whole bank; a result
        that is a dataclass of per-row tensors is then split by row (its arrays copied row by
        row), anything else is frozen row by row.
        """
        self._freeze()
        reduced: dict[Reducer, Any] = {}
        from_numpy = torch.from_numpy
        for r, split in self._frozen_items:
            if split is None:
                kind, stacked = self.states[r]
                leaves = [leaf[row].copy() for leaf in stacked]
                reduced[r] = r.freeze(leaves[0] if kind is None else kind(leaves), HOST_OPS)
            else:
                cls, arrays = split
                reduced[r] = cls(**{name: from_numpy(rows[row]) for name, rows in arrays})
        return (from_numpy(self._rows[0][row]), from_numpy(self._rows[1][row]), reduced)

    def frozen_scalars(self, row: int) -> tuple[float, float, float]:
        """Row ``row``'s (range_sum, global_min, global_max) as Python floats, as ``float()`` gives them."""
        self._freeze()
        range_sum, global_min, global_max = self._scalars
        return range_sum[row], global_min[row], global_max[row]

    def _freeze(self) -> None:
        """Once, when the calibration is over: each reducer frozen on the whole bank, every array copied."""
        if self._frozen is None:
            self._frozen = {}
            for r, (kind, stacked) in self.states.items():
                whole = r.freeze(
                    stacked[0][: self.size] if kind is None else kind(a[: self.size] for a in stacked), HOST_OPS
                )
                split = None
                if dataclasses.is_dataclass(whole) and not isinstance(whole, type):
                    values = {f.name: getattr(whole, f.name) for f in dataclasses.fields(whole)}
                    if all(
                        isinstance(v, torch.Tensor) and v.dim() >= 1 and len(v) == self.size for v in values.values()
                    ):
                        split = (type(whole), [(name, v.numpy()) for name, v in values.items()])
                self._frozen[r] = split
            # Every row's arrays copied once, out of the bank: row r of a fresh copy is a tensor whose
            # storage is that row alone (torch.from_numpy of a row view), as a per-row copy would be.
            size = self.size
            self._scalars = (self.range_sum.tolist(), self.global_min.tolist(), self.global_max.tolist())
            self._rows = (list(self.channel_min[:size].copy()), list(self.channel_max[:size].copy()))
            self._frozen_items = [
                (r, None if split is None else (split[0], [(name, list(a[:size].copy())) for name, a in split[1]]))
                for r, split in self._frozen.items()
            ]

    def row_state(self, row: int) -> tuple[Any, Any, Any, np.ndarray, np.ndarray, dict[Reducer, Any]]:
        """Row ``row`` as an Accumulator holds it: (range_sum, global_min, global_max, channel_min,
        channel_max, {reducer: state}), all copies."""
        states = {}
        for r, (kind, stacked) in self.states.items():
            leaves = [leaf[row].copy() for leaf in stacked]
            states[r] = leaves[0] if kind is None else kind(leaves)
        return (
            self.range_sum[row],
            self.global_min[row],
            self.global_max[row],
            self.channel_min[row].copy(),
            self.channel_max[row].copy(),
            states,
        )


def spans(group: TensorSummary) -> np.ndarray:
    """Each tensor's ``max - min`` in float64, as :func:`~.accumulator._span` computes it per call."""
    return group.call_max.astype(np.float64) - group.call_min.astype(np.float64)
