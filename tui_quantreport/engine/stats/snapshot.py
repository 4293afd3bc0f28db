"""What a calibration hands to the detectors: an immutable, mergeable snapshot.

A :data:`Point` is one observation point, a module and a side; a
:class:`PointRequest` says what to record there (the reducers on top of the
core statistics); :class:`Stats` holds, after calibration, the frozen
:class:`~.accumulator.PointStats` of every point and the per-input-channel
:class:`WeightRange` of every weighted module.

``Stats.state()`` gives the whole snapshot as ``(tensors, meta)``: a flat
``dict[str, torch.Tensor]`` of CPU tensors (safetensors can hold it) and
JSON-able metadata; ``Stats.from_state(tensors, meta)`` rebuilds it exactly.
No pickle is involved. See :mod:`.reducers` for the parts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from tui_quantreport.engine.stats.accumulator import PointStats, percentiles_of
from tui_quantreport.engine.stats.reducers import Reducer

#: A point is a module and a side: ("encoder.fc1", "pre") or ("encoder.fc1", "post").
Point = tuple[str, str]


@dataclass(frozen=True)
class PointRequest:
    """What to record at one observation point: the core, these reducers, and an optional axis override."""

    axis: int | None = None
    reducers: frozenset[Reducer] = frozenset()

    @classmethod
    def of(cls, *reducers: Reducer, axis: int | None = None) -> PointRequest:
        return cls(axis, frozenset(reducers))

    @property
    def percentiles(self) -> tuple[float, ...]:
        """The per-channel percentiles the reducers read, ascending."""
        return percentiles_of(self.reducers)

    def union(self, others: Iterable[PointRequest], axis: int | None = None) -> PointRequest:
        """One request asking for everything this one and ``others`` ask for, with ``axis``."""
        reducers = set(self.reducers)
        for other in others:
            reducers |= other.reducers
        return PointRequest(axis, frozenset(reducers))


@dataclass(frozen=True)
class WeightRange:
    """Per input channel (weight dim 1) min and max of a module's weight."""

    channel_min: torch.Tensor
    channel_max: torch.Tensor

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"channel_min": self.channel_min, "channel_max": self.channel_max}, {}

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> WeightRange:
        return cls(tensors["channel_min"], tensors["channel_max"])


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

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The snapshot as flat CPU tensors by name and JSON-able metadata (no pickle)."""
        tensors: dict[str, torch.Tensor] = {}
        points = []
        for i, ((fqn, role), point) in enumerate(self.points.items()):
            own, meta = point.state()
            tensors.update({f"points/{i}/{k}": v for k, v in own.items()})
            points.append({"fqn": fqn, "role": role, **meta})
        weights = []
        for i, (fqn, weight) in enumerate(self.weights.items()):
            own, _ = weight.state()
            tensors.update({f"weights/{i}/{k}": v for k, v in own.items()})
            weights.append(fqn)
        observed = dict(self.observed) if self.observed is not None else None
        return tensors, {"batches": self.batches, "observed": observed, "points": points, "weights": weights}

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Stats:
        """The snapshot :meth:`state` described."""

        def own(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        points = {
            (entry["fqn"], entry["role"]): PointStats.from_state(own(f"points/{i}/"), entry)
            for i, entry in enumerate(meta["points"])
        }
        weights = {fqn: WeightRange.from_state(own(f"weights/{i}/"), {}) for i, fqn in enumerate(meta["weights"])}
        return cls(int(meta["batches"]), points, weights, meta.get("observed"))
