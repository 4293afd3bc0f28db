"""Calibrating several batches in one forward, with every statistic as if they ran one by one.

On a model of many small modules a forward costs mostly Python's per-op time, whatever the
batch size: K batches concatenated on dim 0 run in about the time of one. The observer is then
fed each original batch's share of every observed tensor (its rows on dim 0), batch after batch,
in the order the calls were made, so the per-batch reductions (min/max, histograms, percentiles,
range sums, call counts, everything the stats hold) see exactly the tensors an unmerged run would
have shown them.

That holds only where the model treats batch items independently and its observed tensors are
batch-major. The rule, fixed and checked, never timed:

- every batch of a group has the same structure, shapes and dtypes, every tensor in it has the
  batch on dim 0 (the same size), and nothing else differs;
- once per batch shape, the first merged group's first batch is also run alone: every observed
  call must match its share of the merged forward (same points in the same order, the same
  tensors shared between points, the same dtype, shape, strides and bits), else merging stops
  for the calibration;
- in every group, each observed tensor must have the group's rows on dim 0 and must not have
  been modified in place after it was observed, else that group is run again batch by batch
  and merging stops;
- a group holds at most :data:`MAX_MERGED` batches, its observed tensors at most
  :data:`MEMORY_CAP` bytes (the recording keeps them alive until the group is folded in) and
  :data:`MERGED_TENSOR_BYTES` on average (merging pays for small tensors only), all from the
  first batch's sizes;
- a session remembers a check that passed (and the group size), for calibrations whose first batch
  looks alike (shapes, dtypes) with the same observed points; such a calibration, its layouts known
  too, merges from its first batch (which otherwise runs alone: its tensors size the groups); a
  group that breaks the rule forgets it;
- a merged forward the model rejects is run again batch by batch (which names the batch).

Never where a batch must not run twice (``--no-rerun``), nor in a model holding ``torch.ao``
fake-quantize modules (their output moves with their observers' state, forward after forward).
``TUI_QUANTREPORT_MERGE_BATCHES=0`` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from tui_quantreport.engine.stats import Point

#: At most this many batches run as one forward.
MAX_MERGED = 8

#: The observed tensors of one merged forward (kept until the group is folded in) stay under this.
MEMORY_CAP = 256 << 20

#: Merged tensors stay at most this big on average: merging pays where a forward costs Python's
#: per-op time (small tensors), not where it costs the arithmetic (the size at which the observer
#: stops holding tensors to reduce them in groups: 16,384 float32 values).
MERGED_TENSOR_BYTES = 64 << 10

ENV = "TUI_QUANTREPORT_MERGE_BATCHES"

#: One observed call of a recorded forward: its point, its tensor (None: no tensor) and the
#: tensor's ``_version`` when it was observed.
Call = tuple[Point, "torch.Tensor | None", int]


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def batch_rows(batch: Any) -> int | None:
    """The batch size every tensor of ``batch`` shares on dim 0 (None: no tensor, a 0-d tensor,
    sizes that differ, or a value that cannot be concatenated)."""
    sizes: set[int] = set()
    if not _collect_rows(batch, sizes) or len(sizes) != 1:
        return None
    return next(iter(sizes))


def _collect_rows(value: Any, sizes: set[int]) -> bool:
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 or value.layout is not torch.strided or value.is_quantized or value.requires_grad:
            return False
        sizes.add(value.shape[0])
        return True
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, Mapping):
        return type(value) is dict and all(_collect_rows(v, sizes) for v in value.values())
    if isinstance(value, (tuple, list)):
        return type(value) in (tuple, list) and all(_collect_rows(v, sizes) for v in value)
    return False


def concat(batches: list[Any]) -> Any:
    """The batches as one: tensors concatenated on dim 0, everything else taken from the first
    (the caller checked that the batches have one signature)."""
    first = batches[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(batches, dim=0)
    if isinstance(first, dict):
        return {key: concat([b[key] for b in batches]) for key in first}
    if isinstance(first, (tuple, list)):
        return type(first)(concat([b[i] for b in batches]) for i in range(len(first)))
    return first


def group_size(sizes: dict[int, int]) -> int:
    """How many batches run as one, from one batch's observed tensors (``sizes``: bytes by tensor
    id): :data:`MAX_MERGED`, fewer where the group's observed tensors would pass
    :data:`MEMORY_CAP` in all or :data:`MERGED_TENSOR_BYTES` on average (1: no merging)."""
    total, count = sum(sizes.values()), len(sizes)
    if total <= 0 or count == 0:
        return MAX_MERGED
    return max(1, min(MAX_MERGED, MEMORY_CAP // total, MERGED_TENSOR_BYTES * count // total))


def split(calls: list[Call], count: int, rows: int) -> list[list[tuple[Point, torch.Tensor | None]]] | None:
    """Each original batch's calls: every observed tensor's rows ``[i * rows, (i + 1) * rows)``,
    one view per tensor and batch (a tensor seen at several points is one tensor in each batch).
    None when a tensor is not batch-major with ``count * rows`` rows, or was modified in place
    after it was observed."""
    pieces: dict[int, tuple[torch.Tensor, ...]] = {}
    for _, tensor, version in calls:
        if tensor is None or id(tensor) in pieces:
            if tensor is not None and tensor._version != version:
                return None
            continue
        if (
            tensor._version != version
            or tensor.layout is not torch.strided
            or tensor.is_quantized
            or tensor.dim() == 0
            or tensor.shape[0] != count * rows
        ):
            return None
        pieces[id(tensor)] = tensor.split(rows, dim=0)
    return [[(point, None if t is None else pieces[id(t)][i]) for point, t, _ in calls] for i in range(count)]


def same_calls(alone: list[Call], share: list[tuple[Point, torch.Tensor | None]]) -> bool:
    """Whether a batch run alone made the calls its share of a merged forward shows: the same
    points in order, the same tensor shared between the same points, the same dtype, shape,
    strides and bits."""
    if len(alone) != len(share):
        return False
    first_alone: dict[int, int] = {}
    first_share: dict[int, int] = {}
    for i, ((point, a, _), (point_b, b)) in enumerate(zip(alone, share)):
        if point != point_b or (a is None) != (b is None):
            return False
        if a is None or b is None:
            continue
        if first_alone.setdefault(id(a), i) != first_share.setdefault(id(b), i):
            return False
        if first_alone[id(a)] != i:
            continue  # compared at its first call
        if a.dtype != b.dtype or a.shape != b.shape or a.stride() != b.stride() or a.device != b.device:
            return False
        if not _same_bits(a, b):
            return False
    return True


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.is_complex() or a.dtype == torch.bool or not a.is_floating_point():
        return torch.equal(a, b)
    width = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}[a.element_size()]
    return torch.equal(a.contiguous().view(width), b.contiguous().view(width))
