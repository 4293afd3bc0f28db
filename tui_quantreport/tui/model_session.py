"""The app's handle on the engine: load, calibrate and evaluate, off the UI thread.

Every method here may import torch (through the engine's settings, evaluation, session,
spec and detectors modules), so they are imported inside the methods and the
methods are only called from worker threads. The class holds what does not
change once loaded (the model and its engine session); the stats snapshot and
the settings live in the app and are passed in, so concurrent calls never share
mutable state.
"""

from __future__ import annotations

import threading
from argparse import Namespace
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from tui_quantreport.engine.defaults import MIN_GAIN_DB
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import PLAN_EDITED, Report

if TYPE_CHECKING:  # the engine's types, for type checkers only: importing them at run time loads torch
    from tui_quantreport.engine.detectors import Detector
    from tui_quantreport.engine.modules import ModelCatalog
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.quantsim import ErrorAnalysis, Sqnr
    from tui_quantreport.engine.report import Measured as MeasuredError
    from tui_quantreport.engine.session import Session
    from tui_quantreport.engine.settings import Settings
    from tui_quantreport.engine.spec import LoadedModel
    from tui_quantreport.engine.stats import Stats


class DetectorInfo(Protocol):
    """What the app reads of a detector class (its registry entry): no torch needed to use it."""

    name: str
    title: str
    glyph: str
    description: str
    params: tuple[Param, ...]


@dataclass(frozen=True)
class Loaded:
    """What loading produced: the session, its first (uncalibrated) report, settings and detectors."""

    session: ModelSession
    report: Report
    settings: Settings
    stats: Stats  # empty, or read from a stats file
    detectors: tuple[type[Detector], ...]
    #: What the calibration strip says once loaded (None: not calibrated yet).
    status: str | None = None
    notice: str | None = None  # e.g. saved settings that were ignored, and why
    #: The measured error read back from a stats file (read-only: no model to re-evaluate a plan with).
    measured: Measured | None = None
    #: The measured-severity threshold: ``--min-gain``, else the saved setting, else the default.
    min_gain_db: float | None = None
    #: The deployment target the user asked for: ``--target``, else the saved one (None: the
    #: default, torchao on the model's device); a name the registry may not know (checked by the app).
    target: str | None = None


@dataclass(frozen=True)
class Calibrated:
    """What a calibration produced: the new stats and the report evaluated with ``settings``."""

    stats: Stats
    report: Report
    settings: Settings


