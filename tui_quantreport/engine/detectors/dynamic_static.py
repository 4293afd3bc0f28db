"""Dynamic or static quantization, from how stable each activation's range is.

For one observation point over calls b = 1..B, with ``min_b`` and ``max_b`` the
tensor's extremes in call b::

    S = mean_b(max_b - min_b) / (max over all b of max_b - min over all b of min_b)

S lies in [0, 1]. Close to 1, every batch spans the whole range seen (the data
is *stationary*, static quantization with calibrated ranges fits); close to 0,
each batch covers a small, moving part of it (*non-stationary*: ranges
calibrated once will not fit later batches). The point is stationary when
S > tolerance. Dynamic quantization is recommended when the module's output is
non-stationary. Observed at the input ("pre") and output ("post") of Linear and
Conv1d/2d/3d; only Linear has dynamic kernels today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tui_quantreport.engine.detectors.base import Detector, EvaluationContext, Judgement, unjudged_headline
from tui_quantreport.engine.modules import DYNAMIC, ModelCatalog
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import Evidence, Status
from tui_quantreport.engine.stats import Point, PointRequest, PointStats, only_empty

STATIONARY = "stationary"
NON_STATIONARY = "non-stationary"
CONSTANT = "constant"
NON_FINITE = "non-finite"
NOT_OBSERVED = "not observed"


@dataclass(frozen=True)
class Spread:
    """One point's S, or why it has none (``undefined``: not observed, non-finite, constant)."""

    stat: float | None
    undefined: str | None = None
    #: Why it was not observed when it saw only tensors with no elements (see stats.only_empty).
    only_empty: str | None = None

    @classmethod
    def of(cls, point: PointStats | None, class_name: str = "", fqn: str = "") -> Spread:
        if point is None or point.calls == 0:
            return cls(None, NOT_OBSERVED, only_empty(class_name, fqn, point))
        if not point.finite:
            return cls(None, NON_FINITE)
        stat = point.comparison_stat
        return cls(None, CONSTANT) if stat is None else cls(stat)

    def classify(self, tolerance: float) -> str:
        """The distribution class at this point under ``tolerance``."""
        if self.undefined is not None or self.stat is None:
            return self.undefined or CONSTANT
        return STATIONARY if self.stat > tolerance else NON_STATIONARY


@dataclass(frozen=True)
class Stationarity:
    """One module's threshold-independent numbers: S before and after it."""

    class_name: str
    dynamic_supported: bool  # a dynamic quantized kernel exists for the layer's kind
    pre: Spread
    post: Spread
    note: str = ""  # what the layer's kind adds (e.g. how torch.ao takes transformers' Conv1D)
    hidden_input: str = ""  # why no hook can see the layer's input (MultiheadAttention's out_proj)
    #: How a PT2E quantizer annotated the input ("dynamic" or "static"); None for eager models.
    annotated: str | None = None


