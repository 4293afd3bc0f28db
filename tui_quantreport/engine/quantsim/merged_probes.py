"""Plan evaluation over the probe batches merged into one batch: one forward instead of K.

The unit of a plan evaluation is K forwards of the probes, each paying Python's per-op
cost once per module; laid end to end on dim 0 (:func:`.probes.merge_probes`) they run as
one forward whose output is cut back into the probes' pieces, each compared with its own
float reference, in probe order: the same sums as K separate forwards, provided each piece
equals what the probe alone gives, bit for bit. That is decided by a fixed rule, never by a
timing guess, once per analysis (:func:`merge_check`):

- the probes merge (:func:`.probes.merge_probes`: tensors batch-major, alike but for dim 0);
- a float pass of the merged batch gives, cut back, every probe's float output bit for bit
  (a model mixing the rows of a batch, such as a sum over dim 0, fails here);
- every quantizable module's input has, at every call, the batches' rows on dim 0 (probe i
  alone: ``sizes[i]`` rows, merged: their sum) with the same trailing shape and the same
  number of calls (an expert fed a routed subset of tokens, a sequence-first attention,
  fail here): so a dynamic per-tensor input is quantized per probe segment
  (:class:`Segments`), with the qparams each probe alone would take;
- memory: the merged pass holds the K probes' activations at once; it is allowed while the
  quantizable modules' outputs of one merged pass total at most :data:`MERGE_MAX_BYTES`.

A merged batch the model refuses (it raises) falls back to one probe at a time, as does
a plan whose merged output does not cut back. Call counts are not read from a plan pass:
the range and local passes run probe by probe and count calls per probe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from tui_quantreport.engine.quantsim.analysis_base import _check_cancel, _one_line, first_tensor
from tui_quantreport.engine.quantsim.outputs import OutputsSqnr, output_tensors
from tui_quantreport.engine.quantsim.probes import MergedProbes, merge_probes, same_batch, split_rows
from tui_quantreport.engine.quantsim.sqnr import PreparedReference

if TYPE_CHECKING:
    from tui_quantreport.engine.quantsim.error_analysis import ErrorAnalysis

#: The merged pass is allowed while the quantizable modules' outputs of one merged pass (the K
#: probes' activations at those modules, held at once) total at most this many bytes (256 MiB).
MERGE_MAX_BYTES = 256 << 20


class Segments:
    """The probes' row counts while a merged batch runs (None otherwise): a simulated module
    whose input qparams depend on the whole tensor (dynamic) quantizes each probe's rows alone."""

    __slots__ = ("sizes",)

    def __init__(self) -> None:
        self.sizes: tuple[int, ...] | None = None


class NotSegmented(Exception):
    """A dynamic input under a merged batch without the probes' rows on dim 0: run probe by probe."""


