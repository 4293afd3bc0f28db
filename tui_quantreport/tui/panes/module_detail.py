"""The detail view of the selected module: its recommendations, statistics and plots.

With the model (the tree's root) selected it shows the model summary instead.
The plots are bar charts of what the report holds: the per-channel input range
the calibration recorded, and each finding's :class:`Series` (outlier ratios,
the equalization metric) against its threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.reactive import var
from textual.widgets import Label, Static

from tui_quantreport.engine.escape import printable
from tui_quantreport.engine.report import Report
from tui_quantreport.tui.badges import badge_variable
from tui_quantreport.tui.model_session import Measured
from tui_quantreport.tui.panes.channel_plot import ChannelPlot
from tui_quantreport.tui.panes.findings_panel import FindingsPanel
from tui_quantreport.tui.panes.model_summary import ModelSummary
from tui_quantreport.tui.panes.plan_summary import PlanSummary
from tui_quantreport.tui.panes.sqnr_panel import SqnrPanel
from tui_quantreport.tui.panes.stats_table import StatsTable

if TYPE_CHECKING:  # engine types for type checkers only (importing quantsim loads torch)
    from tui_quantreport.engine.plan import Plan
    from tui_quantreport.engine.quantsim import Sqnr

RANGE_TITLE = "input min and max per channel"


class ModuleDetail(VerticalScroll, can_focus=True):
    """Everything about one module (or, for the root, the whole model).

    Reacts to ``report``, ``fqn`` (the module shown, "" for the model) and
    ``detector_index`` (badge colours), which the main screen binds.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "screen.focus_tree", "Back to the tree"),
        Binding("j", "scroll_down", "Scroll down", show=False),
        Binding("k", "scroll_up", "Scroll up", show=False),
    ]

    report: var[Report | None] = var(None, always_update=True)
    fqn: var[str | None] = var(None)
    detector_index: var[Mapping[str, int]] = var(dict)
    # The measured error and the what-if plan, passed on to the SQNR panes.
    measured: var[Measured | None] = var(None, always_update=True)
    plan: var[Plan | None] = var(None, always_update=True)
    plan_sqnr: var[Sqnr | None] = var(None, always_update=True)
    plan_pending = var(False)
    sensitivity: var[Mapping[str, Sqnr] | None] = var(None, always_update=True)
    limit: var[tuple[str, Sqnr] | None] = var(None, always_update=True)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._plots: list[ChannelPlot] = []

    def watch_report(self) -> None:
        self._redraw()

    def watch_fqn(self) -> None:
        self._redraw()
        self.scroll_home(animate=False)  # a new module opens at its title, not mid-page

    def _redraw(self) -> None:
        if self.report is not None and self.fqn is not None and self.is_mounted:
            self.show_module(self.report, self.fqn, self.detector_index)

    def compose(self) -> ComposeResult:
        yield Static("Loading the model…", id="detail-title")
        yield PlanSummary(id="plan-summary").data_bind(
            ModuleDetail.measured,
            ModuleDetail.plan,
            ModuleDetail.plan_sqnr,
            ModuleDetail.plan_pending,
            ModuleDetail.sensitivity,
            ModuleDetail.limit,
        )
        yield ModelSummary(id="model-summary")
        with Vertical(id="module-view"):
            yield SqnrPanel(id="sqnr").data_bind(
                ModuleDetail.measured, ModuleDetail.plan, ModuleDetail.sensitivity, ModuleDetail.fqn
            )
            yield FindingsPanel(id="findings")
            yield Label("Statistics", classes="detail-heading", id="stats-heading")
            yield StatsTable(id="stats")
            yield Label("Per-channel plots", classes="detail-heading", id="plots-heading")
            yield Vertical(id="plots")

    def show_module(self, report: Report, fqn: str, detector_index: Mapping[str, int]) -> None:
        """Show module ``fqn`` of ``report`` ("" shows the model summary)."""
        module = report.modules.get(fqn)
        summary = self.query_one(ModelSummary)
        view = self.query_one("#module-view")
        title = self.query_one("#detail-title", Static)
        if not fqn or module is None:
            title.update(Content.assemble(("Model summary", "bold"), f"  {report.model_class}"))
            summary.show_report(report, detector_index)
            summary.display, view.display = True, False
            self.query_one(PlanSummary).set_shown(True)
            return
        summary.display, view.display = False, True
        self.query_one(PlanSummary).set_shown(False)
        title.update(
            Content.assemble(
                (printable(fqn), "bold"),
                "  ",
                (printable(module.class_name), "italic"),
                (f"  · {module.params:,} parameters" if module.params else "", "dim"),
                (f"  · already quantized: {printable(module.quantized)}" if module.quantized else "", "dim"),
            )
        )
        self.query_one(FindingsPanel).show_module(report, fqn, detector_index)
        table = self.query_one(StatsTable)
        table.show_points(module.points, report.batches)
        table.display = bool(module.points)
        self.query_one("#stats-heading").display = bool(module.points)
        self._show_plots(report, fqn, detector_index)

    def _show_plots(self, report: Report, fqn: str, detector_index: Mapping[str, int]) -> None:
        """One plot per per-channel record: the input range, then each finding's series."""
        draws: list[Callable[[ChannelPlot], None]] = []
        for point in report.modules[fqn].points:
            if point.role == "pre" and point.channel_max:
                draws.append(
                    partial(
                        ChannelPlot.show_range,
                        title=RANGE_TITLE,
                        channel_min=point.channel_min,
                        channel_max=point.channel_max,
                    )
                )
        for finding in report.findings_for(fqn):
            colour = badge_variable(detector_index.get(finding.detector, 0))
            for series in finding.series:
                if any(v is not None for v in series.values):
                    draws.append(partial(ChannelPlot.show_series, series=series, colour=colour))
        while len(self._plots) < len(draws):
            plot = ChannelPlot(classes="channel-plot")
            self._plots.append(plot)
            self.query_one("#plots").mount(plot)
        for plot, draw in zip(self._plots, draws):
            draw(plot)
            plot.display = True
        for plot in self._plots[len(draws) :]:
            plot.display = False
        self.query_one("#plots-heading").display = bool(draws)
