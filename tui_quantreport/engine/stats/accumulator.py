"""Calibration statistics: O(channels) per observation point, mergeable.

During calibration each observed tensor is reduced once per batch to a
:class:`TensorSummary` (per-channel min, max and, when a reducer asks for them,
exact percentiles per channel). An :class:`Accumulator` folds those summaries
into running tensors that stay on the model's device: nothing in the per-batch
path reads a value back to the host. When calibration ends,
:meth:`Accumulator.freeze` moves the few numbers to the CPU once and returns an
immutable :class:`PointStats`, which is all the detectors ever see.

Notation, for one observation point over calls b = 1..B (a "call" is one
execution of the module; a module run twice per forward contributes twice).
The core, kept at every point:

- ``min_b``/``max_b``: the tensor's extremes in call b;
- ``range_sum`` = Σ_b (max_b − min_b); ``global_min``/``global_max`` over all b;
- per channel c: ``channel_min[c]``/``channel_max[c]`` over all b.

Anything else is a :class:`~.reducers.Reducer` the point's request names
(``PointStats.reduced``); :mod:`.reducers` also documents the serializable
``state() / from_state()`` form, which :class:`PointStats` has too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from tui_quantreport.engine.stats import kernel, selection
from tui_quantreport.engine.stats.reducers import (
    DEVICE_OPS,
    HOST_OPS,
    Ops,
    Reducer,
    decode_float,
    encode_float,
    reducer_from_spec,
)
from tui_quantreport.engine.stats.selection import (
    host_rows,
    kth_smallest,
    lower_quantile_index,
    order_rows,
)

MAX_SHAPES_KEPT = 4


@dataclass(frozen=True)
class TensorSummary:
    """One tensor's reductions along one channel axis.

    NumPy arrays for host tensors, torch tensors (on the tensor's device)
    otherwise. Computed once per distinct tensor per batch and shared by every
    point that sees it, so the accumulators only add.
    """

    channel_min: Any
    channel_max: Any
    call_min: Any  # scalar (NumPy) or 0-d tensor
    call_max: Any
    percentiles: dict[float, Any]

    @property
    def ops(self) -> Ops:
        return HOST_OPS if isinstance(self.channel_min, np.ndarray) else DEVICE_OPS

    @classmethod
    def on_host(
        cls, channel_min: np.ndarray, channel_max: np.ndarray, percentiles: dict[float, np.ndarray]
    ) -> TensorSummary:
        return cls(channel_min, channel_max, channel_min.min(), channel_max.max(), percentiles)

    @classmethod
    def on_device(
        cls, channel_min: torch.Tensor, channel_max: torch.Tensor, percentiles: dict[float, torch.Tensor]
    ) -> TensorSummary:
        return cls(channel_min, channel_max, channel_min.min(), channel_max.max(), percentiles)

    def mapped(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TensorSummary:
        """The summary of ``fn(x)`` for an elementwise, order-preserving ``fn``.

        Per-channel min, max and order statistics commute with such a function,
        so they are ``fn`` of this summary's, exactly.
        """
        build: Callable[..., TensorSummary]
        if isinstance(self.channel_min, np.ndarray):

            def apply(a):
                return fn(torch.from_numpy(a.copy())).numpy()

            build = TensorSummary.on_host
        else:

            def apply(t):
                return fn(t.clone())

            build = TensorSummary.on_device
        return build(
            apply(self.channel_min), apply(self.channel_max), {p: apply(q) for p, q in self.percentiles.items()}
        )


def as_channels(x: torch.Tensor, axis: int) -> torch.Tensor:
    """View ``x`` as ``(A, C, B)`` with the channel axis in the middle (no copy when contiguous)."""
    if x.dim() == 0:
        return x.reshape(1, 1, 1)
    shape = x.shape
    a = math.prod(shape[:axis])
    b = math.prod(shape[axis + 1 :])
    return x.reshape(a, shape[axis], b)


def summarize(
    x: torch.Tensor, axis: int, percentiles: tuple[float, ...], known: TensorSummary | None = None
) -> TensorSummary | None:
    """Reduce ``x`` (any float dtype, any device) along channel ``axis``; None when ``x`` is empty.

    ``known``, an earlier summary of the same tensor along the same axis,
    lends its channel min and max, so only the percentiles are computed.
    """
    x = x.detach()
    if x.dtype not in (torch.float32, torch.float64):  # float64 stays: 1e300 is finite there, not in float32
        x = x.float()
    x3 = as_channels(x, axis)
    if x3.numel() == 0:
        return None
    if selection.on_host(x3):
        return _summarize_on_host(x3, percentiles, known)
    return _summarize_on_device(x3, percentiles, known)


def _summarize_on_host(x3: torch.Tensor, percentiles: tuple[float, ...], known: TensorSummary | None) -> TensorSummary:
    if not percentiles:
        return TensorSummary.on_host(x3.amin(dim=(0, 2)).numpy(), x3.amax(dim=(0, 2)).numpy(), {})
    n = x3.shape[0] * x3.shape[2]
    ks = [lower_quantile_index(p, n) for p in percentiles]
    bits = kernel.use_top(x3, ks)
    if bits is not None:
        # Channel-last short rows, only the top few values wanted (the optional numba kernel):
        # no transposed copy, no sort; same numbers.
        channel_min, channel_max, by_k = kernel.top_stats(bits, n, ks)
        return TensorSummary.on_host(channel_min, channel_max, by_percentile(percentiles, ks, by_k))
    if kernel.use_kernel(x3):
        # One read of the tensor where it lies (the optional numba kernel): same numbers.
        channel_min, channel_max, values = kernel.channel_stats(x3.numpy(), ks)
        return TensorSummary.on_host(channel_min, channel_max, dict(zip(percentiles, values)))
    rows = host_rows(x3)
    if order_rows(rows, ks):
        channel_min, channel_max = rows[:, 0].copy(), rows[:, -1].copy()
    elif known is not None:
        channel_min, channel_max = known.channel_min, known.channel_max
    else:
        # Partitioned around the ks: the minimum lies left of the lowest, the maximum
        # (and any NaN) right of the highest, so one contiguous pass finds both.
        channel_min = rows[:, : min(ks) + 1].min(axis=1)
        channel_max = rows[:, max(ks) :].max(axis=1)
    picked = {p: rows[:, k].copy() for p, k in zip(percentiles, ks)}
    # NaN sorts last, so a channel holding NaN has a NaN maximum. torch.amin and
    # torch.quantile give NaN for such a channel; so do we.
    nan = np.isnan(channel_max)
    if nan.any():
        channel_min = channel_min.copy()  # it may be lent by an earlier summary
        channel_min[nan] = np.nan
        for q in picked.values():
            q[nan] = np.nan
    return TensorSummary.on_host(channel_min, channel_max, picked)


def by_percentile(percentiles: tuple[float, ...], ks: list[int], by_k: dict[int, Any]) -> dict[float, Any]:
    """Each percentile's array from the arrays by order statistic (a copy where two share one)."""
    picked: dict[float, Any] = {}
    taken: set[int] = set()
    for p, k in zip(percentiles, ks):
        picked[p] = by_k[k].copy() if k in taken else by_k[k]
        taken.add(k)
    return picked


def _summarize_on_device(
    x3: torch.Tensor, percentiles: tuple[float, ...], known: TensorSummary | None
) -> TensorSummary:
    if known is not None:
        channel_min, channel_max = known.channel_min, known.channel_max
    else:
        channel_min, channel_max = x3.amin(dim=(0, 2)), x3.amax(dim=(0, 2))
    n = x3.shape[0] * x3.shape[2]
    picked = {}
    if percentiles:
        nan = torch.isnan(channel_max)
        for p in percentiles:
            picked[p] = torch.where(nan, channel_max, kth_smallest(x3, lower_quantile_index(p, n)))
    return TensorSummary.on_device(channel_min, channel_max, picked)


def channels_view(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``x`` as float32 ``(A, C, B)`` along ``axis``: what reducers that read the tensor itself see."""
    x = x.detach()
    if x.dtype != torch.float32:
        x = x.float()
    return as_channels(x, axis)


@dataclass(frozen=True)
class PointStats:
    """Everything kept about one observation point, frozen on the CPU.

    ``channel_min``/``channel_max`` are ``None`` when calls disagreed on the
    number of channels (the per-channel view is then meaningless, and no
    reducer result is kept), and ``axis`` is ``None`` when calls disagreed on
    the tensor rank. ``reduced`` holds the result of each reducer the point's
    request named.
    """

    calls: int
    axis: int | None
    shapes: tuple[tuple[int, ...], ...]
    global_min: float
    global_max: float
    range_sum: float
    channel_min: torch.Tensor | None
    channel_max: torch.Tensor | None
    reduced: Mapping[Reducer, Any] = field(default_factory=dict)
    #: Calls whose tensor had no elements: skipped (not in ``calls``, no values), counted here.
    empty: int = 0
    #: Rows seen over all calls: the values per channel (tokens of a (B, T, C) input, samples
    #: of (N, C), pixels of (N, C, H, W)). None when unknown (statistics saved before it was kept).
    rows: int | None = None

    @property
    def channels(self) -> int | None:
        return None if self.channel_min is None else int(self.channel_min.numel())

    @property
    def channel_range(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(channel_min, channel_max)``, or None when calls disagreed on the number of channels."""
        if self.channel_min is None or self.channel_max is None:
            return None
        return self.channel_min, self.channel_max

    @property
    def finite(self) -> bool:
        """False when a NaN or an infinity was seen at this point."""
        return math.isfinite(self.global_min) and math.isfinite(self.global_max)

    @property
    def comparison_stat(self) -> float | None:
        """S = mean_b(max_b − min_b) / (max over all − min over all); None when undefined."""
        spread = self.global_max - self.global_min
        if self.calls == 0 or not self.finite or spread == 0 or not math.isfinite(spread):
            return None
        stat = (self.range_sum / self.calls) / spread
        return stat if math.isfinite(stat) else None

    def get(self, reducer: Reducer) -> Any:
        """The result of ``reducer`` at this point, or None when it was not recorded."""
        return self.reduced.get(reducer)

    @property
    def started(self) -> bool:
        """False while no call has brought a non-empty tensor (the extremes are still (inf, -inf))."""
        return not (self.global_min == math.inf and self.global_max == -math.inf)

    def merge(self, other: PointStats) -> PointStats:
        """The stats of both sets of calls, as if observed together."""
        if not self.started or not other.started:
            # Calls that saw no values add their count and shapes and nothing else, as in one run
            # (a point empty on one rank, or in one of two merged files, keeps its channels).
            kept = self if self.started else other
            shapes = tuple(dict.fromkeys(self.shapes + other.shapes))[:MAX_SHAPES_KEPT]
            return replace(kept, calls=self.calls + other.calls, shapes=shapes, rows=_rows_sum(self.rows, other.rows))
        channel_min = channel_max = None
        if (
            self.channel_min is not None
            and self.channel_max is not None
            and other.channel_min is not None
            and other.channel_max is not None
            and self.channel_min.shape == other.channel_min.shape
        ):
            channel_min = torch.minimum(self.channel_min, other.channel_min)
            channel_max = torch.maximum(self.channel_max, other.channel_max)
        reduced = {
            r: result.merge(other.reduced[r])
            for r, result in self.reduced.items()
            if r in other.reduced and channel_min is not None
        }
        shapes = tuple(dict.fromkeys(self.shapes + other.shapes))[:MAX_SHAPES_KEPT]
        return PointStats(
            calls=self.calls + other.calls,
            axis=self.axis if self.axis == other.axis else None,
            shapes=shapes,
            global_min=min(self.global_min, other.global_min),
            global_max=max(self.global_max, other.global_max),
            range_sum=self.range_sum + other.range_sum,
            channel_min=channel_min,
            channel_max=channel_max,
            reduced=reduced,
            empty=self.empty + other.empty,
            rows=_rows_sum(self.rows, other.rows),
        )

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """CPU tensors by name, and JSON-able metadata (see :mod:`.reducers`)."""
        tensors: dict[str, torch.Tensor] = {}
        if self.channel_min is not None and self.channel_max is not None:
            tensors["channel_min"], tensors["channel_max"] = self.channel_min, self.channel_max
        reduced = []
        for i, (reducer, result) in enumerate(self.reduced.items()):
            own, meta = result.state()
            tensors.update({f"reduced/{i}/{k}": v for k, v in own.items()})
            reduced.append({"reducer": reducer.spec(), "meta": meta})
        meta = {
            "calls": self.calls,
            "axis": self.axis,
            "shapes": [list(s) for s in self.shapes],
            "global_min": encode_float(self.global_min),
            "global_max": encode_float(self.global_max),
            "range_sum": encode_float(self.range_sum),
            "reduced": reduced,
            "empty": self.empty,
        }
        if self.rows is not None:
            meta["rows"] = self.rows
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> PointStats:
        """The stats :meth:`state` described."""
        reduced: dict[Reducer, Any] = {}
        for i, entry in enumerate(meta["reduced"]):
            reducer = reducer_from_spec(entry["reducer"])
            prefix = f"reduced/{i}/"
            own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            reduced[reducer] = reducer.result_from_state(own, entry["meta"])
        return cls(
            calls=int(meta["calls"]),
            axis=meta["axis"],
            shapes=tuple(tuple(s) for s in meta["shapes"]),
            global_min=decode_float(meta["global_min"]),
            global_max=decode_float(meta["global_max"]),
            range_sum=decode_float(meta["range_sum"]),
            channel_min=tensors.get("channel_min"),
            channel_max=tensors.get("channel_max"),
            reduced=reduced,
            empty=int(meta.get("empty", 0)),
            rows=int(meta["rows"]) if meta.get("rows") is not None else None,
        )


def _rows_sum(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


def rows_of(shape: tuple[int, ...], axis: int | None) -> int:
    """Values per channel of one call's tensor: its elements over the channel axis's size (1 for a scalar)."""
    n = math.prod(shape)
    if axis is None or not shape or not -len(shape) <= axis < len(shape) or shape[axis] == 0:
        return n if shape else 1
    return n // shape[axis]


def _no_contribution(reducer: Reducer) -> Any:
    raise AssertionError(f"no contribution for {reducer!r}")


def percentiles_of(reducers: Iterable[Reducer]) -> tuple[float, ...]:
    """The percentiles a set of reducers reads from the shared summary, ascending."""
    if isinstance(reducers, frozenset):
        return _percentiles_of_set(reducers)
    return tuple(sorted({p for r in reducers for p in r.percentiles}))


@lru_cache(maxsize=1024)
def _percentiles_of_set(reducers: frozenset[Reducer]) -> tuple[float, ...]:
    return tuple(sorted({p for r in reducers for p in r.percentiles}))


class Accumulator:
    """Running statistics of one observation point, kept on the tensors' device."""

    def __init__(self, reducers: Iterable[Reducer] = ()):
        self.reducers = tuple(reducers)
        self.calls = 0
        self.empty = 0
        #: Values per channel over all calls (see :attr:`PointStats.rows`).
        self.rows = 0
        self.axis: int | None = None
        self.axis_consistent = True
        self.channels_consistent = True
        self.shapes: list[tuple[int, ...]] = []
        self.range_sum: Any = None
        self.global_min: Any = None
        self.global_max: Any = None
        self.channel_min: Any = None
        self.channel_max: Any = None
        self.states: dict[Reducer, Any] = {}
        self.ops: Ops = HOST_OPS
        #: When not None, the running arrays live in row ``row`` of this :class:`~.grouped.Bank`.
        self.bank: Any = None
        self.row = -1

    @property
    def started(self) -> bool:
        """Whether a call has brought values (the running arrays exist, here or in a bank)."""
        return self.bank is not None or self.range_sum is not None

    def unbank(self) -> None:
        """Take this point's running arrays out of its bank (a call that does not fit it)."""
        if self.bank is None:
            return
        (self.range_sum, self.global_min, self.global_max, self.channel_min, self.channel_max, self.states) = (
            self.bank.row_state(self.row)
        )
        self.ops = HOST_OPS
        self.bank, self.row = None, -1

    def skip_empty(self, shape: tuple[int, ...]) -> None:
        """A call whose tensor has no elements: no values, so not a call; counted apart."""
        self.empty += 1
        if len(self.shapes) < MAX_SHAPES_KEPT and shape not in self.shapes:
            self.shapes.append(shape)

    def update(
        self,
        shape: tuple[int, ...],
        axis: int,
        s: TensorSummary | None,
        contribution: Callable[[Reducer], Any] | None = None,
    ) -> None:
        """Fold one call's summary in: in-place array ops only, nothing read back.

        ``contribution(reducer)`` is each reducer's share of this call,
        computed once per distinct tensor and shared between points.
        """
        self.calls += 1
        self.rows += rows_of(shape, axis if s is not None else None)  # no channels: every value is a row
        if len(self.shapes) < MAX_SHAPES_KEPT and shape not in self.shapes:
            self.shapes.append(shape)
        if s is None:
            return
        if self.bank is not None:
            self.unbank()
        if contribution is None:
            if self.reducers:
                raise ValueError("a point with reducers needs each call's contributions")
            contribution = _no_contribution
        if self.range_sum is None:
            self._start(axis, s, contribution)
            return
        ops = self.ops
        self.range_sum = self.range_sum + _span(s)
        self.global_min = ops.minimum(self.global_min, s.call_min)
        self.global_max = ops.maximum(self.global_max, s.call_max)
        if axis != self.axis:
            self.axis_consistent = False
        if not self.channels_consistent or s.channel_min.shape != self.channel_min.shape:
            self.channels_consistent = False
            return
        ops.minimum(self.channel_min, s.channel_min, out=self.channel_min)
        ops.maximum(self.channel_max, s.channel_max, out=self.channel_max)
        for r in self.reducers:
            self.states[r] = r.update(self.states[r], contribution(r), ops)

    def _start(self, axis: int, s: TensorSummary, contribution: Callable[[Reducer], Any]) -> None:
        # Copies: the summary may be shared with other points, and we update in place.
        self.ops = ops = s.ops
        self.axis = axis
        self.range_sum = _span(s)
        self.global_min, self.global_max = s.call_min, s.call_max
        self.channel_min, self.channel_max = ops.copy(s.channel_min), ops.copy(s.channel_max)
        for r in self.reducers:
            self.states[r] = r.start(contribution(r), ops)

    def freeze(self) -> PointStats:
        """Move the running tensors to the CPU once and return immutable stats."""
        if self.bank is not None:
            bank, row = self.bank, self.row
            if self.channels_consistent:
                channel_min, channel_max, banked = bank.frozen_row(row)
                reducers = self.reducers
                # This point's order (the bank's may differ); the same dict when the orders agree.
                if len(banked) == len(reducers) and all(a is b for a, b in zip(banked, reducers)):
                    reduced = banked
                else:
                    reduced = {r: banked[r] for r in reducers if r in banked}
            else:
                channel_min, channel_max, reduced = None, None, {}
            range_sum, global_min, global_max = bank.frozen_scalars(row)
            return PointStats(
                calls=self.calls,
                axis=self.axis if self.axis_consistent else None,
                shapes=tuple(self.shapes),
                global_min=global_min,
                global_max=global_max,
                range_sum=range_sum,
                channel_min=channel_min,
                channel_max=channel_max,
                reduced=reduced,
                empty=self.empty,
                rows=self.rows,
            )
        if self.range_sum is None:
            return PointStats(
                self.calls,
                None,
                tuple(self.shapes),
                math.inf,
                -math.inf,
                0.0,
                None,
                None,
                empty=self.empty,
                rows=self.rows,
            )
        per_channel = self.channels_consistent
        to_cpu = self.ops.to_cpu
        reduced = {r: r.freeze(state, self.ops) for r, state in self.states.items()} if per_channel else {}
        return PointStats(
            calls=self.calls,
            axis=self.axis if self.axis_consistent else None,
            shapes=tuple(self.shapes),
            global_min=float(self.global_min),
            global_max=float(self.global_max),
            range_sum=float(self.range_sum),
            channel_min=to_cpu(self.channel_min) if per_channel else None,
            channel_max=to_cpu(self.channel_max) if per_channel else None,
            reduced=reduced,
            empty=self.empty,
            rows=self.rows,
        )


def only_empty(class_name: str, fqn: str, point: PointStats | None) -> str | None:
    """The reason for a point that saw only tensors with no elements, or None (see ``empty``)."""
    if point is None or point.calls > 0 or point.empty == 0:
        return None
    return (
        f"{class_name} '{fqn}' received only empty tensors during calibration ({point.empty} calls "
        "with no elements, skipped), so nothing is known about its activations."
    )


def _span(s: TensorSummary) -> Any:
    """``max − min`` of one call in float64, so finite float32 extremes (±3e38) never overflow
    into inf, nor does their running sum. On the host a NumPy float64; on a device a 0-d
    float64 tensor (float32 on Apple's MPS, which has no float64)."""
    if isinstance(s.call_max, np.ndarray) or np.isscalar(s.call_max):
        return np.float64(s.call_max) - np.float64(s.call_min)  # type: ignore[arg-type]
    if s.call_max.device.type == "mps":
        return s.call_max - s.call_min
    return s.call_max.double() - s.call_min.double()
