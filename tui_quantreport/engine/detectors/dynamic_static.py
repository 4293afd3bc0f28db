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
from dataclasses import replace
from typing import Any

from tui_quantreport.engine.detectors.base import Detector, EvaluationContext
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import Evidence, Finding, Status
from tui_quantreport.engine.stats import Point, PointRequest, PointStats

STATIONARY = "stationary"
NON_STATIONARY = "non-stationary"
CONSTANT = "constant"
NON_FINITE = "non-finite"
NOT_OBSERVED = "not observed"


def classify(point: PointStats | None, tolerance: float) -> tuple[str, float | None]:
    """The distribution class of a point and its S (None where S is undefined)."""
    if point is None or point.calls == 0:
        return NOT_OBSERVED, None
    if not point.finite:
        return NON_FINITE, None
    stat = point.comparison_stat
    if stat is None:
        return CONSTANT, None
    return (STATIONARY if stat > tolerance else NON_STATIONARY), stat


class DynamicStaticDetector(Detector):
    name = "dynamic_vs_static_detector"
    title = "Dynamic vs static"
    glyph = "D"
    description = "inputs and outputs of Linear and Conv1d/2d/3d"
    noun = "Linear/Conv modules"
    params = (
        Param(
            "tolerance", 0.5,
            "S above this is stationary (static quantization); at or below, non-stationary (dynamic)",
            low=0.0, high=1.0,
        ),
    )

    def targets(self, catalog: ModelCatalog) -> list[str]:
        return [fqn for fqn, m in catalog.modules.items() if m.is_weighted]

    def observations(self, catalog: ModelCatalog, params: Mapping[str, Any]) -> dict[Point, PointRequest]:
        return {(fqn, role): PointRequest() for fqn in self.targets(catalog) for role in ("pre", "post")}

    def measure(self, ctx: EvaluationContext, fqn: str, params: Mapping[str, Any]) -> Any:
        info = ctx.catalog.modules[fqn]
        # How a PT2E quantizer annotated the input ("dynamic"/"static"), None for eager models.
        annotated = getattr(ctx.catalog, "activation_schemes", {}).get(fqn)
        return info.class_name, info.is_linear, ctx.stats.point(fqn, "pre"), ctx.stats.point(fqn, "post"), annotated

    def verdict(self, measured: Any, params: Mapping[str, Any]) -> Status:
        dist, _ = classify(measured[3], params["tolerance"])
        if dist == NON_STATIONARY and measured[4] == "dynamic":
            return Status.OK  # the quantizer already quantizes this input dynamically
        return {
            NOT_OBSERVED: Status.NOT_OBSERVED,
            NON_STATIONARY: Status.RECOMMEND,
            STATIONARY: Status.OK,
        }.get(dist, Status.NOT_APPLICABLE)

    def judge(self, fqn: str, measured: Any, params: Mapping[str, Any]) -> Finding:
        class_name, supported, pre, post, annotated = measured
        tolerance = params["tolerance"]
        pre_dist, pre_stat = classify(pre, tolerance)
        post_dist, post_stat = classify(post, tolerance)
        values = {
            "tolerance": tolerance,
            "dynamic_recommended": post_dist == NON_STATIONARY,
            "pre_observer_comp_stat": pre_stat,
            "pre_observer_data_dist": pre_dist,
            "post_observer_comp_stat": post_stat,
            "post_observer_data_dist": post_dist,
            "is_dynamic_supported": supported,
        }
        if annotated is not None:
            values["quantizer_input"] = annotated
        if post_dist == NOT_OBSERVED:
            return self.unjudged(
                fqn, Status.NOT_OBSERVED,
                f"{class_name} '{fqn}' was never called during calibration, so nothing is known "
                "about its activations.",
                values,
            )
        if post_dist in (CONSTANT, NON_FINITE):
            why = (
                "its output was the same single value in every batch (range 0), so S is undefined"
                if post_dist == CONSTANT
                else "its output held NaN or infinite values, so its range is undefined"
            )
            return self.unjudged(fqn, Status.NOT_APPLICABLE, f"Cannot choose for {class_name} '{fqn}': {why}.", values)
        evidence = (
            Evidence("output S", post_stat, f"> {tolerance:g} is stationary", True),
            Evidence("input S", pre_stat, f"> {tolerance:g} is stationary", False),
        )
        finding = self._finding(fqn, class_name, values, evidence, supported)
        if annotated == "dynamic":
            return _annotated_dynamic(finding)
        return finding

    def _finding(self, fqn, class_name, values, evidence, supported) -> Finding:
        dynamic = values["dynamic_recommended"]
        pre, post = values["pre_observer_data_dist"], values["post_observer_data_dist"]
        tolerance = values["tolerance"]
        reason = (
            f"The data before {class_name} '{fqn}' is {pre} (S = {_fmt(values['pre_observer_comp_stat'])}) "
            f"and after it is {post} (S = {_fmt(values['post_observer_comp_stat'])}, tolerance {tolerance:g}). "
        )
        if dynamic:
            reason += (
                "Its output range moves from batch to batch, so ranges calibrated once would clip "
                "or waste levels later: dynamic quantization, which measures the range of every "
                "batch, will be more accurate."
            )
            if not supported:
                reason += f" Note: {class_name} has no dynamic quantized kernel yet."
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
        status = Status.RECOMMEND if dynamic else Status.OK
        return Finding(self.name, fqn, status, headline, reason, values, evidence)


def _annotated_dynamic(finding: Finding) -> Finding:
    """The verdict on a module whose input the PT2E quantizer already quantizes dynamically."""
    if finding.values["dynamic_recommended"]:
        return replace(
            finding, status=Status.OK, headline="Dynamic quantization already used",
            reason=finding.reason + " The quantizer already annotated its input as dynamic: nothing to change.",
        )
    return replace(
        finding,
        reason=finding.reason + " The quantizer annotated its input as dynamic; static quantization would "
        "fit these ranges and run faster.",
    )


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
