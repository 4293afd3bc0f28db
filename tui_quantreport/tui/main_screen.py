"""The main screen: owns the report state, routes engine results to the panes, answers the keys.

Layout: the module tree (with its filter box and badge legend) on the left,
the detail view of the selected module in the middle, the detector sidebar on
the right, the calibration strip and the footer at the bottom. A terminal
narrower than :data:`NARROW_WIDTH` hides the sidebar (``b`` shows it in place
of the detail view) rather than clipping text.

State lives in the screen's reactives (``report``, ``settings``, ``plan``,
``target``…, declared in :class:`~.main_state.MainState`); the panes are bound to
them with ``data_bind`` and redraw in their own watchers, so a new report is one
assignment. The screen's jobs are one controller each (:mod:`.controllers`):
loading, settings and calibration (``session``), the measurement workers
(``measure``), the plan and its edits (``plan``), exports, the target and verify
(``export``), moving around (``navigation``); this class puts them together
with the layout and the keys. Work runs in thread workers through
:func:`.workers.run_in_thread` (:class:`ModelSession` does the engine calls);
results come back as messages (:mod:`.messages`). Every key of the app is in
:data:`MainScreen.BINDINGS`: the footer, the help screen and the command
palette are built from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.widgets import Footer, Input

from tui_quantreport.tui.panes.app_header import AppHeader
from tui_quantreport.tui.panes.badge_legend import BadgeLegend
from tui_quantreport.tui.panes.calibration_bar import CalibrationBar
from tui_quantreport.tui.panes.detector_sidebar import DetectorSidebar
from tui_quantreport.tui.panes.filter_input import FilterInput
from tui_quantreport.tui.panes.module_detail import ModuleDetail
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.screens.help_screen import HelpScreen, key_sections

if TYPE_CHECKING:
    pass

from tui_quantreport.tui.controllers.export import ExportController, default_export_path, default_stats_path
from tui_quantreport.tui.controllers.measure import MeasureController, seconds_text, sensitivity_cost
from tui_quantreport.tui.controllers.navigation import NavigationController
from tui_quantreport.tui.controllers.plan import PlanController, header_room, refused_schemes
from tui_quantreport.tui.controllers.session import SessionController
from tui_quantreport.tui.main_state import (
    DETAIL_DELAY,
    LOAD_POLL,
    NARROW_WIDTH,
    NOT_CALIBRATED,
    PLAN_DELAY,
    PROBE_BATCHES,
    TOLERANCE,
    LayerData,
    MainState,
    calibrated_on,
)

#: Actions bound to priority keys (see :meth:`MainScreen.check_action`).
PRIORITY_ACTIONS = frozenset(
    {"cancel_calibration", "filter", "focus_tolerance", "focus_min_gain", "focus_target", "export"}
)

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
        "focus_target",
    }
)

#: Actions that need the measured error (after a calibration).
PLAN_ACTIONS = frozenset(
    {"toggle_float", "pick_scheme", "sensitivity", "frontier", "undo_plan", "redo_plan", "layers", "walk_by"}
)

__all__ = [
    "DETAIL_DELAY",
    "LOAD_POLL",
    "NARROW_WIDTH",
    "NOT_CALIBRATED",
    "PLAN_DELAY",
    "PROBE_BATCHES",
    "TOLERANCE",
    "LayerData",
    "MainScreen",
    "calibrated_on",
    "default_export_path",
    "default_stats_path",
    "header_room",
    "refused_schemes",
    "seconds_text",
    "sensitivity_cost",
]


class MainScreen(
    SessionController, MeasureController, PlanController, ExportController, NavigationController, MainState
):
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
            "T",
            "focus_target",
            "Target",
            show=False,
            priority=True,
            key_display="T",
            tooltip="Pick the deployment target in the sidebar: the plan is measured again the way that target "
            "runs the model (Enter opens the list, Esc returns to the tree)",
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

    # Layout -----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield AppHeader()
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
                MainScreen.target,
                MainScreen.target_names,
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
