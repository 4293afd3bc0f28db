"""One lock per model: whatever runs the user's model or changes it for a while takes turns.

The app measures in worker threads that overlap (the plan on screen, the module that limits it,
sensitivity, a verification, a new calibration). A measurement swaps quantized modules'
forwards into the model for its passes, calibration attaches observers, and a verification
deep-copies the model and runs it as the float reference: two of them at once would each see the
other's modules (a plan evaluated with another plan's modules swapped in, a forward left swapped
for good, a quantized copy made of a half-swapped model). Each takes :func:`model_lock` of the
model it runs; the lock is re-entrant, so a measurement may call another on the same thread.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def model_lock(model: Any) -> threading.RLock:
    """The lock of ``model`` (one per model object, made on first use, gone with the model)."""
    with _GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock
