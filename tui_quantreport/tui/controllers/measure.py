"""The measurement workers: the measured error, what limits the plan, the SQNR along depth, sensitivity and the frontier.

A part of :class:`~tui_quantreport.tui.main_screen.MainScreen` (its state is in
:class:`~tui_quantreport.tui.main_state.MainState`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from textual import on, work
from textual.worker import get_current_worker

from tui_quantreport.tui import heap
from tui_quantreport.tui.dialogs.confirm_dialog import ConfirmDialog
from tui_quantreport.tui.messages import (
    FrontierMeasured,
    MeasurementFailed,
    MeasurementFinished,
    SensitivityMeasured,
    SensitivityRunEnded,
    SensitivityStep,
    WorkProgress,
)
from tui_quantreport.tui.model_session import (
    Measured,
    measure,
)
from tui_quantreport.tui.panes.calibration_bar import CalibrationBar
from tui_quantreport.tui.panes.sqnr_panel import FLOAT, sqnr_text
from tui_quantreport.tui.screens.frontier_screen import FrontierScreen

if TYPE_CHECKING:
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.quantsim import Sqnr
    from tui_quantreport.engine.settings import Settings
    from tui_quantreport.engine.stats import Stats


from tui_quantreport.tui.main_state import (
    MainState,
    calibrated_on,
)
from tui_quantreport.tui.workers import run_in_thread, said


class MeasureController(MainState):
    """The measurement workers: the measured error, what limits the plan, the SQNR along depth, sensitivity and the frontier."""

    def start_measurement(self) -> None:
        """Measure local SQNR per module and scheme, the recommended plan and its SQNR, in a worker."""
        if (
            self.model is None
            or self.stats is None
            or self.settings is None
            or not self.stats.batches
            or self.probe_batches <= 0
        ):
            return
        if (why := self.model.measurement_unavailable) is not None:  # a graph: said, never attempted
            batches = self.stats.batches
            self.query_one(CalibrationBar).stop(f"{calibrated_on(batches)}. {why}", "warning")
            return
        self._measure_cancel.clear()
        self.measuring = f"Measuring the error on {self.probe_batches} probe batches…"
        self.query_one(CalibrationBar).start(self.measuring, unit="passes")
        self._measure(self.stats, self.settings)

    def action_measure(self) -> None:
        """Measure the error of the kept statistics again (a cancelled measurement is not lost)."""
        if self.measured is not None or self.measuring:
            return
        self.start_measurement()

    @work(thread=True, exclusive=True, group="measure", exit_on_error=False, description="measure SQNR")
    def _measure(self, stats: Stats, settings: Settings) -> None:
        worker = get_current_worker()
        model = self.model
        if model is None:
            return

        def progress(done: int, total: int | None) -> None:
            self.post_message(WorkProgress(done, total))

        def run() -> MeasurementFinished:
            return MeasurementFinished(
                measure(
                    model,
                    stats,
                    settings,
                    self.probe_batches,
                    progress,
                    lambda: self._measure_cancel.is_set() or worker.is_cancelled,
                    self.min_gain_db,
                )
            )

        run_in_thread(  # the simulation of the user's model can fail in many ways
            self,
            run,
            lambda exc: MeasurementFailed(said(exc)),
            lambda: MeasurementFailed(
                "Measurement cancelled: r measures again (no new calibration needed).", cancelled=True
            ),
        )

    @on(WorkProgress)
    def _work_progress(self, message: WorkProgress) -> None:
        self.query_one(CalibrationBar).advance(message.done, message.total)

    @on(MeasurementFinished)
    def _measurement_finished(self, message: MeasurementFinished) -> None:
        measured = message.measured
        self.measuring = ""
        self.sensitivity = None
        self.measured = measured
        self.plan = measured.recommended
        self.plan_sqnr = measured.recommended_sqnr
        self.plan_pending = False
        self._undo.clear()
        self._redo.clear()
        if measured.error is not None:
            self._reevaluate()  # the same findings, now with their measured severity
        batches = self.report.batches if self.report is not None else 0
        self.query_one(CalibrationBar).stop(
            f"{calibrated_on(batches)}; recommended plan: {sqnr_text(measured.recommended_sqnr)} end to end."
        )
        self._adopt_waiting_plan(measured)
        heap.settled()  # before the next worker starts: the measurement's objects live until replaced
        self.request_limit()

    @on(MeasurementFailed)
    def _measurement_failed(self, message: MeasurementFailed) -> None:
        self.measuring = ""
        self._ask_after_timing = False
        if message.cancelled and self._sens_done and self._sens_plan is not None:
            done, total = len(self._sens_done), len(self._sens_plan.quantized)
            if done < total:
                message = MeasurementFailed(
                    f"{message.text} {done:,} of {total:,} modules measured are kept: S resumes.", cancelled=True
                )
        self.query_one(CalibrationBar).stop(message.text, "warning" if message.cancelled else "error")
        if not message.cancelled:
            self.notify(message.text, title="Measurement failed", severity="error", markup=False)

    def request_limit(self) -> None:
        """Measure what keeping the module that limits the plan in float gives (one plan evaluation,
        in a worker), for the root's sentence."""
        from tui_quantreport.engine import limiting_candidates

        plan, measured = self.plan, self.measured
        if plan is None or measured is None or measured.analysis is None or plan is self._limit_plan:
            return
        self._limit_plan = plan
        local = {f: {k: v.db for k, v in per.items()} for f, per in measured.local.items()}
        sensitivity = {f: s.db for f, s in self.sensitivity.items()} if self.sensitivity else None
        candidates = limiting_candidates(plan.modules, local, sensitivity)
        self.limit = None
        if candidates:
            self._measure_limit(measured, plan, candidates)

    @work(thread=True, exclusive=True, group="limit", exit_on_error=False, description="what limits the plan")
    def _measure_limit(self, measured: Measured, plan: Plan, candidates: list[str]) -> None:
        """Keep each candidate in float in turn (one plan evaluation each); the one that gains most
        limits the plan."""
        worker = get_current_worker()
        if measured.analysis is None:
            return
        analysis = measured.analysis

        def run() -> None:
            best: tuple[str, Sqnr] | None = None
            for fqn in candidates:
                sqnr = analysis.plan_sqnr(plan.with_scheme([fqn], FLOAT), lambda: worker.is_cancelled)
                if best is None or sqnr.value > best[1].value:
                    best = (fqn, sqnr)
            if best is not None:
                self.app.call_from_thread(self._limit_measured, plan, *best)

        # cancelled by a newer plan, or a simulation failure the plan itself reports: nothing to say
        run_in_thread(self, run, lambda exc: None)

    def _limit_measured(self, plan: Plan, fqn: str, sqnr: Sqnr) -> None:
        if plan is self.plan:
            self.limit = (fqn, sqnr)

    def request_depth(self) -> None:
        """Measure the SQNR along depth of the plan on screen (two passes, in a worker), once per plan."""
        plan, measured = self.plan, self.measured
        if plan is None or measured is None or measured.analysis is None or plan is self._depth_plan:
            return
        self._depth_plan = plan
        self._measure_depth(measured, plan)

    @work(thread=True, exclusive=True, group="depth", exit_on_error=False, description="SQNR along depth")
    def _measure_depth(self, measured: Measured, plan: Plan) -> None:
        from tui_quantreport.engine import depth_sqnr

        worker = get_current_worker()
        analysis = measured.analysis
        if analysis is None:
            return

        def run() -> None:
            depth = depth_sqnr(analysis, plan, lambda: worker.is_cancelled)
            self.app.call_from_thread(self._depth_measured, plan, depth)

        run_in_thread(self, run, self.said_from_thread("SQNR along depth"))

    def _depth_measured(self, plan: Plan, depth: Mapping[str, Sqnr]) -> None:
        if plan is self.plan:
            self.depth = depth

    def action_sensitivity(self) -> None:
        """One-at-a-time sensitivity of the plan's quantized modules: times the first module, says
        what the rest will cost and asks first; then runs in a worker with progress and an ETA
        (Esc cancels; what was measured is kept, and S again resumes)."""
        plan, measured = self.plan, self.measured
        if plan is None or measured is None or self.measuring:
            return
        if measured.analysis is None:
            self._needs_the_model("Sensitivity")
            return
        if not plan.quantized:
            self.notify("The plan quantizes no module: nothing to measure the sensitivity of.")
            return
        if self._sens_plan != plan:  # measured for another plan: start afresh
            self._sens_plan, self._sens_done, self._sens_seconds = plan, {}, []
        todo = [fqn for fqn in plan.quantized if fqn not in self._sens_done]
        if not todo:
            self.post_message(SensitivityMeasured(dict(self._sens_done)))
            return
        if not self._sens_seconds:  # time the first module, then ask with an estimate from it
            self._start_sensitivity(measured, plan, todo[:1], "Timing the sensitivity of the first module…")
            self._ask_after_timing = True
            return
        self._ask_sensitivity(measured, plan)

    def _ask_sensitivity(self, measured: Measured, plan: Plan) -> None:
        todo = [fqn for fqn in plan.quantized if fqn not in self._sens_done]
        if not todo:
            self.post_message(SensitivityMeasured(dict(self._sens_done)))
            return

        def start(go: bool | None) -> None:
            if not go or self.measuring or self.plan is not plan or self.measured is not measured:
                return
            self._start_sensitivity(measured, plan, todo, f"Sensitivity of {len(plan.quantized):,} modules…")

        lines = sensitivity_cost(measured, plan, len(self._sens_done), self._sens_seconds)
        self.app.push_screen(ConfirmDialog("Measure sensitivity?", lines), start)

    def _start_sensitivity(self, measured: Measured, plan: Plan, fqns: list[str], text: str) -> None:
        self._measure_cancel.clear()
        self.measuring = text
        bar = self.query_one(CalibrationBar)
        bar.start(text, unit="modules")
        bar.advance(len(self._sens_done), len(plan.quantized))
        self._sensitivity(measured, plan, fqns)

    @work(thread=True, exclusive=True, group="measure", exit_on_error=False, description="sensitivity")
    def _sensitivity(self, measured: Measured, plan: Plan, fqns: list[str]) -> None:
        """Measure the sensitivity of ``fqns`` one by one; each result is posted as it comes (kept
        when cancelled)."""
        worker = get_current_worker()
        analysis = measured.analysis
        if analysis is None:
            return
        quantized = plan.quantized

        def run() -> SensitivityRunEnded:
            for fqn in fqns:
                alone = plan.with_scheme([f for f in quantized if f != fqn], FLOAT)
                started = time.perf_counter()
                result = analysis.sensitivity(
                    alone, should_cancel=lambda: self._measure_cancel.is_set() or worker.is_cancelled
                )
                self.post_message(SensitivityStep(plan, fqn, result[fqn], time.perf_counter() - started))
            return SensitivityRunEnded(plan)

        run_in_thread(
            self,
            run,
            lambda exc: MeasurementFailed(said(exc)),
            lambda: MeasurementFailed("Sensitivity cancelled.", cancelled=True),
        )

    @on(SensitivityStep)
    def _sensitivity_step(self, message: SensitivityStep) -> None:
        if message.plan != self._sens_plan:
            return
        self._sens_done[message.fqn] = message.sqnr
        self._sens_seconds.append(message.seconds)
        total = len(message.plan.quantized)
        done = len(self._sens_done)
        left = (total - done) * (sum(self._sens_seconds) / len(self._sens_seconds))
        self.query_one(CalibrationBar).advance(done, total, eta=left if done < total else None)

    @on(SensitivityRunEnded)
    def _sensitivity_run_ended(self, message: SensitivityRunEnded) -> None:
        self.measuring = ""
        plan, measured = self.plan, self.measured
        if message.plan != self._sens_plan or plan is None or measured is None:
            return
        if self._ask_after_timing:  # the first module was timed: now ask about the rest
            self._ask_after_timing = False
            self.query_one(CalibrationBar).stop(
                f"The first module took {seconds_text(self._sens_seconds[0])}; Enter measures the rest."
            )
            if plan == message.plan:
                self._ask_sensitivity(measured, plan)
            return
        if all(fqn in self._sens_done for fqn in message.plan.quantized):
            self.post_message(SensitivityMeasured({f: self._sens_done[f] for f in message.plan.quantized}))

    @on(SensitivityMeasured)
    def _sensitivity_measured(self, message: SensitivityMeasured) -> None:
        self.measuring = ""
        self.sensitivity = message.sensitivity
        self._limit_plan = None  # the most sensitive module is the one that limits the plan now
        self.request_limit()
        worst = sorted(message.sensitivity.items(), key=lambda item: item[1].value)[:3]
        self.query_one(CalibrationBar).stop(
            "Sensitivity measured; most sensitive: " + ", ".join(f"{f} ({sqnr_text(s)})" for f, s in worst)
        )

    def action_frontier(self) -> None:
        """The planner's SQNR-vs-size frontier (measured once per measurement, in a worker with
        progress; Esc cancels, keeping what was measured); then the plot, where Enter picks a plan."""
        measured = self.measured
        if measured is None or self.measuring:
            return
        if measured.analysis is None:
            self._needs_the_model("The frontier")
            return
        if self._frontier is not None and self._frontier.measured is measured:
            self._show_frontier(self._frontier)
            return
        self._measure_cancel.clear()
        self.measuring = "Frontier: sensitivity per module and scheme…"
        self.query_one(CalibrationBar).start(self.measuring, unit="passes")
        self._measure_frontier(measured)

    @work(thread=True, exclusive=True, group="measure", exit_on_error=False, description="frontier")
    def _measure_frontier(self, measured: Measured) -> None:
        from tui_quantreport.engine import Planner

        worker = get_current_worker()
        if measured.analysis is None:
            return
        planner = self._planner[1] if self._planner is not None and self._planner[0] is measured else None
        if planner is None:  # kept: a cancelled run's passes are not measured again
            planner = Planner(measured.analysis)
            self._planner = (measured, planner)

        def progress(stage: str, done: int, total: int | None) -> None:
            self.post_message(WorkProgress(done, total))

        def run() -> FrontierMeasured:
            should_cancel = lambda: self._measure_cancel.is_set() or worker.is_cancelled  # noqa: E731
            return FrontierMeasured(measured, planner.run(None, progress=progress, should_cancel=should_cancel))

        run_in_thread(
            self,
            run,
            lambda exc: MeasurementFailed(said(exc)),
            lambda: MeasurementFailed(
                f"Frontier cancelled; {len(planner.sens.results):,} sensitivity passes kept for next time.",
                cancelled=True,
            ),
        )

    @on(FrontierMeasured)
    def _frontier_measured(self, message: FrontierMeasured) -> None:
        self.measuring = ""
        if message.measured is not self.measured:
            return
        self._frontier = message
        self.query_one(CalibrationBar).stop(f"Frontier measured: {len(message.rows):,} plans.")
        self._show_frontier(message)

    def _show_frontier(self, frontier: FrontierMeasured) -> None:
        def picked(row) -> None:  # type: ignore[no-untyped-def]
            if row is None or self._frontier is not frontier or self.measured is not frontier.measured:
                return
            point = frontier.point(row)
            if point is None:
                return
            self.set_plan(point.plan)
            warning = frontier.warning(point)
            if warning:
                self.notify(warning, title="Low end-to-end SQNR", severity="warning", markup=False)

        self.app.push_screen(FrontierScreen(frontier.rows, frontier.notes), picked)


