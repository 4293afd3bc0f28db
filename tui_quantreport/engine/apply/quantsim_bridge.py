"""Where the export meets the measured-error engine (``engine/quantsim``): plan files to and
from the simulation's plans, and the prediction for the plan as a target actually applies it
(modules it had to change, and the target's own activation grid). The recommended plan when no
plan file is given is measured by the pipeline (``engine/pipeline.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tui_quantreport.engine.plan import Plan
from tui_quantreport.engine.quantsim import ErrorAnalysis, ranges_from_stats
from tui_quantreport.engine.session import Session
from tui_quantreport.engine.settings import Settings
from tui_quantreport.engine.spec import open_batches


def calibrated_ranges(subject: Any) -> dict[str, tuple[float, float]]:
    """Input (min, max) of every weighted module over all calibration batches (what the targets calibrate on)."""
    if subject.loaded.batches_factory is None:
        return {}
    session = Session(subject.model, label=subject.spec)
    stats = session.calibrate(open_batches(subject.loaded), Settings.build(detectors=["dynamic_static"]))
    return ranges_from_stats(stats)[0]


def plan_ranges(plan: Plan) -> dict[str, tuple[float, float]]:
    """The input ranges the plan's static qparams stand for (float32, as torch computes them)."""
    ranges = {}
    for fqn, qp in plan.static_activation.items():
        scale = np.float32(qp.scale)
        ranges[fqn] = (
            float(np.float32(qp.quant_min - qp.zero_point) * scale),
            float(np.float32(qp.quant_max - qp.zero_point) * scale),
        )
    return ranges


def predict_export(subject: Any, export: Any, target: Any, probes: list[Any]) -> tuple[float | None, str]:
    """Simulated end-to-end SQNR of the plan as ``target`` (a Target) applies it: the modules it
    changed, and its activation recipe (grid, per-token or per-tensor dynamic, output steps,
    pooling on its input's grid, fused ReLU ranges). Also: what differs from the plan."""
    plan: Plan = subject.plan
    exported: Plan = export.exported_plan or plan
    notes = []
    recipe = target.recipe
    planned_bits = 7 if plan.backend in ("x86", "fbgemm") else 8
    if plan.target != target.name and planned_bits != recipe.activation_bits:
        notes.append(
            f"activations on {target.name}'s {recipe.activation_bits}-bit grid (the plan simulated {planned_bits} bits)"
        )
    if export.changes:
        notes.append(f"{len(export.changes)} module(s) changed by the target")
    ranges = plan_ranges(plan)
    if any(s.startswith("static") and fqn not in ranges for fqn, s in exported.quantized.items()):
        ranges = {**calibrated_ranges(subject), **ranges}  # the plan's own calibration wins where it has one
    analysis = ErrorAnalysis(
        subject.model,
        subject.catalog,
        probes,
        ranges,
        recipe.backend,
        target=target,
        output_key=getattr(subject, "output_key", None),
    )
    modules = {fqn: scheme for fqn, scheme in exported.modules.items() if fqn in analysis.targets}
    sim_plan = analysis.plan(modules)
    sqnr = analysis.plan_sqnr(sim_plan)
    return sqnr.db, "; ".join(notes) if sqnr.db is not None else f"{sqnr.reason}"
