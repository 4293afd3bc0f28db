"""The one orchestration every front end runs: load → calibrate (+ probes) → evaluate → measure → assess.

The command line (``report``, ``calibrate``, ``config``/``verify`` without a plan), the app's
workers and the recommended plan of ``apply`` all go through here, so a stage changes in one place::

    pipe = Pipeline.load("showcase")
    run = pipe.calibrate(settings, probe_batches=PROBE_BATCHES, progress=..., should_cancel=...)
    report = pipe.evaluate(run.stats, settings)
    analysis = pipe.analysis(run.stats, run.probes, settings, target)
    measurement = measure(analysis, min_gain_db=MIN_GAIN_DB)
    report = assess(report, measurement.error, MIN_GAIN_DB)

Only this module sees the whole engine: the front ends (``cli/``, ``tui/``) import it (inside
their commands and workers: it imports torch) and the torch-free core, nothing else. Every stage
takes ``progress(done, total)`` and ``should_cancel()`` where it runs the model.

Beside the stages, the names the front ends use of the layers below (stats files, torchrun's
world, the planner, the apply entry points) are re-exported here (``__all__``), under names that
say what they are, so that a front end never imports an engine module other than this one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tui_quantreport.engine.apply import api
from tui_quantreport.engine.apply.api import Subject, VerifyResult, check_eager, check_target, export_plan, verify_plan
from tui_quantreport.engine.apply.common import Export, is_own_sidecar, sidecar_path
from tui_quantreport.engine.apply.targets import Target, default_target, model_device
from tui_quantreport.engine.apply.targets import resolve as resolve_target
from tui_quantreport.engine.defaults import DEFAULT_BACKEND, MIN_GAIN_DB, PROBE_BATCHES
from tui_quantreport.engine.detectors import short_names
from tui_quantreport.engine.distributed import (
    SplitSensitivity,
    World,
    check_same_model,
    combine,
    from_environment,
    open_shard,
    probe_digest,
    settle,
    start,
    stop,
)
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.evaluation import Evaluator
from tui_quantreport.engine.plan import Plan
from tui_quantreport.engine.quantsim import ErrorAnalysis, SimulationError, Sqnr
from tui_quantreport.engine.quantsim.availability import analysis_for, unavailable_note, unavailable_reason
from tui_quantreport.engine.quantsim.planner import Budget, Planner, planned_measured, recommended_warning
from tui_quantreport.engine.quantsim.probes import MUTATION_NOTE, ProbeRecorder, take_probes
from tui_quantreport.engine.quantsim.schemes import select_schemes
from tui_quantreport.engine.report import Measured, Report
from tui_quantreport.engine.session import Session
from tui_quantreport.engine.settings import Settings
from tui_quantreport.engine.severity import assess
from tui_quantreport.engine.severity import measure as measured_error
from tui_quantreport.engine.spec import LoadedModel, load_model, open_batches
from tui_quantreport.engine.stats import Stats
from tui_quantreport.engine.statsfile import StatsFile
from tui_quantreport.engine.statsfile import load as load_stats_file
from tui_quantreport.engine.statsfile import make as make_stats_file
from tui_quantreport.engine.statsfile import merge as merge_stats_files
from tui_quantreport.engine.statsfile import save as save_stats_file
from tui_quantreport.engine.statsfile import settings_for as stats_file_settings

#: ``progress(done, total)``: batches (or modules) done of a stage; total None when unknown.
Progress = Callable[[int, int | None], None]
#: ``progress(stage, done, total)`` of a measurement: stage "local", "plan" or "sensitivity".
StageProgress = Callable[[str, int, int | None], None]
Cancel = Callable[[], bool]


@dataclass(frozen=True)
class Calibration:
    """What a calibration produced: the statistics, and the probe batches kept while it read them."""

    stats: Stats
    #: Copies of the first ``probe_batches`` batches (None when none were asked for).
    probes: list[Any] | None = None
    #: True when the model changed the first batch in place (the probes are the batches as given).
    probes_mutated: bool = False


@dataclass(frozen=True)
class Measurement:
    """What measuring the error produced: the analysis (kept for later plan evaluations), the local
    SQNR per module and scheme, the recommended plan with its end-to-end SQNR, and the plain data
    severities and reports read (:class:`~.report.Measured`)."""

    analysis: ErrorAnalysis
    local: Mapping[str, Mapping[str, Sqnr]]
    plan: Plan  # with its prediction (end-to-end SQNR, probe batches)
    plan_sqnr: Sqnr
    error: Measured


class Pipeline:
    """One model through the stages: its loaded form and its calibration session."""

    def __init__(self, loaded: LoadedModel, session: Session | None = None) -> None:
        self.loaded = loaded
        self.session = session if session is not None else Session(loaded.model, label=loaded.spec)

    @classmethod
    def load(cls, spec: str, calibration: str | None = None) -> Pipeline:
        """Load the model ``spec`` names (calibration batches from ``calibration``, else its own)."""
        return cls(load_model(spec, calibration))

    @property
    def spec(self) -> str:
        return self.loaded.spec

    @property
    def catalog(self) -> Any:
        return self.session.catalog

    def batches(self) -> Iterable[Any]:
        """A fresh iteration of the calibration batches (sized when the model's are)."""
        return open_batches(self.loaded)

    def calibrate(
        self,
        settings: Settings,
        *,
        max_batches: int | None = None,
        probe_batches: int = 0,
        progress: Progress | None = None,
        should_cancel: Cancel | None = None,
        rerun_failures: bool = True,
        batches: Iterable[Any] | None = None,
    ) -> Calibration:
        """Run the calibration batches (or ``batches``: a torchrun shard) with what ``settings``
        needs observed, keeping copies of the first ``probe_batches`` for the measured error."""
        source = self.batches() if batches is None else batches
        recorder = ProbeRecorder(source, probe_batches) if probe_batches else None
        stats = self.session.calibrate(
            recorder if recorder is not None else source,
            settings,
            max_batches=max_batches,
            progress=progress,
            should_cancel=should_cancel,
            rerun_failures=rerun_failures,
        )
        if recorder is None:
            return Calibration(stats)
        return Calibration(stats, recorder.probes, recorder.mutated)

    def probes(self, count: int) -> list[Any]:
        """Copies of the first ``count`` calibration batches (a fresh read: statistics from a file)."""
        return take_probes(self.batches(), count)

    def evaluate(self, stats: Stats, settings: Settings) -> Report:
        """The detectors' report on ``stats`` judged with ``settings`` (no measured severity yet)."""
        return Evaluator(self.catalog).evaluate(stats, settings, spec=self.spec)

    def measurement_unavailable(self) -> str | None:
        """Why the error cannot be measured on this model (the note the front ends show), or None."""
        what = unavailable_reason(self.session)
        return unavailable_note(what) if what else None

    def analysis(
        self,
        stats: Stats,
        probes: Sequence[Any],
        settings: Settings | None = None,
        target: Target | str | None = None,
        *,
        output_key: str | None = None,
        schemes: Sequence[str] | None = None,
    ) -> ErrorAnalysis:
        """The error analysis of this model on ``probes`` with the ranges of ``stats``, simulating
        ``target`` (default torchao on the model's device); a graph is measured on a converted copy.
        With ``settings``, a static range is trusted from as many rows as the under-calibrated
        finding asks; ``schemes`` limits the schemes measured (the recommender's are always kept)."""
        params = settings.params if settings is not None else {}
        backend = params.get("per_channel_detector", {}).get("backend", DEFAULT_BACKEND)
        analysis: ErrorAnalysis = analysis_for(self.session, probes, stats, backend, target, output_key=output_key)
        rows = params.get("under_calibrated_detector", {}).get("min_rows")
        if rows is not None:
            analysis.min_rows = int(rows)
        if schemes is not None:
            analysis.measure_schemes(schemes)
        return analysis


def measure(
    analysis: ErrorAnalysis,
    *,
    min_gain_db: float = MIN_GAIN_DB,
    sensitivity: bool = False,
    progress: StageProgress | None = None,
    should_cancel: Cancel | None = None,
    sensitivity_of: Callable[..., Any] | None = None,
) -> Measurement:
    """Measure the error: local SQNR per module and scheme (with the advice variants), the plan
    recommended within ``min_gain_db`` of the best, its end-to-end SQNR, and (``sensitivity``)
    one-at-a-time sensitivity, measured by ``sensitivity_of`` when given (split across ranks)."""
    local_progress = None if progress is None else (lambda done, total: progress("local", done, total))
    local = analysis.local_sqnr(local_progress, should_cancel)
    plan = analysis.recommended_plan(min_gain_db)
    error = measured_error(
        analysis,
        sensitivity=sensitivity,
        plan=plan,
        min_gain_db=min_gain_db,
        progress=progress,
        should_cancel=should_cancel,
        sensitivity_of=sensitivity_of,
    )  # reuses the local measurements just kept
    sqnr = analysis.plan_sqnr(plan, should_cancel)  # kept by the measurement above
    return Measurement(analysis, local, plan.with_prediction(sqnr.db, len(analysis.probes)), sqnr, error)


def calibrated_analysis(
    loaded: LoadedModel,
    target: Target,
    probes: int = PROBE_BATCHES,
    progress: Progress | None = None,
    should_cancel: Cancel | None = None,
    output_key: str | None = None,
) -> ErrorAnalysis:
    """Calibrate with the default settings and take the error analysis on the first ``probes``
    batches, simulating ``target`` (what ``apply`` measures when no plan file is given)."""
    pipe = Pipeline(loaded)
    run = pipe.calibrate(Settings.build(), probe_batches=probes, progress=progress, should_cancel=should_cancel)
    assert run.probes is not None  # asked for above
    return pipe.analysis(run.stats, run.probes, target=target, output_key=output_key)


def recommended_plan_file(
    loaded: LoadedModel,
    catalog: Any = None,
    target: Target | str | None = None,
    output_key: str | None = None,
    progress: Progress | None = None,
    should_cancel: Cancel | None = None,
) -> Plan:
    """The plan recommended for ``target`` (a Target or its name; default torchao on the model's
    device), with its predicted SQNR and the target's name, as a plan file (``catalog`` is unused:
    kept for the callers that pass it)."""
    chosen = target if isinstance(target, Target) else resolve_target(target) if target else None
    if chosen is None:
        chosen = default_target(model_device(loaded.model))
    analysis = calibrated_analysis(
        loaded, chosen, progress=progress, should_cancel=should_cancel, output_key=output_key
    )
    analysis.measure_schemes(())  # the recommended plan reads only the schemes it chooses among
    plan = analysis.recommended_plan()
    sqnr = analysis.plan_sqnr(plan, should_cancel)
    return replace(plan.with_prediction(sqnr.db, len(analysis.probes)), target=chosen.name)


def load_subject(
    spec: str,
    plan_path: str | None,
    calibration: str | None = None,
    backend: str | None = None,
    target: str | None = None,
    *,
    output_key: str | None = None,
) -> Subject:
    """The model ``spec`` names and the plan to apply: the plan file's, else the plan recommended for
    ``target`` (calibrated and measured here; see :func:`~.apply.api.load_subject`)."""
    return api.load_subject(
        spec, plan_path, calibration, backend, target, output_key=output_key, recommend=recommended_plan_file
    )


def apply_in_app(
    kind: str,
    target: str,
    path: str | None,
    loaded: LoadedModel | None,
    catalog: Any,
    plan: Plan | None,
    *,
    progress: Progress | None = None,
    should_cancel: Cancel | None = None,
    source: str = "",
    on_result: Callable[[Any], None] | None = None,
) -> tuple[str | None, str | None, str]:
    """The app's ``e`` (export for ``target``) and ``v`` (verify) of its ``plan``, or of the plan
    recommended for ``target`` when None (calibrated and measured first): (title, text, note)."""
    if loaded is None:  # opened from a stats file: the app says why before it gets here
        raise UserError("exporting or verifying a plan needs the model, and this session has none")
    chosen = check_target(target)
    check_eager(loaded.model, loaded.spec)
    if plan is None:
        plan_file = recommended_plan_file(loaded, target=chosen, progress=progress, should_cancel=should_cancel)
    else:
        plan_file = replace(plan, source=source)
    return api.apply_in_app(
        kind,
        target,
        path,
        loaded,
        catalog,
        plan_file,
        progress=progress,
        should_cancel=should_cancel,
        source=source,
        on_result=on_result,
    )


__all__ = [
    "MUTATION_NOTE",
    "Budget",
    "Calibration",
    "Export",
    "Measured",
    "Measurement",
    "Pipeline",
    "Plan",
    "Planner",
    "SimulationError",
    "Sqnr",
    "SplitSensitivity",
    "StatsFile",
    "Subject",
    "Target",
    "VerifyResult",
    "World",
    "apply_in_app",
    "assess",
    "calibrated_analysis",
    "check_same_model",
    "combine",
    "export_plan",
    "from_environment",
    "is_own_sidecar",
    "load_stats_file",
    "load_subject",
    "make_stats_file",
    "measure",
    "measured_error",
    "merge_stats_files",
    "open_shard",
    "planned_measured",
    "probe_digest",
    "recommended_plan_file",
    "recommended_warning",
    "resolve_target",
    "save_stats_file",
    "select_schemes",
    "settle",
    "short_names",
    "sidecar_path",
    "start",
    "stats_file_settings",
    "stop",
    "take_probes",
    "verify_plan",
]
