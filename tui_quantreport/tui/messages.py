"""Every custom message of the app, in one place.

Messages from worker threads (loading, calibrating, evaluating) carry plain
engine data (:class:`~tui_quantreport.engine.report.Report`, the immutable
stats snapshot, settings); messages from widgets carry what the user asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

from tui_quantreport.engine import PREDICTION_WORDS, FrontierRow, frontier_rows
from tui_quantreport.engine.report import Report
from tui_quantreport.tui.model_session import Calibrated, Loaded, Measured

if TYPE_CHECKING:  # engine types for type checkers only (importing quantsim loads torch)
    from collections.abc import Mapping

    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.quantsim import Sqnr
    from tui_quantreport.engine.quantsim.planner import PlannerResult, PlanPoint

# Worker -> app ---------------------------------------------------------------


class ModelLoaded(Message):
    """The model is built and instrumented: its session, uncalibrated report, settings, detectors."""

    def __init__(self, loaded: Loaded) -> None:
        super().__init__()
        self.loaded = loaded


class TreePreviewed(Message):
    """The module tree kept from the last run of this model (engine ``launch_tree``), read before
    torch is imported: an uncalibrated report with no detectors, shown until the model loads."""

    def __init__(self, report: Report) -> None:
        super().__init__()
        self.report = report


class ModelLoadFailed(Message):
    """Loading or building the model failed; ``text`` says why in one sentence."""

    def __init__(self, text: str, bad_option: bool = False) -> None:
        super().__init__()
        self.text = text
        #: The command line's options were wrong (not the model): the app exits with the line.
        self.bad_option = bad_option


class CalibrationProgress(Message):
    """``done`` batches of ``total`` (None when unknown) have run."""

    def __init__(self, done: int, total: int | None) -> None:
        super().__init__()
        self.done = done
        self.total = total


class CalibrationFinished(Message):
    """A calibration completed: new stats, and the report evaluated with the settings it ran with."""

    def __init__(self, calibrated: Calibrated) -> None:
        super().__init__()
        self.calibrated = calibrated


class CalibrationFailed(Message):
    """The model rejected a batch (or the data could not be read); ``text`` says which and why."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class CalibrationStopped(Message):
    """The user cancelled a calibration; the previous results stay."""


class ReportUpdated(Message):
    """A re-evaluation with new settings finished; ``generation`` orders concurrent ones."""

    def __init__(self, report: Report, generation: int) -> None:
        super().__init__()
        self.report = report
        self.generation = generation


# Widgets -> app --------------------------------------------------------------


class ModuleHighlighted(Message):
    """The tree's cursor moved to module ``fqn`` ("" is the model itself)."""

    def __init__(self, fqn: str) -> None:
        super().__init__()
        self.fqn = fqn


class DetectorToggled(Message):
    """The user enabled or disabled detector ``detector``."""

    def __init__(self, detector: str, enabled: bool) -> None:
        super().__init__()
        self.detector = detector
        self.enabled = enabled


class ParamChanged(Message):
    """A validated new value for parameter ``name`` of ``detector``.

    ``detector`` is empty for the app's own settings (``ch_axis``, ``batches``).
    """

    def __init__(self, detector: str, name: str, value: Any) -> None:
        super().__init__()
        self.detector = detector
        self.name = name
        self.value = value


class CalibrateRequested(Message):
    """The user pressed the sidebar's Calibrate button."""


class FilterChanged(Message):
    """The tree filter's text changed ("" shows every module)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class FilterClosed(Message):
    """The user left the filter box (Escape clears it, Enter keeps it)."""

    def __init__(self, cleared: bool) -> None:
        super().__init__()
        self.cleared = cleared


# Measured error (issue 7) ---------------------------------------------------


class WorkProgress(Message):
    """``done`` of ``total`` steps of a measurement (probe passes, or modules for sensitivity)."""

    def __init__(self, done: int, total: int | None) -> None:
        super().__init__()
        self.done = done
        self.total = total


class MeasurementFinished(Message):
    """Local SQNR, the recommended plan and its end-to-end SQNR were measured."""

    def __init__(self, measured: Measured) -> None:
        super().__init__()
        self.measured = measured


class MeasurementFailed(Message):
    """A measurement failed or was cancelled; ``text`` says which and why."""

    def __init__(self, text: str, cancelled: bool = False) -> None:
        super().__init__()
        self.text = text
        self.cancelled = cancelled


class PlanEvaluated(Message):
    """The end-to-end SQNR of ``plan`` (an engine Plan) was computed."""

    def __init__(self, plan: Plan, sqnr: Sqnr) -> None:
        super().__init__()
        self.plan = plan
        self.sqnr = sqnr


class SensitivityMeasured(Message):
    """One-at-a-time sensitivity: {fqn: end-to-end Sqnr with only that module quantized}."""

    def __init__(self, sensitivity: Mapping[str, Sqnr]) -> None:
        super().__init__()
        self.sensitivity = sensitivity


class SensitivityStep(Message):
    """The sensitivity of one module of ``plan`` was measured, in ``seconds``."""

    def __init__(self, plan: Plan, fqn: str, sqnr: Sqnr, seconds: float) -> None:
        super().__init__()
        self.plan = plan
        self.fqn = fqn
        self.sqnr = sqnr
        self.seconds = seconds


class SensitivityRunEnded(Message):
    """A sensitivity run over some modules of ``plan`` finished (not cancelled)."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan


class RecommendationChanged(Message):
    """The recommended plan for a new minimum gain (``measured`` carries it and its SQNR)."""

    def __init__(self, measured: Measured, generation: int) -> None:
        super().__init__()
        self.measured = measured
        self.generation = generation


class FrontierMeasured(Message):
    """The planner's frontier for one measurement (``measured``: the app's measurement it was run on)."""

    def __init__(self, measured: Measured, result: PlannerResult) -> None:
        super().__init__()
        self.measured = measured
        self.result = result
        self.rows: list[FrontierRow] = frontier_rows(result.to_json())
        notes = []
        if result.fused is not None:
            notes.append(result.fused_words())
        cache = result.cache
        notes.append(
            f"{result.passes:,} one-at-a-time passes in {result.seconds:.1f} s"
            + (
                f"; not cached: {cache.get('fallback')}"
                if cache.get("fallback")
                else ", re-run from the changed module on"
            )
        )
        notes.append(PREDICTION_WORDS)
        self.notes = notes

    def point(self, row: FrontierRow) -> PlanPoint | None:
        points = self.result.frontier
        return points[row.index] if 0 <= row.index < len(points) else self.result.chosen

    def warning(self, point: PlanPoint) -> str:
        """The low-SQNR warning for a picked point ("" when it is above the threshold)."""
        from tui_quantreport.engine import DEFAULT_WARN_BELOW_DB, costliest, low_sqnr_warning, noise_of

        noise = {}
        for unit in self.result.units:
            n = noise_of(self.result.sensitivity.get((unit.name, point.choice[unit.name])))
            if n is not None:
                noise[unit.name] = n
        return low_sqnr_warning(
            "picked plan", point.simulated.db, DEFAULT_WARN_BELOW_DB, costliest(noise), "their SQNR quantized alone"
        )
