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
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from tui_quantreport.engine.stats.accumulator import PointStats, percentiles_of
from tui_quantreport.engine.stats.reducers import Reducer

#: A point is a module and a side: ("encoder.fc1", "pre") or ("encoder.fc1", "post").
Point = tuple[str, str]


@dataclass(frozen=True)
class PointRequest:
    """What to record at one observation point: the core, these reducers, and an optional axis override.

    ``axis_rule`` is the ``--ch-axis`` rule that set ``axis`` (for the point's reason).
    """

    axis: int | None = None
    reducers: frozenset[Reducer] = frozenset()
    axis_rule: str = ""

    @classmethod
    def of(cls, *reducers: Reducer, axis: int | None = None) -> PointRequest:
        return cls(axis, frozenset(reducers))

    @property
    def percentiles(self) -> tuple[float, ...]:
        """The per-channel percentiles the reducers read, ascending."""
        return percentiles_of(self.reducers)

    def union(self, others: Iterable[PointRequest], axis: int | None = None, axis_rule: str = "") -> PointRequest:
        """One request asking for everything this one and ``others`` ask for, with ``axis``."""
        reducers = set(self.reducers)
        for other in others:
            reducers |= other.reducers
        return PointRequest(axis, frozenset(reducers), axis_rule)


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

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"channel_min": self.channel_min, "channel_max": self.channel_max}, {
            "axis": self.axis,
            "rows": self.rows,
        }

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> WeightRange:
        return cls(
            tensors["channel_min"], tensors["channel_max"], int(meta.get("axis", 1)), bool(meta.get("rows", False))
        )


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
            own, meta = weight.state()
            tensors.update({f"weights/{i}/{k}": v for k, v in own.items()})
            weights.append({"fqn": fqn, **meta})
        layouts = [{"fqn": fqn, "role": role, **asdict(layout)} for (fqn, role), layout in self.layouts.items()]
        observed = dict(self.observed) if self.observed is not None else None
        return tensors, {
            "batches": self.batches,
            "observed": observed,
            "points": points,
            "weights": weights,
            "layouts": layouts,
        }

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Stats:
        """The snapshot :meth:`state` described."""

        # Grouped once by "points/3/" or "weights/7/": a lookup per entry, not a scan (thousands of points).
        grouped: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            section, _, rest = key.partition("/")
            index, _, name = rest.partition("/")
            grouped.setdefault(f"{section}/{index}/", {})[name] = value

        def own(prefix: str) -> dict[str, torch.Tensor]:
            return grouped.get(prefix, {})

        points = {
            (entry["fqn"], entry["role"]): PointStats.from_state(own(f"points/{i}/"), entry)
            for i, entry in enumerate(meta["points"])
        }
        weights = {
            entry["fqn"]: WeightRange.from_state(own(f"weights/{i}/"), entry) for i, entry in enumerate(meta["weights"])
        }
        layouts = {
            (entry["fqn"], entry["role"]): PointLayout(**{k: v for k, v in entry.items() if k not in ("fqn", "role")})
            for entry in meta.get("layouts", [])
        }
        return cls(int(meta["batches"]), points, weights, meta.get("observed"), layouts)
