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

from tui_quantreport.engine.detectors.base import Detector, EvaluationContext, Judgement, Unjudged
from tui_quantreport.engine.modules import ModelCatalog, WeightScheme
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import Evidence, Status

BACKENDS = ("fbgemm", "x86", "qnnpack", "onednn")

#: Whether each backend's default qconfig quantizes weights per channel
#: (``torch.ao.quantization.get_default_qconfig(backend).weight``).
BACKEND_DEFAULT_PER_CHANNEL = {"fbgemm": True, "x86": True, "qnnpack": False, "onednn": True}


@dataclass(frozen=True)
class WeightQuantization:
    """How one module's weights are set to be quantized (no threshold involved)."""

    class_name: str
    scheme: WeightScheme


class PerChannelDetector(Detector[WeightQuantization]):
    name = "per_channel_detector"
    aliases = ("per_channel",)
    title = "Per-channel weights"
    glyph = "P"
    order = 10
    description = "Linear and Conv1d/2d/3d weights"
    noun = "weighted modules"
    observes = False
    PER_CHANNEL_SUPPORTED = "per_channel_supported"
    PER_CHANNEL_USED = "per_channel_used"
    report_keys = (PER_CHANNEL_SUPPORTED, PER_CHANNEL_USED)
    params = (
        Param("backend", "x86", "quantized engine the model will run on", kind="choice", choices=BACKENDS),
        Param(
            "weight_scheme",
            "backend_default",
            "weight quantization planned for modules without a qconfig",
            kind="choice",
            choices=("backend_default", "per_tensor", "per_channel"),
        ),
    )

    def targets(self, catalog: ModelCatalog) -> list[str]:
        return [fqn for fqn, m in catalog.modules.items() if m.is_weighted]

    def measure(self, ctx: EvaluationContext, fqn: str, params: Mapping[str, Any]) -> WeightQuantization | Unjudged:
        scheme = ctx.catalog.weight_schemes[fqn]
        class_name = ctx.catalog.modules[fqn].class_name
        if scheme.source == "none":
            return Unjudged(
                Status.NOT_APPLICABLE,
                f"{class_name} '{fqn}' is {scheme.description}, so its weights are not quantized.",
                {self.PER_CHANNEL_SUPPORTED: True, self.PER_CHANNEL_USED: False},
            )
        return WeightQuantization(class_name, scheme)

    def verdict(self, measured: WeightQuantization, params: Mapping[str, Any]) -> Status:
        return Status.OK if _per_channel_used(measured.scheme, params) else Status.RECOMMEND

    def judge(self, fqn: str, measured: WeightQuantization, params: Mapping[str, Any], status: Status) -> Judgement:
        class_name, scheme = measured.class_name, measured.scheme
        used = status is Status.OK
        backend, planned = params["backend"], params["weight_scheme"]
        if scheme.source == "planned":
            how = f"the planned scheme ({planned.replace('_', ' ')} on {backend}) is " + (
                "per-channel" if used else "per-tensor"
            )
        else:
            how = f"its qconfig's weight quantizer is {scheme.description}"
        values = {self.PER_CHANNEL_SUPPORTED: True, self.PER_CHANNEL_USED: used}
        evidence = (
            Evidence("weights quantized per channel", float(used), "yes is best", not used, "yes" if used else "no"),
        )
        if used:
            return Judgement(
                "Per-channel weights already used",
                f"{backend} supports per-channel weights for {class_name}, and {how}.",
                values, evidence,
            )
        return Judgement(
            "Configure per-channel weight quantization",
            f"{backend} supports per-channel weights for {class_name}, but {how}. "
            "Give this module a qconfig whose weight observer is per channel "
            "(e.g. default_per_channel_weight_observer): each output channel then gets "
            "its own scale, so channels with small weights keep their precision.",
            values, evidence,
        )

    def extra(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"backend": params["backend"]}


def _per_channel_used(scheme: WeightScheme, params: Mapping[str, Any]) -> bool:
    """Per channel per the module's qconfig, or per the planned scheme when it has none."""
    if scheme.source != "planned":
        return bool(scheme.per_channel)
    planned = params["weight_scheme"]
    if planned == "backend_default":
        return BACKEND_DEFAULT_PER_CHANNEL[params["backend"]]
    return planned == "per_channel"
