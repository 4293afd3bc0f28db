"""The recommended scheme of each module: the cheapest within a margin of the best local SQNR,
among those the deployment target runs and the calibration supports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui_quantreport.engine.quantsim.analysis_base import DEFAULT_MIN_GAIN_DB, WEIGHT_ONLY_BELOW_DB
from tui_quantreport.engine.quantsim.schemes import FLOAT, PREFERENCE, SCHEMES

if TYPE_CHECKING:
    from tui_quantreport.engine.quantsim.error_analysis import ErrorAnalysis


def recommended_scheme(analysis: ErrorAnalysis, fqn: str, min_gain_db: float = DEFAULT_MIN_GAIN_DB) -> str:
    """The cheapest scheme within ``min_gain_db`` of the best, by local SQNR.

    Preference: static_per_channel, static_per_tensor, dynamic (only where torch
    has a dynamic kernel), then weight_only, which keeps activations in float and
    is chosen only where no activation-quantizing scheme reaches
    :data:`WEIGHT_ONLY_BELOW_DB`. ``"float"`` when nothing could be measured.
    """
    local = analysis.local_measurements()[fqn]
    target = analysis.targets.get(fqn)
    analysis.scheme_reasons.pop(fqn, None)
    if target is None:
        return FLOAT
    if analysis.runs is not None:
        refused = analysis.refusals().get(fqn, {})
        allowed = [s for s in PREFERENCE if s in local.sqnr and s not in refused]
    else:
        allowed = [
            s
            for s in PREFERENCE
            if s in local.sqnr
            and (SCHEMES[s].facts.activation != "dynamic" or analysis.backend in target.kind.dynamic_backends)
        ]
    few = analysis.under_calibrated(fqn)
    if few is not None:
        allowed = [s for s in allowed if not SCHEMES[s].needs_range]
    values = {s: local.sqnr[s].value for s in allowed if local.sqnr[s].defined or local.sqnr[s].infinite}
    quantizing = {s: v for s, v in values.items() if not SCHEMES[s].facts.weight_only}
    if quantizing and max(quantizing.values()) >= WEIGHT_ONLY_BELOW_DB:
        values = quantizing
    chosen = FLOAT
    if values:
        best = max(values.values())
        chosen = next((s for s in allowed if s in values and values[s] >= best - min_gain_db), FLOAT)
    if few is not None:
        instead = "kept float" if chosen == FLOAT else f"{chosen} instead, which needs no calibrated range"
        analysis.scheme_reasons[fqn] = f"{few}: no static scheme; {instead}"
    return chosen


def refusals(analysis: ErrorAnalysis) -> dict[str, dict[str, str]]:
    """{fqn: {scheme: why the target does not run it}} for every quantizable module the
    target skips or refuses a scheme on (empty without a target's ``runs``)."""
    if analysis.runs is None:
        return {}
    cached = analysis._refusals
    if cached is None:
        cached = {}
        for fqn, target in analysis.targets.items():
            shape = tuple(target.module.weight.shape)
            refused = {}
            for name in dict.fromkeys((*analysis.schemes, *PREFERENCE)):
                why = analysis.runs(name, target.kind.name, shape)
                if why is not None:
                    refused[name] = why
            if refused:
                cached[fqn] = refused
        analysis._refusals = cached
    return cached
