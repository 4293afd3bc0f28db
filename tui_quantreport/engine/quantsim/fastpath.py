"""``nn.TransformerEncoderLayer``'s fused fast path off while measurements run, process-wide.

The fast path skips the Linear modules inside the layer (they could be neither seen nor
simulated), so every measurement turns it off (``torch.backends.mha.set_fastpath_enabled``,
a process-wide switch) and gives the user's setting back when it ends. Measurements overlap
(the app runs them in worker threads): a plain save-and-restore per measurement would let
the one that started second restore "off" after the first restored "on", leaving the switch
off for the rest of the process. Here the first measurement to start saves the setting and
the last one to end restores it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_LOCK = threading.Lock()
_users = 0
_saved: bool | None = None


@contextmanager
def attention_fastpath_off() -> Iterator[None]:
    """The fused attention fast path off for the duration; the user's setting back after the last
    overlapping use ends."""
    global _users, _saved
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    with _LOCK:
        if _users == 0:
            _saved = mha.get_fastpath_enabled()
            mha.set_fastpath_enabled(False)
        _users += 1
    try:
        yield
    finally:
        with _LOCK:
            _users -= 1
            if _users == 0 and _saved is not None:
                mha.set_fastpath_enabled(_saved)
