"""The "which layers hurt" table: one row per quantizable module, sorted by any column.

Rows are the engine's :class:`~tui_quantreport.engine.layers.LayerRow` (plain data); this widget
lays them out, sorts them (:func:`~tui_quantreport.engine.layers.sort_rows`) and filters them.
The sorted column carries ▲ or ▼ in its header. Every cell is a ``rich.text.Text``, never a
markup string: module names are data and are shown literally (made printable).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.reactive import var
from textual.widgets import DataTable

from tui_quantreport.engine import LAYER_COLUMNS as COLUMNS
from tui_quantreport.engine import LayerRow
from tui_quantreport.engine import filter_layer_rows as filter_rows
from tui_quantreport.engine import sort_layer_rows as sort_rows
from tui_quantreport.engine.escape import printable

#: Short headers of the per-scheme local SQNR columns.
SCHEME_HEADERS = {
    "static_per_tensor": "st/tensor",
    "static_per_channel": "st/chan",
    "dynamic": "dynamic",
    "weight_only": "w-only",
}
#: Columns whose natural order is largest first (the rest: smallest, i.e. worst dB, first).
DESCENDING_FIRST = frozenset({"gain_db", "calls", "rows"})
#: Severity levels and their styles.
SEVERITY_STYLE = {"major": "bold red", "unmeasured": "yellow", "minor": "dim", "duplicate": "dim"}


def _db(value: float | None) -> Text:
    return Text("—", style="dim", justify="right") if value is None else Text(f"{value:.1f}", justify="right")


class LayerTable(DataTable[Text]):
    """Quantizable modules with their measured error; ``sort_by`` names the sorted column."""

    entries: var[Sequence[LayerRow]] = var((), always_update=True)
    schemes: var[Sequence[str]] = var(())
    sort_by = var("plan_db")
    descending = var(False)
    filter_text = var("")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._queued = False

    @property
    def columns_in_order(self) -> list[str]:
        """Every sortable column, in display order (the schemes' local SQNR after "local dB")."""
        keys = [key for key, _ in COLUMNS]
        at = keys.index("plan_db") + 1
        return keys[:at] + list(self.schemes) + keys[at:]

    def sort_on(self, column: str) -> None:
        """Sort by ``column``; the sorted column again flips the direction."""
        if column == self.sort_by:
            self.descending = not self.descending
        else:
            self.descending = column in DESCENDING_FIRST
            self.sort_by = column

    def sort_step(self, step: int) -> None:
        """Sort by the column ``step`` places right (or left) of the sorted one (htop's < >)."""
        keys = self.columns_in_order
        index = keys.index(self.sort_by) if self.sort_by in keys else 0
        self.sort_on(keys[(index + step) % len(keys)])

    def watch_entries(self) -> None:
        self._rebuild()

    def watch_schemes(self) -> None:
        self._rebuild()

    def watch_sort_by(self) -> None:
        self._rebuild()

    def watch_descending(self) -> None:
        self._rebuild()

    def watch_filter_text(self) -> None:
        self._rebuild()

    def shown(self) -> list[LayerRow]:
        """The rows shown, in the order shown."""
        return sort_rows(filter_rows(self.entries, self.filter_text), self.sort_by, self.descending)

    @property
    def current_module(self) -> str | None:
        """The module under the cursor."""
        shown = self.shown()
        return shown[self.cursor_row].module if 0 <= self.cursor_row < len(shown) else None

    def _rebuild(self) -> None:
        """Redraw once after the current changes (several reactives may change together)."""
        if not self._queued:
            self._queued = True
            self.call_later(self._redraw)

    def _redraw(self) -> None:
        self._queued = False
        keep = str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value) if self.row_count else None
        self.clear(columns=True)
        headers = dict(COLUMNS) | {s: SCHEME_HEADERS.get(s, s) for s in self.schemes}
        for key in self.columns_in_order:
            label = headers[key]
            if key == self.sort_by:
                label += " ▼" if self.descending else " ▲"
            self.add_column(Text(label, style="bold" if key == self.sort_by else ""), key=key)
        shown = self.shown()
        for row in shown:
            cells: list[Text] = [Text(str(row.depth), style="dim", justify="right"), Text(printable(row.module))]
            cells += [Text(printable(row.kind)), Text(row.scheme, style="bold" if row.scheme == "float" else "")]
            cells.append(_db(row.plan_db) if row.scheme != "float" else Text("float", style="dim", justify="right"))
            cells += [_db(row.local_db.get(s)) for s in self.schemes]
            cells += [
                _db(row.sensitivity_db),
                Text(printable(row.advice)),
                _db(row.gain_db),
                Text(row.severity, style=SEVERITY_STYLE.get(row.severity, "")),
                Text(f"{row.calls:,}", justify="right"),
                Text("—", style="dim", justify="right") if row.rows is None else Text(f"{row.rows:,}", justify="right"),
            ]
            self.add_row(*cells, key=row.module)
        if keep is not None:
            index = next((i for i, r in enumerate(shown) if r.module == keep), 0)
            self.move_cursor(row=index, animate=False)
