"""The main screen: owns the report state, routes engine results to the panes, answers the keys.

Layout: the module tree (with its filter box and badge legend) on the left,
the detail view of the selected module in the middle, the detector sidebar on
the right, the calibration strip and the footer at the bottom. A terminal
narrower than :data:`NARROW_WIDTH` hides the sidebar (``b`` shows it in place
of the detail view) rather than clipping text.

State lives in this screen's reactives (``report``, ``settings``,
``filter_text``…); the panes are bound to them with ``data_bind`` and redraw in
their own watchers, so a new report is one assignment. Loading, calibrating and
re-evaluating run in thread workers (:class:`ModelSession` does the engine
calls); their results come back as messages (:mod:`.messages`). Every key of
the app is in :data:`MainScreen.BINDINGS`: the footer, the help screen and the
command palette are built from them.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.notifications import SeverityLevel
from textual.reactive import var
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer, Header, Input
from textual.worker import get_current_worker

from tui_quantreport.engine.defaults import PROBE_BATCHES as DEFAULT_PROBE_BATCHES
from tui_quantreport.engine.errors import CalibrationCancelled, UserError
from tui_quantreport.engine.escape import printable
from tui_quantreport.engine.export import render, write_atomic
from tui_quantreport.engine.report import PLAN_EDITED, PLAN_RECOMMENDED, Report
from tui_quantreport.tui import user_settings
from tui_quantreport.tui.badge_legend import BadgeLegend
from tui_quantreport.tui.calibration_bar import CalibrationBar
from tui_quantreport.tui.confirm_dialog import ConfirmDialog
from tui_quantreport.tui.detector_sidebar import MIN_GAIN, DetectorSidebar
from tui_quantreport.tui.error_screen import ErrorScreen
from tui_quantreport.tui.export_dialog import ConfigRequest, ExportDialog, ExportTarget
from tui_quantreport.tui.filter_input import FilterInput
from tui_quantreport.tui.frontier_screen import FrontierScreen
from tui_quantreport.tui.help_screen import HelpScreen, key_sections
from tui_quantreport.tui.messages import (
    CalibrateRequested,
    CalibrationFailed,
    CalibrationFinished,
    CalibrationProgress,
    CalibrationStopped,
    DetectorToggled,
    FilterChanged,
    FilterClosed,
    FrontierMeasured,
    MeasurementFailed,
    MeasurementFinished,
    ModelLoaded,
    ModelLoadFailed,
    ModuleHighlighted,
    ParamChanged,
    PlanEvaluated,
    RecommendationChanged,
    ReportUpdated,
    SensitivityMeasured,
    SensitivityRunEnded,
    SensitivityStep,
    TreePreviewed,
    WorkProgress,
)
from tui_quantreport.tui.model_session import (
    DetectorInfo,
    Loaded,
    Measured,
    ModelSession,
    adopt_plan,
    measure,
    recommend,
    restored_sensitivity,
)
from tui_quantreport.tui.module_detail import ModuleDetail
from tui_quantreport.tui.module_tree import ModuleTree
from tui_quantreport.tui.param_field import field_id
from tui_quantreport.tui.scheme_picker import SchemePicker
from tui_quantreport.tui.sqnr_panel import FLOAT, sqnr_text
from tui_quantreport.tui.verify_screen import VerifyScreen

if TYPE_CHECKING:
    from concurrent.futures import Future

    from tui_quantreport.engine.layers import LayerRow
    from tui_quantreport.engine.quantsim import Plan, Sqnr
    from tui_quantreport.engine.quantsim.planner import Planner
    from tui_quantreport.engine.report import Measured as MeasuredError
    from tui_quantreport.engine.settings import Settings
    from tui_quantreport.engine.stats import Stats
    from tui_quantreport.tui.depth_plot import DepthPoint


@dataclass(frozen=True)
class LayerData:
    """What the "which layers hurt" screen shows (see :meth:`MainScreen.layer_data`)."""

    rows: Sequence[LayerRow]
    schemes: Sequence[str]
    points: Sequence[DepthPoint]
    output_db: float | None
    depth_note: str
    headline: str


#: Below this many columns the sidebar is collapsed.
NARROW_WIDTH = 100

NOT_CALIBRATED = "Not calibrated yet: press c to run the calibration batches through the model."

#: The parameter the ``t`` key edits: (detector, parameter).
TOLERANCE = ("dynamic_vs_static_detector", "tolerance")

#: Actions bound to priority keys (see :meth:`MainScreen.check_action`).
PRIORITY_ACTIONS = frozenset({"cancel_calibration", "filter", "focus_tolerance", "focus_min_gain", "export"})

#: How often the loader worker looks whether the app is quitting while the model loads (seconds).
LOAD_POLL = 0.05

#: Seconds the tree cursor must rest on a module before the detail view redraws.
DETAIL_DELAY = 0.04

#: Actions that need a loaded model (shown disabled in the footer until then).
MODEL_ACTIONS = frozenset(
    {
        "export",
        "save_stats",
        "verify",
        "next_finding",
        "previous_finding",
        "filter",
        "toggle_helpers",
        "focus_tolerance",
        "focus_min_gain",
    }
)

#: Actions that need the measured error (after a calibration).
PLAN_ACTIONS = frozenset(
    {"toggle_float", "pick_scheme", "sensitivity", "frontier", "undo_plan", "redo_plan", "layers", "walk_by"}
)

#: Probe batches the error analysis runs on (the first K calibration batches).
PROBE_BATCHES = DEFAULT_PROBE_BATCHES

#: Plan changes closer than this many seconds are coalesced: the first is evaluated at once, the
#: last once the plan has rested this long.
PLAN_DELAY = 0.25


class MainScreen(Screen[None]):
    """Module-by-module quantization advice for one PyTorch model: the app's one working screen."""

    #: Every key of the app. ``description`` is the footer's word, ``tooltip`` the help's and the
    #: palette's sentence; bindings with ``show=False`` are still listed in the help and the palette.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "calibrate", "Calibrate", tooltip="Run the calibration batches through the model"),
        Binding(
            "escape",
            "cancel_calibration",
            "Cancel",
            priority=True,
            tooltip="Cancel the calibration between batches; the previous results stay",
        ),
        Binding("n", "next_finding", "Next", tooltip="Jump to the next module with a recommendation (N: previous)"),
        Binding(
            "N",
            "previous_finding",
            "Prev",
            show=False,  # at 80 columns the footer keeps q Quit; the help and n's tooltip name N
            key_display="N",
            tooltip="Jump to the previous module with a recommendation",
        ),
        Binding("slash", "filter", "Filter", priority=True, tooltip="Filter the module tree by name or class"),
        Binding("escape", "clear_filter", "Clear filter", show=False, tooltip="Clear the tree filter"),
        Binding("escape", "unzoom", "Restore panes", show=False, tooltip="Leave the zoomed detail view"),
        Binding(
            "e",
            "export",
            "Export",
            priority=True,
            tooltip="Export the report (JSON or Markdown), the what-if plan (JSON), or the plan as a "
            "torchao / PT2E / torch.ao configuration",
        ),
        Binding(
            "s",
            "save_stats",
            "Save stats",
            show=False,
            tooltip="Save the statistics to a stats file (.qstats; asks where, and before overwriting), to reopen "
            "without the model",
        ),
        Binding(
            "v",
            "verify",
            "Verify",
            show=False,
            tooltip="Apply the plan with torchao to a copy of the model; achieved SQNR next to the predicted one",
        ),
        Binding(
            "f",
            "toggle_float",
            "Float",
            tooltip="Keep the selected module (and its subtree) in float, "
            "or quantize it again with its recommended scheme",
        ),
        Binding(
            "p",
            "pick_scheme",
            "Scheme",
            show=False,
            tooltip="Pick the quantization scheme of the selected module (and its subtree)",
        ),
        Binding(
            "l",
            "layers",
            "Layers",
            show=False,
            tooltip="Which layers hurt: every quantizable module in a sortable table, and the SQNR along depth",
        ),
        Binding(
            "w",
            "walk_by",
            "Walk by",
            show=False,
            tooltip="Make n / N walk by sensitivity (most sensitive first) or by the findings' measured gain",
        ),
        Binding(
            "r",
            "measure",
            "Measure",
            show=False,
            tooltip="Measure the quantization error again on the calibrated statistics (after a cancelled measurement)",
        ),
        Binding("u", "undo_plan", "Undo", show=False, tooltip="Undo the last change to the plan"),
        Binding("U", "redo_plan", "Redo", show=False, key_display="U", tooltip="Redo the plan change undone last"),
        Binding(
            "S",
            "sensitivity",
            "Sensitivity",
            show=False,
            key_display="S",
            tooltip="Measure each quantized module's sensitivity: the plan's SQNR with only it quantized",
        ),
        Binding(
            "F",
            "frontier",
            "Frontier",
            show=False,
            key_display="F",
            tooltip="Plan under a budget: the end-to-end SQNR-vs-size frontier of mixed plans (one-at-a-time "
            "sensitivity per module and scheme, cached); Enter on a point makes it the plan",
        ),
        Binding(
            "t",
            "focus_tolerance",
            "Tolerance",
            show=False,
            priority=True,
            tooltip="Edit the dynamic-vs-static tolerance (Enter applies, Esc returns to the tree)",
        ),
        Binding(
            "m",
            "focus_min_gain",
            "Min gain",
            show=False,
            priority=True,
            tooltip="Edit the minimum measured gain (dB): findings gaining less are minor, shown without a "
            "badge (Enter applies, Esc returns to the tree)",
        ),
        Binding(
            "o",
            "toggle_helpers",
            "Observers",
            show=False,
            tooltip="Show or hide the observers and fake quantizers of a prepared model",
        ),
        Binding(
            "z",
            "zoom",
            "Zoom",
            show=False,
            tooltip="Zoom the detail view to the full width (z again, or Esc in the detail view, restores)",
        ),
        Binding("y", "copy('name')", "Copy", show=False, tooltip="Copy the selected module's name"),
        Binding(
            "Y",
            "copy('command')",
            "Copy command",
            show=False,
            key_display="Y",
            tooltip="Copy the command line that reproduces the current settings",
        ),
        Binding(
            "less_than_sign",
            "resize('sidebar', -4)",
            "Narrower sidebar",
            show=False,
            key_display="<",
            tooltip="Make the sidebar 4 columns narrower (> widens it): the detail view takes the room",
        ),
        Binding(
            "greater_than_sign",
            "resize('sidebar', 4)",
            "Wider sidebar",
            show=False,
            key_display=">",
            tooltip="Make the sidebar 4 columns wider",
        ),
        Binding(
            "left_square_bracket",
            "resize('tree', -4)",
            "Narrower tree",
            show=False,
            key_display="[",
            tooltip="Make the module tree 4 columns narrower (] widens it)",
        ),
        Binding(
            "right_square_bracket",
            "resize('tree', 4)",
            "Wider tree",
            show=False,
            key_display="]",
            tooltip="Make the module tree 4 columns wider",
        ),
        Binding(
            "b",
            "toggle_sidebar",
            "Sidebar",
            tooltip="Show or hide the sidebar (on a narrow terminal: in place of the detail view)",
        ),
        Binding("question_mark", "help", "Help", tooltip="This list of keys"),
        Binding("q", "quit", "Quit", tooltip="Quit (a running calibration stops between batches)"),
    ]

    # State ------------------------------------------------------------------

    #: The report shown: the last calibration judged with the current settings (None while loading).
    report: var[Report | None] = var(None, always_update=True)
    #: The engine settings (detectors and parameters), replaced (never mutated) on every change.
    settings: var[Settings | None] = var(None, always_update=True)
    #: The registry's detectors, in order (their position fixes their badge colour).
    detectors: var[Sequence[DetectorInfo]] = var(tuple)
    #: Each detector's position in the registry.
    detector_index: var[Mapping[str, int]] = var(dict)
    #: The module the detail view shows ("" for the model), once the tree's cursor rests on it.
    detail_fqn: var[str | None] = var(None)
    #: The tree filter ("" shows every module) and whether observers are shown.
    filter_text = var("")
    #: Pane widths set with < > [ ] (columns; 0: the stylesheet's own width).
    sidebar_width = var(0)
    tree_width = var(0)
    show_helpers = var(False)
    #: Calibrate on at most this many batches (None: all).
    max_batches: var[int | None] = var(None)
    #: Whether a calibration is running, and whether the model is loaded (both decide the footer's keys).
    calibrating = var(False, bindings=True)
    #: Whether an export or verification of the plan (``v``, ``e``) is running.
    applying = var(False, bindings=True)
    loaded = var(False, bindings=True)
    #: The measured error of the last calibration (None until measured), the what-if plan, its
    #: end-to-end SQNR (the last computed value stays while a new one is computed: ``plan_pending``),
    #: and the one-at-a-time sensitivity when measured.
    measured: var[Measured | None] = var(None, always_update=True, bindings=True)
    plan: var[Plan | None] = var(None, always_update=True)
    plan_sqnr: var[Sqnr | None] = var(None, always_update=True)
    plan_pending = var(False)
    sensitivity: var[Mapping[str, Sqnr] | None] = var(None, always_update=True)
    #: The SQNR along depth of ``depth_plan`` ({fqn: SQNR of its input under the plan}), measured
    #: while the "which layers hurt" screen is open; None until then.
    depth: var[Mapping[str, Sqnr] | None] = var(None, always_update=True)
    #: What limits the plan: the module, and the plan's end-to-end SQNR with it kept in float.
    limit: var[tuple[str, Sqnr] | None] = var(None, always_update=True)
    #: What ``n`` / ``N`` walk by: "gain" (the findings' measured gain) or "sensitivity".
    walk_by = var("gain")
    #: What a running measurement is doing ("" when none): Esc cancels it.
    measuring = var("", bindings=True)
    #: Findings whose measured gain is below this many dB are minor (shown, not badged); the
    #: recommended plan takes the cheapest scheme within it of the best. Changing it re-judges the
    #: kept measurement (engine ``severity.assess``), never measures again.
    min_gain_db = var(MIN_GAIN.default)

    def __init__(
        self,
        spec: str,
        loading: Future[Loaded],
        max_batches: int | None = None,
        probe_batches: int = PROBE_BATCHES,
        plan_to_load: tuple[Mapping[str, object], str] | None = None,
    ) -> None:
        """``loading`` is the model being built in the background (see :meth:`ModelSession.load_in_background`);
        ``probe_batches`` is how many batches the measured error runs on (0: no measurement);
        ``plan_to_load`` a plan file's (JSON, path) to adopt once the error is measured (``--plan``)."""
        super().__init__()
        #: A plan file waiting for the measurement to be adopted: (its JSON, its path).
        self._plan_to_load = plan_to_load
        #: Plan edits to undo (older last) and undone edits to redo.
        self._undo: list[Plan] = []
        self._redo: list[Plan] = []
        self._depth_plan: Plan | None = None
        #: Sensitivity measured so far for ``_sens_plan`` (kept when cancelled: S resumes), and
        #: the seconds each module took (the estimate and the ETA come from them).
        self._sens_plan: Plan | None = None
        self._sens_done: dict[str, Sqnr] = {}
        self._sens_seconds: list[float] = []
        self._ask_after_timing = False
        self._limit_plan: Plan | None = None
        self.spec = spec
        self.probe_batches = probe_batches
        self.model: ModelSession | None = None
        self.stats: Stats | None = None  # the kept engine Stats snapshot
        self.load_failed = False
        self.set_reactive(MainScreen.max_batches, max_batches)
        self._loading = loading
        self._calibrate_when_loaded = False
        self._cancel = threading.Event()
        self._generation = 0
        self._gain_generation = 0
        self._recommended: list[str] = []
        self._detail_timer: Timer | None = None
        self._pending_fqn = ""
        self._plan_timer: Timer | None = None
        self._last_plan_change = float("-inf")
        self._measure_cancel = threading.Event()
        #: The planner's frontier for the current measurement (``F``), and the size of each plan picked from it.
        self._frontier: FrontierMeasured | None = None
        self._plan_sizes: dict[tuple, str] = {}
        self._planner: tuple[Measured, Planner] | None = None

    # Layout -----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="tree-pane"):
                yield FilterInput(id="filter")
                yield ModuleTree(id="tree").data_bind(
                    MainScreen.detector_index, MainScreen.report, MainScreen.filter_text, MainScreen.show_helpers
                )
                yield BadgeLegend(id="legend").data_bind(MainScreen.detectors, MainScreen.report)
            yield ModuleDetail(id="detail").data_bind(
                MainScreen.detector_index,
                MainScreen.report,
                MainScreen.measured,
                MainScreen.plan,
                MainScreen.plan_sqnr,
                MainScreen.plan_pending,
                MainScreen.sensitivity,
                MainScreen.limit,
                fqn=MainScreen.detail_fqn,
            )
            yield DetectorSidebar(id="sidebar").data_bind(
                MainScreen.detectors,
                MainScreen.max_batches,
                MainScreen.settings,
                MainScreen.report,
                MainScreen.min_gain_db,
            )
        yield CalibrationBar(id="calibration")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.app.sub_title = self.spec
        self.query_one(FilterInput).display = False
        self._fit_width(self.app.size.width)
        self.query_one(ModuleTree).focus()
        self._preview_tree()
        self._load()

    def on_resize(self, event: Resize) -> None:
        self._fit_width(event.size.width)
        self._show_plan_in_header()

    def _fit_width(self, width: int) -> None:
        self.query_one("#main").set_class(width < NARROW_WIDTH, "-narrow")
        self.query_one(CalibrationBar).set_class(width < NARROW_WIDTH, "-narrow")

    # Reacting ---------------------------------------------------------------

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
        self.app.theme = "textual-dark"
        user_settings.reset()
        self.notify("Saved settings reset to the defaults.")

    def watch_report(self, report: Report | None) -> None:
        # n / N walk the findings in the engine's order (most important first), not tree order.
        self._recommended = [fqn for fqn, _ in report.ranked_modules()] if report is not None else []

    # Loading ----------------------------------------------------------------

    # Each worker names itself: Textual would otherwise repr() the arguments (settings, stats) for its
    # description, which formats every recorded tensor.
    @work(thread=True, exclusive=True, group="load", exit_on_error=False, description="load the model")
    def _load(self) -> None:
        """Wait for the model started with the app: built, with its session, evaluated uncalibrated."""
        from concurrent.futures import TimeoutError as StillLoading

        from tui_quantreport.engine.errors import ParamError

        worker = get_current_worker()
        try:
            while True:  # quitting cancels this worker: it must not hold the exit until torch is imported
                try:
                    loaded = self._loading.result(timeout=LOAD_POLL)
                    break
                except StillLoading:
                    if worker.is_cancelled:
                        return
        except ParamError as exc:  # an option, not the model: said as the command line says it
            self.post_message(ModelLoadFailed(str(exc), bad_option=True))
        except UserError as exc:
            self.post_message(ModelLoadFailed(str(exc)))
        except Exception as exc:  # the user's code can raise anything; show it, never a traceback
            self.post_message(ModelLoadFailed(f"{self.spec}: {type(exc).__name__}: {exc}"))
        else:
            self.post_message(ModelLoaded(loaded))

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False, description="read the kept tree")
    def _preview_tree(self) -> None:
        """Show the tree kept from the last run while the model loads (torch-free, a few ms)."""
        from tui_quantreport.engine import launch_tree

        report = launch_tree.read(self.spec)
        if report is not None:
            self.post_message(TreePreviewed(report))

    @on(TreePreviewed)
    def _tree_previewed(self, message: TreePreviewed) -> None:
        if not self.loaded and not self.load_failed and self.report is None:
            self.query_one(ModuleTree).report = message.report

    @work(thread=True, exclusive=True, group="keep-tree", exit_on_error=False, description="keep the tree")
    def _keep_tree(self, report: Report) -> None:
        """Keep this model's tree for the next launch (see engine ``launch_tree``)."""
        from tui_quantreport.engine import launch_tree

        launch_tree.write(self.spec, report)

    @on(ModelLoaded)
    def _model_loaded(self, message: ModelLoaded) -> None:
        loaded = message.loaded
        self._keep_tree(loaded.report)
        self.model, self.stats = loaded.session, loaded.stats
        self.detectors = loaded.detectors
        self.detector_index = {detector.name: index for index, detector in enumerate(loaded.detectors)}
        if loaded.min_gain_db is not None:
            self.min_gain_db = loaded.min_gain_db
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

    # Reports ----------------------------------------------------------------

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
        try:
            report = model.evaluate(stats, settings, error, min_gain_db)
        except Exception as exc:  # a detector bug must not take the app down
            self.app.call_from_thread(
                self.notify, f"{type(exc).__name__}: {exc}", title="Evaluation failed", severity="error", markup=False
            )
            return
        self.post_message(ReportUpdated(report, generation))

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
        from tui_quantreport.engine.severity import assess

        worker = get_current_worker()
        try:
            self.post_message(ReportUpdated(assess(report, report.measured, min_gain_db), generation))
            if measured is not None:
                self.post_message(
                    RecommendationChanged(
                        recommend(measured, min_gain_db, lambda: worker.is_cancelled), gain_generation
                    )
                )
        except CalibrationCancelled:
            return  # a newer threshold replaced this one
        except Exception as exc:  # a bug must not take the app down
            self.app.call_from_thread(
                self.notify, f"{type(exc).__name__}: {exc}", title="Re-assessing failed", severity="error", markup=False
            )
            if measured is not None:
                self.post_message(RecommendationChanged(measured, gain_generation))

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

    @on(ModuleHighlighted)
    def _module_highlighted(self, message: ModuleHighlighted) -> None:
        """Show the highlighted module once the cursor rests (holding a key stays smooth)."""
        self._pending_fqn = message.fqn
        if self._detail_timer is None:
            self._detail_timer = self.set_timer(DETAIL_DELAY, self._show_detail)
        else:
            self._detail_timer.reset()

    def _show_detail(self) -> None:
        self._detail_timer = None
        self.detail_fqn = self._pending_fqn

    # Settings ---------------------------------------------------------------

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

    # Calibration ------------------------------------------------------------

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

        def progress(done: int, total: int | None) -> None:
            self.post_message(CalibrationProgress(done, total))

        try:
            calibrated = model.calibrate(
                settings,
                max_batches,
                progress=progress,
                should_cancel=lambda: self._cancel.is_set() or worker.is_cancelled,
            )
        except CalibrationCancelled:
            self.post_message(CalibrationStopped())
        except UserError as exc:
            self.post_message(CalibrationFailed(str(exc)))
        except Exception as exc:  # anything else the user's model or data raised
            self.post_message(CalibrationFailed(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(CalibrationFinished(calibrated))

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

    # Measured error and the what-if plan -------------------------------------

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

        try:
            measured = measure(
                model,
                stats,
                settings,
                self.probe_batches,
                progress,
                lambda: self._measure_cancel.is_set() or worker.is_cancelled,
                self.min_gain_db,
            )
        except CalibrationCancelled:
            self.post_message(
                MeasurementFailed(
                    "Measurement cancelled: r measures again (no new calibration needed).", cancelled=True
                )
            )
        except Exception as exc:  # the simulation of the user's model can fail in many ways
            self.post_message(MeasurementFailed(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(MeasurementFinished(measured))

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
        self.request_limit()

    def _adopt_waiting_plan(self, measured: Measured) -> None:
        """After a measurement: the plan file given with ``--plan`` (or loaded before measuring),
        else the edited plan kept from the last run on this model, replaces the recommended one."""
        from tui_quantreport.engine import kept_plan

        if self._plan_to_load is not None:
            data, source = self._plan_to_load
            self._plan_to_load = None
            self.load_plan(data, source)
            return
        kept = kept_plan.read(self.spec)
        if kept is None or measured.analysis is None:
            return
        try:
            plan = adopt_plan(measured, kept, "the plan kept from the last run")
        except UserError:
            return  # made for another version of the model: the recommended plan stands
        if plan != measured.recommended:
            self.set_plan(plan)
            self.notify(
                f"Your edited plan of this model is back ({len(plan.kept_float):,} kept float): u undoes it.",
                title="Plan restored",
                markup=False,
            )

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

    def watch_plan_sqnr(self) -> None:
        self._show_plan_in_header()

    def watch_plan_pending(self) -> None:
        self._show_plan_in_header()

    def _show_plan_in_header(self) -> None:
        """The plan's end-to-end SQNR in the header, in the longest form that fits the terminal's
        width (the model's name and the counts give way first; the SQNR stays)."""
        plan = self.plan
        if plan is None:
            self.app.sub_title = self.spec
            return
        sqnr = sqnr_text(self.plan_sqnr) + self._plan_size_text(plan)
        quantized, kept = len(plan.quantized), len(plan.kept_float)
        total = quantized + kept
        running, short_running = (" (recomputing…)", " …") if self.plan_pending else ("", "")
        size = self._plan_sizes.get(plan.key)
        sized = [f"{self.spec} · plan {sqnr}{running} · {size}", f"plan {sqnr}{short_running} · {size}"] if size else []
        forms = [
            *sized,
            f"{self.spec} · plan {sqnr}{running} · {quantized:,} quantized, {kept:,} float",
            f"{self.spec} · plan {sqnr}{short_running} · {kept:,}/{total:,} float",
            f"plan {sqnr}{running} · {kept:,}/{total:,} float",
            f"plan {sqnr}{short_running} · {kept:,}/{total:,} float",
            f"plan {sqnr}{short_running}",
        ]
        room = header_room(self.app.size.width, str(self.app.title))
        self.app.sub_title = next((form for form in forms if len(form) <= room), forms[-1])

    def _plan_size_text(self, plan: Any) -> str:
        """`` · 0.17 MB, 13.0 b/w``: the model's size under ``plan`` (the engine's count), or ""."""
        measured = self.measured
        if measured is None:
            return ""
        mb: float | None
        bpw: float | None
        if measured.analysis is not None:
            size = measured.analysis.plan_size(plan)
            mb, bpw = size.mb, size.bits_per_weight
        elif measured.error is not None and dict(plan.modules) == dict(measured.error.plan):
            mb, bpw = measured.error.plan_size_mb, measured.error.plan_bits_per_weight
        else:
            return ""
        if mb is None:
            return ""
        return f" · {mb:.3g} MB" + (f", {bpw:.1f} b/w" if bpw is not None else "")

    def subtree(self, fqn: str) -> list[str]:
        """The quantizable modules at or below ``fqn`` ("" is the whole model)."""
        if self.plan is None:
            return []
        return [m for m in self.plan.modules if not fqn or m == fqn or m.startswith(fqn + ".")]

    def set_plan(self, plan: Plan, *, undoable: bool = True) -> None:
        """Make ``plan`` current and recompute its end-to-end SQNR in a worker: at once for a single
        change; changes in quick succession (held key, several toggles) are coalesced and the last
        one is evaluated once the plan rests for :data:`PLAN_DELAY` (a running evaluation of an
        older plan is cancelled). ``u`` undoes it (unless ``undoable`` is False: undo and redo
        themselves); an edited plan is kept for the next launch on this model."""
        if undoable and self.plan is not None and plan != self.plan:
            self._undo.append(self.plan)
            self._redo.clear()
        self._keep_plan(plan)
        with self.app.batch_update():  # the panes and the header follow in one repaint
            self.plan = plan
            if self.sensitivity is not None:  # measured for another plan (assigning None again redraws)
                self.sensitivity = None
            self.plan_pending = True
        now = time.monotonic()
        burst = now - self._last_plan_change < PLAN_DELAY
        self._last_plan_change = now
        if self._plan_timer is not None:
            self._plan_timer.reset()
        elif burst:
            self._plan_timer = self.set_timer(PLAN_DELAY, self._evaluate_current_plan)
        else:
            self._evaluate_current_plan()

    def _keep_plan(self, plan: Plan) -> None:
        """Keep an edited plan for the next launch on this model (forget it when recommended)."""
        measured = self.measured
        if measured is None or measured.analysis is None:
            return
        data = None if plan == measured.recommended else {**plan.to_json_data(), "origin": PLAN_EDITED}
        self._write_kept_plan(data)

    @work(thread=True, exclusive=True, group="keep-plan", exit_on_error=False, description="keep the plan")
    def _write_kept_plan(self, data: dict[str, object] | None) -> None:
        from tui_quantreport.engine import kept_plan

        if data is None:
            kept_plan.forget(self.spec)
        else:
            kept_plan.write(self.spec, data)

    def action_undo_plan(self) -> None:
        """Undo the last change to the plan (``U`` redoes it)."""
        if not self._undo or self.plan is None:
            self.notify("Nothing to undo: the plan has not been changed.")
            return
        self._redo.append(self.plan)
        self.set_plan(self._undo.pop(), undoable=False)

    def action_redo_plan(self) -> None:
        """Redo the plan change undone last."""
        if not self._redo or self.plan is None:
            self.notify("Nothing to redo.")
            return
        self._undo.append(self.plan)
        self.set_plan(self._redo.pop(), undoable=False)

    def action_load_plan(self) -> None:
        """Ask for a plan file and make it the plan on screen (after the measurement, if none yet)."""
        from tui_quantreport.tui.plan_load_dialog import PlanLoadDialog

        def chosen(result: tuple[dict[str, object], str] | None) -> None:
            if result is not None:
                self.load_plan(*result)

        default = str(Path.cwd() / default_export_path(self.spec).replace(".quantreport.json", ".plan.json"))
        self.app.push_screen(PlanLoadDialog(default), chosen)

    def load_plan(self, data: Mapping[str, object], source: str) -> None:
        """Make the plan file ``data`` (read from ``source``) the plan on screen; before the error
        is measured it waits for the measurement. Problems are said in one line."""
        measured = self.measured
        if measured is None:
            self._plan_to_load = (data, source)
            self.query_one(CalibrationBar).say(
                f"The plan {source} is used once the error is measured: press c to calibrate."
            )
            return
        if measured.analysis is None:
            self._needs_the_model("Loading a plan")
            return
        try:
            plan = adopt_plan(measured, data, f"plan {source}")
        except UserError as exc:
            self.notify(str(exc), title="Plan not loaded", severity="error", markup=False)
            return
        self.set_plan(plan)
        self.notify(
            f"Loaded {source}: {len(plan.quantized):,} quantized, {len(plan.kept_float):,} kept float (u undoes).",
            title="Plan loaded",
            markup=False,
        )

    def _evaluate_current_plan(self) -> None:
        self._plan_timer = None
        if self.plan is not None and self.measured is not None:
            self._evaluate_plan(self.measured, self.plan)

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False, description="plan SQNR")
    def _evaluate_plan(self, measured: Measured, plan: Plan) -> None:
        worker = get_current_worker()
        if measured.analysis is None:
            return  # read back from a stats file: edits are refused before they get here
        try:
            sqnr = measured.analysis.plan_sqnr(plan, should_cancel=lambda: worker.is_cancelled)
        except CalibrationCancelled:
            return  # a newer plan replaced this one
        except Exception as exc:
            self.post_message(MeasurementFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(PlanEvaluated(plan, sqnr))

    @on(PlanEvaluated)
    def _plan_evaluated(self, message: PlanEvaluated) -> None:
        if message.plan is self.plan:
            with self.app.batch_update():  # the header and the panes in one repaint
                self.plan_pending = False
                self.plan_sqnr = message.sqnr
            self.request_limit()

    # What limits the plan, the SQNR along depth, the layers screen ------------------------

    def request_limit(self) -> None:
        """Measure what keeping the module that limits the plan in float gives (one plan evaluation,
        in a worker), for the root's sentence."""
        from tui_quantreport.engine.layers import limiting_candidates

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
        best: tuple[str, Sqnr] | None = None
        try:
            for fqn in candidates:
                sqnr = measured.analysis.plan_sqnr(plan.with_scheme([fqn], FLOAT), lambda: worker.is_cancelled)
                if best is None or sqnr.value > best[1].value:
                    best = (fqn, sqnr)
        except Exception:  # cancelled by a newer plan, or a simulation failure the plan itself reports
            return
        if best is not None:
            self.app.call_from_thread(self._limit_measured, plan, *best)

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
        from tui_quantreport.engine.quantsim.depth import depth_sqnr

        worker = get_current_worker()
        if measured.analysis is None:
            return
        try:
            depth = depth_sqnr(measured.analysis, plan, lambda: worker.is_cancelled)
        except CalibrationCancelled:
            return
        except Exception as exc:
            self.app.call_from_thread(
                self.notify, f"{type(exc).__name__}: {exc}", title="SQNR along depth", severity="error", markup=False
            )
            return
        self.app.call_from_thread(self._depth_measured, plan, depth)

    def _depth_measured(self, plan: Plan, depth: Mapping[str, Sqnr]) -> None:
        if plan is self.plan:
            self.depth = depth

    def layer_data(self) -> LayerData:
        """What the layers screen shows, from the current state (plain data)."""
        from tui_quantreport.engine.layers import layer_rows
        from tui_quantreport.tui.depth_plot import depth_points

        report, measured, plan = self.report, self.measured, self.plan
        if report is None or measured is None or plan is None:
            return LayerData([], [], [], None, "Nothing measured yet: press c to calibrate.", "")
        local = {f: {k: v.db for k, v in per.items()} for f, per in measured.local.items()}
        schemes = [k for k in next(iter(measured.local.values()), {}) if k not in ("clipped", "equalized")]
        sensitivity = {f: s.db for f, s in self.sensitivity.items()} if self.sensitivity is not None else None
        rows = layer_rows(report, local, plan.modules, sensitivity)
        depth = self.depth if plan is self._depth_plan else None
        cumulative = {f: (math.inf if s.infinite else s.db) for f, s in depth.items()} if depth is not None else {}
        note = "" if depth is not None else "Measuring the SQNR along depth (two passes over the probe batches)…"
        output = self.plan_sqnr.db if self.plan_sqnr is not None else None
        headline = (
            f"{self.plan_origin} plan {sqnr_text(self.plan_sqnr)} end to end · {len(plan.quantized):,} quantized, "
            f"{len(plan.kept_float):,} float"
            + (
                " · sensitivity measured"
                if sensitivity is not None
                else " · S (in the main screen) measures sensitivity"
            )
        )
        return LayerData(rows, schemes, depth_points(plan.modules, local, cumulative), output, note, headline)

    def action_layers(self) -> None:
        """Open the "which layers hurt" screen; Enter there shows the chosen module here."""
        from tui_quantreport.tui.layers_screen import LayersScreen

        if self.measured is None:
            self.notify("Nothing measured yet: press c to calibrate, the error is measured after it.")
            return

        def chosen(fqn: str | None) -> None:
            if fqn:
                self.go_to_module(fqn)

        self.app.push_screen(LayersScreen(self), chosen)

    def action_walk_by(self) -> None:
        """Switch what n / N walk by: sensitivity (most sensitive first) or the findings' gain."""
        if self.walk_by == "gain":
            if not self.sensitivity:
                self.notify("Sensitivity is not measured yet: S measures it; n / N walk by gain meanwhile.")
                return
            self.walk_by = "sensitivity"
            self.notify("n / N now walk by sensitivity, the most sensitive module first (w: back to gain).")
        else:
            self.walk_by = "gain"
            self.notify("n / N now walk by the findings' measured gain (w: by sensitivity).")

    def _plan_targets(self, purpose: str) -> tuple[Plan, Measured, str, list[str]] | None:
        """The plan, the measurement, the selected module and the quantizable modules of its subtree
        for a plan edit; None (said, when there are no modules) when there is nothing to edit."""
        plan, measured = self.plan, self.measured
        if plan is None or measured is None:
            return None
        if measured.analysis is None:
            self._needs_the_model("Editing the plan")
            return None
        fqn = self.query_one(ModuleTree).current_fqn
        targets = self.subtree(fqn)
        if not targets:
            self.notify(f"{fqn or 'The model'} has no quantizable module (Linear, Conv…){purpose}.", markup=False)
            return None
        return plan, measured, fqn, targets

    def _needs_the_model(self, what: str) -> None:
        reason = self.model.unavailable if self.model is not None else None
        self.notify(f"{what} needs the model: {reason or 'the plan was read back from a stats file'}", markup=False)

    def action_toggle_float(self) -> None:
        """Keep the selected module (and its subtree) in float, or quantize it again as recommended."""
        edit = self._plan_targets(" to keep in float")
        if edit is None:
            return
        plan, measured, _, targets = edit
        if any(plan.modules[m] != FLOAT for m in targets):
            new = plan.with_scheme(targets, FLOAT)
        else:
            new = plan
            for m in targets:
                new = new.with_scheme([m], measured.scheme_of(m))
        self.set_plan(new)

    def action_pick_scheme(self) -> None:
        """Choose the scheme of the selected module (and its subtree) from a list with local SQNR."""
        edit = self._plan_targets("")
        if edit is None:
            return
        plan, measured, fqn, targets = edit
        from tui_quantreport.engine.quantsim import SCHEMES

        local = measured.local.get(fqn) if fqn in plan.modules else None
        current = plan.modules.get(fqn, "") if fqn in plan.modules else ""
        label = fqn if fqn in plan.modules else f"{fqn or 'the model'} ({len(targets):,} modules)"

        def chosen(scheme: str | None) -> None:
            if scheme is not None and self.plan is not None:
                self.set_plan(self.plan.with_scheme(targets, scheme))

        self.app.push_screen(
            SchemePicker(label, list(SCHEMES), local, current, refused_schemes(measured, targets)), chosen
        )

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
        try:
            for fqn in fqns:
                alone = plan.with_scheme([f for f in quantized if f != fqn], FLOAT)
                started = time.perf_counter()
                result = analysis.sensitivity(
                    alone, should_cancel=lambda: self._measure_cancel.is_set() or worker.is_cancelled
                )
                self.post_message(SensitivityStep(plan, fqn, result[fqn], time.perf_counter() - started))
        except CalibrationCancelled:
            self.post_message(MeasurementFailed("Sensitivity cancelled.", cancelled=True))
        except Exception as exc:
            self.post_message(MeasurementFailed(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(SensitivityRunEnded(plan))

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
        from tui_quantreport.engine.quantsim.planner import Planner

        worker = get_current_worker()
        if measured.analysis is None:
            return
        planner = self._planner[1] if self._planner is not None and self._planner[0] is measured else None
        if planner is None:  # kept: a cancelled run's passes are not measured again
            planner = Planner(measured.analysis)
            self._planner = (measured, planner)

        def progress(stage: str, done: int, total: int | None) -> None:
            self.post_message(WorkProgress(done, total))

        try:
            result = planner.run(
                None, progress=progress, should_cancel=lambda: self._measure_cancel.is_set() or worker.is_cancelled
            )
        except CalibrationCancelled:
            kept = len(planner.sens.results)
            self.post_message(
                MeasurementFailed(
                    f"Frontier cancelled; {kept:,} sensitivity passes kept for next time.", cancelled=True
                )
            )
        except Exception as exc:
            self.post_message(MeasurementFailed(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(FrontierMeasured(measured, result))

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
            self._plan_sizes[point.plan.key] = f"{point.bits_per_weight:.2f} bpw, {point.size_mb:.3g} MB"
            self.set_plan(point.plan)
            warning = frontier.warning(point)
            if warning:
                self.notify(warning, title="Low end-to-end SQNR", severity="warning", markup=False)

        self.app.push_screen(FrontierScreen(frontier.rows, frontier.notes), picked)

    # Moving around ----------------------------------------------------------

    def action_next_finding(self) -> None:
        self._jump(forward=True)

    def action_previous_finding(self) -> None:
        self._jump(forward=False)

    def walk_order(self) -> list[str]:
        """The modules n / N visit, in order: by sensitivity (lowest first) when chosen and
        measured, else the findings by measured gain."""
        if self.walk_by == "sensitivity" and self.sensitivity:
            sensitivity = self.sensitivity
            return sorted(sensitivity, key=lambda fqn: sensitivity[fqn].value)
        return self._recommended

    def _jump(self, forward: bool) -> None:
        tree = self.query_one(ModuleTree)
        order = self.walk_order()
        if order is not self._recommended:
            if tree.jump(order, forward) is None:
                self.notify("No measured module matches the filter.")
            else:
                tree.focus()
            return
        if not self._recommended:
            calibrated = self.report is not None and self.report.batches > 0
            self.notify(
                "No module has a recommendation with the current settings."
                if calibrated
                else "No recommendations yet: press c to calibrate."
            )
            return
        if tree.jump(self._recommended, forward) is None:
            self.notify("No module with a recommendation matches the filter.")
            return
        tree.focus()

    def go_to_module(self, fqn: str) -> None:
        """Show module ``fqn`` in the tree (clearing a filter that hides it) and the detail view."""
        tree = self.query_one(ModuleTree)
        if fqn not in tree.nodes:
            self.query_one(FilterInput).value = ""
            self.filter_text = ""
            if self._is_helper(fqn):
                self.show_helpers = True
        tree.reveal(fqn)
        tree.focus()

    def _is_helper(self, fqn: str) -> bool:
        module = self.report.modules.get(fqn) if self.report is not None else None
        return module is not None and module.is_quant_helper

    def action_filter(self) -> None:
        """Show the filter box and focus it."""
        box = self.query_one(FilterInput)
        box.display = True
        self._focus_now(box)

    def action_clear_filter(self) -> None:
        """Show every module again."""
        box = self.query_one(FilterInput)
        box.value = ""
        box.display = False
        self.filter_text = ""

    @on(FilterChanged)
    def _filter_changed(self, message: FilterChanged) -> None:
        self.filter_text = message.text

    @on(FilterClosed)
    def _filter_closed(self, message: FilterClosed) -> None:
        if message.cleared:
            self.query_one(FilterInput).display = False
        self._focus_now(self.query_one(ModuleTree))

    def _focus_now(self, widget: Widget) -> None:
        """Focus ``widget`` before the next key is handled (``Widget.focus`` waits a turn, so
        quickly typed keys after ``/`` would otherwise go to the tree)."""
        self.set_focus(widget)

    def action_focus_tree(self) -> None:
        """Put the keyboard back on the module tree (leaving the zoomed detail view)."""
        self.query_one("#main").remove_class("-zoomed")
        self._focus_now(self.query_one(ModuleTree))

    def action_focus_tolerance(self) -> None:
        """Focus the dynamic-vs-static tolerance in the sidebar (showing the sidebar if needed)."""
        detector, name = TOLERANCE
        if self.settings is None or detector not in self.settings.enabled:
            self.notify("The dynamic-vs-static detector is off: tick it in the sidebar first.")
            return
        main = self.query_one("#main")
        if main.has_class("-narrow") != main.has_class("-sidebar-toggled"):
            main.toggle_class("-sidebar-toggled")  # the sidebar was hidden: show it
        self._focus_now(self.query_one(f"#{field_id(detector, name)}"))

    def action_focus_min_gain(self) -> None:
        """Focus the minimum-gain threshold in the sidebar (showing the sidebar if needed)."""
        main = self.query_one("#main")
        if main.has_class("-narrow") != main.has_class("-sidebar-toggled"):
            main.toggle_class("-sidebar-toggled")  # the sidebar was hidden: show it
        self._focus_now(self.query_one(f"#{field_id('', MIN_GAIN.name)}"))

    def action_toggle_helpers(self) -> None:
        """Show or hide the observers and fake quantizers of a prepared model."""
        if self.report is not None and not any(m.is_quant_helper for m in self.report.modules.values()):
            self.notify("This model has no observers or fake quantizers to show.")
            return
        self.show_helpers = not self.show_helpers
        self.notify("Observers and fake quantizers are " + ("shown." if self.show_helpers else "hidden."))

    def action_focus_detail(self) -> None:
        """Put the keyboard on the detail view (Esc comes back to the tree)."""
        main = self.query_one("#main")
        if main.has_class("-narrow") and main.has_class("-sidebar-toggled"):
            main.remove_class("-sidebar-toggled")  # the detail view was hidden by the sidebar
        self._focus_now(self.query_one(ModuleDetail))

    def action_scroll_detail(self, direction: int) -> None:
        """Scroll the detail view by half a page without leaving the tree."""
        detail = self.query_one(ModuleDetail)
        detail.scroll_relative(y=direction * max(1, detail.size.height // 2), animate=False)

    def action_unzoom(self) -> None:
        """Leave the zoomed detail view (Esc, wherever the keyboard is)."""
        self.action_focus_tree()

    def action_zoom(self) -> None:
        """Show the detail view alone, at the full width, or restore the panes."""
        main = self.query_one("#main")
        main.toggle_class("-zoomed")
        if main.has_class("-zoomed"):
            self._focus_now(self.query_one(ModuleDetail))
        else:
            self._focus_now(self.query_one(ModuleTree))

    def action_copy(self, what: str) -> None:
        """Copy the selected module's name, or the command line for the current settings."""
        if what == "command":
            text = self.command_line()
        else:
            text = self.query_one(ModuleTree).current_fqn or (self.report.model_class if self.report else "")
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied: {text}", markup=False)

    def copy_findings(self) -> None:
        """Copy the selected module's findings (headline and reason of each) as plain text."""
        fqn = self.query_one(ModuleTree).current_fqn
        if self.report is None:
            return
        text = "\n".join(
            f"{self.report.detectors[f.detector].title}: {f.headline}. {f.reason}"
            for f in self.report.findings_for(fqn)
        )
        self.app.copy_to_clipboard(text or f"{fqn}: no findings")
        self.notify(f"Copied the findings of {fqn or 'the model'}.", markup=False)

    def command_line(self) -> str:
        """``tui-quantreport MODEL --detectors … --param … --min-gain …`` for the current settings
        (changed ones only)."""
        import shlex

        parts = ["tui-quantreport", shlex.quote(self.spec)]
        settings = self.settings
        if settings is not None:
            names = [d.name for d in self.detectors]
            if list(settings.enabled) != names:
                parts += ["--detectors", ",".join(settings.enabled)]
            for detector in self.detectors:
                for param in detector.params:
                    value = settings.params[detector.name][param.name]
                    if value != param.default:
                        parts += ["--param", shlex.quote(f"{detector.name}.{param.name}={value}")]
            if settings.ch_axis is not None:
                parts += ["--ch-axis", shlex.quote(str(settings.ch_axis))]
        if self.max_batches is not None:
            parts += ["--batches", str(self.max_batches)]
        if self.min_gain_db != MIN_GAIN.default:
            parts += ["--min-gain", f"{self.min_gain_db:g}"]
        return " ".join(parts)

    #: Column limits of the resizable panes.
    PANE_LIMITS: ClassVar[dict[str, tuple[int, int]]] = {"sidebar": (22, 80), "tree": (20, 100)}

    def action_resize(self, pane: str, delta: int) -> None:
        """Resize the sidebar or the tree pane by ``delta`` columns (the detail view takes the rest)."""
        low, high = self.PANE_LIMITS[pane]
        widget = self.query_one("#sidebar" if pane == "sidebar" else "#tree-pane")
        current = widget.outer_size.width or low
        wanted = max(low, min(high, current + delta, max(low, self.size.width - 40)))
        if pane == "sidebar":
            self.sidebar_width = wanted
        else:
            self.tree_width = wanted

    def watch_sidebar_width(self, width: int) -> None:
        if width:
            self.query_one("#sidebar").styles.width = width

    def watch_tree_width(self, width: int) -> None:
        if width:
            pane = self.query_one("#tree-pane")
            pane.styles.max_width = None
            pane.styles.width = width

    def action_toggle_sidebar(self) -> None:
        """Show or hide the sidebar (on a narrow terminal it takes the detail view's place)."""
        self.query_one("#main").toggle_class("-sidebar-toggled")

    # Export, help, quit -----------------------------------------------------

    def export_targets(self) -> list[ExportTarget]:
        """What ``e`` can write. Each target reads the state when it writes, not when the dialog opened."""

        def report_writer(fmt: str) -> Callable[[Path], Path]:
            def write(path: Path) -> Path:
                report = self.report_of_record()
                if report is None:
                    raise UserError("nothing to export: the model is still loading")
                enabled = report.detectors
                disabled = [d.title for d in self.detectors if d.name not in enabled]
                return write_atomic(path, render(report, fmt, disabled), inputs=self._inputs())

            return write

        def write_plan(path: Path) -> Path:
            data = self.plan_data_of_record()
            if data is None:
                raise UserError("no plan yet: calibrate first (c), the plan follows the measurement")
            return write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n", inputs=self._inputs())

        targets = [
            ExportTarget("json", "JSON report", ".json", report_writer("json")),
            ExportTarget("markdown", "Markdown report", ".md", report_writer("markdown")),
        ]
        if self.plan is not None:
            targets.append(ExportTarget("plan", "What-if plan (JSON)", ".plan.json", write_plan))
        # The plan as a configuration (engine/apply), exported in a worker by _start_apply.
        from tui_quantreport.engine.apply.targets import TARGETS

        targets += [ExportTarget(t.name, t.file_label, t.suffix, None, deferred=True) for t in TARGETS.values()]
        return targets

    def action_export(self) -> None:
        """Open the export dialog (it writes the report current when Export is pressed)."""
        if self.report is None:
            self.notify("Nothing to export yet: the model is still loading.")
            return
        path = str(Path.cwd() / default_export_path(self.report.spec))
        self.app.push_screen(ExportDialog(self.export_targets(), path, owner=self), self._exported)

    def _exported(self, path: str | ConfigRequest | None) -> None:
        if isinstance(path, ConfigRequest):
            self._start_apply("export", path.target, path.path)
        elif path:
            self.notify(f"Wrote {path}", title="Exported", markup=False)

    def _inputs(self) -> list[str]:
        """The files this session read (the model's source): no export writes over them."""
        from tui_quantreport.engine.spec import source_path

        return [p for p in (source_path(self.spec),) if p]

    def action_save_stats(self) -> None:
        """Ask where to save the current statistics (``<model>.qstats`` prefilled; an existing file is
        overwritten only after a second Enter), then write them in a worker, to reopen without the model."""
        if self.model is None or self.stats is None or self.settings is None or not self.stats.batches:
            self.notify("Nothing to save yet: press c to calibrate first.")
            return
        target = ExportTarget(
            "qstats", "Statistics file (.qstats): reopens without the model", ".qstats", None, deferred=True
        )
        path = str(Path.cwd() / default_stats_path(self.model.spec))
        self.app.push_screen(
            ExportDialog([target], path, owner=self, title="Save statistics", action="Save"), self._stats_path_chosen
        )

    def _stats_path_chosen(self, chosen: str | ConfigRequest | None) -> None:
        """Write the statistics current now (not when the dialog opened) to the chosen path."""
        if not isinstance(chosen, ConfigRequest):
            return  # Esc: nothing written
        if self.stats is None or self.settings is None or not self.stats.batches:
            return
        report = self.report_of_record()
        error = report.measured if report is not None and self.measured is not None else None
        self._save_stats(self.stats, self.settings, chosen.path, error)

    @work(thread=True, group="save", exit_on_error=False, description="save the statistics")
    def _save_stats(self, stats: Stats, settings: Settings, path: str, error: MeasuredError | None = None) -> None:
        model = self.model
        if model is None:
            return
        try:
            written = model.save_stats(stats, settings, path, error)
        except Exception as exc:  # noqa: BLE001 - any failure is said, never a silent worker error
            said = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            self.app.call_from_thread(
                self.notify, printable(said), title="Statistics not saved", severity="error", markup=False
            )
        else:
            self.app.call_from_thread(
                self.notify,
                f"Wrote the statistics of {stats.batches:,} batches to {printable(written)}",
                title="Saved",
                markup=False,
            )

    # Apply the plan (engine/apply: issue 8) ---------------------------------

    def action_verify(self) -> None:
        """Apply the plan with its target's library to a copy of the model and measure it (in a worker;
        Esc cancels). The target: --target, else torchao on the model's device."""
        from tui_quantreport.engine.apply.targets import default_target

        target = (self.model.target if self.model is not None else None) or default_target().name
        self._start_apply("verify", target, None)

    def _start_apply(self, kind: str, target: str, path: str | None) -> None:
        if self.model is None:
            return
        if (why := self.model.apply_unavailable) is not None:  # a stats file, or an exported graph
            self.notify(why, markup=False)
            return
        if self.calibrating or self.applying:
            self.notify("Busy: wait for the running calibration or verification (Esc cancels it).")
            return
        self.applying = True
        self._cancel.clear()
        what = f"Verifying the {target} export" if kind == "verify" else f"Exporting the {target} configuration"
        if self.plan is None:  # nothing measured yet: the recommended plan is measured first
            what += " of the recommended plan (calibrating and measuring it first)"
        self.query_one(CalibrationBar).start(f"{what}…")
        self._apply(kind, target, path, self.plan_of_record(), self.plan_source())

    # The plan of record: what every export, the stats file and verify use ----------------

    @property
    def plan_origin(self) -> str:
        """``"recommended"`` while the plan is the measurement's recommendation, else ``"edited"``."""
        measured, plan = self.measured, self.plan
        return PLAN_RECOMMENDED if measured is None or plan is None or plan == measured.recommended else PLAN_EDITED

    def plan_source(self) -> str:
        """The plan in words, for exported files and the verify result: ``edited in the app, …``."""
        if self.plan is None:
            return ""
        what = "edited in the app" if self.plan_origin == PLAN_EDITED else "recommended by the measurement"
        return f"{what}, {len(self.plan.kept_float):,} kept float"

    def plan_of_record(self) -> Plan | None:
        """The plan on screen (with its edits) and its predicted end-to-end SQNR (None while it is
        recomputed): the plan the exports, the stats file and ``v`` use."""
        plan = self.plan
        if plan is None:
            return None
        db = self.plan_sqnr.db if self.plan_sqnr is not None and not self.plan_pending else None
        probes = self.measured.probe_batches if self.measured is not None else plan.probe_batches
        return plan.with_prediction(db, probes)

    def plan_data_of_record(self) -> dict[str, object] | None:
        """The plan file's JSON of :meth:`plan_of_record`, with its ``origin``."""
        plan = self.plan_of_record()
        return None if plan is None else {**plan.to_json_data(), "origin": self.plan_origin}

    def report_of_record(self) -> Report | None:
        """The report as exported: its measured section holds the plan on screen (recommended or
        edited, with its predicted SQNR) and the sensitivity measured in the app."""
        report, plan = self.report, self.plan_of_record()
        if report is None or report.measured is None or plan is None or self.measured is None:
            return report
        data = self.plan_data_of_record() or {}
        sqnr = self.plan_sqnr if not self.plan_pending else None
        if sqnr is None:
            reason = "SQNR undefined: the plan was still being evaluated"
        else:
            reason = "exact (no error)" if sqnr.infinite else sqnr.reason
        sensitivity = (
            {fqn: (s.db, s.reason) for fqn, s in self.sensitivity.items()} if self.sensitivity is not None else None
        )
        measured = report.measured.with_plan(data, plan.predicted_sqnr_db, reason, self.plan_origin, sensitivity)
        return replace(report, measured=measured)

    @work(thread=True, exclusive=True, group="apply", exit_on_error=False, description="apply the plan")
    def _apply(self, kind: str, target: str, path: str | None, plan: Plan | None, source: str) -> None:
        from tui_quantreport.engine.apply.api import apply_in_app

        worker = get_current_worker()
        model = self.model
        if model is None:
            return

        def progress(done: int, total: int | None) -> None:
            self.post_message(CalibrationProgress(done, total))

        try:
            title, text, note = apply_in_app(
                kind,
                target,
                path,
                model.loaded_model,
                model.catalog,
                plan,
                progress=progress,
                should_cancel=lambda: self._cancel.is_set() or worker.is_cancelled,
                source=source,
            )
        except CalibrationCancelled:
            self.app.call_from_thread(self._applied, None, None, "Cancelled.", "warning")
        except UserError as exc:
            self.app.call_from_thread(self._applied, None, None, str(exc), "error")
        except Exception as exc:  # noqa: BLE001 - the user's model can raise anything: say it, never a traceback
            self.app.call_from_thread(self._applied, None, None, f"{type(exc).__name__}: {exc}", "error")
        else:
            self.app.call_from_thread(self._applied, title, text, note, "information")

    def _applied(self, title: str | None, text: str | None, note: str, severity: SeverityLevel) -> None:
        self.applying = False
        self.query_one(CalibrationBar).stop(
            note.splitlines()[0] if note else "", "error" if severity == "error" else ""
        )
        if text is not None and title is not None:
            self.app.push_screen(VerifyScreen(title, text))
        elif note:
            self.notify(note, severity=severity, timeout=10, markup=False)

    def action_help(self) -> None:
        glyphs = [detector.glyph for detector in self.detectors]
        self.app.push_screen(HelpScreen(key_sections(self.app, MainScreen.BINDINGS, glyphs)))

    async def action_quit(self) -> None:
        """Quit, asking a running calibration to stop between batches."""
        if self.calibrating or self.measuring:
            self.query_one(CalibrationBar).say("Stopping after the current batch, then quitting…", "warning")
        self.cancel_work()
        self.app.exit()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide Cancel unless calibrating; disable model actions until the model is loaded; let text
        fields have the priority keys."""
        if self.load_failed and action not in ("quit", "help", "command_palette"):
            return False
        if action in PRIORITY_ACTIONS and isinstance(self.focused, Input):
            # Priority keys act before the focused widget sees them (so "/gate" typed fast lands in
            # the filter box), except in a text field, where the key is typed; there Escape first
            # leaves the field (press it again to cancel a calibration).
            return False
        if action == "cancel_calibration":
            return self.calibrating or self.applying or bool(self.measuring)
        if action in PLAN_ACTIONS:
            return True if self.measured is not None else None
        if action == "clear_filter":
            return bool(self.filter_text)
        if action == "unzoom":
            return self.query_one("#main").has_class("-zoomed")
        if action == "measure":
            return (
                self.stats is not None
                and self.stats.batches > 0
                and self.measured is None
                and not self.measuring
                and not self.calibrating
            )
        if action in MODEL_ACTIONS and not self.loaded:
            return None
        if action in ("calibrate", "verify") and self.model is not None and self.model.unavailable is not None:
            return None  # opened from a stats file: shown disabled; the calibration strip says why
        if action == "verify" and self.model is not None and self.model.apply_unavailable is not None:
            return None  # an exported graph: shown disabled; pressing it from the palette says why
        return True


def refused_schemes(measured: Measured, targets: Sequence[str]) -> dict[str, str]:
    """The schemes that cannot apply to one of ``targets`` (static or dynamic on an Embedding's
    indices, say), each with why: the picker shows them and does not offer them."""
    from tui_quantreport.engine.quantsim import SCHEMES

    analysis = measured.analysis
    if analysis is None:
        return {}
    refused: dict[str, str] = {}
    for name, scheme in SCHEMES.items():
        reasons = [
            why
            for fqn in targets
            if fqn in analysis.targets and (why := scheme.unsupported(analysis.targets[fqn].kind)) is not None
        ]
        if reasons:
            refused[name] = (
                reasons[0] if len(targets) == 1 else f"{len(reasons):,} of {len(targets):,} modules: {reasons[0]}"
            )
    return refused


def default_export_path(spec: str) -> str:
    """A file name for a report of ``spec`` in the current directory: ``showcase.quantreport.json``."""
    target = spec.rpartition(":")[0] if ":" in spec and not spec.endswith(".py") else spec
    stem = Path(target).stem or "model"
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)
    return f"{stem}.quantreport.json"


def default_stats_path(spec: str) -> str:
    """A stats file name for ``spec`` in the current directory: ``showcase.qstats``."""
    return default_export_path(spec).removesuffix(".quantreport.json") + ".qstats"


def calibrated_on(batches: int) -> str:
    """``Calibrated on 1 batch`` / ``Calibrated on 24 batches`` (the status line's first words)."""
    return f"Calibrated on {batches:,} batch{'es' if batches != 1 else ''}"


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


#: Cells of the header that are not its title: the icon on the left, the clock's space on the right.
HEADER_SIDES = 8 + 10


def header_room(width: int, title: str) -> int:
    """Cells the header leaves for the sub-title after ``title — ``, on a ``width``-column terminal."""
    return width - HEADER_SIDES - len(title) - len(" — ")
