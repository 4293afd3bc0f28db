"""The range pass: one float pass measuring each target's input extremes (and, for the advice,
channel extremes and clip percentiles), who reads each output, and the reference outputs."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from tui_quantreport.engine.quantsim.analysis_base import (
    PERCENTILE_SAMPLE,
    ProgressCallback,
    _check_cancel,
    _Target,
    first_tensor,
)
from tui_quantreport.engine.quantsim.qparams import (
    F32_MAX,
)
from tui_quantreport.engine.quantsim.tracers import _Cat, _DataflowTracer, _EdgeTracer, _FunctionalRelu
from tui_quantreport.engine.stats.accumulator import rows_of

if TYPE_CHECKING:
    from tui_quantreport.engine.quantsim.error_analysis import ErrorAnalysis


@dataclass
class _RangePass:
    """Per-module sums of one float pass: extremes, channel extremes and percentiles."""

    lo: float = math.inf
    hi: float = -math.inf
    channel_lo: torch.Tensor | None = None
    channel_hi: torch.Tensor | None = None
    channels_ok: bool = True
    p_lo: float = 0.0
    p_hi: float = 0.0
    calls: int = 0
    rows: int = 0
    finite: bool = True
    extra: dict = field(default_factory=dict)
    #: The per-batch sums, kept on the data's device (float64: lo, hi, finite, p_lo, p_hi) and
    #: read back once at the end of the pass (:meth:`read_back`).
    sums: torch.Tensor | None = None

    def add(self, lo: torch.Tensor, hi: torch.Tensor, p_lo: torch.Tensor | None, p_hi: torch.Tensor | None) -> None:
        """One batch's extremes (and percentiles), folded in on the device, branch-free: the
        same values as ``min``/``max`` and ``+=`` of Python floats (a NaN never replaces a kept
        extreme; the sums taken in float64 in the same order)."""
        lo, hi = lo.to(torch.float64), hi.to(torch.float64)
        zero = torch.zeros((), dtype=torch.float64, device=lo.device)
        batch = torch.stack(
            [
                lo,
                hi,
                (torch.isfinite(lo) & torch.isfinite(hi)).to(torch.float64),
                zero if p_lo is None else p_lo.to(torch.float64),
                zero if p_hi is None else p_hi.to(torch.float64),
            ]
        )
        if self.sums is None:
            start = [math.inf, -math.inf, 1.0, 0.0, 0.0]
            self.sums = torch.tensor(start, dtype=torch.float64, device=lo.device)
        kept = self.sums
        self.sums = torch.stack(
            [
                torch.where(batch[0] < kept[0], batch[0], kept[0]),
                torch.where(batch[1] > kept[1], batch[1], kept[1]),
                torch.minimum(batch[2], kept[2]),
                kept[3] + batch[3],
                kept[4] + batch[4],
            ]
        )

    def read_back(self, values: list[float]) -> None:
        """Set the Python fields from the sums read back (one read for the whole pass)."""
        lo, hi, finite, p_lo, p_hi = values
        self.finite = finite == 1.0
        self.lo, self.hi, self.p_lo, self.p_hi = lo, hi, p_lo, p_hi


def _range_hook(target: _Target, acc: _RangePass, p: float, advice: bool):
    """The forward pre-hook folding ``target``'s input into ``acc`` (``p``: the clip percentile)."""

    def hook(module, args, kwargs):
        x = first_tensor(args) if args else first_tensor(kwargs)
        if x is None or not x.is_floating_point() or x.numel() == 0:
            return
        x = x.detach()
        acc.calls += 1
        acc.rows += rows_of(tuple(x.shape), target.kind.input_axis(x.dim()) if x.dim() else None)
        # Nothing is read back here (no host sync per batch): the extremes and sums are
        # kept on the device. A batch with NaN or infinite values, or beyond float32
        # (whose range is kept, without qparams), leaves the advice statistics unused.
        lo, hi = torch.aminmax(x)
        if not advice:
            acc.add(lo, hi, None, None)
            return
        x = x.to(torch.float32)
        axis = target.kind.input_axis(x.dim())
        moved = x.movedim(axis, 0).reshape(x.shape[axis], -1) if x.dim() > 0 else x.reshape(1, 1)
        c_lo, c_hi = moved.amin(dim=1), moved.amax(dim=1)
        if acc.channel_lo is None:
            acc.channel_lo, acc.channel_hi = c_lo, c_hi
        elif acc.channel_lo.shape == c_lo.shape:
            acc.channel_lo = torch.minimum(acc.channel_lo, c_lo)
            acc.channel_hi = torch.maximum(acc.channel_hi, c_hi)
        else:
            acc.channels_ok = False
        flat = x.reshape(-1)
        if flat.numel() > PERCENTILE_SAMPLE:
            flat = flat[:: math.ceil(flat.numel() / PERCENTILE_SAMPLE)]
        n = flat.numel()
        k_hi = min(n, max(1, math.ceil(p * n)))
        k_lo = min(n, max(1, math.floor((1 - p) * n) + 1))
        acc.add(lo, hi, torch.kthvalue(flat, k_lo).values, torch.kthvalue(flat, k_hi).values)

    return hook


