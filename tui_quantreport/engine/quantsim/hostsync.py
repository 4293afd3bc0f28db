"""Where the measurement may read a tensor's value back to the host.

On the CPU a read (``float(t)``, ``bool(t)``) costs nothing but the call, and the CPU paths
use it to pick cheaper ops (a scalar qparams computation, a cached scale). On an accelerator
each read waits for the device to finish its queue: the per-batch paths there are branch-free
(``torch.where`` both ways, sums kept on the device) and read once at the end of a pass.

:func:`device_path` makes the CPU take the accelerator's paths, so tests can hold them equal
to the CPU's and show they read nothing back (the same values, bit for bit).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_forced = False


def host_reads(t: torch.Tensor) -> bool:
    """Whether the per-batch path may read ``t``'s values back to the host (a CPU tensor,
    unless :func:`device_path` is on)."""
    return t.device.type == "cpu" and not _forced


@contextmanager
def device_path() -> Iterator[None]:
    """Within it, CPU tensors take the accelerator's read-free paths."""
    global _forced
    saved, _forced = _forced, True
    try:
        yield
    finally:
        _forced = saved
