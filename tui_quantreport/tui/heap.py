"""The collector and the session's long-lived objects.

Once a model is loaded and measured, the process holds ~700,000 objects that live as long as the
session (the model's modules and parameters, the statistics, the measurement, Textual's widgets
for a 2,000-module tree), and Python's full collections walk all of them: 100-650 ms each on the
2,028-module sample, at whatever moment the allocations since the last one trigger it, a key
press included (a what-if toggle measured 813 ms where its median was 150 ms). ``gc.freeze()``
moves what exists into the collector's permanent generation: later full collections walk only
the objects made since (reference counting still frees everything as usual). Before the session
replaces what it holds (a new calibration), and when the app exits, they are given back to the
collector, so a cycle among the replaced objects is still found.
"""

from __future__ import annotations

import gc


def settled() -> None:
    """What the session holds now lives until it is replaced: out of the collector's full scans.
    (No collection first: one would pause the UI thread for a full scan; a cycle frozen here is
    found once :func:`unsettled` gives it back.)"""
    gc.freeze()


def unsettled() -> None:
    """The session is about to replace what it holds: the collector scans it again."""
    gc.unfreeze()
