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

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

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

from tui_quantreport.engine.errors import CalibrationCancelled, UserError
from tui_quantreport.engine.report import Report
from tui_quantreport.tui.badge_legend import BadgeLegend
from tui_quantreport.tui.calibration_bar import CalibrationBar
from tui_quantreport.tui.detector_sidebar import DetectorSidebar
from tui_quantreport.tui.error_screen import ErrorScreen
from tui_quantreport.tui.export_dialog import ConfigRequest, ExportDialog
from tui_quantreport.tui.filter_input import FilterInput
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
    ModelLoaded,
    ModelLoadFailed,
    ModuleHighlighted,
    ParamChanged,
    ReportUpdated,
)
from tui_quantreport.tui.model_session import DetectorInfo, Loaded, ModelSession
from tui_quantreport.tui.module_detail import ModuleDetail
from tui_quantreport.tui.module_tree import ModuleTree
from tui_quantreport.tui.param_field import field_id
from tui_quantreport.tui.verify_screen import VerifyScreen

if TYPE_CHECKING:
    from concurrent.futures import Future

    from tui_quantreport.engine.settings import Settings
    from tui_quantreport.engine.stats import Stats

#: Below this many columns the sidebar is collapsed.
NARROW_WIDTH = 100

NOT_CALIBRATED = "Not calibrated yet: press c to run the calibration batches through the model."

#: The parameter the ``t`` key edits: (detector, parameter).
TOLERANCE = ("dynamic_vs_static_detector", "tolerance")

#: Actions bound to priority keys (see :meth:`MainScreen.check_action`).
PRIORITY_ACTIONS = frozenset({"cancel_calibration", "filter", "focus_tolerance"})

#: Seconds the tree cursor must rest on a module before the detail view redraws.
DETAIL_DELAY = 0.04

#: Actions that need a loaded model (shown disabled in the footer until then).
MODEL_ACTIONS = frozenset(
    {"export", "save_stats", "verify", "next_finding", "previous_finding", "filter", "toggle_helpers", "focus_tolerance"}
)


