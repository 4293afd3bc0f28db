"""Calibration statistics: what is recorded per observation point, and the snapshot.

- :mod:`.snapshot`: :data:`Point`, :class:`PointRequest`, :class:`WeightRange`
  and :class:`Stats`, the immutable result of one calibration;
- :mod:`.accumulator`: the per-batch reductions (:func:`summarize`), the
  running :class:`Accumulator` of one point, and its frozen :class:`PointStats`;
- :mod:`.reducers`: the :class:`Reducer` interface for statistics beyond the
  core, which detectors declare beside their own code, and the plain
  ``state() / from_state()`` form every result has (no pickle);
- :mod:`.selection`: exact per-channel order statistics.
"""

from __future__ import annotations

from tui_quantreport.engine.stats.accumulator import (
    Accumulator,
    PointStats,
    TensorSummary,
    channels_view,
    only_empty,
    summarize,
)
from tui_quantreport.engine.stats.reducers import (
    DEVICE_OPS,
    HOST_OPS,
    Ops,
    Reducer,
    reducer_from_spec,
)
from tui_quantreport.engine.stats.snapshot import (
    Point,
    PointLayout,
    PointRequest,
    Stats,
    WeightRange,
)

__all__ = [
    "DEVICE_OPS",
    "HOST_OPS",
    "Accumulator",
    "Ops",
    "Point",
    "PointLayout",
    "PointRequest",
    "PointStats",
    "Reducer",
    "Stats",
    "TensorSummary",
    "WeightRange",
    "channels_view",
    "only_empty",
    "reducer_from_spec",
    "summarize",
]