class ModelSession:
    """One loaded model and its engine session, or a stats file's catalog and statistics without a model."""

    def __init__(
        self,
        loaded_model: LoadedModel | None,
        session: Session | None,
        *,
        catalog: ModelCatalog | None = None,
        spec: str | None = None,
        unavailable: str | None = None,
    ) -> None:
        from tui_quantreport.engine import Evaluator

        self.loaded_model = loaded_model  # None when opened from a stats file
        self.session = session  # None when opened from a stats file
        if catalog is None:
            assert session is not None, "a ModelSession needs a session or a catalog"
            catalog = session.catalog
        self.catalog: ModelCatalog = catalog
        self.spec: str = spec if spec is not None else loaded_model.spec if loaded_model is not None else ""
        #: Why what needs the model (recalibration, SQNR probes, verify) is unavailable; None when it is not.
        self.unavailable = unavailable
        #: Run a rejected batch again to name the failing module (off with --no-rerun).
        self.rerun_failures = True
        #: The deployment target the plan is made for (--target; None: torchao on the model's device).
        self.target: str | None = None
        #: Keeps recent measurements and reports, so a threshold change re-judges from kept numbers.
        self.evaluator = Evaluator(catalog)
        #: The measured error read from a stats file, and the statistics it belongs to: reports of
        #: exactly those statistics keep their measured severity (a new calibration measures anew).
        self.restored: tuple[Stats, MeasuredError] | None = None

    @classmethod
    def load_in_background(cls, spec: str, options: Namespace | None) -> Future[Loaded]:
        """Start :meth:`load` in a daemon thread (quitting never waits for it); a future of its result."""
        future: Future[Loaded] = Future()

        def run() -> None:
            try:
                future.set_result(cls.load(spec, options))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(exc)

        threading.Thread(target=run, name="load-model", daemon=True).start()
        return future

    @classmethod
    def load(cls, spec: str, options: Namespace | None) -> Loaded:
        """Build settings from the command-line options, load the model, and evaluate it uncalibrated.

        Raises :class:`~tui_quantreport.engine.errors.UserError` (one clear sentence) when the
        options, the model spec or the model's factory are wrong.
        """
        from tui_quantreport.engine import DETECTORS, Settings, Stats
        from tui_quantreport.engine.errors import ParamError, UserError
        from tui_quantreport.engine.pipeline import Pipeline, load_stats_file, stats_file_settings
        from tui_quantreport.engine.stats_path import is_stats_path
        from tui_quantreport.tui import user_settings

        if is_stats_path(spec):
            return cls.load_stats_file(spec, options)
        leave_a_core_to_the_ui()
        saved, notice = user_settings.load()
        try:
            settings = Settings.from_options(**_with_saved(_setting_options(options), saved))
        except (
            ParamError,
            UserError,
            TypeError,
            ValueError,
        ) as exc:  # a saved value no longer valid: the command line alone decides
            settings = Settings.from_options(**_setting_options(options))
            notice = f"ignored saved settings {user_settings.settings_path()}: {exc}"
        pipe = Pipeline.load(spec, _option(options, "calibration"))
        stats = Stats.empty()
        status = None
        stats_path = _option(options, "stats")
        if stats_path:  # reuse a stats file taken on this model
            sf = load_stats_file(stats_path)
            sf.check_model(pipe.catalog, stats_path)
            settings = stats_file_settings(sf, stats_path, **_setting_options(options))
            stats = sf.stats
            status = f"Statistics of {stats.batches:,} batches from {stats_path}; press c to calibrate again."
        model = cls(pipe.loaded, pipe.session)
        model.rerun_failures = not _option(options, "no_rerun")
        model.target = _option(options, "target")
        min_gain = _min_gain(options, saved)
        report = model.evaluate(stats, settings, min_gain_db=min_gain)
        target = model.target or saved.target
        return Loaded(
            model,
            report,
            settings,
            stats,
            tuple(DETECTORS.values()),
            status,
            notice,
            min_gain_db=min_gain,
            target=target,
        )

    @classmethod
    def load_stats_file(cls, path: str, options: Namespace | None) -> Loaded:
        """A session on a stats file: its catalog, statistics and settings, and no model."""
        from tui_quantreport.engine import DETECTORS
        from tui_quantreport.engine.pipeline import load_stats_file, stats_file_settings
        from tui_quantreport.tui import user_settings

        sf = load_stats_file(path)
        settings = stats_file_settings(sf, path, **_setting_options(options))
        reason = (
            f"opened from the stats file {path}, without the model: to calibrate again, run "
            f"tui-quantreport {sf.spec} --stats {path}"
        )
        model = cls(None, None, catalog=sf.catalog, spec=sf.spec, unavailable=reason)
        measured = None
        if sf.measured is not None:
            model.restored = (sf.stats, sf.measured)
            measured = restored_measurement(sf.measured)
        saved, _ = user_settings.load()
        min_gain = _min_gain(options, saved)
        report = model.evaluate(sf.stats, settings, min_gain_db=min_gain)
        status = (
            f"Statistics of {sf.stats.batches:,} batches from {path}, without the model: recalibration and "
            f"verify are unavailable (tui-quantreport {sf.spec} --stats {path} brings them back)."
        )
        return Loaded(
            model,
            report,
            settings,
            sf.stats,
            tuple(DETECTORS.values()),
            status,
            measured=measured,
            min_gain_db=min_gain,
        )

    def evaluate(
        self, stats: Stats, settings: Settings, error: MeasuredError | None = None, min_gain_db: float | None = None
    ) -> Report:
        """The report for ``stats`` judged with ``settings`` (with severities from the measured
        ``error`` of the same stats, when given, minor below ``min_gain_db``): pure, never touches the model."""
        from tui_quantreport.engine.pipeline import assess

        report = self.evaluator.evaluate(stats, settings, spec=self.spec)
        error = error if error is not None else self.restored_error(stats)
        if error is None:
            return report
        return assess(report, error, MIN_GAIN_DB if min_gain_db is None else min_gain_db)

    @cached_property
    def apply_unavailable(self) -> str | None:
        """Why the plan cannot be exported as a configuration or verified here, or None (decided
        once: the app asks on every bindings refresh)."""
        if self.unavailable is not None:
            return f"Needs the model: {self.unavailable}"
        if self.loaded_model is None:
            return None
        from tui_quantreport.engine import not_eager

        reason = not_eager(self.loaded_model.model, self.spec)
        return reason[0].upper() + reason[1:] + "." if reason else None

    @property
    def measurement_unavailable(self) -> str | None:
        """Why the quantization error cannot be measured on this model (a sentence), or None."""
        from tui_quantreport.engine.pipeline import Pipeline

        if self.session is None or self.loaded_model is None:
            return None  # no model at all: said by ``unavailable``
        note = Pipeline(self.loaded_model, self.session).measurement_unavailable()
        return note.capitalize() + "." if note else None

    def restored_error(self, stats: Stats) -> MeasuredError | None:
        """The measured error read from the stats file, when ``stats`` are the statistics it came with."""
        return self.restored[1] if self.restored is not None and self.restored[0] is stats else None

    def save_stats(self, stats: Stats, settings: Settings, path: str, error: MeasuredError | None = None) -> str:
        """Write ``stats`` (taken with ``settings``, with their measured ``error`` when given) to a
        stats file at ``path``, atomically."""
        from tui_quantreport.engine import source_path
        from tui_quantreport.engine.pipeline import make_stats_file, save_stats_file

        error = error if error is not None else self.restored_error(stats)
        inputs = [p for p in (source_path(self.spec),) if p]
        return str(save_stats_file(path, make_stats_file(self.spec, self.catalog, stats, settings, error), inputs))

    def calibrate(
        self,
        settings: Settings,
        max_batches: int | None,
        progress: Callable[[int, int | None], None],
        should_cancel: Callable[[], bool],
    ) -> Calibrated:
        """Run the calibration batches with what ``settings`` needs observed, then evaluate.

        Raises :class:`~tui_quantreport.engine.errors.CalibrationError` (which batch, which
        module, the cause), :class:`~tui_quantreport.engine.errors.SpecError` (no or bad
        calibration data) or :class:`~tui_quantreport.engine.errors.CalibrationCancelled`.
        """
        from tui_quantreport.engine.errors import UserError
        from tui_quantreport.engine.pipeline import Pipeline

        if self.unavailable is not None or self.session is None or self.loaded_model is None:
            raise UserError(f"Calibration is unavailable: {self.unavailable}")
        run = Pipeline(self.loaded_model, self.session).calibrate(
            settings,
            max_batches=max_batches,
            progress=progress,  # sized when the model's batches are: the bar shows done / total
            should_cancel=should_cancel,
            rerun_failures=self.rerun_failures,
        )
        report = self.evaluate(run.stats, settings)
        return Calibrated(run.stats, report, settings)


