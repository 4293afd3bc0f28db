"""Calibration statistics: what is recorded per observation point, and the snapshot.

- :mod:`.snapshot`: :data:`Point`, :class:`PointRequest`, :class:`WeightRange`
  and :class:`Stats`, the immutable result of one calibration;
- :mod:`.accumulator`: the per-batch reductions (:func:`summarize`), the
  running :class:`Accumulator` of one point, and its frozen :class:`PointStats`;
- :mod:`.selection`: exact per-channel order statistics.
"""

from __future__ import annotations

from tui_quantreport.engine.stats.accumulator import (
    Accumulator,
    PercentileStats,
    PointStats,
    TensorSummary,
    only_empty,
    summarize,
)
from tui_quantreport.engine.stats.snapshot import Point, PointLayout, PointRequest, Stats, WeightRange

__all__ = [
    "Accumulator",
    "PercentileStats",
    "Point",
    "PointLayout",
    "PointRequest",
    "PointStats",
    "Stats",
    "TensorSummary",
    "WeightRange",
    "only_empty",
    "summarize",
]
