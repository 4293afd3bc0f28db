"""Probe batches: the first K calibration batches, kept while calibration reads them.

:class:`ProbeRecorder` wraps the batch iterable handed to calibration: it yields
every batch unchanged and keeps references to the first ``k`` (no copy; memory
is those K batches). ``len()`` passes through so progress bars keep their total.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


class ProbeRecorder:
    def __init__(self, batches: Iterable[Any], k: int):
        self._batches = batches
        self.k = k
        self.probes: list[Any] = []

    def __iter__(self) -> Iterator[Any]:
        for batch in self._batches:
            if len(self.probes) < self.k:
                self.probes.append(batch)
            yield batch

    def __len__(self) -> int:
        return len(self._batches)  # type: ignore[arg-type]


def take_probes(batches: Iterable[Any], k: int) -> list[Any]:
    """The first ``k`` batches of ``batches`` (a fresh iteration)."""
    probes: list[Any] = []
    for batch in batches:
        if len(probes) >= k:
            break
        probes.append(batch)
    return probes
