"""Moving around: the detail view, n / N, the filter, focus, zoom, copying, pane sizes, the layers screen.

A part of :class:`~tui_quantreport.tui.main_screen.MainScreen` (its state is in
:class:`~tui_quantreport.tui.main_state.MainState`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on
from textual.widget import Widget

from tui_quantreport.tui.messages import (
    FilterChanged,
    FilterClosed,
    ModuleHighlighted,
)
from tui_quantreport.tui.panes.detector_sidebar import MIN_GAIN
from tui_quantreport.tui.panes.filter_input import FilterInput
from tui_quantreport.tui.panes.module_detail import ModuleDetail
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.panes.param_field import field_id
from tui_quantreport.tui.panes.sqnr_panel import sqnr_text

if TYPE_CHECKING:
    from tui_quantreport.tui.main_screen import MainScreen

    pass


from tui_quantreport.tui.main_state import (
    DETAIL_DELAY,
    TOLERANCE,
    LayerData,
    MainState,
)


class NavigationController(MainState):
    """Moving around: the detail view, n / N, the filter, focus, zoom, copying, pane sizes, the layers screen."""

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

    def layer_data(self) -> LayerData:
        """What the layers screen shows, from the current state (plain data)."""
        from tui_quantreport.engine import layer_rows
        from tui_quantreport.tui.panes.depth_plot import depth_points

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
        from tui_quantreport.tui.screens.layers_screen import LayersScreen

        if self.measured is None:
            self.notify("Nothing measured yet: press c to calibrate, the error is measured after it.")
            return

        def chosen(fqn: str | None) -> None:
            if fqn:
                self.go_to_module(fqn)

        self.app.push_screen(LayersScreen(cast("MainScreen", self)), chosen)

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
        if self.target and self.target != self._default_target:
            parts += ["--target", self.target]
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
