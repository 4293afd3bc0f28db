"""Probe batches: the first K calibration batches, kept while calibration reads them.

:class:`ProbeRecorder` wraps the batch iterable handed to calibration: it yields
every batch unchanged and keeps a copy of the first ``k`` (their tensors cloned
before the model sees them: a model that changes its input in place cannot change
the probes the error is measured on; memory is those K batches). It also tells
whether the model changed the first batch (:attr:`ProbeRecorder.mutated`).
``len()`` passes through so progress bars keep their total.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


class ProbeRecorder:
    def __init__(self, batches: Iterable[Any], k: int):
        self._batches = batches
        self.k = k
        self.probes: list[Any] = []
        #: True when the model changed the first batch in place while calibrating on it.
        self.mutated = False

    def __iter__(self) -> Iterator[Any]:
        first: tuple[Any, Any] | None = None
        for i, batch in enumerate(self._batches):
            if i == 1 and first is not None:  # the model has run the first batch
                self.mutated = not same_batch(*first)
            kept = copy_batch(batch) if len(self.probes) < self.k or i == 0 else None
            if len(self.probes) < self.k:
                self.probes.append(kept)
            if i == 0:
                first = (copy_batch(batch) if self.k == 0 else kept, batch)
            yield batch
        if first is not None and not self.mutated:
            self.mutated = not same_batch(*first)

    def __len__(self) -> int:
        return len(self._batches)  # type: ignore[arg-type]


def take_probes(batches: Iterable[Any], k: int) -> list[Any]:
    """Copies of the first ``k`` batches of ``batches`` (a fresh iteration)."""
    probes: list[Any] = []
    for batch in batches:
        if len(probes) >= k:
            break
        probes.append(copy_batch(batch))
    return probes


def copy_batch(batch: Any) -> Any:
    """``batch`` with every tensor cloned (tuples, lists and dicts rebuilt; anything else kept)."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.detach().clone()
    if isinstance(batch, dict):
        return {k: copy_batch(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)) and type(batch) in (tuple, list):
        return type(batch)(copy_batch(v) for v in batch)
    return batch


def same_batch(a: Any, b: Any) -> bool:
    """Whether two batches hold equal tensors (NaN equal to NaN) in the same structure."""
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b) or _nan_equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_batch(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_batch(x, y) for x, y in zip(a, b))
    return True


def _nan_equal(a: Any, b: Any) -> bool:
    import torch

    if not a.is_floating_point():
        return False
    return bool(
        torch.equal(torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0)) and torch.equal(a.isnan(), b.isnan())
    )


MUTATION_NOTE = (
    "the model changes its input in place (the first calibration batch differed after its forward): "
    "the error is measured on copies of the probe batches taken before the model saw them"
)


class MergedProbes:
    """The probe batches laid end to end on dim 0 (:func:`merge_probes`): ``batch`` holds probe i's
    rows at ``sizes[i]`` after those of the probes before it."""

    __slots__ = ("batch", "sizes")

    def __init__(self, batch: Any, sizes: tuple[int, ...]):
        self.batch = batch
        self.sizes = sizes


class _NotMergeable(Exception):
    pass


def merge_probes(probes: list[Any]) -> MergedProbes | None:
    """The probes as one batch, or None where the fixed rule does not hold.

    The rule: two probes or more, each one a tensor or a tuple, list or dict of them (nested
    alike), every tensor of a probe with the same size on dim 0 (its batch size, at least 1), and
    the tensors at one place of the structure alike in every probe (dtype, device, trailing
    shape); anything else in a batch (None, a number, a string) equal in every probe. Whether the
    model treats the rows independently is not decided here: see :mod:`.merged_probes`.
    """
    if len(probes) < 2:
        return None
    sizes = []
    for probe in probes:
        size = _batch_size(probe)
        if size is None:
            return None
        sizes.append(size)
    try:
        batch = _cat(list(probes))
    except _NotMergeable:
        return None
    return MergedProbes(batch, tuple(sizes))


def _batch_size(batch: Any) -> int | None:
    import torch

    found: set[int] = set()

    def walk(b: Any) -> None:
        if isinstance(b, torch.Tensor):
            found.add(b.shape[0] if b.dim() else 0)
        elif isinstance(b, dict):
            for v in b.values():
                walk(v)
        elif isinstance(b, (tuple, list)) and type(b) in (tuple, list):
            for v in b:
                walk(v)

    walk(batch)
    if len(found) != 1:
        return None
    size = found.pop()
    return size if size > 0 else None


def _cat(items: list[Any]) -> Any:
    import torch

    first = items[0]
    if isinstance(first, torch.Tensor):
        for t in items:
            if (
                not isinstance(t, torch.Tensor)
                or type(t) is not torch.Tensor
                or t.layout != torch.strided
                or t.dtype != first.dtype
                or t.device != first.device
                or t.shape[1:] != first.shape[1:]
            ):
                raise _NotMergeable
        return torch.cat([t.detach() for t in items])
    if isinstance(first, dict) and type(first) is dict:
        if any(type(d) is not dict or list(d) != list(first) for d in items):
            raise _NotMergeable
        return {k: _cat([d[k] for d in items]) for k in first}
    if isinstance(first, (tuple, list)) and type(first) in (tuple, list):
        if any(type(b) is not type(first) or len(b) != len(first) for b in items):
            raise _NotMergeable
        return type(first)(_cat([b[i] for b in items]) for i in range(len(first)))
    for other in items[1:]:
        try:
            same = type(other) is type(first) and bool(other == first)
        except Exception:  # noqa: BLE001 - an object that cannot say it equals another: not merged
            same = False
        if not same:
            raise _NotMergeable
    return first


def split_rows(tensor: Any, sizes: tuple[int, ...]) -> list[Any] | None:
    """``tensor`` cut back into the probes' pieces on dim 0, or None when its dim 0 is not theirs."""
    if tensor.dim() == 0 or tensor.shape[0] != sum(sizes):
        return None
    return list(tensor.split(list(sizes)))
