"""What calibration saw at a module's input and output, as a table."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.widgets import DataTable

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


class StatsTable(DataTable):
    """One column per observed side of the module (input, output), one row per statistic."""

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id, cursor_type="none", zebra_stripes=True, show_cursor=False)
        self.can_focus = False

    def show_points(self, points: Sequence[PointSummary]) -> None:
        """Show ``points`` (a module's :attr:`ModuleSummary.points`)."""
        self.clear(columns=True)
        self.add_column("statistic", key="statistic")
        for point in points:
            self.add_column(ROLE_TITLES.get(point.role, point.role), key=point.role)
        for label, read in ROWS:
            self.add_row(label, *(read(point) for point in points))