def leave_a_core_to_the_ui() -> None:
    """Run torch's intra-op pool on one core fewer than it would take, so the UI thread keeps one.

    The app's torch work (calibration, measurement, plan evaluations) runs in a worker thread
    beside the UI's event loop. With every core in torch's pool, its spinning threads and the
    UI thread contend for the cores and the GIL: a what-if plan evaluation that takes 0.17 s with
    the UI idle took 1 to 8 s in the app on a 2-core machine (benchmarks/app_toggle.py). A thread
    count the user set (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``) is left alone.
    """
    import os

    import torch

    global _UI_CORE_LEFT
    if _UI_CORE_LEFT or os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return
    _UI_CORE_LEFT = True  # once per process (a second app in the same process must not take another)
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(threads - 1)


#: Whether :func:`leave_a_core_to_the_ui` has run in this process.
_UI_CORE_LEFT = False


def _setting_options(options: Namespace | None) -> dict[str, Any]:
    """The command line's detector options, as Settings.from_options takes them."""
    return {
        "detectors": _option(options, "detectors"),
        "params": _option(options, "param") or (),
        "tolerance": _option(options, "tolerance"),
        "backend": _option(options, "backend"),
        "ch_axis": _option(options, "ch_axis"),
    }


def _with_saved(given: dict[str, Any], saved: Any) -> dict[str, Any]:
    """The command line's options over the user's saved settings (an option given wins)."""
    detectors, params = saved.as_options()
    merged = dict(given)
    if merged["detectors"] is None:
        merged["detectors"] = detectors
    merged["params"] = [*params, *merged["params"]]
    if merged["ch_axis"] is None:
        merged["ch_axis"] = saved.ch_axis
    return merged


