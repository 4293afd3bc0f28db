"""What the quantization simulation measures for a session's model, or why it cannot.

The simulation swaps a model's Linear/Conv modules for simulated ones. An exported graph does
its work in aten nodes (its modules only hold weights): it is measured on a copy whose
Linear/Conv nodes are real modules again (engine/graph_eager.py), which gives the numbers the
eager model of the same architecture gives. A torchao-quantized module already holds int8
tensor subclasses: that is stated, never attempted (an attempt fails deep inside the swap with
an error that names neither).
"""

from __future__ import annotations

from typing import Any

from tui_quantreport.engine.core.targets import (
    TARGET_FACTS,
    TargetFacts,
    default_target_name,
    model_device,
    resolve_facts,
)
from tui_quantreport.engine.graph_eager import measurable_copy
from tui_quantreport.engine.quantsim.error_analysis import ErrorAnalysis


def unavailable_reason(session: Any) -> str | None:
    """None when the model can be measured; else what it is ("models with ...", ...)."""
    if any(m.quantized for m in session.catalog.modules.values()):
        return "models with already-quantized (torchao) modules"
    return None


def unavailable_note(what: str) -> str:
    """The sentence the CLI and the app show for :func:`unavailable_reason`'s answer."""
    return f"measured error (SQNR) is not available for {what} yet; findings are unmeasured"


def measurable(session: Any) -> tuple[Any, Any, dict[str, str]]:
    """(model, catalog, skipped) that the simulation runs on: the session's own model and
    catalog; for an exported graph a converted copy (made anew: the user's graph is never
    changed), its catalog, and the modules left as graph nodes with why."""
    if getattr(session, "graph", None) is None:
        return session.model, session.catalog, {}
    copy = measurable_copy(session.model, session.catalog)
    return copy.model, copy.catalog, copy.skipped


def analysis_for(
    session: Any, probes: Any, stats: Any, backend: str | None = None, target: Any = None, output_key: str | None = None
) -> Any:
    """The :class:`ErrorAnalysis` of a session's model (see :func:`measurable`), simulating the
    deployment ``target`` (a target's facts or its name; default torchao on the model's device: its
    recipe decides the activation grid, and the recommended plan only uses what it runs;
    ``backend`` is kept for old callers). A weighted module of a graph that stays a node is
    listed with why (its SQNR reads "SQNR undefined: ...")."""
    model, catalog, skipped = measurable(session)
    if not isinstance(target, TargetFacts):
        target = resolve_facts(target) if target else TARGET_FACTS[default_target_name(model_device(model))]
    analysis = ErrorAnalysis.from_stats(
        model, catalog, probes, stats, target.recipe.backend, target=target, output_key=output_key
    )
    for fqn, why in skipped.items():
        info = session.catalog.modules.get(fqn)
        if info is not None and info.is_weighted and fqn not in analysis.targets:
            analysis.unsupported[fqn] = f"in the exported graph, {why}"
    return analysis
