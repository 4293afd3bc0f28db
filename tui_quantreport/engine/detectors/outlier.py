"""Outlier channels: activations whose maximum towers over their bulk.

Per channel c of a leaf module's input, per batch b: ``q_p`` is the
``reference_percentile`` quantile of the channel's values ("lower"
interpolation), ``q_max`` its maximum and ``q_0`` its minimum. A batch counts
for the channel when ``q_p != 0``; its ratio is ``q_max / q_p``. Then::

    percentile_ratio_c = | mean of q_max / q_p over counted batches |, inverted when below 1

and the channel has outliers when ``percentile_ratio_c > ratio_threshold``. The
result is trustworthy when ``batches_used / batches >= fraction_batches_used_threshold``.

Unlike torch's reference, batches with ``q_p == 0`` are skipped rather than
counted as a ratio of infinity (which flags every sparse post-ReLU channel);
they lower ``batches_used`` instead.

The statistic behind it, :class:`OutlierRatio`, lives here too: per channel,
over calls b, ``ratio_sum[c]`` = Σ over calls where ``q_p != 0`` of
``q_max / q_p``, ``used[c]`` = the number of such calls and ``constant[c]`` =
calls with ``q_max == q_0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tui_quantreport.engine.detectors.base import Detector, EvaluationContext, Judgement, Unjudged
from tui_quantreport.engine.layout import why_not_judged
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import Evidence, Series, Status
from tui_quantreport.engine.stats import Ops, Point, PointRequest, Reducer, TensorSummary, only_empty

CHANNELS_NAMED = 8


@dataclass(frozen=True, eq=False)
class OutlierRatioStats:
    """Per-channel outlier statistics for one percentile (CPU tensors)."""

    ratio_sum: torch.Tensor
    used: torch.Tensor
    constant: torch.Tensor

    def merge(self, other: OutlierRatioStats) -> OutlierRatioStats:
        return OutlierRatioStats(
            self.ratio_sum + other.ratio_sum, self.used + other.used, self.constant + other.constant
        )

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"ratio_sum": self.ratio_sum, "used": self.used, "constant": self.constant}, {}

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> OutlierRatioStats:
        return cls(tensors["ratio_sum"], tensors["used"], tensors["constant"])


@dataclass(frozen=True)
class OutlierRatio(Reducer):
    """Per channel: the sum of ``q_max / q_p`` over calls where ``q_p != 0``, those calls, and constant calls."""

    percentile: float
    kind = "outlier_ratio"
    elementwise = True
    result = OutlierRatioStats

    @property
    def percentiles(self) -> tuple[float, ...]:
        return (self.percentile,)

    def contribution(self, summary: TensorSummary, tensor: Any) -> tuple[Any, Any, Any]:
        """(q_max / q_p where q_p != 0 else 0, q_p != 0, q_max == q_0) for this call."""
        q, channel_max = summary.percentiles[self.percentile], summary.channel_max
        counted = q != 0
        ratio: Any
        if isinstance(channel_max, np.ndarray):
            ratio = np.zeros_like(channel_max)
            if np.isinf(channel_max).any():
                with np.errstate(invalid="ignore"):  # inf / inf is NaN, as on the device
                    np.divide(channel_max, q, out=ratio, where=counted)
            else:
                np.divide(channel_max, q, out=ratio, where=counted)
        else:
            ratio = torch.where(counted, channel_max / q, 0.0)
        return ratio, counted, channel_max == summary.channel_min

    def start(self, contribution: tuple[Any, Any, Any], ops: Ops) -> list[Any]:
        ratio, counted, constant = contribution
        # Counts kept as float32 (exact below 2**24 calls) so adding a bool mask needs no cast.
        return [ops.copy(ratio), ops.counts(counted), ops.counts(constant)]

    def update(self, state: list[Any], contribution: tuple[Any, Any, Any], ops: Ops) -> list[Any]:
        for running, new in zip(state, contribution):
            ops.add(running, new, out=running)
        return state

    def freeze(self, state: list[Any], ops: Ops) -> OutlierRatioStats:
        ratio_sum, used, constant = state
        return OutlierRatioStats(
            ops.to_cpu(ratio_sum), ops.to_cpu(used).to(torch.int64), ops.to_cpu(constant).to(torch.int64)
        )


@dataclass(frozen=True)
class Ratios:
    """One module's threshold-independent outlier numbers, per input channel."""

    class_name: str
    calls: int
    finite: bool
    percentile_ratio: list[float]
    batches_used: list[int]
    constant_batches: list[int]
    channel_max: list[float]
    worst: float | None  # the largest ratio that is not NaN; None when every ratio is NaN