class MainScreen(Screen[None]):
    """Module-by-module quantization advice for one PyTorch model: the app's one working screen."""

    #: Every key of the app. ``description`` is the footer's word, ``tooltip`` the help's and the
    #: palette's sentence; bindings with ``show=False`` are still listed in the help and the palette.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "calibrate", "Calibrate", tooltip="Run the calibration batches through the model"),
        Binding("escape", "cancel_calibration", "Cancel", priority=True,
                tooltip="Cancel the calibration between batches; the previous results stay"),
        Binding("n", "next_finding", "Next", tooltip="Jump to the next module with a recommendation"),
        Binding("N", "previous_finding", "Prev", key_display="N",
                tooltip="Jump to the previous module with a recommendation"),
        Binding("slash", "filter", "Filter", priority=True, tooltip="Filter the module tree by name or class"),
        Binding("escape", "clear_filter", "Clear filter", show=False, tooltip="Clear the tree filter"),
        Binding("e", "export", "Export",
                tooltip="Export the report as JSON or Markdown, or the plan as a torchao / PT2E / torch.ao configuration"),
        Binding("s", "save_stats", "Save stats", show=False,
                tooltip="Save the statistics to a stats file (.qstats), to reopen without the model"),
        Binding("v", "verify", "Verify", show=False,
                tooltip="Apply the plan with torchao to a copy of the model; achieved SQNR next to the predicted one"),
        Binding("t", "focus_tolerance", "Tolerance", show=False, priority=True,
                tooltip="Edit the dynamic-vs-static tolerance (Enter applies, Esc returns to the tree)"),
        Binding("o", "toggle_helpers", "Observers", show=False,
                tooltip="Show or hide the observers and fake quantizers of a prepared model"),
        Binding("b", "toggle_sidebar", "Sidebar",
                tooltip="Show or hide the sidebar (on a narrow terminal: in place of the detail view)"),
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
    show_helpers = var(False)
    #: Calibrate on at most this many batches (None: all).
    max_batches: var[int | None] = var(None)
    #: Whether a calibration is running, and whether the model is loaded (both decide the footer's keys).
    calibrating = var(False, bindings=True)
    #: Whether an export or verification of the plan (``v``, ``e``) is running.
    applying = var(False, bindings=True)
    loaded = var(False, bindings=True)

    def __init__(self, spec: str, loading: Future[Loaded], max_batches: int | None = None) -> None:
        """``loading`` is the model being built in the background (see :meth:`ModelSession.load_in_background`)."""
        super().__init__()
        self.spec = spec
        self.model: ModelSession | None = None
        self.stats: Stats | None = None  # the kept engine Stats snapshot
        self.load_failed = False
        self.set_reactive(MainScreen.max_batches, max_batches)
        self._loading = loading
        self._calibrate_when_loaded = False
        self._cancel = threading.Event()
        self._generation = 0
        self._recommended: list[str] = []
        self._detail_timer: Timer | None = None
        self._pending_fqn = ""

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
                MainScreen.detector_index, MainScreen.report, fqn=MainScreen.detail_fqn
            )
            yield DetectorSidebar(id="sidebar").data_bind(
                MainScreen.detectors, MainScreen.max_batches, MainScreen.settings, MainScreen.report
            )
        yield CalibrationBar(id="calibration")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.app.sub_title = self.spec
        self.query_one(FilterInput).display = False
        self._fit_width(self.app.size.width)
        self.query_one(ModuleTree).focus()
        self._load()

    def on_resize(self, event: Resize) -> None:
        self._fit_width(event.size.width)

    def _fit_width(self, width: int) -> None:
        self.query_one("#main").set_class(width < NARROW_WIDTH, "-narrow")

    # Reacting ---------------------------------------------------------------

    def watch_report(self, report: Report | None) -> None:
        self._recommended = report.recommended_modules() if report is not None else []

    # Loading ----------------------------------------------------------------

    # Each worker names itself: Textual would otherwise repr() the arguments (settings, stats) for its
    # description, which formats every recorded tensor.
    @work(thread=True, exclusive=True, group="load", exit_on_error=False, description="load the model")
    def _load(self) -> None:
        """Wait for the model started with the app: built, with its session, evaluated uncalibrated."""
        try:
            loaded = self._loading.result()
        except UserError as exc:
            self.post_message(ModelLoadFailed(str(exc)))
        except Exception as exc:  # the user's code can raise anything; show it, never a traceback
            self.post_message(ModelLoadFailed(f"{self.spec}: {type(exc).__name__}: {exc}"))
        else:
            self.post_message(ModelLoaded(loaded))

    @on(ModelLoaded)
    def _model_loaded(self, message: ModelLoaded) -> None:
        loaded = message.loaded
        self.model, self.stats = loaded.session, loaded.stats
        self.detectors = loaded.detectors
        self.detector_index = {detector.name: index for index, detector in enumerate(loaded.detectors)}
        self.settings = loaded.settings
        self.report = loaded.report
        if self.detail_fqn is None:
            self.detail_fqn = self.query_one(ModuleTree).current_fqn
        self.query_one(CalibrationBar).say(loaded.status or NOT_CALIBRATED)
        self.loaded = True
        if self._calibrate_when_loaded:
            self.action_calibrate()

    @on(ModelLoadFailed)
    def _model_failed(self, message: ModelLoadFailed) -> None:
        self.load_failed = True
        self.refresh_bindings()
        self.app.push_screen(ErrorScreen("The model could not be loaded", message.text))

    # Reports ----------------------------------------------------------------

    def _reevaluate(self) -> None:
        """Judge the kept stats with the current settings, off the UI thread."""
        if self.model is None or self.stats is None or self.settings is None:
            return
        self._generation += 1
        self._evaluate(self.stats, self.settings, self._generation)

    @work(thread=True, exclusive=True, group="evaluate", exit_on_error=False, description="evaluate")
    def _evaluate(self, stats: Stats, settings: Settings, generation: int) -> None:
        model = self.model
        if model is None:
            return
        try:
            report = model.evaluate(stats, settings)
        except Exception as exc:  # a detector bug must not take the app down
            self.app.call_from_thread(self.notify, f"{type(exc).__name__}: {exc}", title="Evaluation failed",
                                      severity="error", markup=False)
            return
        self.post_message(ReportUpdated(report, generation))

    @on(ReportUpdated)
    def _report_updated(self, message: ReportUpdated) -> None:
        if message.generation == self._generation:
            self.report = message.report

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
        self.query_one(CalibrationBar).start("Calibrating…  Esc cancels")
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
        if message.total is not None and message.done == message.total and not self.applying:
            bar.say("All batches seen; judging the modules…")

    @on(CalibrationFinished)
    def _calibration_finished(self, message: CalibrationFinished) -> None:
        calibrated = message.calibrated
        self.calibrating = False
        self.stats = calibrated.stats
        batches = calibrated.stats.batches
        self.query_one(CalibrationBar).stop(f"Calibrated on {batches:,} batch{'es' if batches != 1 else ''}.")
        self.report = calibrated.report
        if calibrated.settings is not self.settings:  # changed while calibrating
            self._reevaluate()

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
        """Stop the running calibration (or plan verification/export) between batches; the previous results stay."""
        if self.calibrating or self.applying:
            self._cancel.set()
            self.query_one(CalibrationBar).say("Cancelling after the current batch…", "warning")

    def cancel_work(self) -> None:
        """Ask every running worker to stop at its next check (used when quitting)."""
        self._cancel.set()

    # Moving around ----------------------------------------------------------

    def action_next_finding(self) -> None:
        self._jump(forward=True)

    def action_previous_finding(self) -> None:
        self._jump(forward=False)

    def _jump(self, forward: bool) -> None:
        tree = self.query_one(ModuleTree)
        if not self._recommended:
            calibrated = self.report is not None and self.report.batches > 0
            self.notify(
                "No module has a recommendation with the current settings."
                if calibrated else "No recommendations yet: press c to calibrate."
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
        """Put the keyboard back on the module tree."""
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

    def action_toggle_helpers(self) -> None:
        """Show or hide the observers and fake quantizers of a prepared model."""
        self.show_helpers = not self.show_helpers
        self.notify("Observers and fake quantizers are " + ("shown." if self.show_helpers else "hidden."))

    def action_toggle_sidebar(self) -> None:
        """Show or hide the sidebar (on a narrow terminal it takes the detail view's place)."""
        self.query_one("#main").toggle_class("-sidebar-toggled")

    # Export, help, quit -----------------------------------------------------

    def action_export(self) -> None:
        """Open the export dialog for the current report."""
        if self.report is None:
            self.notify("Nothing to export yet: the model is still loading.")
            return
        self.app.push_screen(ExportDialog(self.report, default_export_path(self.report.spec), configs=True), self._exported)

    def _exported(self, path: str | ConfigRequest | None) -> None:
        if isinstance(path, ConfigRequest):
            self._start_apply("export", path.target, path.path)
        elif path:
            self.notify(f"Wrote the report to {path}", title="Exported", markup=False)

    def action_save_stats(self) -> None:
        """Save the current statistics to ``<model>.qstats`` (written atomically), to reopen without the model."""
        if self.model is None or self.stats is None or self.settings is None or not self.stats.batches:
            self.notify("Nothing to save yet: press c to calibrate first.")
            return
        self._save_stats(self.stats, self.settings, default_stats_path(self.model.spec))

    @work(thread=True, group="save", exit_on_error=False, description="save the statistics")
    def _save_stats(self, stats: Stats, settings: Settings, path: str) -> None:
        model = self.model
        if model is None:
            return
        try:
            written = model.save_stats(stats, settings, path)
        except UserError as exc:
            self.app.call_from_thread(self.notify, str(exc), title="Statistics not saved", severity="error",
                                      markup=False)
        else:
            self.app.call_from_thread(
                self.notify, f"Wrote the statistics of {stats.batches:,} batches to {written}",
                title="Saved", markup=False,
            )
    # Apply the plan (engine/apply: issue 8) ---------------------------------

    def action_verify(self) -> None:
        """Apply the plan with torchao to a copy of the model and measure it (in a worker; Esc cancels)."""
        self._start_apply("verify", "torchao", None)

    def _start_apply(self, kind: str, target: str, path: str | None) -> None:
        if self.model is None:
            return
        if self.model.unavailable is not None:
            self.notify(f"Needs the model: {self.model.unavailable}", markup=False)
            return
        if self.calibrating or self.applying:
            self.notify("Busy: wait for the running calibration or verification (Esc cancels it).")
            return
        self.applying = True
        self._cancel.clear()
        what = "Verifying the torchao export" if kind == "verify" else f"Exporting the {target} configuration"
        self.query_one(CalibrationBar).start(f"{what}…  Esc cancels")
        self._apply(kind, target, path)

    def _current_plan(self) -> object | None:
        """The app's plan, when it has one (a quantsim Plan); None: the recommended plan is measured."""
        plan = getattr(self, "plan", None)
        return plan if plan is not None and hasattr(plan, "modules") and hasattr(plan, "fingerprint") else None

    @work(thread=True, exclusive=True, group="apply", exit_on_error=False, description="apply the plan")
    def _apply(self, kind: str, target: str, path: str | None) -> None:
        from tui_quantreport.engine.apply.api import apply_in_app

        worker = get_current_worker()
        model = self.model
        if model is None:
            return

        def progress(done: int, total: int | None) -> None:
            self.post_message(CalibrationProgress(done, total))

        try:
            title, text, note = apply_in_app(
                kind, target, path, model.loaded_model, model.catalog, self._current_plan(),
                progress=progress, should_cancel=lambda: self._cancel.is_set() or worker.is_cancelled,
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
        self.query_one(CalibrationBar).stop(note.splitlines()[0] if note else "", "error" if severity == "error" else "")
        if text is not None and title is not None:
            self.app.push_screen(VerifyScreen(title, text))
        elif note:
            self.notify(note, severity=severity, timeout=10, markup=False)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(key_sections(self.app)))

    async def action_quit(self) -> None:
        """Quit, asking a running calibration to stop between batches."""
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
            return self.calibrating or self.applying
        if action == "clear_filter":
            return bool(self.filter_text)
        if action in MODEL_ACTIONS and not self.loaded:
            return None
        if action in ("calibrate", "verify") and self.model is not None and self.model.unavailable is not None:
            return None  # opened from a stats file: shown disabled; the calibration strip says why
        return True


def default_export_path(spec: str) -> str:
    """A file name for a report of ``spec`` in the current directory: ``showcase.quantreport.json``."""
    target = spec.rpartition(":")[0] if ":" in spec and not spec.endswith(".py") else spec
    stem = Path(target).stem or "model"
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)
    return f"{stem}.quantreport.json"


def default_stats_path(spec: str) -> str:
    """A stats file name for ``spec`` in the current directory: ``showcase.qstats``."""
    return default_export_path(spec).removesuffix(".quantreport.json") + ".qstats"