def per_segment(
    quantize: Callable[[torch.Tensor], torch.Tensor],
    segments: Segments,
    together: Callable[[torch.Tensor, tuple[int, ...]], torch.Tensor | None] | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``quantize`` applied to each probe's rows alone while a merged batch runs (the same values
    as each probe quantized on its own), to the whole tensor otherwise. ``together(x, sizes)``, where
    given, does all the segments in one go (the same values) or returns None (then one by one)."""

    def segmented(x: torch.Tensor) -> torch.Tensor:
        sizes = segments.sizes
        if sizes is None:
            return quantize(x)
        if together is not None:
            out = together(x, sizes)
            if out is not None:
                return out
        pieces = split_rows(x, sizes)
        if pieces is None:
            raise NotSegmented
        return torch.cat([quantize(p) for p in pieces])

    return segmented


def merge_check(analysis: ErrorAnalysis) -> tuple[MergedProbes | None, str]:
    """(the merged probes, "") when the rule of this module holds for ``analysis``'s model and
    probes, else (None, why not). Costs one float pass of the probes one at a time and one of the
    merged batch, once."""
    merged = merge_probes(analysis.probes)
    if merged is None:
        return None, "the probes are not batches of tensors alike but for dim 0 (or fewer than 2)"
    reference = analysis.reference_outputs()
    shapes: dict[str, list[tuple[int, ...]]] = {}
    out_bytes = [0]

    def record(fqn: str):
        def pre(module, args, kwargs):
            x = first_tensor(args) if args else first_tensor(kwargs)
            shapes.setdefault(fqn, []).append(tuple(x.shape) if x is not None else ())

        def post(module, args, output):
            if isinstance(output, torch.Tensor):
                out_bytes[0] += output.numel() * output.element_size()

        return pre, post

    per_probe: list[dict[str, list[tuple[int, ...]]]] = []
    handles = []
    for fqn, target in analysis.targets.items():
        pre, post = record(fqn)
        handles.append(target.module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(target.module.register_forward_hook(post))
    try:
        with analysis._float_mode():
            for i, batch in enumerate(analysis.probes):
                shapes.clear()
                analysis._run(batch, i)
                per_probe.append(dict(shapes))
            shapes.clear()
            out_bytes[0] = 0
            try:
                output = analysis._outputs(analysis._run(merged.batch, 0))
            except Exception as exc:  # noqa: BLE001 - a batch the model refuses: one probe at a time
                return None, f"the model refused the merged batch ({_one_line(exc)})"
    finally:
        for h in handles:
            h.remove()
    if out_bytes[0] > MERGE_MAX_BYTES:
        return None, f"a merged pass would hold {out_bytes[0] / 2**20:.0f} MiB of activations"
    why = _rows_on_dim0(shapes, per_probe, merged.sizes)
    if why:
        return None, why
    pieces = _cut(output, merged.sizes)
    if pieces is None or not all(same_batch(p, r) and p.keys() == r.keys() for p, r in zip(pieces, reference)):
        return None, "the merged batch's output is not each probe's own output (the model mixes its rows)"
    return merged, ""


def _rows_on_dim0(
    merged: dict[str, list[tuple[int, ...]]], per_probe: list[dict[str, list[tuple[int, ...]]]], sizes: tuple[int, ...]
) -> str:
    total = sum(sizes)
    for fqn in set(merged).union(*per_probe):
        calls = merged.get(fqn, [])
        for size, probe in zip(sizes, per_probe):
            alone = probe.get(fqn, [])
            if len(alone) != len(calls):
                return f"'{fqn}' is called a different number of times on the merged batch"
            for one, both in zip(alone, calls):
                if not one or not both or one[0] != size or both[0] != total or one[1:] != both[1:]:
                    return f"the input of '{fqn}' does not have the batch's rows on dim 0"
    return ""


def _cut(output: Mapping[str, torch.Tensor], sizes: tuple[int, ...]) -> list[dict[str, torch.Tensor]] | None:
    """The merged output's tensors cut back per probe (None when one does not have their rows on dim 0)."""
    pieces: list[dict[str, torch.Tensor]] = [{} for _ in sizes]
    for name, tensor in output.items():
        cut = split_rows(tensor, sizes)
        if cut is None:
            return None
        for i, piece in enumerate(cut):
            pieces[i][name] = piece
    return pieces


def simulate_merged(
    analysis: ErrorAnalysis,
    merged: MergedProbes,
    prepared: list[dict[str, PreparedReference]],
    should_cancel: Callable[[], bool] | None,
) -> OutputsSqnr | None:
    """The plan already swapped in, run on the merged batch: the SQNR sums of each probe's piece
    against its reference, in probe order; None when the merged run cannot stand for the probes
    (the caller then runs them one at a time)."""
    _check_cancel(should_cancel)
    analysis._grid.tensors.clear()
    analysis._memo.clear()
    analysis._segments.sizes = merged.sizes
    try:
        out: Any = output_tensors(analysis._run(merged.batch, 0))
    except NotSegmented:
        return None
    except Exception:  # noqa: BLE001 - the probes one at a time say what fails, with the probe's number
        return None
    finally:
        analysis._segments.sizes = None
        analysis._memo.clear()
        analysis._grid.tensors.clear()
    pieces = _cut(out, merged.sizes)
    if pieces is None:
        return None
    acc = OutputsSqnr()
    for i, piece in enumerate(pieces):
        acc.add(prepared[i], piece)
    return acc
