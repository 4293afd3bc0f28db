"""The "which layers hurt" screen (``l``): the module table, sortable and filterable, over the
plot of SQNR along depth.

It shows the main screen's state (the report, the measured local SQNR, the plan on screen, the
sensitivity, the SQNR along depth) and follows it while open: a plan edit or a sensitivity
measurement lands here too. Keys sort the way htop and k9s do: a capital letter per column (again:
the other direction), ``<`` / ``>`` move the sort to the next column; ``/`` filters; Enter shows
the module in the main screen; Esc closes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from tui_quantreport.tui.panes.depth_plot import DepthPlot
from tui_quantreport.tui.screens.layer_table import LayerTable

if TYPE_CHECKING:
    from tui_quantreport.tui.main_screen import MainScreen

#: Sort keys: (key, column, footer word).
SORT_KEYS = (
    ("M", "module", "module"),
    ("K", "kind", "kind"),
    ("P", "scheme", "plan"),
    ("L", "plan_db", "local dB"),
    ("S", "sensitivity_db", "sensitivity"),
    ("G", "gain_db", "gain"),
    ("V", "severity", "severity"),
    ("C", "calls", "calls"),
    ("R", "rows", "tokens/rows"),
    ("D", "depth", "depth"),
)


class LayersScreen(Screen[str | None]):
    """Dismisses with the module to show in the main screen (Enter), or None (Esc)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("slash", "filter", "Filter"),
        Binding("less_than_sign", "sort_step(-1)", "Sort ◀", key_display="<"),
        Binding("greater_than_sign", "sort_step(1)", "Sort ▶", key_display=">"),
        *(
            Binding(key, f"sort('{column}')", f"by {word}", key_display=key, show=key in "LSG")
            for key, column, word in SORT_KEYS
        ),
    ]

    def __init__(self, main: MainScreen) -> None:
        super().__init__()
        self.main = main

    def compose(self) -> ComposeResult:
        yield Static("", id="layers-title")
        yield Input(placeholder="filter: module, kind, scheme, advice or severity", id="layers-filter")
        yield LayerTable(id="layers-table")
        with VerticalScroll(id="layers-plot-box"):
            yield DepthPlot(id="layers-plot")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#layers-filter").display = False
        table = self.query_one(LayerTable)
        table.sort_by = "sensitivity_db" if self.main.sensitivity else "plan_db"
        for name in ("plan", "plan_sqnr", "plan_pending", "sensitivity", "measured", "report", "depth"):
            self.watch(self.main, name, self._follow, init=False)
        self._follow()
        table.focus()
        self.main.request_depth()

    def _follow(self, _: object = None) -> None:
        """Redraw from the main screen's state (and ask for the SQNR along depth of a new plan)."""
        data = self.main.layer_data()
        table = self.query_one(LayerTable)
        table.schemes = data.schemes
        table.entries = data.rows
        plot = self.query_one(DepthPlot)
        plot.note = data.depth_note
        plot.output_db = data.output_db
        plot.points = data.points
        self.query_one("#layers-title", Static).update(
            Content.assemble(("Which layers hurt", "bold"), "  ", (data.headline, "dim"))
        )
        self.main.request_depth()

    def action_sort(self, column: str) -> None:
        self.query_one(LayerTable).sort_on(column)

    def action_sort_step(self, step: int) -> None:
        self.query_one(LayerTable).sort_step(step)

    def action_filter(self) -> None:
        box = self.query_one("#layers-filter", Input)
        box.display = True
        self.set_focus(box)

    @on(Input.Changed, "#layers-filter")
    def _filtered(self, event: Input.Changed) -> None:
        self.query_one(LayerTable).filter_text = event.value

    @on(Input.Submitted, "#layers-filter")
    def _filter_done(self) -> None:
        self.set_focus(self.query_one(LayerTable))

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value) if event.row_key.value is not None else None)

    def action_close(self) -> None:
        box = self.query_one("#layers-filter", Input)
        if box.has_focus:  # Esc in the filter: clear it and go back to the table
            box.value = ""
            box.display = False
            self.set_focus(self.query_one(LayerTable))
            return
        self.dismiss(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action.startswith("sort") and isinstance(self.focused, Input):
            return False  # capitals typed in the filter are text
        return True
