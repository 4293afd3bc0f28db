"""Dead channels: input channels of a weighted layer that are exactly zero, batch after batch.

Per input channel c of a Linear, Conv or other layer with input channels, over
calls b = 1..B: the channel is *all zeros* in call b when its minimum and
maximum in that call are both 0. With ``Z_c`` the number of such calls::

    dead_c = Z_c / B >= zero_batch_fraction      (default 1: zero in every batch)

A dead channel carries no information: the weights of input channel c never
reach the output, yet they cost compute and storage and still count toward the
weight's quantization range. The module is flagged when any channel is dead.

The statistic, :class:`ZeroCalls`, lives here beside the detector: it is read
from the per-channel min and max every observed tensor is reduced to anyway,
so it adds one comparison per channel and call, on the tensor's device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from tui_quantreport.engine.detectors.base import Detector, EvaluationContext, Judgement, Unjudged
from tui_quantreport.engine.layout import why_not_judged
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import Evidence, Series, Status
from tui_quantreport.engine.stats import Ops, Point, PointRequest, Reducer, TensorSummary

CHANNELS_NAMED = 8


@dataclass(frozen=True, eq=False)
class ZeroCallStats:
    """Per channel, the number of calls in which the channel was all zeros (a CPU int64 tensor)."""

    zero_calls: torch.Tensor

    def merge(self, other: ZeroCallStats) -> ZeroCallStats:
        return ZeroCallStats(self.zero_calls + other.zero_calls)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"zero_calls": self.zero_calls}, {}

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> ZeroCallStats:
        return cls(tensors["zero_calls"])


@dataclass(frozen=True)
class ZeroCalls(Reducer):
    """Counts, per channel, the calls whose channel min and max are both 0."""

    kind = "zero_calls"
    elementwise = True
    result = ZeroCallStats

    def contribution(self, summary: TensorSummary, tensor: Any) -> Any:
        return (summary.channel_min == 0) & (summary.channel_max == 0)

    def start(self, contribution: Any, ops: Ops) -> Any:
        return ops.counts(contribution)  # float32: exact below 2**24 calls, adds a bool mask without a cast

    def update(self, state: Any, contribution: Any, ops: Ops) -> Any:
        ops.add(state, contribution, out=state)
        return state

    def freeze(self, state: Any, ops: Ops) -> ZeroCallStats:
        return ZeroCallStats(ops.to_cpu(state).to(torch.int64))


@dataclass(frozen=True)
class ZeroCounts:
    """One module's threshold-free numbers: per input channel, the calls it was all zeros."""

    class_name: str
    calls: int
    zero_calls: list[int]
    most: int  # the largest count


class DeadChannelDetector(Detector[ZeroCounts]):
    name = "dead_channel_detector"
    aliases = ("dead_channels", "dead_channel", "dead")
    title = "Dead channels"
    glyph = "Z"
    order = 50
    description = "inputs of Linear, Conv and other layers with input channels"
    noun = "layers"
    params = (
        Param(
            "zero_batch_fraction",
            1.0,
            "a channel is dead when it is all zeros in at least this share of batches",
            low=0.0,
            high=1.0,
            low_inclusive=False,
        ),
    )
    DEAD_CHANNELS = "dead_channels"
    ZERO_BATCHES = "zero_batches"
    ZERO_BATCH_FRACTION = "zero_batch_fraction"
    module_param_keys = (ZERO_BATCH_FRACTION,)
    report_keys = (DEAD_CHANNELS, ZERO_BATCHES, ZERO_BATCH_FRACTION)

    def targets(self, catalog: ModelCatalog) -> list[str]:
        return [fqn for fqn, kind in catalog.kinds.items() if kind.in_axis is not None]

    def observations(self, catalog: ModelCatalog, params: Mapping[str, Any]) -> dict[Point, PointRequest]:
        request = PointRequest.of(ZeroCalls())
        return {(fqn, "pre"): request for fqn in self.targets(catalog)}

    def measure(self, ctx: EvaluationContext, fqn: str, params: Mapping[str, Any]) -> ZeroCounts | Unjudged:
        class_name = ctx.catalog.modules[fqn].class_name
        point = ctx.stats.point(fqn, "pre")
        empty: dict[str, Any] = {self.DEAD_CHANNELS: [], self.ZERO_BATCHES: []}
        blocked = why_not_judged(ctx.catalog, ctx.stats, fqn, "pre")
        if blocked is not None:
            return Unjudged(Status(blocked[0]), blocked[1], empty)
        if point is None or point.calls == 0:
            return Unjudged(Status.NOT_OBSERVED, f"{class_name} '{fqn}' was never called during calibration.", empty)
        if point.channel_min is None:
            return Unjudged(
                Status.NOT_APPLICABLE,
                f"The input of '{fqn}' changed its number of channels between batches "
                f"(shapes {', '.join(map(str, point.shapes))}), so channels cannot be followed.",
                empty,
            )
        stats = point.get(ZeroCalls())
        if stats is None:
            return Unjudged(
                Status.NOT_APPLICABLE,
                "The last calibration did not count all-zero batches here (this detector was off): calibrate again.",
                empty,
            )
        zero_calls = stats.zero_calls.tolist()
        return ZeroCounts(class_name, point.calls, zero_calls, max(zero_calls, default=0))

    def verdict(self, measured: ZeroCounts, params: Mapping[str, Any]) -> Status:
        flagged = measured.most > 0 and measured.most >= params["zero_batch_fraction"] * measured.calls
        return Status.RECOMMEND if flagged else Status.OK

    def judge(self, fqn: str, m: ZeroCounts, params: Mapping[str, Any], status: Status) -> Judgement:
        fraction = params["zero_batch_fraction"]
        dead = [z > 0 and z >= fraction * m.calls for z in m.zero_calls]
        values = {self.DEAD_CHANNELS: dead, self.ZERO_BATCHES: m.zero_calls, self.ZERO_BATCH_FRACTION: fraction}
        share = m.most / m.calls
        when = "every batch" if fraction == 1 else f"at least {fraction:.0%} of the {m.calls} batches"
        evidence = (
            Evidence(
                "largest share of all-zero batches",
                share,
                f">= {fraction:.0%} marks a channel dead",
                status is Status.RECOMMEND,
                f"{share:.0%}",
            ),
        )
        series = (
            Series(
                "share of batches in which each input channel was all zeros",
                tuple(z / m.calls for z in m.zero_calls),
                None,
                fraction,
                "share",
            ),
        )
        if status is Status.OK:
            return Judgement(
                "No dead input channels",
                f"No input channel of {m.class_name} '{fqn}' was all zeros in {when} "
                f"(the most: {m.most} of {m.calls}).",
                values,
                evidence,
                series,
            )
        flagged = [c for c, d in enumerate(dead) if d]
        plural = len(flagged) != 1
        names = ", ".join(str(c) for c in flagged[:CHANNELS_NAMED])
        names += f" and {len(flagged) - CHANNELS_NAMED} more" if len(flagged) > CHANNELS_NAMED else ""
        return Judgement(
            f"{len(flagged)} dead input channel{'s' if plural else ''}",
            f"Input channel{'s' if plural else ''} {names} of {m.class_name} '{fqn}' "
            f"{'were' if plural else 'was'} exactly zero in {when}. A dead channel carries no information: "
            "its weights never reach the output, yet they cost compute and storage and still count toward "
            "the weight's quantization range. Prune the channel (with its weights and the channel that "
            "produces it), or find why it died (often a ReLU whose input stays negative).",
            values,
            evidence,
            series,
        )
