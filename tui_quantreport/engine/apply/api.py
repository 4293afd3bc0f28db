"""The engine entry points the command line and the app call: load a plan for a
model, export it for a target, verify an export by applying it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tui_quantreport.engine.apply.common import TARGETS, Export
from tui_quantreport.engine.apply.plan import PlanError, PlanFile, check_plan
from tui_quantreport.engine.apply.verify import (
    ProgressCallback,
    VerifyResult,
    verify_export,
)
from tui_quantreport.engine.errors import UserError

DEFAULT_PROBE_BATCHES = 4


@dataclass
class Subject:
    """A loaded model, its catalog, its plan, and where its batches come from."""

    spec: str
    model: Any
    catalog: Any
    plan: PlanFile
    loaded: Any  # spec.LoadedModel
    calibration: str | None = None

    def batches(self, count: int | None) -> list[Any]:
        from tui_quantreport.engine.spec import open_batches

        return list(itertools.islice(open_batches(self.loaded), count)) if count else list(open_batches(self.loaded))


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    return target


def load_subject(spec: str, plan_path: str | None, calibration: str | None = None, backend: str | None = None) -> Subject:
    """The model a spec names and the plan to apply (the file's, or the recommended one)."""
    from tui_quantreport.engine.modules import ModelCatalog
    from tui_quantreport.engine.spec import load_model

    plan = PlanFile.load(plan_path) if plan_path else None  # a bad plan file fails before the model loads
    loaded = load_model(spec, calibration)
    catalog = ModelCatalog.build(loaded.model)
    if plan is None:
        plan = recommended_plan(loaded, catalog, backend)
    check_plan(plan, catalog, spec)
    return Subject(spec, loaded.model, catalog, plan, loaded, calibration)


def recommended_plan(loaded: Any, catalog: Any, backend: str | None) -> PlanFile:
    """Calibrate and take the measured-error engine's recommended plan."""
    try:
        from tui_quantreport.engine import quantsim  # noqa: F401
    except ImportError:
        raise PlanError(
            "without --plan the recommended plan comes from the measured-error engine, which this build lacks; "
            "pass --plan plan.json"
        ) from None
    from tui_quantreport.engine.apply.quantsim_bridge import recommended_plan_file

    return recommended_plan_file(loaded, catalog, backend)


def export_plan(subject: Subject, target: str) -> Export:
    """The files of ``target`` for the subject's plan (nothing written)."""
    check_target(target)
    first = subject.batches(1)[0] if subject.loaded.batches_factory is not None else None
    if target == "torchao":
        from tui_quantreport.engine.apply.torchao_target import export_torchao

        return export_torchao(subject.model, subject.plan, subject.spec, first, subject.calibration)
    if target == "pt2e":
        from tui_quantreport.engine.apply.pt2e_target import export_pt2e

        return export_pt2e(subject.model, subject.plan, subject.spec, first, subject.calibration)
    from tui_quantreport.engine.apply.qconfig_target import export_qconfig_mapping

    return export_qconfig_mapping(subject.model, subject.plan, subject.spec, first, subject.calibration)


def verify_plan(
    subject: Subject,
    target: str,
    *,
    probe_batches: int | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> VerifyResult:
    """Export the subject's plan for ``target``, apply it with the real library, measure it."""
    check_target(target)
    count = probe_batches or subject.plan.probe_batches or DEFAULT_PROBE_BATCHES
    export = export_plan(subject, target)
    probes = subject.batches(count)
    if target == "torchao":
        from tui_quantreport.engine.apply.library import torchao_version
        from tui_quantreport.engine.apply.torchao_target import run_source

        namespace = run_source(export.text, "<torchao export>")

        def apply(model: Any) -> Any:
            return namespace["quantize"](model, False)

        library = f"torchao {torchao_version()}"
        inspect = None
    else:
        import importlib

        module = importlib.import_module(f"tui_quantreport.engine.apply.{'pt2e_target' if target == 'pt2e' else 'qconfig_target'}")
        apply, library, inspect = module.applier(export, subject, count)
    prediction = export_prediction(subject, export, target, probes)
    return verify_export(
        subject.model, subject.plan, export, apply, probes, library=library,
        export_prediction=prediction, inspect=inspect, progress=progress, should_cancel=should_cancel,
    )


def export_prediction(subject: Subject, export: Export, target: str, probes: list[Any]) -> tuple[float | None, str]:
    """The simulated SQNR of the plan as the target applies it, when the measured-error engine is here."""
    try:
        from tui_quantreport.engine.apply.quantsim_bridge import predict_export
    except ImportError:
        return None, ""
    return predict_export(subject, export, target, probes)