def sensitivity_cost(measured: Measured, plan: Plan, done: int = 0, seconds: Sequence[float] = ()) -> list[str]:
    """What one-at-a-time sensitivity of ``plan`` will cost, in words: forward passes over the probe
    batches, what is kept from a cancelled run (``done`` modules), and seconds estimated from the
    modules already timed (``seconds``: each one's duration)."""
    modules = len(plan.quantized)
    probes = measured.probe_batches
    lines = [
        f"Each of the plan's {modules:,} quantized modules is quantized alone and the model's output "
        f"compared with the float model's: {modules:,} forward passes over the {probes:,} probe "
        f"batch{'es' if probes != 1 else ''}.",
    ]
    left = modules - done
    if done:
        lines.append(f"{done:,} of {modules:,} are measured already: {left:,} to go.")
    if seconds:
        each = sum(seconds) / len(seconds)
        timed = f"the {len(seconds):,} modules measured so far" if len(seconds) > 1 else "the first module"
        lines.append(
            f"Estimate: about {seconds_text(each * left)} for the {left:,} left ({seconds_text(each)} per module, "
            f"timed on {timed}; a busy machine makes it longer)."
        )
    else:
        lines.append("Estimate: unknown (no module has been timed yet).")
    lines += ["", "It runs in the background with progress; Esc cancels it and keeps what was measured (S resumes)."]
    lines.append("Enter starts, Esc closes this.")
    return lines


def seconds_text(seconds: float) -> str:
    """``0.42 s``, ``12 s``, ``3 min 20 s``."""
    if seconds < 10:
        return f"{seconds:.2g} s" if seconds < 1 else f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"