class OutlierDetector(Detector[Ratios]):
    name = "outlier_detector"
    aliases = ("outlier",)
    title = "Outlier channels"
    glyph = "O"
    order = 40
    description = "inputs of every leaf module"
    noun = "leaf modules"
    params = (
        Param("ratio_threshold", 3.5, "a channel has outliers when its percentile ratio is above this", low=1.0),
        Param(
            "reference_percentile",
            0.975,
            "the percentile the maximum is compared with",
            low=0.0,
            high=1.0,
            low_inclusive=False,
            high_inclusive=False,
            observed=True,
        ),
        Param(
            "fraction_batches_used_threshold",
            0.95,
            "the share of batches a channel must use for its result to be reliable",
            low=0.0,
            high=1.0,
        ),
    )
    OUTLIERS_DETECTED = "outliers_detected"
    PERCENTILE_RATIO = "percentile_ratio"
    BATCHES_USED = "batches_used"
    SUFFICIENT_BATCHES = "sufficient_batches"
    CONSTANT_BATCHES = "constant_batches"
    CHANNEL_MAX = "channel_max"
    RATIO_THRESHOLD = "ratio_threshold"
    REFERENCE_PERCENTILE = "reference_percentile"
    FRACTION_BATCHES_USED_THRESHOLD = "fraction_batches_used_threshold"
    module_param_keys = (RATIO_THRESHOLD, REFERENCE_PERCENTILE, FRACTION_BATCHES_USED_THRESHOLD)
    report_keys = (
        OUTLIERS_DETECTED,
        PERCENTILE_RATIO,
        BATCHES_USED,
        SUFFICIENT_BATCHES,
        CONSTANT_BATCHES,
        CHANNEL_MAX,
        *module_param_keys,
    )

    def targets(self, catalog: ModelCatalog) -> list[str]:
        return [fqn for fqn, m in catalog.modules.items() if m.is_leaf]

    def observations(self, catalog: ModelCatalog, params: Mapping[str, Any]) -> dict[Point, PointRequest]:
        request = PointRequest.of(OutlierRatio(params["reference_percentile"]))
        return {(fqn, "pre"): request for fqn in self.targets(catalog)}

    def measure(self, ctx: EvaluationContext, fqn: str, params: Mapping[str, Any]) -> Ratios | Unjudged:
        """Mean ratio per channel (absolute, inverted below 1, as the reference does)."""
        percentile = params["reference_percentile"]
        class_name = ctx.catalog.modules[fqn].class_name
        point = ctx.stats.point(fqn, "pre")
        empty: dict[str, Any] = {
            self.OUTLIERS_DETECTED: [],
            self.PERCENTILE_RATIO: [],
            self.BATCHES_USED: [],
            self.SUFFICIENT_BATCHES: [],
            self.CONSTANT_BATCHES: [],
            self.CHANNEL_MAX: [],
        }
        blocked = why_not_judged(ctx.catalog, ctx.stats, fqn, "pre")
        if blocked is not None:  # token ids, an axis out of range, an input no hook sees
            return Unjudged(Status(blocked[0]), blocked[1], empty)
        if point is None or point.calls == 0:
            return Unjudged(
                Status.NOT_OBSERVED,
                only_empty(class_name, fqn, point)
                or f"{class_name} '{fqn}' was never called (or never with a tensor input) during calibration.",
                empty,
            )
        channel_range = point.channel_range
        if channel_range is None:
            return Unjudged(
                Status.NOT_APPLICABLE,
                f"The input of '{fqn}' changed its number of channels between batches "
                f"(shapes {', '.join(map(str, point.shapes))}); set a channel axis that stays fixed.",
                empty,
            )
        stats = point.get(OutlierRatio(percentile))
        if stats is None:
            recorded = ", ".join(f"{r.percentile:g}" for r in point.reduced if isinstance(r, OutlierRatio)) or "none"
            return Unjudged(
                Status.NOT_APPLICABLE,
                f"Calibration recorded percentile {recorded}, not {percentile:g}: calibrate again "
                "to use the new reference_percentile.",
                empty,
            )
        used = stats.used
        mean = torch.where(used > 0, stats.ratio_sum / used.clamp(min=1), torch.full_like(stats.ratio_sum, math.nan))
        ratio = mean.abs()
        ratio = torch.where(ratio < 1, 1 / ratio, ratio)
        ratios = ratio.tolist()
        finite = [r for r in ratios if r == r]
        if not finite:
            why = (
                "its input held NaN or infinite values"
                if not point.finite
                else f"the {percentile * 100:g}th percentile was 0 in every batch for every channel"
            )
            return Unjudged(
                Status.NOT_APPLICABLE,
                f"No channel of the input of '{fqn}' has a usable percentile ratio: {why}.",
                empty,
            )
        return Ratios(
            class_name,
            point.calls,
            point.finite,
            ratios,
            used.tolist(),
            stats.constant.tolist(),
            channel_range[1].tolist(),
            max(finite) if finite else None,
        )

    def verdict(self, m: Ratios, params: Mapping[str, Any]) -> Status:
        flagged = m.worst is not None and m.worst > params["ratio_threshold"]
        return Status.RECOMMEND if flagged else Status.OK

    def judge(self, fqn: str, m: Ratios, params: Mapping[str, Any], status: Status) -> Judgement:
        threshold = params["ratio_threshold"]
        percentile = params["reference_percentile"]
        fraction = params["fraction_batches_used_threshold"]
        detected = [r > threshold for r in m.percentile_ratio]
        sufficient = [u / m.calls >= fraction for u in m.batches_used]
        values = {
            self.OUTLIERS_DETECTED: detected,
            self.PERCENTILE_RATIO: m.percentile_ratio,
            self.BATCHES_USED: m.batches_used,
            self.SUFFICIENT_BATCHES: sufficient,
            self.CONSTANT_BATCHES: m.constant_batches,
            self.CHANNEL_MAX: m.channel_max,
            self.RATIO_THRESHOLD: threshold,
            self.REFERENCE_PERCENTILE: percentile,
            self.FRACTION_BATCHES_USED_THRESHOLD: fraction,
        }
        flagged = [c for c, d in enumerate(detected) if d]
        worst = m.worst
        evidence = (Evidence("largest percentile ratio", worst, f"> {threshold:g} flags a channel", bool(flagged)),)
        series = (
            Series(
                f"max / p{percentile * 100:g} ratio per channel",
                tuple(r if r == r else None for r in m.percentile_ratio),
                None,
                threshold,
                "ratio",
            ),
        )
        short = sufficient.count(False)
        note = ""
        if short:
            note = (
                f" {short} channel(s) used fewer than {fraction:.0%} of the {m.calls} batches "
                "(their percentile was 0, common after ReLU), so their ratios rest on less data."
            )
        if not m.finite:
            note += " The input held NaN or infinite values; channels holding them have undefined ratios."
        if status is Status.OK:
            return Judgement(
                "No outlier channels",
                f"Every channel's maximum stays within {threshold:g}x its {percentile * 100:g}th percentile"
                + (f" (largest ratio {worst:.3g})." if worst is not None else ".")
                + note,
                values,
                evidence,
                series,
            )
        plural = len(flagged) != 1
        # The worst channels first, each with its ratio.
        worst_first = sorted(flagged, key=lambda c: -m.percentile_ratio[c])
        names = ", ".join(f"{c} ({m.percentile_ratio[c]:.3g})" for c in worst_first[:CHANNELS_NAMED])
        names += f" and {len(flagged) - CHANNELS_NAMED} more" if len(flagged) > CHANNELS_NAMED else ""
        return Judgement(
            f"Outliers in {len(flagged)} input channel{'s' if plural else ''}",
            f"Input channel{'s' if plural else ''} {names} of {m.class_name} '{fqn}' "
            f"{'have' if plural else 'has'} a maximum far above the {percentile * 100:g}th "
            f"percentile (max / percentile ratio > {threshold:g}). A min-max observer would spend most "
            "quantization levels on those rare values: use a percentile or histogram observer for this "
            "input, clip the activation, or handle these channels separately." + note,
            values,
            evidence,
            series,
        )
