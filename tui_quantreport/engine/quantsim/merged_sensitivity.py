"""Every candidate scheme of one decision unit, over every probe batch, in one forward pass.

A one-at-a-time sensitivity pass quantizes one unit and keeps the rest of the model float. On
small models a pass is mostly Python per-op overhead, so running the passes of one unit's schemes
(and probe batches) one after the other costs nearly (schemes x batches) times one pass. Here they
run as ONE merged batch: the probe batches, concatenated on dim 0 once per scheme (scheme-major);
the unit's modules split their input back into pieces and quantize each piece with its scheme:
one piece per (scheme, probe batch), so per-tensor statistics are taken as in the piece's own
pass, or one piece per scheme where it quantizes row by row (:func:`row_local`); every
other module runs float on the merged rows; the model's output is split into the pieces, and
each piece's SQNR is accumulated against its probe batch's reference.

Exact only when no float op mixes batch rows and every kernel's per-row result does not depend
on the batch size. Nothing here assumes it: :class:`~.sensitivity.Sensitivity` checks merged
passes against full passes bit for bit (the first merged unit, and whenever a pass replays
further down the model than any checked before) and stops merging on a mismatch or on any error
of a merged pass, recording why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.batches import call_batch
from tui_quantreport.engine.quantsim.error_analysis import _MISSING, ErrorAnalysis, _check_cancel, _restore_forwards
from tui_quantreport.engine.quantsim.outputs import OutputsSqnr, output_tensors
from tui_quantreport.engine.quantsim.plan_pass import plan_forwards
from tui_quantreport.engine.quantsim.schemes import SCHEMES


class MergeError(Exception):
    """Why these batches or outputs cannot be merged (the caller falls back to separate passes)."""


def batch_rows(batch: Any) -> int:
    """The rows of a probe batch: every tensor in it has this many on dim 0 (else :class:`MergeError`)."""
    rows: set[int] = set()
    _leaf_rows(batch, rows)
    if len(rows) != 1:
        raise MergeError("a probe batch's tensors do not share one batch dimension")
    return rows.pop()


def _leaf_rows(value: Any, rows: set[int]) -> None:
    if isinstance(value, torch.Tensor):
        rows.add(value.shape[0] if value.dim() else -1)
    elif type(value) is dict:
        for v in value.values():
            _leaf_rows(v, rows)
    elif type(value) in (tuple, list):
        for v in value:
            _leaf_rows(v, rows)


def merge(values: Sequence[Any], rows: Sequence[int], copies: int, *, inputs: bool) -> Any:
    """``values`` (one per probe batch, one structure) as one merged value: each tensor is the
    concatenation on dim 0 over ``copies`` x the batches when every batch's has its batch's rows
    there; otherwise (outputs only, not ``inputs``) the tensor every batch shares (a rotary table
    computed from the sequence length, say). Anything else raises :class:`MergeError`."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        if not all(isinstance(v, torch.Tensor) and v.dim() == first.dim() for v in values):
            raise MergeError("the probe batches' values differ in structure")
        if first.dim() and all(v.shape[0] == r and v.shape[1:] == first.shape[1:] for v, r in zip(values, rows)):
            return torch.cat([v.detach() for _ in range(copies) for v in values])
        if not inputs and all(v.shape == first.shape and torch.equal(v, first) for v in values):
            return first.detach().clone()
        raise MergeError("a tensor is neither per batch row nor the same for every probe batch")
    if type(first) is dict:
        if not all(type(v) is dict and v.keys() == first.keys() for v in values):
            raise MergeError("the probe batches' values differ in structure")
        return {k: merge([v[k] for v in values], rows, copies, inputs=inputs) for k in first}
    if type(first) in (tuple, list):
        if not all(type(v) is type(first) and len(v) == len(first) for v in values):
            raise MergeError("the probe batches' values differ in structure")
        return type(first)(merge([v[i] for v in values], rows, copies, inputs=inputs) for i in range(len(first)))
    if not all(v == first for v in values):
        raise MergeError("the probe batches differ in a value that is not a tensor")
    return first


