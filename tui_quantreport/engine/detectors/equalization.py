"""Input-weight equalization: would rescaling input channels against weight columns help?

Per input channel c of a Linear or Conv: ``i_c`` is the range (max − min over
all batches) of the input's channel c and ``I`` the input's global range;
``w_c`` is the range of the weight along its input-channel axis (weight dim 1)
and ``W`` the weight's global range::

    s_c = sqrt(w_c / W) / sqrt(i_c / I)

Equalization rescales channel c of the input by 1/e_c and the weight's input
channel c by e_c, so both quantize with less error. A channel is recommended
when ``ratio_threshold <= s_c <= 1 / ratio_threshold`` (the computation of
torch's reference, whose docstring states the opposite), and the module when at
least 40% of its channels are. With grouped convolutions the input has k times
the weight's channels; the weight ratios then repeat k times.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from tui_quantreport.engine.detectors.base import Detector, EvaluationContext, Judgement, Unjudged
from tui_quantreport.engine.layout import why_not_judged
from tui_quantreport.engine.modules import EQUALIZATION, ModelCatalog
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import Evidence, Series, Status
from tui_quantreport.engine.stats import Point, PointRequest, only_empty

#: Fraction of channels that must benefit for the module to be recommended.
MODULE_FRACTION = 0.4


@dataclass(frozen=True)
class Balance:
    """One module's threshold-independent equalization numbers, per input channel."""

    channel_metric: list[float]  # s_c
    input_channel_min: list[float]
    input_channel_max: list[float]
    weight_channel_min: list[float]
    weight_channel_max: list[float]
    input_range: tuple[float, ...]
    sorted_metric: list[float]  # finite and infinite s_c, ascending (NaN dropped: never in band)
    #: One weight input channel per group over several input channels: a depthwise convolution.
    depthwise: bool = False

    def in_band(self, threshold: float) -> tuple[int, int]:
        """How many channels have threshold <= s_c <= 1/threshold, of how many."""
        inside = bisect_right(self.sorted_metric, 1 / threshold) - bisect_left(self.sorted_metric, threshold)
        return inside, len(self.channel_metric)


