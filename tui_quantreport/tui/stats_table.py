"""What calibration saw at a module's input and output, as a table."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich import box
from rich.table import Table
from textual.widgets import Static

from tui_quantreport.engine.report import PointSummary
from tui_quantreport.tui.formatting import number, shapes

ROLE_TITLES = {"pre": "input", "post": "output"}

#: The table's rows: a label and how to read the value from a :class:`PointSummary`.
ROWS: tuple[tuple[str, Callable[[PointSummary], str]], ...] = (
    ("batches seen (calls)", lambda p: number(p.calls)),
    ("shapes", lambda p: shapes(p.shapes)),
    ("minimum", lambda p: number(p.minimum)),
    ("maximum", lambda p: number(p.maximum)),
    ("S = mean batch range / range", lambda p: number(p.comparison_stat)),
    ("channels", lambda p: "–" if p.channels is None else number(p.channels)),
    ("channel axis", lambda p: "–" if p.axis is None else str(p.axis)),
    ("all values finite", lambda p: "yes" if p.finite else "no (NaN or inf seen)"),
)


class StatsTable(Static):
    """One column per observed side of the module (input, output), one row per statistic."""

    points: tuple[PointSummary, ...] = ()

    def show_points(self, points: Sequence[PointSummary]) -> None:
        """Show ``points`` (a module's :attr:`ModuleSummary.points`)."""
        self.points = tuple(points)
        table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False, show_edge=False)
        table.add_column("statistic", style="dim", no_wrap=True)
        for point in points:
            table.add_column(ROLE_TITLES.get(point.role, point.role), overflow="fold")
        for label, read in ROWS:
            table.add_row(label, *(read(point) for point in points))
        # Why each side's channel axis is the one it is (decided per tensor by the engine).
        reasons = [
            f"{ROLE_TITLES.get(p.role, p.role)} axis: {p.axis_reason}" for p in points if p.axis_reason
        ]
        if reasons:
            table.caption = "\n".join(reasons)
            table.caption_justify = "left"
            table.caption_style = "dim"
        self.update(table)

    @property
    def row_count(self) -> int:
        """How many statistics are shown (0 when the module was not observed)."""
        return len(ROWS) if self.points else 0