def _split_forward(
    forwards: Sequence[Callable[..., Any]], rows: Sequence[int], should_cancel: Callable[[], bool] | None
) -> Callable[..., Any]:
    """A forward applying ``forwards[p]`` to piece p of its input (``rows[p]`` rows each); a cancel
    is heard here too (one merged pass is many passes' work)."""
    total = sum(rows)

    def forward(input, *args, **kwargs):
        _check_cancel(should_cancel)
        if not isinstance(input, torch.Tensor) or input.dim() == 0 or input.shape[0] != total:
            got = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
            raise MergeError(f"a quantized module's input is not the merged batch ({got}, {total} rows expected)")
        outs = []
        start = 0
        for run, r in zip(forwards, rows):
            outs.append(run(input[start : start + r], *args, **kwargs))
            start += r
        return torch.cat(outs)

    return forward


def merged_pass(
    analysis: ErrorAnalysis,
    members: Sequence[str],
    schemes: Sequence[str],
    probes: Sequence[int],
    replays: Mapping[nn.Module, Sequence[Any]],
    accs: Sequence[OutputsSqnr],
    should_cancel: Callable[[], bool] | None,
) -> None:
    """One forward over probe batches ``probes`` x ``schemes`` (scheme-major) with ``members``
    quantized piece by piece; ``replays`` maps a module to its recorded float output per probe
    batch (returned merged instead of computed). Scheme j's pieces go to ``accs[j]``, in probe order."""
    _check_cancel(should_cancel)
    batches = [analysis.probes[i] for i in probes]
    rows = [batch_rows(b) for b in batches]
    copies = len(schemes)
    merged_input = merge(batches, rows, copies, inputs=True)
    saved: list[tuple[nn.Module, Any]] = []
    memo, grid = analysis._memo, analysis._grid
    try:
        for module, outputs in replays.items():
            value = merge([outputs[i] for i in probes], rows, copies, inputs=False)
            saved.append((module, module.__dict__.get("forward", _MISSING)))
            module.__dict__["forward"] = lambda *a, _v=value, **k: _v
        per_scheme = [dict(plan_forwards(analysis, dict.fromkeys(members, s))) for s in schemes]
        # A scheme whose input quantization is row by row takes its probe batches as one piece.
        pieces = [[sum(rows)] if row_local(s) else list(rows) for s in schemes]
        for fqn in members:
            module = analysis.targets[fqn].module
            float_forward = module.forward
            runs = [swaps.get(module, float_forward) for swaps, p in zip(per_scheme, pieces) for _ in p]
            saved.append((module, module.__dict__.get("forward", _MISSING)))
            module.__dict__["forward"] = _split_forward(runs, [r for p in pieces for r in p], should_cancel)
        memo.clear()
        grid.tensors.clear()
        with analysis._float_mode():
            out = output_tensors(call_batch(analysis.model, merged_input))
    finally:
        memo.clear()
        grid.tensors.clear()
        _restore_forwards(saved)
    prepared = analysis._prepared_reference(analysis.reference_outputs())
    total = sum(rows) * copies
    if any(t.dim() == 0 or t.shape[0] != total for t in out.values()):
        raise MergeError("the model's output is not one row per merged batch row")
    start = 0
    for j in range(copies):
        for i, r in zip(probes, rows):
            accs[j].add(prepared[i], {name: t[start : start + r] for name, t in out.items()})
            start += r


def row_local(scheme: str) -> bool:
    """Whether ``scheme`` quantizes an input row by row (weight-only, fixed static qparams, per-token
    dynamic): then several probe batches quantized as one tensor give each batch's own result."""
    facts = SCHEMES[scheme].facts
    if facts.activation in ("none", "static"):
        return True
    return facts.activation == "dynamic" and facts.activation_granularity == "per_token"


def refused(analysis: ErrorAnalysis, members: Sequence[str], scheme: str) -> bool:
    """Whether a full pass would answer "undefined" before running (an unknown module, an
    ineligible scheme, no calibrated range): such items take the full pass, which says why."""
    for fqn in members:
        target = analysis.targets.get(fqn)
        if target is None or analysis._ineligible(target, SCHEMES[scheme]) is not None:
            return True
        if SCHEMES[scheme].needs_range and target.static is None and target.calls:
            return True
    return False
