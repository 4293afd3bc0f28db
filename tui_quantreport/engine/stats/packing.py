"""The statistics as tensors: the one layout of :class:`~.snapshot.Stats` outside memory.

Stats files (:mod:`~...statsfile`) store it and distributed calibration (:mod:`~...distributed`)
sends it between ranks. Stats.state() names every tensor of the snapshot (a point's channel min
and max, each reducer's result, each weight range): thousands of small tensors on a large model.
They are packed into one flat tensor per dtype ("pack.float32", "pack.int64", ...), with
[name, dtype, shape, offset] per tensor in the JSON, so that the safetensors file has a handful of
entries and opening one is a few slices. Nothing here is pickled.

Reducers register themselves when their class is defined: whoever reads saved statistics imports
the detectors first (the stats file does), so every reducer a state names is known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from tui_quantreport.engine.stats.snapshot import Stats


def stats_state(stats: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``stats`` as a few flat CPU tensors, and the JSON that names and lays them out."""
    tensors, meta = stats.state()
    groups: dict[str, list[Any]] = {}
    index = []
    offsets: dict[str, int] = {}
    for name, tensor in tensors.items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        dtype = str(flat.dtype).removeprefix("torch.")
        at = offsets.get(dtype, 0)
        index.append([name, dtype, list(tensor.shape), at])
        groups.setdefault(dtype, []).append(flat)
        offsets[dtype] = at + flat.numel()
    packed = {f"pack.{dtype}": torch.cat(parts) for dtype, parts in groups.items()}
    return packed, {"state": meta, "tensors": index}


def stats_from_state(packed: Mapping[str, Any], meta: Mapping[str, Any], batches: int | None = None) -> Any:
    """Rebuild :class:`~.stats.Stats` from :func:`stats_state`'s output, checking the layout."""

    # Each pack holds its tensors back to back, in index order: one split per pack.
    entries: dict[str, list[tuple[str, list[int], int]]] = {}
    ends: dict[str, int] = {}
    for name, dtype, shape, offset in meta["tensors"]:
        key = f"pack.{dtype}"
        if key not in packed:
            raise ValueError(f"tensor {name!r} names a missing pack")
        count = math.prod(shape)
        if offset != ends.get(key, 0) or count < 0:
            raise ValueError(f"tensor {name!r} is not where its layout says")
        ends[key] = offset + count
        entries.setdefault(key, []).append((str(name), list(shape), count))
    tensors = {}
    for key, flat in packed.items():
        items = entries.get(key, [])
        if ends.get(key, 0) != flat.numel() or flat.dim() != 1:
            raise ValueError(f"{key} holds other than its layout says")
        for (name, shape, _), part in zip(items, flat.split([n for _, _, n in items])):
            tensors[name] = part.view(shape)
    stats = Stats.from_state(tensors, meta["state"])
    for point_key, point in stats.points.items():
        low, high = point.channel_min, point.channel_max
        if (low is None) != (high is None) or (
            low is not None and high is not None and (low.dim() != 1 or low.shape != high.shape)
        ):
            raise ValueError(f"point {point_key} has mismatched channel tensors")
    if batches is not None and stats.batches != batches:
        raise ValueError("the batch counts disagree")
    return stats