def _min_gain(options: Namespace | None, saved: Any) -> float | None:
    """``--min-gain`` when given, else the saved threshold (None: the default)."""
    given = _option(options, "min_gain")
    return given if given is not None else saved.min_gain_db


def _option(options: Namespace | None, name: str) -> Any:
    return getattr(options, name, None) if options is not None else None


@dataclass(frozen=True)
class Measured:
    """What the error analysis measured after a calibration: plain data for the panes.

    ``local`` is {fqn: {scheme: Sqnr}} (every scheme, and ``clipped``/``equalized`` where the
    advice was simulated); ``recommended`` the recommended plan, with its end-to-end SQNR.
    """

    #: Kept for plan evaluations (only used in workers); None when read back from a stats file,
    #: where the plan can be looked at but not re-evaluated (that needs the model).
    analysis: ErrorAnalysis | None
    local: Mapping[str, Mapping[str, Sqnr]]
    recommended: Plan
    recommended_sqnr: Sqnr
    probe_batches: int
    error: MeasuredError | None = None  # what severities are assessed from
    #: Read back from a stats file whose plan was edited: that plan and its SQNR (None: the
    #: recommended plan was saved).
    saved_plan: tuple[Plan, Sqnr] | None = None

    def scheme_of(self, fqn: str) -> str:
        """The recommended scheme of ``fqn``."""
        return self.recommended.modules.get(fqn, "float")


def measure(
    session: ModelSession,
    stats: Stats,
    settings: Settings,
    probe_batches: int,
    progress: Callable[[int, int | None], None],
    should_cancel: Callable[[], bool],
    min_gain_db: float | None = None,
) -> Measured:
    """Local SQNR per module and scheme on the first ``probe_batches`` batches, the recommended
    plan (schemes within ``min_gain_db`` of the best) and its end-to-end SQNR (torch work: call
    from a worker)."""
    from tui_quantreport.engine.pipeline import Pipeline
    from tui_quantreport.engine.pipeline import measure as measure_error

    assert session.loaded_model is not None and session.session is not None  # measured only with a model
    pipe = Pipeline(session.loaded_model, session.session)
    probes = pipe.probes(probe_batches)
    # a graph: a converted copy; a static range trusted from as many rows as the finding asks
    analysis = pipe.analysis(stats, probes, settings, session.target)

    def local_progress(stage: str, done: int, total: int | None) -> None:
        if stage == "local":  # the bar follows the local pass (the plan's is one pass more)
            progress(done, total)

    m = measure_error(
        analysis,
        min_gain_db=MIN_GAIN_DB if min_gain_db is None else min_gain_db,
        progress=local_progress,
        should_cancel=should_cancel,
    )
    return Measured(m.analysis, m.local, m.plan, m.plan_sqnr, len(probes), m.error)


