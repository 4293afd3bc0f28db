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
    """What to record at one observation point: an optional axis override, percentiles."""

    axis: int | None = None
    percentiles: tuple[float, ...] = ()


@dataclass(frozen=True)
class WeightRange:
    """Per input channel (weight dim 1) min and max of a module's weight."""

    channel_min: torch.Tensor
    channel_max: torch.Tensor


@dataclass(frozen=True, eq=False)
class Stats:
    """What one calibration produced: immutable, CPU-resident, mergeable."""

    batches: int
    points: Mapping[Point, PointStats] = field(repr=False)
    weights: Mapping[str, WeightRange] = field(repr=False)
    #: The settings that decided what was recorded (see settings.observed_settings); None if unknown.
    observed: Mapping[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def empty(cls) -> Stats:
        return cls(0, {}, {})

    def point(self, fqn: str, role: str) -> PointStats | None:
        return self.points.get((fqn, role))

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
        )