class InputWeightEqualizationDetector(Detector[Balance]):
    name = "input_weight_equalization_detector"
    aliases = ("equalization", "input_weight_equalization")
    title = "Input-weight equalization"
    glyph = "E"
    order = 30
    description = "inputs and weights of Linear and Conv1d/2d/3d"
    noun = "Linear/Conv modules"
    RECOMMENDED = "recommended"
    CHANNEL_RECOMMENDED = "channel_recommended"
    CHANNEL_METRIC = "channel_metric"
    RATIO_THRESHOLD = "ratio_threshold"
    INPUT_CHANNEL_MIN = "input_channel_min"
    INPUT_CHANNEL_MAX = "input_channel_max"
    WEIGHT_CHANNEL_MIN = "weight_channel_min"
    WEIGHT_CHANNEL_MAX = "weight_channel_max"
    report_keys = (
        RECOMMENDED,
        CHANNEL_RECOMMENDED,
        CHANNEL_METRIC,
        RATIO_THRESHOLD,
        INPUT_CHANNEL_MIN,
        INPUT_CHANNEL_MAX,
        WEIGHT_CHANNEL_MIN,
        WEIGHT_CHANNEL_MAX,
    )
    module_param_keys = (RATIO_THRESHOLD,)
    params = (
        Param(
            "ratio_threshold",
            0.5,
            "a channel benefits when threshold <= s_c <= 1/threshold",
            low=0.0,
            high=1.0,
            low_inclusive=False,
            high_inclusive=False,
        ),
    )

    def targets(self, catalog: ModelCatalog) -> list[str]:
        return catalog.weighted(EQUALIZATION)

    def skipped(self, catalog: ModelCatalog) -> dict[str, str]:
        return catalog.skipped(EQUALIZATION)

    def observations(self, catalog: ModelCatalog, params: Mapping[str, Any]) -> dict[Point, PointRequest]:
        return {(fqn, "pre"): PointRequest.of() for fqn in self.targets(catalog)}

    def measure(self, ctx: EvaluationContext, fqn: str, params: Mapping[str, Any]) -> Balance | Unjudged:
        """The metric s_c per input channel, or why there is none."""
        class_name = ctx.catalog.modules[fqn].class_name
        point = ctx.stats.point(fqn, "pre")
        weight = ctx.stats.weights.get(fqn)
        values: dict[str, Any] = {
            self.RECOMMENDED: False,
            self.CHANNEL_RECOMMENDED: [],
            self.CHANNEL_METRIC: [],
            self.INPUT_CHANNEL_MIN: [],
            self.INPUT_CHANNEL_MAX: [],
            self.WEIGHT_CHANNEL_MIN: [] if weight is None else weight.channel_min.tolist(),
            self.WEIGHT_CHANNEL_MAX: [] if weight is None else weight.channel_max.tolist(),
        }
        blocked = why_not_judged(ctx.catalog, ctx.stats, fqn, "pre")
        if blocked is not None:  # an axis out of range, an input no hook sees
            return Unjudged(Status(blocked[0]), blocked[1], values)
        if point is None or point.calls == 0:
            return Unjudged(
                Status.NOT_OBSERVED,
                only_empty(class_name, fqn, point) or f"{class_name} '{fqn}' was never called during calibration.",
                values,
            )
        channel_range = point.channel_range
        if channel_range is None:
            return Unjudged(
                Status.NOT_APPLICABLE,
                f"The input of '{fqn}' changed its number of channels between batches "
                f"(shapes {', '.join(map(str, point.shapes))}), so per-channel ranges do not add up.",
                values,
            )
        channel_min, channel_max = channel_range
        values[self.INPUT_CHANNEL_MIN] = channel_min.tolist()
        values[self.INPUT_CHANNEL_MAX] = channel_max.tolist()
        if weight is None:
            return Unjudged(Status.NOT_APPLICABLE, f"'{fqn}' has no 2-D or larger weight.", values)
        if not point.finite:
            return Unjudged(
                Status.NOT_APPLICABLE,
                f"The input of '{fqn}' held NaN or infinite values, so its ranges are undefined.",
                values,
            )
        input_ratio, input_global = _range_ratio(channel_min, channel_max)
        weight_ratio, weight_global = _range_ratio(weight.channel_min, weight.channel_max)
        if input_global == 0 or weight_global == 0:
            which = "input" if input_global == 0 else "weight"
            return Unjudged(
                Status.NOT_APPLICABLE,
                f"The {which} of '{fqn}' is constant (global range 0), so no channel can be compared against it.",
                values,
            )
        n_in, n_w = input_ratio.numel(), weight_ratio.numel()
        if n_in == 1:
            return Unjudged(
                Status.NOT_APPLICABLE,
                f"{class_name} '{fqn}' has one input channel: s_c = 1 by construction, so there is "
                "nothing to balance between channels.",
                values,
            )
        if n_in != n_w:
            if n_in % n_w:
                return Unjudged(
                    Status.NOT_APPLICABLE,
                    f"The input of '{fqn}' has {n_in} channels on axis {point.axis}, which the "
                    f"weight's {n_w} input channels do not divide.",
                    values,
                )
            weight_ratio = weight_ratio.repeat(n_in // n_w)
        metric = (torch.sqrt(weight_ratio) / torch.sqrt(input_ratio)).tolist()
        input_range = tuple((channel_max - channel_min).tolist())
        return Balance(
            metric,
            values[self.INPUT_CHANNEL_MIN],
            values[self.INPUT_CHANNEL_MAX],
            values[self.WEIGHT_CHANNEL_MIN],
            values[self.WEIGHT_CHANNEL_MAX],
            input_range,
            sorted(s for s in metric if s == s),
            n_w == 1 and n_in > 1,
        )

    def verdict(self, measured: Balance, params: Mapping[str, Any]) -> Status:
        in_band, total = measured.in_band(params["ratio_threshold"])
        return Status.RECOMMEND if in_band / total >= MODULE_FRACTION else Status.OK

    def judge(self, fqn: str, measured: Balance, params: Mapping[str, Any], status: Status) -> Judgement:
        threshold = params["ratio_threshold"]
        upper = 1 / threshold
        metric = measured.channel_metric
        per_channel = [threshold <= s <= upper for s in metric]
        share = sum(per_channel) / len(per_channel)
        recommended = status is Status.RECOMMEND
        input_range = measured.input_range
        values = {
            self.RECOMMENDED: recommended,
            self.CHANNEL_RECOMMENDED: per_channel,
            self.CHANNEL_METRIC: metric,
            self.INPUT_CHANNEL_MIN: measured.input_channel_min,
            self.INPUT_CHANNEL_MAX: measured.input_channel_max,
            self.WEIGHT_CHANNEL_MIN: measured.weight_channel_min,
            self.WEIGHT_CHANNEL_MAX: measured.weight_channel_max,
            self.RATIO_THRESHOLD: threshold,
        }
        evidence = (Evidence("channels in band", share, f">= {MODULE_FRACTION:.0%} recommends", True, f"{share:.0%}"),)
        series = (
            Series("equalization metric s_c per input channel", tuple(metric), threshold, upper, "s_c"),
            Series("input range per channel", input_range, ylabel="max - min"),
        )
        counted = f"{sum(per_channel)} of {len(per_channel)} input channels ({share:.0%}) have s_c in [{threshold:g}, {upper:g}]"
        if recommended:
            return Judgement(
                "Apply input-weight equalization",
                f"{counted}, at least {MODULE_FRACTION:.0%}. s_c compares a channel's share of the "
                "weight's range with its share of the input's range; inside this band, scaling the "
                "input channel by 1/e_c and the weight column by e_c (torch.ao's _equalize, or an "
                "equalization qconfig) is expected to reduce quantization error. "
                + (_DEPTHWISE_FOLD if measured.depthwise else _FOLD),
                values,
                evidence,
                series,
            )
        return Judgement(
            "Equalization not needed",
            f"Only {counted}, under {MODULE_FRACTION:.0%}: little to gain from input-weight equalization.",
            values,
            evidence,
            series,
        )


#: Where the input's 1/e_c goes: into the layer that produces the input.
_FOLD = (
    "The 1/e_c on the input folds into the layer that produces it (the preceding Linear or conv's "
    "output channel c, or its BatchNorm/LayerNorm scale), through a ReLU at most; behind an add, a "
    "non-homogeneous activation (GELU, SiLU, ReLU6, hardswish) or the model's input it cannot fold, "
    "and applying it costs an explicit multiply."
)
_DEPTHWISE_FOLD = (
    "On this depthwise convolution each channel has its own filter: with per-channel weights the weight "
    "side changes nothing, the whole gain is on the input, and only if the 1/e_c folds into the layer "
    "that produces it: the preceding expand (pointwise) conv's output channel c or its BatchNorm, "
    "through a ReLU at most. Behind SiLU, GELU, ReLU6 or hardswish (MobileNet, EfficientNet, ConvNeXt "
    "blocks) it cannot fold, and equalization does not apply here."
)


def _range_ratio(channel_min: torch.Tensor, channel_max: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Per-channel range over global range (float32, as the reference computes it)."""
    per_channel = channel_max - channel_min
    global_range = channel_max.max() - channel_min.min()
    return per_channel / global_range, float(global_range)
