"""The engine entry points the command line and the app call: load a plan for a
model, export it for a target, verify an export by applying it."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tui_quantreport.engine.apply import quantsim_bridge as bridge
from tui_quantreport.engine.apply.common import Export
from tui_quantreport.engine.apply.plan import check_plan
from tui_quantreport.engine.apply.targets import Target, default_target, model_device, resolve
from tui_quantreport.engine.apply.verify import (
    ProgressCallback,
    VerifyResult,
    verify_export,
)
from tui_quantreport.engine.defaults import PROBE_BATCHES
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.graph import is_exported_graph
from tui_quantreport.engine.model_lock import model_lock
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.plan import Plan, PlanError
from tui_quantreport.engine.spec import load_model, open_batches, source_path

DEFAULT_PROBE_BATCHES = PROBE_BATCHES

#: ``recommend(loaded, catalog, target, output_key)``: the plan file measured for a model that has none.
Recommend = Callable[[Any, Any, Target, str | None], Plan]


@dataclass
class Subject:
    """A loaded model, its catalog, its plan, and where its batches come from."""

    spec: str
    model: Any
    catalog: Any
    plan: Plan
    loaded: Any  # spec.LoadedModel
    calibration: str | None = None
    #: The model output every end-to-end SQNR reads (None: all of them, combined).
    output_key: str | None = None
    #: The target the plan was made for (the plan file's, else torchao on the model's device).
    target: Target | None = None

    def batches(self, count: int | None) -> list[Any]:
        return list(itertools.islice(open_batches(self.loaded), count)) if count else list(open_batches(self.loaded))


def check_target(target: str | Target, plan: Plan | None = None) -> Target:
    """The :class:`Target` a name (or old alias) selects; one line naming the choices when none does."""
    return target if isinstance(target, Target) else resolve(target, plan)


def load_subject(
    spec: str,
    plan_path: str | None,
    calibration: str | None = None,
    backend: str | None = None,
    target: str | None = None,
    *,
    output_key: str | None = None,
    recommend: Recommend | None = None,
) -> Subject:
    """The model a spec names and the plan to apply: the file's, or the plan ``recommend``
    measures for ``target`` (default: the plan file's target, else torchao on the model's device;
    the pipeline passes it: ``engine/pipeline.py``'s ``load_subject``).
    ``backend`` is kept for old callers: the target's recipe decides the activation grid."""
    plan = Plan.load(plan_path) if plan_path else None  # a bad plan file fails before the model loads
    chosen = check_target(target, plan) if target else None  # a bad target fails before the model loads
    loaded = load_model(spec, calibration)
    check_eager(loaded.model, spec)
    catalog = ModelCatalog.build(loaded.model)
    if chosen is None:
        chosen = (
            resolve(plan.target) if plan is not None and plan.target else default_target(model_device(loaded.model))
        )
    if plan is None:
        if recommend is None:
            raise PlanError("no plan to apply: pass --plan plan.json")
        plan = recommend(loaded, catalog, chosen, output_key)
    check_plan(plan, catalog, spec)
    return Subject(spec, loaded.model, catalog, plan, loaded, calibration, output_key=output_key, target=chosen)


def not_eager(model: Any, spec: str) -> str | None:
    """Why a plan cannot be applied to ``model`` (an exported graph), or None. The targets quantize
    an eager model: torchao's ``quantize_`` swaps module weights, the PT2E and FX snippets export
    or trace the model."""
    if not is_exported_graph(model):
        return None
    return (
        f"{spec} is an exported graph (torch.export / PT2E): config and verify apply a plan to the eager "
        "model it was exported from; run them on that model (a PT2E-prepared graph is quantized by "
        "calibrating it and calling convert_pt2e)"
    )


def check_eager(model: Any, spec: str) -> None:
    """Refuse an exported graph in one line (see :func:`not_eager`)."""
    reason = not_eager(model, spec)
    if reason is not None:
        raise UserError(reason)


def export_plan(subject: Subject, target: str | Target | None = None) -> Export:
    """The files of ``target`` (default: the subject's) for the subject's plan (nothing written)."""
    chosen = check_target(target, subject.plan) if target is not None else _subject_target(subject)
    return chosen.export(subject)


def _subject_target(subject: Subject) -> Target:
    return subject.target or default_target(model_device(subject.model))


def verify_plan(
    subject: Subject,
    target: str | Target | None = None,
    *,
    probe_batches: int | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> VerifyResult:
    """Export the subject's plan for ``target`` (default: the plan's), apply it with the real
    library, measure it against the simulation of the same target's recipe."""
    # One thing at a time runs the model: an overlapping measurement's simulated forwards must not
    # be traced, copied into the quantized model or run as its float reference.
    with model_lock(subject.model):
        chosen = check_target(target, subject.plan) if target is not None else _subject_target(subject)
        count = probe_batches or subject.plan.probe_batches or DEFAULT_PROBE_BATCHES
        subject, note = without_cache(subject, chosen)
        export = chosen.export(subject)
        probes = subject.batches(count)
        apply, library, inspect = chosen.applier(export, subject, count)
        prediction = export_prediction(subject, export, chosen, probes)
        return verify_export(
            subject.model,
            subject.plan,
            export,
            apply,
            probes,
            library=library,
            export_prediction=prediction,
            inspect=inspect,
            progress=progress,
            should_cancel=should_cancel,
            output_key=subject.output_key,
            reference_note=note,
        )


def without_cache(subject: Subject, target: Target | str) -> tuple[Subject, str]:
    """For PT2E, a transformers model whose config has ``use_cache`` on returns a ``DynamicCache``,
    which ``torch.export`` cannot export: the subject on a copy with ``config.use_cache = False``
    (the user's model is not changed), and a note saying so. Otherwise the subject as it is.
    ``target`` is a Target or its library's name (``"pt2e"``, ``"torchao"``, ...)."""
    library = target if isinstance(target, str) else target.library
    config = getattr(subject.model, "config", None)
    if library != "pt2e" or not getattr(config, "use_cache", False):
        return subject, ""
    try:
        model = copy.deepcopy(subject.model)
    except Exception as exc:  # noqa: BLE001 - said in one line
        raise UserError(
            f"{subject.spec}'s config has use_cache=True: its DynamicCache output cannot be exported for pt2e, "
            f"and the model could not be copied to turn it off ({type(exc).__name__}); build it with use_cache=False"
        ) from None
    model.config.use_cache = False
    return replace(subject, model=model), (
        "verified on a copy with config.use_cache=False (a DynamicCache output cannot be exported); "
        "build the model with use_cache=False to export it"
    )


def export_prediction(subject: Subject, export: Export, target: Target, probes: list[Any]) -> tuple[float | None, str]:
    """The simulated SQNR of the plan as the target applies it (the measured-error engine's)."""
    return bridge.predict_export(subject, export, target, probes)


def apply_in_app(
    kind: str,
    target: str,
    path: str | None,
    loaded: Any,
    catalog: Any,
    plan_file: Plan,
    *,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    source: str = "",
    on_result: Callable[[Any], None] | None = None,
) -> tuple[str | None, str | None, str]:
    """The app's ``e`` (a configuration target) and ``v`` of ``plan_file``: (title, text to show,
    one-line note). The pipeline's ``apply_in_app`` turns the app's plan (or the recommended one,
    measured first) into that file (``engine/pipeline.py``).

    ``source`` says which plan it is (``edited in the app``), in the exported files and the result;
    ``on_result`` is handed the verification's result (``v`` only: its achieved SQNR for the title).
    """
    check_plan(plan_file, catalog, loaded.spec)
    chosen = check_target(target, plan_file)
    subject = Subject(loaded.spec, loaded.model, catalog, plan_file, loaded, None, target=chosen)
    if kind == "export":
        if not path:
            raise UserError("give a path for the configuration file")
        export = export_plan(subject, chosen)
        written = export.write(path, inputs=[p for p in (source_path(loaded.spec),) if p])
        note = f"Wrote the {chosen.name} configuration to {', '.join(str(p) for p in written)}."
        mixed = [c.fqn for c in export.changes if "mix static and dynamic" in c.reason]
        if mixed:
            note += f" PT2E cannot mix static and dynamic: changed {', '.join(mixed)}."
        others = [c for c in export.changes if c.fqn not in mixed]
        if others:
            note += f" {len(others)} module(s) changed for {chosen.name}: " + "; ".join(c.line() for c in others[:3])
            note += " …" if len(others) > 3 else ""
        return None, None, note
    result = verify_plan(subject, chosen, progress=progress, should_cancel=should_cancel)
    if on_result is not None:
        on_result(result)
    achieved = f"{result.achieved_db:.2f} dB" if result.achieved_db is not None else "n/a"
    return (
        f"Verify the plan with {result.library}",
        (f"Plan: {source}\n" if source else "") + result.to_text(),
        f"Verified with {result.library}: achieved {achieved}.",
    )