class DynamicStaticDetector(Detector[Stationarity]):
    name = "dynamic_vs_static_detector"
    aliases = ("dynamic_static", "dynamic_vs_static")
    title = "Dynamic vs static"
    glyph = "D"
    order = 20
    description = "inputs and outputs of weighted layers (Linear, Conv, Conv1D, attention, recurrent)"
    noun = "Linear/Conv modules"
    TOLERANCE = "tolerance"
    DYNAMIC_RECOMMENDED = "dynamic_recommended"
    PRE_COMP_STAT = "pre_observer_comp_stat"
    PRE_DATA_DIST = "pre_observer_data_dist"
    POST_COMP_STAT = "post_observer_comp_stat"
    POST_DATA_DIST = "post_observer_data_dist"
    IS_DYNAMIC_SUPPORTED = "is_dynamic_supported"
    #: "dynamic"/"static" as a PT2E quantizer annotated the module's input; None where none did.
    QUANTIZER_INPUT = "quantizer_input"
    report_keys = (
        TOLERANCE,
        DYNAMIC_RECOMMENDED,
        PRE_COMP_STAT,
        PRE_DATA_DIST,
        POST_COMP_STAT,
        POST_DATA_DIST,
        IS_DYNAMIC_SUPPORTED,
        QUANTIZER_INPUT,
    )
    params = (
        Param(
            "tolerance",
            0.5,
            "S above this is stationary (static quantization); at or below, non-stationary (dynamic)",
            low=0.0,
            high=1.0,
        ),
    )

    def targets(self, catalog: ModelCatalog) -> list[str]:
        return catalog.weighted(DYNAMIC)

    def skipped(self, catalog: ModelCatalog) -> dict[str, str]:
        return catalog.skipped(DYNAMIC)

    def observations(self, catalog: ModelCatalog, params: Mapping[str, Any]) -> dict[Point, PointRequest]:
        return {(fqn, role): PointRequest.of() for fqn in self.targets(catalog) for role in ("pre", "post")}

    def measure(self, ctx: EvaluationContext, fqn: str, params: Mapping[str, Any]) -> Stationarity:
        info = ctx.catalog.modules[fqn]
        pre, post = ctx.stats.point(fqn, "pre"), ctx.stats.point(fqn, "post")
        return Stationarity(
            info.class_name,
            ctx.catalog.dynamic_kernel(fqn),
            Spread.of(pre, info.class_name, fqn),
            Spread.of(post, info.class_name, fqn),
            ctx.catalog.kinds[fqn].note,
            info.hidden_input,
            ctx.catalog.activation_schemes.get(fqn),
        )

    def verdict(self, measured: Stationarity, params: Mapping[str, Any]) -> Status:
        if measured.annotated == "dynamic" and measured.post.classify(params["tolerance"]) == NON_STATIONARY:
            return Status.OK  # the quantizer already quantizes this input dynamically
        return {
            NOT_OBSERVED: Status.NOT_OBSERVED,
            # Only where a dynamic kernel exists is it advice; elsewhere it is information.
            NON_STATIONARY: Status.RECOMMEND if measured.dynamic_supported else Status.INFO,
            STATIONARY: Status.OK,
        }.get(measured.post.classify(params["tolerance"]), Status.NOT_APPLICABLE)

    def judge(self, fqn: str, measured: Stationarity, params: Mapping[str, Any], status: Status) -> Judgement:
        class_name, supported = measured.class_name, measured.dynamic_supported
        tolerance = params["tolerance"]
        pre_dist, post_dist = measured.pre.classify(tolerance), measured.post.classify(tolerance)
        values = {
            self.TOLERANCE: tolerance,
            # Recommended only where a dynamic kernel exists (the reference also says so for convs);
            # true as well where the quantizer already made the input dynamic.
            self.DYNAMIC_RECOMMENDED: status is Status.RECOMMEND
            or (measured.annotated == "dynamic" and post_dist == NON_STATIONARY),
            self.PRE_COMP_STAT: measured.pre.stat,
            self.PRE_DATA_DIST: pre_dist,
            self.POST_COMP_STAT: measured.post.stat,
            self.POST_DATA_DIST: post_dist,
            self.IS_DYNAMIC_SUPPORTED: supported,
            self.QUANTIZER_INPUT: measured.annotated,
        }
        if status is Status.NOT_OBSERVED:
            return Judgement(
                unjudged_headline(status),
                measured.post.only_empty
                or measured.pre.only_empty
                or f"{class_name} '{fqn}' was never called during calibration, so nothing is known "
                "about its activations.",
                values,
            )
        if status is Status.NOT_APPLICABLE:
            why = (
                "its output was the same single value in every batch (range 0), so S is undefined"
                if post_dist == CONSTANT
                else "its output held NaN or infinite values, so its range is undefined"
            )
            return Judgement(unjudged_headline(status), f"Cannot choose for {class_name} '{fqn}': {why}.", values)
        evidence = (
            Evidence("output S", measured.post.stat, f"> {tolerance:g} is stationary", True),
            Evidence("input S", measured.pre.stat, f"> {tolerance:g} is stationary", False),
        )
        judgement = self._finding(fqn, class_name, values, evidence, supported, measured.note)
        if measured.hidden_input and pre_dist == NOT_OBSERVED:
            reason = f"{judgement.reason} Its input is not observed: {measured.hidden_input}."
            judgement = Judgement(judgement.headline, reason, judgement.values, judgement.evidence, judgement.series)
        if measured.annotated == "dynamic":
            return _annotated_dynamic(judgement, values[self.DYNAMIC_RECOMMENDED])
        return judgement

    def _finding(
        self,
        fqn: str,
        class_name: str,
        values: dict[str, Any],
        evidence: tuple[Evidence, ...],
        supported: bool,
        note: str = "",
    ) -> Judgement:
        dynamic = values[self.POST_DATA_DIST] == NON_STATIONARY
        pre, post = values[self.PRE_DATA_DIST], values[self.POST_DATA_DIST]
        tolerance = values[self.TOLERANCE]
        reason = (
            f"The data before {class_name} '{fqn}' is {pre} (S = {_fmt(values[self.PRE_COMP_STAT])}) "
            f"and after it is {post} (S = {_fmt(values[self.POST_COMP_STAT])}, tolerance {tolerance:g}). "
        )
        if dynamic:
            reason += (
                "Its output range moves from batch to batch, so ranges calibrated once would clip "
                "or waste levels later: dynamic quantization, which measures the range of every "
                "batch, will be more accurate."
            )
            if not supported:
                reason += (
                    f" But {class_name} has no dynamic quantized kernel"
                    + (f" ({note})" if note else "")
                    + ", so this is information, not a change you can apply: quantize it statically "
                    "with ranges calibrated on data that covers every regime, or keep it in float."
                )
            elif note:
                reason += f" ({class_name}: {note}.)"
        else:
            reason += (
                "Its output range is stable enough from batch to batch (S above the tolerance) for "
                "static quantization with calibrated ranges, which is faster."
            )
            if pre == NON_STATIONARY:
                reason += (
                    " Its input is non-stationary, though: if you quantize statically, add a dynamic "
                    "per-tensor quantize step before this module."
                )
        headline = "Use dynamic quantization" if dynamic else "Use static quantization"
        if dynamic and not supported:
            headline = f"Non-stationary output (no dynamic kernel for {class_name})"
        return Judgement(headline, reason, values, evidence)


def _annotated_dynamic(judgement: Judgement, dynamic: bool) -> Judgement:
    """The explanation for a module whose input the PT2E quantizer already quantizes dynamically."""
    if dynamic:
        return replace(
            judgement,
            headline="Dynamic quantization already used",
            reason=judgement.reason + " The quantizer already annotated its input as dynamic: nothing to change.",
        )
    return replace(
        judgement,
        reason=judgement.reason + " The quantizer annotated its input as dynamic; static quantization would "
        "fit these ranges and run faster.",
    )


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
