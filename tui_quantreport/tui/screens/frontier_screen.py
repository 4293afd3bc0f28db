"""The frontier screen (``F``): the SQNR-vs-size plot of the planner's plans; Enter picks one.

Shows plain data: the rows, and sentences (the fused-group cost, what the sensitivity cost),
each shown literally. Dismisses with the picked :class:`FrontierRow` (None on Esc).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from tui_quantreport.engine import FrontierRow
from tui_quantreport.tui.screens.frontier_plot import FrontierPlot


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
