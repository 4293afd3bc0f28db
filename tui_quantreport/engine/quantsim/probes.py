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