def range_pass(
    analysis: ErrorAnalysis,
    progress: ProgressCallback,
    should_cancel: Callable[[], bool] | None,
    *,
    advice: bool = False,
) -> None:
    """One float pass: input extremes of every target (for static qparams where no calibrated
    range is given), who reads each target's output, and with ``advice`` the channel extremes
    and clip percentiles the advice variants need. Running it again (with ``advice`` after
    without) changes nothing already measured: ranges and channel ranges are only set where
    missing."""
    sums = {fqn: _RangePass() for fqn in analysis.targets}
    p = analysis.clip_percentile

    handles = [
        t.module.register_forward_pre_hook(_range_hook(t, sums[t.fqn], p, advice), with_kwargs=True)
        for t in analysis.targets.values()
    ]
    edges = _EdgeTracer(analysis)
    flow = _DataflowTracer(analysis)
    handles += edges.attach() + flow.attach()
    outputs: list[dict[str, torch.Tensor]] = []
    try:
        started = time.perf_counter()
        relus = _FunctionalRelu(edges) if analysis.fused_relu else contextlib.nullcontext()
        cats = _Cat(edges) if analysis.static_outputs == "shared" else contextlib.nullcontext()
        with analysis._float_mode(), relus, cats:
            for i, batch in enumerate(analysis.probes):
                _check_cancel(should_cancel)
                edges.new_batch()
                flow.new_batch()
                output = analysis._run(batch, i)
                edges.model_output(output)
                outputs.append(analysis._outputs(output))
                progress(i + 1, len(analysis.probes))
        analysis._note_pass(time.perf_counter() - started)
    finally:
        for h in handles:
            h.remove()
        edges.new_batch()
    analysis._reference = outputs
    kept = [(acc, acc.sums) for acc in sums.values() if acc.sums is not None]
    if kept:  # one read back for the whole pass
        device = kept[0][1].device
        values = torch.stack([t.to(device) for _, t in kept]).cpu().tolist()
        for (acc, _), row in zip(kept, values, strict=True):
            acc.read_back(row)
    edges.finish()
    analysis.dataflow = flow.finish()
    _keep_ranges(analysis, sums, advice)
    analysis._ranges_done = True
    analysis._advice_ranges = analysis._advice_ranges or advice
    analysis._swaps.clear()  # who reads each output is known now: output steps may change


def _keep_ranges(analysis: ErrorAnalysis, sums: dict[str, _RangePass], advice: bool) -> None:
    """Each target's calls, rows, probe range (where none was calibrated) and advice ranges."""
    for fqn, target in analysis.targets.items():
        acc = sums[fqn]
        target.calls = acc.calls
        if fqn not in analysis._given_rows:
            target.rows = acc.rows
        if acc.calls == 0:
            continue
        if target.range is None:
            lo, hi = (acc.lo, acc.hi) if acc.finite else (math.nan, math.nan)
            analysis._set_range(target, lo, hi, "probes")
        if not advice or not acc.finite or max(-acc.lo, acc.hi) > F32_MAX:
            continue
        if (
            target.channel_range is None
            and acc.channels_ok
            and acc.channel_lo is not None
            and acc.channel_hi is not None
        ):
            target.channel_range = (acc.channel_lo, acc.channel_hi)
        target.clip_range = (acc.p_lo / acc.calls, acc.p_hi / acc.calls)