def restored_measurement(error: MeasuredError) -> Measured:
    """The panes' view of a measured error read back from a stats file: local SQNR per scheme, the
    plan that was recommended with its end-to-end SQNR (as the live session showed them); no analysis."""
    from tui_quantreport.engine import Plan, Sqnr

    def sqnr(db: float | None, reason: str) -> Sqnr:
        return Sqnr(db) if db is not None else Sqnr(None, reason or "SQNR undefined: not measured")

    local = {
        fqn: {scheme: sqnr(db, module.reasons.get(scheme, "")) for scheme, db in module.sqnr_db.items()}
        for fqn, module in error.modules.items()
    }
    plan = Plan.from_json_data(error.plan_data)
    plan_sqnr = sqnr(error.plan_sqnr_db, error.plan_reason)
    if error.plan_origin == PLAN_EDITED:  # the saved plan was edited: the recommendation is per module
        data = dict(error.plan_data)
        data["modules"] = {
            fqn: {**entry, "scheme": error.modules[fqn].recommended_scheme or entry.get("scheme")}
            if fqn in error.modules
            else entry
            for fqn, entry in (data.get("modules") or {}).items()
        }
        data["predicted_sqnr_db"] = None
        recommended = Plan.from_json_data(data)
        unknown = Sqnr(None, "SQNR undefined: not saved (the plan in the stats file was edited)")
        return Measured(None, local, recommended, unknown, error.probe_batches, error, saved_plan=(plan, plan_sqnr))
    return Measured(None, local, plan, plan_sqnr, error.probe_batches, error)


def restored_sensitivity(error: MeasuredError | None) -> dict[str, Sqnr] | None:
    """The one-at-a-time sensitivity kept in a measured error, when it was measured."""
    from tui_quantreport.engine import Sqnr

    if error is None or not error.sensitivity_measured:
        return None
    return {
        fqn: Sqnr(m.sensitivity_db) if m.sensitivity_db is not None else Sqnr(None, m.reasons.get("sensitivity", ""))
        for fqn, m in error.modules.items()
    }


def recommend(measured: Measured, min_gain_db: float, should_cancel: Callable[[], bool]) -> Measured:
    """``measured`` with the recommended plan for a new ``min_gain_db`` (the cheapest scheme within
    it of the best, from the kept local SQNR) and that plan's end-to-end SQNR: no new measurement,
    one plan evaluation when the plan changed (torch work: call from a worker)."""
    from dataclasses import replace

    if measured.analysis is None:
        return measured  # read back from a stats file: the plan stays the one that was saved
    plan = measured.analysis.recommended_plan(min_gain_db)
    if dict(plan.modules) == dict(measured.recommended.modules):
        return measured
    sqnr = measured.analysis.plan_sqnr(plan, should_cancel)
    plan = plan.with_prediction(sqnr.db, measured.probe_batches)
    error = measured.error
    if error is not None:  # the report's plan (exports) follows the recommendation too
        error = replace(
            error, plan=dict(plan.modules), plan_sqnr_db=sqnr.db, plan_reason=sqnr.reason, plan_data=plan.to_json_data()
        )
    return replace(measured, recommended=plan, recommended_sqnr=sqnr, error=error)


def adopt_plan(measured: Measured, data: Any, source: str) -> Plan:
    """The plan ``data`` (a plan file's JSON) as a plan of this measurement: the recommended plan
    with each module's scheme set as ``data`` says (modules it does not name keep their
    recommended scheme; activation ranges stay this calibration's). Raises
    :class:`~tui_quantreport.engine.errors.UserError` (one line naming ``source``) when it is not
    a plan, was made for another model, or names modules this model lacks."""
    from tui_quantreport.engine import Plan
    from tui_quantreport.engine.errors import UserError

    loaded = Plan.from_json_data(data, source=source)
    recommended = measured.recommended
    loaded.check_model(recommended.model_class, recommended.fingerprint)
    unknown = [fqn for fqn in loaded.modules if fqn not in recommended.modules]
    if unknown:
        shown = ", ".join(repr(f) for f in unknown[:3]) + (" …" if len(unknown) > 3 else "")
        raise UserError(f"{source} names {len(unknown):,} module(s) this model has no quantizable module for: {shown}")
    plan = recommended
    for scheme in sorted(set(loaded.modules.values())):
        plan = plan.with_scheme([f for f, s in loaded.modules.items() if s == scheme], scheme)
    return plan.with_prediction(None, measured.probe_batches)
