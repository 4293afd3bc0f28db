"""Per-channel weight quantization: is it supported, and is it used?

For every Linear and Conv1d/2d/3d (subclasses included: QAT, lazy, and the float
modules inside fused ones), decide

- ``per_channel_supported``: the backend quantizes this module type's weights per
  channel (all four backends do for these types);
- ``per_channel_used``: the module's weight quantizer is per channel. Read from
  the module's qconfig when the model carries one; otherwise the planned scheme
  (``weight_scheme``; "backend_default" follows the backend's default qconfig).

A module where it is supported but not used should be configured for
per-channel weight quantization: each output channel then gets its own scale,
which keeps small-range channels from being crushed by one large channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tui_quantreport.engine.defaults import BACKENDS, DEFAULT_BACKEND
from tui_quantreport.engine.detectors.base import Detector, EvaluationContext, Judgement, Unjudged
from tui_quantreport.engine.modules import PER_CHANNEL, ModelCatalog, WeightedKind, WeightScheme
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import Evidence, Status

#: Whether each backend's default qconfig quantizes weights per channel
#: (``torch.ao.quantization.get_default_qconfig(backend).weight``).
BACKEND_DEFAULT_PER_CHANNEL = {"fbgemm": True, "x86": True, "qnnpack": False, "onednn": True}


@dataclass(frozen=True)
class WeightQuantization:
    """How one module's weights are set to be quantized (no threshold involved)."""

    class_name: str
    scheme: WeightScheme
    kind: WeightedKind
    #: For weight-only tables (embeddings): the smallest, median and largest per-row weight range.
    row_spread: tuple[float, float, float] | None = None


