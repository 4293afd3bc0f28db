"""What calibration saw at a module's input and output, as a table that fits its width.

No cell ever wraps: numbers are written in at most four significant digits,
shapes as ``16×4×16×16``, and when input and output do not fit side by side
(narrow terminals, the detail view at 80 or 120 columns) they are stacked, one
small table each. The table is never cut: the detail view scrolls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.events import Resize
from textual.widgets import Static

from tui_quantreport.engine.report import PointSummary
from tui_quantreport.tui.formatting import compact_shapes, number

ROLE_TITLES = {"pre": "input", "post": "output"}

#: The table's rows: a label and how to read the value from a :class:`PointSummary` (and the
#: number of calibration batches, which says why a module called several times per batch has more calls).
ROWS: tuple[tuple[str, Callable[[PointSummary, int], str]], ...] = (
    ("calls", lambda p, batches: _calls(p.calls, batches)),
    ("shapes", lambda p, _: compact_shapes(p.shapes)),
    ("minimum", lambda p, _: number(p.minimum)),
    ("maximum", lambda p, _: number(p.maximum)),
    ("S (batch range / range)", lambda p, _: number(p.comparison_stat)),
    ("channels", lambda p, _: "–" if p.channels is None else number(p.channels)),
    ("channel axis", lambda p, _: "–" if p.axis is None else str(p.axis)),
    ("all values finite", lambda p, _: "yes" if p.finite else "no (NaN or inf)"),
)

#: Columns between the table's columns.
PADDING = 2


def _calls(calls: int, batches: int) -> str:
    if batches and calls != batches:
        return f"{calls:,} in {batches:,} batches"
    return f"{calls:,}"


class StatsTable(Static):
    """Input and output side by side when they fit, else stacked; one row per statistic."""

    points: tuple[PointSummary, ...] = ()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.batches = 0
        self.stacked = False

    def show_points(self, points: Sequence[PointSummary], batches: int = 0) -> None:
        """Show ``points`` (a module's :attr:`ModuleSummary.points`) of a calibration on ``batches``."""
        self.points = tuple(points)
        self.batches = batches
        self._draw()

    def on_resize(self, event: Resize) -> None:
        self._draw()

    def _draw(self) -> None:
        cells = [[read(point, self.batches) for point in self.points] for _, read in ROWS]
        label_width = max(len(label) for label, _ in ROWS)
        widths = [
            max([len(ROLE_TITLES.get(p.role, p.role))] + [len(row[i]) for row in cells])
            for i, p in enumerate(self.points)
        ]
        side_by_side = label_width + sum(widths) + PADDING * len(widths)
        available = self.size.width or self.app.size.width
        self.stacked = len(self.points) > 1 and side_by_side > available
        # Why each side's channel axis is the one it is (decided per tensor by the engine).
        reasons = [f"{ROLE_TITLES.get(p.role, p.role)} axis: {p.axis_reason}" for p in self.points if p.axis_reason]
        note: list[RenderableType] = [Text("\n".join(reasons), style="dim")] if reasons else []
        if not self.stacked:
            self.update(Group(self._table(range(len(self.points)), cells), *note))
            return
        parts: list[RenderableType] = [self._table([i], cells) for i in range(len(self.points))]
        self.update(Group(*parts, *note))

    def _table(self, columns: Sequence[int] | range, cells: list[list[str]]) -> Table:
        table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False, show_edge=False, padding=(0, 1))
        table.add_column("statistic", style="dim", no_wrap=True)
        for i in columns:
            point = self.points[i]
            table.add_column(ROLE_TITLES.get(point.role, point.role), no_wrap=True, overflow="ellipsis")
        for (label, _), row in zip(ROWS, cells):
            table.add_row(label, *(row[i] for i in columns))
        return table

    @property
    def row_count(self) -> int:
        """How many statistics are shown (0 when the module was not observed)."""
        return len(ROWS) if self.points else 0
