"""The model's size under a plan: each quantized weight at its scheme's deployed bits per weight
(scales counted), every other parameter (biases, norms, float modules) at its dtype's.

The app asks on every header redraw: the model's parameters (and each module's bits under each
scheme) are read once per analysis, and each call only adds them up, in the same order as ever."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui_quantreport.engine.plan import Plan
from tui_quantreport.engine.quantsim.analysis_base import PlanSize, _Target
from tui_quantreport.engine.quantsim.schemes import SCHEMES

if TYPE_CHECKING:
    from tui_quantreport.engine.quantsim.error_analysis import ErrorAnalysis

#: Each target's (fqn, target, weight id, numel, bits in its dtype), and each distinct parameter's
#: (id, bits in its dtype), in the model's order.
Layout = tuple[list[tuple[str, _Target, int, int, float]], list[tuple[int, float]]]


def plan_size(analysis: ErrorAnalysis, plan: Plan) -> PlanSize:
    """(MB as deployed, MB in float, average bits per quantizable weight) of ``analysis``'s model under ``plan``."""
    targets, parameters = _layout(analysis)
    quantized = plan.quantized
    bits = float_bits = 0.0
    weight_bits = weight_numel = 0.0
    planned: dict[int, float] = {}
    for fqn, target, wid, numel, native in targets:
        name = quantized.get(fqn)
        if name is not None:
            scheme_bits = _scheme_bits(analysis, fqn, target, name)
            if scheme_bits is not None:
                planned[wid] = scheme_bits
        weight_bits += planned.get(wid, native)
        weight_numel += numel
    for pid, native in parameters:
        float_bits += native
        bits += planned.get(pid, native)
    return PlanSize(bits / 8e6, float_bits / 8e6, weight_bits / weight_numel if weight_numel else None)


def _layout(analysis: ErrorAnalysis) -> Layout:
    """The model's sizes read once (kept on the analysis)."""
    layout = analysis._size_layout_cache
    if layout is None:
        targets = []
        for fqn, target in analysis.targets.items():
            w = target.module.weight
            targets.append((fqn, target, id(w), w.numel(), w.numel() * w.element_size() * 8.0))
        seen: set[int] = set()
        parameters = []
        for p in analysis.model.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            parameters.append((id(p), p.numel() * p.element_size() * 8.0))
        layout = analysis._size_layout_cache = (targets, parameters)
    return layout


def _scheme_bits(analysis: ErrorAnalysis, fqn: str, target: _Target, name: str) -> float | None:
    """The deployed bits of ``fqn``'s weight under scheme ``name`` (None where it cannot take it)."""
    key = (fqn, name)
    cache = analysis._scheme_bits_cache
    if key not in cache:
        w = target.module.weight
        scheme = SCHEMES[name]
        cache[key] = (
            None
            if analysis._ineligible(target, scheme) is not None
            else scheme.bits_per_weight(tuple(w.shape), target.kind) * w.numel()
        )
    return cache[key]