class PerChannelDetector(Detector[WeightQuantization]):
    name = "per_channel_detector"
    aliases = ("per_channel",)
    title = "Per-channel weights"
    glyph = "P"
    order = 10
    description = "weights of Linear, Conv, transformers Conv1D, attention and embedding layers"
    noun = "weighted modules"
    observes = False
    PER_CHANNEL_SUPPORTED = "per_channel_supported"
    PER_CHANNEL_USED = "per_channel_used"
    WEIGHT_ONLY = "weight_only"
    WEIGHT_ROW_RANGE = "weight_row_range"
    report_keys = (PER_CHANNEL_SUPPORTED, PER_CHANNEL_USED, WEIGHT_ONLY, WEIGHT_ROW_RANGE)
    params = (
        Param("backend", DEFAULT_BACKEND, "quantized engine the model will run on", kind="choice", choices=BACKENDS),
        Param(
            "weight_scheme",
            "backend_default",
            "weight quantization planned for modules without a qconfig",
            kind="choice",
            choices=("backend_default", "per_tensor", "per_channel"),
        ),
    )

    def targets(self, catalog: ModelCatalog) -> list[str]:
        return catalog.weighted(PER_CHANNEL)

    def skipped(self, catalog: ModelCatalog) -> dict[str, str]:
        return catalog.skipped(PER_CHANNEL)

    def measure(self, ctx: EvaluationContext, fqn: str, params: Mapping[str, Any]) -> WeightQuantization | Unjudged:
        scheme = ctx.catalog.weight_schemes[fqn]
        class_name = ctx.catalog.modules[fqn].class_name
        kind = ctx.catalog.kinds[fqn]
        if scheme.source == "none":
            return Unjudged(
                Status.NOT_APPLICABLE,
                f"{class_name} '{fqn}' is {scheme.description}, so its weights are not quantized.",
                {
                    self.PER_CHANNEL_SUPPORTED: True,
                    self.PER_CHANNEL_USED: False,
                    self.WEIGHT_ONLY: kind.weight_only,
                    self.WEIGHT_ROW_RANGE: None,
                },
            )
        rows = ctx.stats.weights.get(fqn)
        spread = _row_spread(rows) if kind.weight_only and rows is not None and rows.rows else None
        return WeightQuantization(class_name, scheme, kind, spread)

    def verdict(self, measured: WeightQuantization, params: Mapping[str, Any]) -> Status:
        used = _per_channel_used(measured.scheme, params, measured.kind.weight_only)
        return Status.OK if used else Status.RECOMMEND

    def judge(self, fqn: str, measured: WeightQuantization, params: Mapping[str, Any], status: Status) -> Judgement:
        class_name, scheme, kind = measured.class_name, measured.scheme, measured.kind
        used = status is Status.OK
        backend, planned = params["backend"], params["weight_scheme"]
        unit = "per-row" if kind.weight_only else "per-channel"
        if scheme.source == "planned":
            if kind.weight_only and planned == "backend_default":
                how = (
                    "the planned scheme is weight-only per row (float_qparams_weight_only_qconfig, "
                    "what torch.ao uses for embeddings)"
                )
            else:
                how = f"the planned scheme ({planned.replace('_', ' ')} on {backend}) is " + (
                    "per-channel" if used else "per-tensor"
                )
        else:
            how = f"its qconfig's weight quantizer is {scheme.description}"
        values: dict[str, Any] = {
            self.PER_CHANNEL_SUPPORTED: True,
            self.PER_CHANNEL_USED: used,
            self.WEIGHT_ONLY: kind.weight_only,
            self.WEIGHT_ROW_RANGE: None,
        }
        evidence = [
            Evidence(
                f"weights quantized {unit.replace('-', ' ')}",
                float(used),
                "yes is best",
                not used,
                "yes" if used else "no",
            ),
        ]
        layer = class_name if kind.name in ("linear", "conv") else f"{class_name} ({kind.description})"
        note = f" Note: {kind.note}." if kind.note else ""
        rows_text = ""
        if measured.row_spread is not None:
            smallest, median, largest = measured.row_spread
            values[self.WEIGHT_ROW_RANGE] = {"min": smallest, "median": median, "max": largest}
            ratio = largest / median if median > 0 else None
            evidence.append(Evidence("largest / median row range", ratio, "per row keeps small rows precise", False))
            rows_text = (
                f" Its rows' weight ranges go from {smallest:.3g} to {largest:.3g} (median {median:.3g}); "
                "one scale for the whole table would be set by the widest row."
            )
        if kind.weight_only:
            advice = (
                "Quantize this table weight-only, one scale and offset per row "
                "(float_qparams_weight_only_qconfig): its input is indices, so there is no activation to quantize."
            )
        else:
            advice = (
                "Give this module a qconfig whose weight observer is per channel "
                "(e.g. default_per_channel_weight_observer): each output channel then gets "
                "its own scale, so channels with small weights keep their precision."
            )
        if used:
            return Judgement(
                "Per-row weights already used" if kind.weight_only else "Per-channel weights already used",
                f"{backend} supports {unit} weights for {layer}, and {how}.{rows_text}{note}",
                values,
                tuple(evidence),
            )
        return Judgement(
            f"Configure {unit} weight quantization",
            f"{backend} supports {unit} weights for {layer}, but {how}. {advice}{rows_text}{note}",
            values,
            tuple(evidence),
        )

    def extra(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"backend": params["backend"]}


def _per_channel_used(scheme: WeightScheme, params: Mapping[str, Any], weight_only: bool = False) -> bool:
    """Per channel per the module's qconfig, or per the planned scheme when it has none.

    For weight-only layers (embeddings) the backend default is per row
    (``float_qparams_weight_only_qconfig``, the scheme torch.ao takes for them).
    """
    if scheme.source != "planned":
        return bool(scheme.per_channel)
    planned = params["weight_scheme"]
    if planned == "backend_default":
        return True if weight_only else BACKEND_DEFAULT_PER_CHANNEL[params["backend"]]
    return planned == "per_channel"


def _row_spread(rows: Any) -> tuple[float, float, float]:
    """Smallest, median and largest per-row weight range of a table."""
    ranges = (rows.channel_max - rows.channel_min).float()
    return float(ranges.min()), float(ranges.median()), float(ranges.max())
