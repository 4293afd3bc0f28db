"""Loading the model, judging the stats with the settings, the user's settings and the calibration.

A part of :class:`~tui_quantreport.tui.main_screen.MainScreen` (its state is in
:class:`~tui_quantreport.tui.main_state.MainState`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from textual import on, work
from textual.worker import get_current_worker

from tui_quantreport.engine.errors import UserError
from tui_quantreport.tui import heap, user_settings
from tui_quantreport.tui.messages import (
    CalibrateRequested,
    CalibrationFailed,
    CalibrationFinished,
    CalibrationProgress,
    CalibrationStopped,
    DetectorToggled,
    ModelLoaded,
    ModelLoadFailed,
    ParamChanged,
    RecommendationChanged,
    ReportUpdated,
    TreePreviewed,
)
from tui_quantreport.tui.model_session import (
    Measured,
    recommend,
    restored_sensitivity,
)
from tui_quantreport.tui.panes.calibration_bar import CalibrationBar
from tui_quantreport.tui.panes.detector_sidebar import MIN_GAIN
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.screens.error_screen import ErrorScreen

if TYPE_CHECKING:
    from tui_quantreport.engine.report import Measured as MeasuredError
    from tui_quantreport.engine.report import Report
    from tui_quantreport.engine.settings import Settings
    from tui_quantreport.engine.stats import Stats


from tui_quantreport.tui.main_state import (
    LOAD_POLL,
    NOT_CALIBRATED,
    MainState,
    calibrated_on,
)
from tui_quantreport.tui.workers import run_in_thread, said


class SessionController(MainState):
    """Loading the model, judging the stats with the settings, the user's settings and the calibration."""

    def watch_settings(self, settings: Settings | None) -> None:
        if settings is not None and self.loaded:
            self.save_user_settings()

    def watch_min_gain_db(self) -> None:
        if self.loaded:
            self.save_user_settings()

    def save_user_settings(self) -> None:
        """Remember the theme, the enabled detectors and the changed parameters for next time."""
        settings = self.settings
        if settings is None:
            return
        params = {
            d.name: {
                p.name: settings.params[d.name][p.name]
                for p in d.params
                if settings.params[d.name][p.name] != p.default
            }
            for d in self.detectors
        }
        enabled = None if list(settings.enabled) == [d.name for d in self.detectors] else tuple(settings.enabled)
        try:
            user_settings.save(
                user_settings.UserSettings(
                    theme=self.app.theme,
                    enabled=enabled,
                    params={k: v for k, v in params.items() if v},
                    ch_axis=settings.ch_axis,
                    min_gain_db=self.min_gain_db if self.min_gain_db != MIN_GAIN.default else None,
                    target=self.target if self.target != self._default_target else None,
                )
            )
        except OSError as exc:
            self.notify(f"Settings not saved: {exc}", severity="warning", markup=False)

    def reset_user_settings(self) -> None:
        """Forget the saved settings and return to the defaults (this session too)."""
        user_settings.reset()
        if self.settings is not None:
            self.settings = type(self.settings)()
            self._reevaluate()
        self.set_min_gain(MIN_GAIN.default)
        self.set_target(self._default_target)
        self.app.theme = "textual-dark"
        user_settings.reset()
        self.notify("Saved settings reset to the defaults.")

    def watch_report(self, report: Report | None) -> None:
        # n / N walk the findings in the engine's order (most important first), not tree order.
        self._recommended = [fqn for fqn, _ in report.ranked_modules()] if report is not None else []

    @work(thread=True, exclusive=True, group="load", exit_on_error=False, description="load the model")
    def _load(self) -> None:
        """Wait for the model started with the app: built, with its session, evaluated uncalibrated."""
        from concurrent.futures import TimeoutError as StillLoading

        from tui_quantreport.engine.errors import ParamError

        worker = get_current_worker()

        def wait() -> ModelLoaded | None:
            while True:  # quitting cancels this worker: it must not hold the exit until torch is imported
                try:
                    return ModelLoaded(self._loading.result(timeout=LOAD_POLL))
                except StillLoading:
                    if worker.is_cancelled:
                        return None

        def failed(exc: BaseException) -> ModelLoadFailed:
            if isinstance(exc, UserError):  # an option (ParamError) is said as the command line says it
                return ModelLoadFailed(str(exc), bad_option=isinstance(exc, ParamError))
            return ModelLoadFailed(f"{self.spec}: {said(exc)}")  # the user's code can raise anything

        run_in_thread(self, wait, failed)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False, description="read the kept tree")
    def _preview_tree(self) -> None:
        """Show the tree kept from the last run while the model loads (torch-free, a few ms)."""
        from tui_quantreport.engine import read_launch_tree

        report = read_launch_tree(self.spec)
        if report is not None:
            self.post_message(TreePreviewed(report))

    @on(TreePreviewed)
    def _tree_previewed(self, message: TreePreviewed) -> None:
        if not self.loaded and not self.load_failed and self.report is None:
            self.query_one(ModuleTree).report = message.report

    @work(thread=True, exclusive=True, group="keep-tree", exit_on_error=False, description="keep the tree")
    def _keep_tree(self, report: Report) -> None:
        """Keep this model's tree for the next launch (see engine ``launch_tree``)."""
        from tui_quantreport.engine import write_launch_tree

        write_launch_tree(self.spec, report)

    @on(ModelLoaded)
    def _model_loaded(self, message: ModelLoaded) -> None:
        loaded = message.loaded
        self._keep_tree(loaded.report)
        self.model, self.stats = loaded.session, loaded.stats
        self.detectors = loaded.detectors
        self.detector_index = {detector.name: index for index, detector in enumerate(loaded.detectors)}
        if loaded.min_gain_db is not None:
            self.min_gain_db = loaded.min_gain_db
        self.choose_target(loaded)  # before the settings: the sidebar fills in when they arrive
        self.settings = loaded.settings
        self.report = loaded.report
        if loaded.measured is not None:  # read back from a stats file: shown, not re-evaluated
            self.measured = loaded.measured
            self.plan, self.plan_sqnr = loaded.measured.saved_plan or (
                loaded.measured.recommended,
                loaded.measured.recommended_sqnr,
            )
            self.sensitivity = restored_sensitivity(loaded.measured.error)
        if self.detail_fqn is None:
            self.detail_fqn = self.query_one(ModuleTree).current_fqn
        self.query_one(CalibrationBar).say(loaded.status or NOT_CALIBRATED)
        self.loaded = True
        heap.settled()  # the model and its tree live for the session
        if loaded.notice:
            self.notify(loaded.notice, title="Settings", severity="warning", markup=False)
        if self._calibrate_when_loaded:
            self.action_calibrate()

    @on(ModelLoadFailed)
    def _model_failed(self, message: ModelLoadFailed) -> None:
        if message.bad_option:
            self.app.error_line = message.text  # type: ignore[attr-defined]
            self.app.exit(return_code=2)
            return
        self.load_failed = True
        self.refresh_bindings()
        self.app.push_screen(ErrorScreen("The model could not be loaded", message.text))

    def _reevaluate(self) -> None:
        """Judge the kept stats with the current settings, off the UI thread."""
        if self.model is None or self.stats is None or self.settings is None:
            return
        self._generation += 1
        error = self.measured.error if self.measured is not None else None
        self._evaluate(self.stats, self.settings, self._generation, error, self.min_gain_db)

    @work(thread=True, exclusive=True, group="evaluate", exit_on_error=False, description="evaluate")
    def _evaluate(
        self,
        stats: Stats,
        settings: Settings,
        generation: int,
        error: MeasuredError | None = None,
        min_gain_db: float | None = None,
    ) -> None:
        model = self.model
        if model is None:
            return
        run_in_thread(  # a detector bug must not take the app down
            self,
            lambda: ReportUpdated(model.evaluate(stats, settings, error, min_gain_db), generation),
            self.said_from_thread("Evaluation failed"),
        )

    @on(ReportUpdated)
    def _report_updated(self, message: ReportUpdated) -> None:
        if message.generation == self._generation:
            self.report = message.report

    def set_min_gain(self, min_gain_db: float) -> None:
        """Re-judge the kept measurement with a new minimum gain: severities, badges, the summary,
        the n / N order and (unless the user edited the plan) the recommended plan follow. Off the
        UI thread; nothing is measured again."""
        if min_gain_db == self.min_gain_db:
            return
        self.min_gain_db = min_gain_db
        report = self.report
        if report is None or report.measured is None:
            return  # nothing measured yet: the next measurement uses the new threshold
        self._generation += 1
        self._gain_generation += 1
        measured = self.measured
        follow = measured is not None and self.plan is not None and self.plan == measured.recommended
        if follow:
            self.plan_pending = True
        self._reassess(report, measured if follow else None, min_gain_db, self._generation, self._gain_generation)

    @work(thread=True, exclusive=True, group="reassess", exit_on_error=False, description="re-assess severities")
    def _reassess(
        self, report: Report, measured: Measured | None, min_gain_db: float, generation: int, gain_generation: int
    ) -> None:
        from tui_quantreport.engine import assess

        worker = get_current_worker()

        def reassess() -> RecommendationChanged | None:
            self.post_message(ReportUpdated(assess(report, report.measured, min_gain_db), generation))
            if measured is None:
                return None
            return RecommendationChanged(recommend(measured, min_gain_db, lambda: worker.is_cancelled), gain_generation)

        def failed(exc: BaseException) -> RecommendationChanged | None:  # a bug must not take the app down
            self.said_from_thread("Re-assessing failed")(exc)
            return RecommendationChanged(measured, gain_generation) if measured is not None else None

        run_in_thread(self, reassess, failed)  # cancelled: a newer threshold replaced this one

    @on(RecommendationChanged)
    def _recommendation_changed(self, message: RecommendationChanged) -> None:
        measured = self.measured
        if message.generation != self._gain_generation or measured is None:
            return  # a newer threshold, or a new measurement, replaced this one
        if self.plan == measured.recommended:  # still not edited by the user: follow the recommendation
            self.measured = message.measured
            self.plan = message.measured.recommended
            self.plan_sqnr = message.measured.recommended_sqnr
        else:
            self.measured = message.measured
        self.plan_pending = False
        if message.measured is not measured and message.measured.error is not None:
            self._reevaluate()  # the report's recommended plan (what exports write) follows

    @on(ParamChanged)
    def _param_changed(self, message: ParamChanged) -> None:
        if self.settings is None:
            return
        if not message.detector:
            if message.name == "min_gain_db":
                self.set_min_gain(message.value)
                return
            if message.name == "batches":
                self.max_batches = message.value
                return
            if message.name == "target":
                self.set_target(message.value)
                return
            if message.name == "ch_axis":
                self.settings = replace(self.settings, ch_axis=message.value)
        else:
            try:
                self.settings = self.settings.with_param(message.detector, message.name, message.value)
            except UserError as exc:
                self.notify(str(exc), title="Parameter not applied", severity="error", markup=False)
                return
        self._reevaluate()

    @on(DetectorToggled)
    def _detector_toggled(self, message: DetectorToggled) -> None:
        self.set_detector_enabled(message.detector, message.enabled)

    def set_detector_enabled(self, detector: str, enabled: bool) -> None:
        """Turn ``detector`` on or off; its badges and findings follow from the kept stats."""
        if self.settings is None or (detector in self.settings.enabled) == enabled:
            return
        self.settings = self.settings.with_enabled(detector, enabled)
        self._reevaluate()

    def action_calibrate(self) -> None:
        """Run the calibration batches through the model in a worker thread."""
        if self.model is None or self.settings is None:
            self._calibrate_when_loaded = True
            self.query_one(CalibrationBar).say("Calibration starts as soon as the model has loaded…")
            return
        if self.model.unavailable is not None:
            self.notify(f"Calibration is unavailable: {self.model.unavailable}", markup=False)
            return
        if self.calibrating:
            self.notify("Already calibrating: Esc cancels.")
            return
        self.calibrating = True
        self._cancel.clear()
        heap.unsettled()  # the old statistics and measurement are replaced: scanned again
        self.query_one(CalibrationBar).start("Calibrating: running the first batch…")
        self._calibrate(self.settings, self.max_batches)

    @on(CalibrateRequested)
    def _calibrate_requested(self) -> None:
        self.action_calibrate()

    @work(thread=True, exclusive=True, group="calibrate", exit_on_error=False, description="calibrate")
    def _calibrate(self, settings: Settings, max_batches: int | None) -> None:
        worker = get_current_worker()
        model = self.model
        if model is None:
            return

        def calibrate() -> CalibrationFinished:
            return CalibrationFinished(
                model.calibrate(
                    settings,
                    max_batches,
                    progress=self.post_calibration_progress,
                    should_cancel=lambda: self._cancel.is_set() or worker.is_cancelled,
                )
            )

        run_in_thread(self, calibrate, lambda exc: CalibrationFailed(said(exc)), CalibrationStopped)

    @on(CalibrationProgress)
    def _calibration_progress(self, message: CalibrationProgress) -> None:
        bar = self.query_one(CalibrationBar)
        bar.advance(message.done, message.total)
        if message.done == 1 and self.calibrating:  # a verify or export keeps its own words
            bar.say("Calibrating…")
        if message.total is not None and message.done == message.total and not self.applying:
            bar.say("All batches seen; judging the modules…")

    @on(CalibrationFinished)
    def _calibration_finished(self, message: CalibrationFinished) -> None:
        calibrated = message.calibrated
        self.calibrating = False
        self.stats = calibrated.stats
        self.measured, self.plan, self.plan_sqnr, self.sensitivity = None, None, None, None  # of the old stats
        self._frontier = None
        batches = calibrated.stats.batches
        self.query_one(CalibrationBar).stop(f"{calibrated_on(batches)}.")
        self.report = calibrated.report
        if calibrated.settings is not self.settings:  # changed while calibrating
            self._reevaluate()
        self.start_measurement()

    @on(CalibrationFailed)
    def _calibration_failed(self, message: CalibrationFailed) -> None:
        self.calibrating = False
        self.query_one(CalibrationBar).stop(f"Calibration failed: {message.text}  {self._kept()}", "error")
        self.notify(message.text, title="Calibration failed", severity="error", timeout=10, markup=False)

    @on(CalibrationStopped)
    def _calibration_stopped(self) -> None:
        self.calibrating = False
        self.query_one(CalibrationBar).stop(f"Calibration cancelled.  {self._kept()}", "warning")

    def _kept(self) -> str:
        batches = self.report.batches if self.report is not None else 0
        if not batches:
            return "Nothing was calibrated yet: press c to try again."
        return f"The previous results ({batches:,} batches) are still shown."

    def action_cancel_calibration(self) -> None:
        """Stop the running calibration (or plan verification/export) between batches (the previous
        results stay), or the running measurement."""
        if self.calibrating or self.applying:
            self._cancel.set()
            self.query_one(CalibrationBar).say("Cancelling after the current batch…", "warning")
        elif self.measuring:
            self._measure_cancel.set()
            self.query_one(CalibrationBar).say("Cancelling the measurement…", "warning")

    def cancel_work(self) -> None:
        """Ask every running worker to stop at its next check (used when quitting)."""
        self._cancel.set()
        self._measure_cancel.set()
        for worker in self.workers:
            worker.cancel()
