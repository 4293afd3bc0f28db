"""The SQNR-vs-size frontier as a text plot: one row per plan, a bar as long as its end-to-end SQNR.

Renders plain data only (:class:`~tui_quantreport.engine.planner_report.FrontierRow`, drawn by
:func:`~tui_quantreport.engine.planner_report.plot_lines`: every number, NaN and infinities
included, is written safely). Up/Down move the cursor; Enter posts :class:`FrontierPlot.Picked`
with the row, which the screen makes the current plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from tui_quantreport.engine import FrontierRow, plot_lines

#: Columns of the plot's text besides the bar (marks, sizes, numbers, the kind).
TEXT_COLUMNS = 72


class FrontierPlot(Widget, can_focus=True):
    """One row per frontier point, by size; the cursor row is highlighted."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Previous point", show=False),
        Binding("down,j", "move(1)", "Next point", show=False),
        Binding("enter", "pick", "Make it the plan"),
    ]

    rows: reactive[tuple[FrontierRow, ...]] = reactive((), layout=True)
    cursor = reactive(0)

    class Picked(Message):
        """The user chose a frontier point (Enter)."""

        def __init__(self, row: FrontierRow) -> None:
            super().__init__()
            self.row = row

    def __init__(self, rows: Sequence[FrontierRow] = (), *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.set_reactive(FrontierPlot.rows, tuple(rows))
        chosen = next((i for i, r in enumerate(rows) if r.chosen), 0)
        self.set_reactive(FrontierPlot.cursor, chosen)

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.rows) - 1)) if self.rows else 0

    def action_move(self, step: int) -> None:
        self.cursor += step

    def action_pick(self) -> None:
        if self.rows:
            self.post_message(self.Picked(self.rows[self.cursor]))

    def get_content_height(self, container, viewport, width: int) -> int:  # type: ignore[no-untyped-def]
        return max(1, len(self.rows))

    def render(self) -> Text:
        if not self.rows:
            return Text("No frontier measured.")
        width = max(8, self.size.width - TEXT_COLUMNS) if self.size.width else 30
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, line in enumerate(plot_lines(self.rows, width)):
            if i:
                text.append("\n")
            text.append(line, style="reverse" if i == self.cursor else "")
        return text
