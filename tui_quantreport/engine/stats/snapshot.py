"""What a calibration hands to the detectors: an immutable, mergeable snapshot.

A :data:`Point` is one observation point, a module and a side; a
:class:`PointRequest` says what to record there; :class:`Stats` holds, after
calibration, the frozen :class:`~.accumulator.PointStats` of every point and the
per-input-channel :class:`WeightRange` of every weighted module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from tui_quantreport.engine.stats.accumulator import PointStats

#: A point is a module and a side: ("encoder.fc1", "pre") or ("encoder.fc1", "post").
Point = tuple[str, str]


@dataclass(frozen=True)
class PointRequest:
    """What to record at one observation point: an optional axis override, percentiles.

    ``axis_rule`` is the ``--ch-axis`` rule that set ``axis`` (for the point's reason).
    """

    axis: int | None = None
    percentiles: tuple[float, ...] = ()
    axis_rule: str = ""


@dataclass(frozen=True)
class PointLayout:
    """How one observation point's tensors were read: the channel axis and why.

    ``axis`` is the axis used for the first tensor seen (None when no
    per-channel view was taken: integer tensors, an override out of range).
    ``integer`` marks integer or bool tensors (indices, masks: not
    activations); ``error`` says why per-channel statistics are missing.
    Decided by :class:`~tui_quantreport.engine.layout.LayoutTracker`.
    """

    axis: int | None
    reason: str
    dtype: str = ""
    integer: bool = False
    error: str = ""


@dataclass(frozen=True)
class WeightRange:
    """Per-channel min and max of a module's weight along ``axis`` of the weight.

    ``axis`` is the weight's input-channel axis (1 for Linear and Conv, 0 for
    transformers' Conv1D) or, for a layer without input channels (an embedding),
    its rows (``rows`` true).
    """

    channel_min: torch.Tensor
    channel_max: torch.Tensor
    axis: int = 1
    rows: bool = False


@dataclass(frozen=True, eq=False)
class Stats:
    """What one calibration produced: immutable, CPU-resident, mergeable."""

    batches: int
    points: Mapping[Point, PointStats] = field(repr=False)
    weights: Mapping[str, WeightRange] = field(repr=False)
    #: The settings that decided what was recorded (see settings.observed_settings); None if unknown.
    observed: Mapping[str, Any] | None = field(default=None, repr=False)
    #: Per point: the channel axis used and why, and the dtype (see :class:`PointLayout`).
    layouts: Mapping[Point, PointLayout] = field(default_factory=dict, repr=False)

    @classmethod
    def empty(cls) -> Stats:
        return cls(0, {}, {})

    def point(self, fqn: str, role: str) -> PointStats | None:
        return self.points.get((fqn, role))

    def layout(self, fqn: str, role: str) -> PointLayout | None:
        return self.layouts.get((fqn, role))

    def merge(self, other: Stats) -> Stats:
        """Stats of both calibrations' batches, as if they had run as one."""
        points = dict(self.points)
        for key, value in other.points.items():
            points[key] = points[key].merge(value) if key in points else value
        return Stats(
            self.batches + other.batches,
            points,
            {**self.weights, **other.weights},
            self.observed if self.observed == other.observed else None,
            {**other.layouts, **self.layouts},
        )
