"""The frontier screen (``F``): the SQNR-vs-size plot of the planner's plans; Enter picks one.

Shows plain data: the rows, and sentences (the fused-group cost, what the sensitivity cost),
each shown literally. Dismisses with the picked :class:`FrontierRow` (None on Esc).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from tui_quantreport.engine.planner_report import FrontierRow, frontier_rows
from tui_quantreport.tui.frontier_plot import FrontierPlot

if TYPE_CHECKING:
    from tui_quantreport.engine.quantsim.planner import PlannerResult, PlanPoint


class FrontierMeasured(Message):
    """The planner's frontier for one measurement (``measured``: the app's measurement it was run on)."""

    def __init__(self, measured: Any, result: PlannerResult) -> None:
        super().__init__()
        self.measured = measured
        self.result = result
        self.rows = frontier_rows(result.to_json())
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
        self.notes = notes

    def point(self, row: FrontierRow) -> PlanPoint | None:
        points = self.result.frontier
        return points[row.index] if 0 <= row.index < len(points) else self.result.chosen

    def warning(self, point: PlanPoint) -> str:
        """The low-SQNR warning for a picked point ("" when it is above the threshold)."""
        from tui_quantreport.engine.quantsim.planner import DEFAULT_WARN_BELOW_DB, costliest, low_sqnr_warning, noise_of

        noise = {}
        for unit in self.result.units:
            n = noise_of(self.result.sensitivity.get((unit.name, point.choice[unit.name])))
            if n is not None:
                noise[unit.name] = n
        return low_sqnr_warning(
            "picked plan", point.simulated.db, DEFAULT_WARN_BELOW_DB, costliest(noise), "their SQNR quantized alone"
        )


class FrontierScreen(ModalScreen[FrontierRow | None]):
    """The frontier plot with a title and notes; Enter makes the cursor's point the plan."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, rows: Sequence[FrontierRow], notes: Sequence[str] = ()) -> None:
        super().__init__()
        self.rows = tuple(rows)
        self.notes = tuple(notes)

    def compose(self) -> ComposeResult:
        with Vertical(id="frontier-box"):
            yield Static(
                Content.styled("Frontier: end-to-end SQNR against size (Enter makes a point the plan)", "bold"),
                id="frontier-title",
            )
            yield FrontierPlot(self.rows, id="frontier-plot")
            if self.notes:
                yield Static(Content("\n").join(Content(line) for line in self.notes), id="frontier-notes")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(FrontierPlot).focus()

    @on(FrontierPlot.Picked)
    def _picked(self, message: FrontierPlot.Picked) -> None:
        self.dismiss(message.row)

    def action_close(self) -> None:
        self.dismiss(None)
