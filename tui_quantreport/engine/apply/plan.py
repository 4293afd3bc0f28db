"""What the exporters ask of a plan beyond the plan itself (:class:`~tui_quantreport.engine.plan.Plan`):
whether it is for this model as a whole (:func:`check_plan`), and which schemes the int8 targets
(torch.ao's and PT2E's) can express, read from the schemes' facts.
"""

from __future__ import annotations

from typing import Any

from tui_quantreport.engine.escape import printable
from tui_quantreport.engine.modules import is_versioned
from tui_quantreport.engine.plan import Plan, PlanError
from tui_quantreport.engine.quantsim.schemes import SCHEMES

#: The int8 static schemes (torch.ao's and PT2E's targets run only these static ones).
STATIC_SCHEMES = ("static_per_tensor", "static_per_channel")


def int8_per_tensor_or_channel(scheme: str) -> bool:
    """Whether ``scheme`` is one torch.ao and PT2E can express (int8 activations and weights per
    tensor or per channel: the int8 four), by its facts."""
    known = SCHEMES.get(scheme)
    return (
        known is not None
        and known.facts.family == "int8"
        and known.facts.weight.granularity in ("per_tensor", "per_channel")
        and known.facts.activation_dtype in (None, "int8")
    )


def check_plan(plan: Plan, catalog: Any, spec: str) -> None:
    """Refuse, in one sentence, a plan that is not for this model as a whole: another fingerprint
    (version 2: the module tree, parameters and buffers; a version 1 plan is checked the old
    way), another class, modules the model lacks, or a scheme on a module that has no weight to
    quantize (an observer, an activation)."""
    source = printable(plan.source or "plan")
    expected = catalog.fingerprint if is_versioned(plan.fingerprint) else catalog.legacy_fingerprint
    if plan.fingerprint != expected or plan.model_class != catalog.class_name:
        raise PlanError(
            f"{source} was made for {printable(plan.model_class)} (fingerprint {printable(plan.fingerprint)}), "
            f"not for {printable(spec)} ({printable(catalog.class_name)}, fingerprint {catalog.fingerprint})"
        )
    missing = [fqn for fqn in plan.modules if fqn not in catalog.modules]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise PlanError(f"{source} names {len(missing)} module(s) {printable(spec)} lacks: {shown}")
    for fqn, scheme in plan.quantized.items():
        info = catalog.modules[fqn]
        if info.is_quant_helper or not info.is_weighted:
            raise PlanError(
                f"{source} plans {scheme} for module {fqn!r}, a {printable(info.class_name)}, "
                "which has no weight to quantize"
            )
