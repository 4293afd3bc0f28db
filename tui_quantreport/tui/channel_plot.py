"""A per-channel bar chart: one row per channel, the threshold drawn at its exact column.

Plots only what it is given: a :class:`Series` from a finding (values, and a
lower and/or upper threshold), or the per-channel minimum and maximum a
:class:`PointSummary` recorded. Channels without a value (None) are left out.

Bars are horizontal, one channel per row with its index and value, so a layer
of any width is readable: up to :data:`PAGE_ROWS` channels are shown in
channel order; a wider layer shows its top channels by the plotted value, and
``[`` / ``]`` page through the rest. A threshold is a vertical line at the
column of its value (drawn across the bars, never hidden under them) and is
labelled on the axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.content import Content
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

from tui_quantreport.engine.report import Series

#: Channels shown at once; wider layers are paged.
PAGE_ROWS = 16
#: Theme variables the plot draws with.
THRESHOLD_STYLE = "bold $error"
MAX_COLOUR = "accent"
MIN_COLOUR = "primary"
BAR = "█"


@dataclass(frozen=True)
class _Row:
    channel: int
    low: float  # the bar runs from low to high (one of them is 0 for a series)
    high: float
    text: str  # the value(s) as written beside the bar


class ChannelPlot(Widget, can_focus=True):
    """One per-channel bar chart; focus it and press ``[`` / ``]`` to page through a wide layer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right_square_bracket", "page(1)", "More channels"),
        Binding("left_square_bracket", "page(-1)", "Previous channels"),
    ]

    page = reactive(0)

    def __init__(self, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self._rows: list[_Row] = []
        self._ranked = False
        self._lines: tuple[float, ...] = ()
        self._colours: tuple[str, str] = (MIN_COLOUR, MAX_COLOUR)
        self._what = "value"

    # Data -------------------------------------------------------------------

    def show_series(self, series: Series, colour: str) -> None:
        """Bars of ``series.values`` per channel (``colour`` is a theme variable name), and its
        ``lower``/``upper`` thresholds as lines."""
        rows = [_Row(c, min(0.0, v), max(0.0, v), f"{v:.4g}") for c, v in enumerate(series.values) if v is not None]
        values = {row.channel: v for row, v in zip(rows, (v for v in series.values if v is not None))}
        self._set(
            rows,
            key=lambda row: values[row.channel],
            lines=(series.lower, series.upper),
            colours=(colour, colour),
            what=series.ylabel or "value",
        )
        self.border_title = series.title
        self.border_subtitle = _limits(series.lower, series.upper)

    def show_range(self, title: str, channel_min: Sequence[float], channel_max: Sequence[float]) -> None:
        """The minimum and maximum of every channel, as bars left and right of zero."""
        rows = [_Row(c, lo, hi, f"{lo:.3g} … {hi:.3g}") for c, (lo, hi) in enumerate(zip(channel_min, channel_max))]
        self._set(rows, key=lambda row: row.high - row.low, lines=(), colours=(MIN_COLOUR, MAX_COLOUR), what="range")
        self.border_title = title
        self.border_subtitle = ""

    def _set(self, rows: list[_Row], key, lines, colours: tuple[str, str], what: str) -> None:
        self._ranked = len(rows) > PAGE_ROWS
        self._rows = sorted(rows, key=key, reverse=True) if self._ranked else rows
        self._lines = tuple(x for x in lines if x is not None)
        self._colours = colours
        self._what = what
        self.page = 0
        self.refresh(layout=True)

    @property
    def pages(self) -> int:
        return max(1, -(-len(self._rows) // PAGE_ROWS))

    def shown_rows(self) -> list[_Row]:
        """The channels on the current page."""
        start = self.page * PAGE_ROWS
        return self._rows[start : start + PAGE_ROWS]

    def action_page(self, step: int) -> None:
        self.page = (self.page + step) % self.pages

    def watch_page(self) -> None:
        self.refresh(layout=True)

    # Drawing ----------------------------------------------------------------

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(self.shown_rows())) + 1 + (1 if self._ranked else 0)

    def render(self) -> Content:
        rows = self.shown_rows()
        if not rows:
            return Content.styled("no channel has a value", "dim")
        width = max(self.content_size.width, 20)
        label_width = len(str(max(r.channel for r in self._rows)))
        text_width = max(len(r.text) for r in rows)
        bar_width = max(width - label_width - text_width - 2, 4)
        lo = min([0.0, *(r.low for r in self._rows), *self._lines])
        hi = max([0.0, *(r.high for r in self._rows), *self._lines])
        if hi <= lo:
            hi = lo + 1.0

        def column(x: float) -> int:
            return min(bar_width - 1, max(0, round((x - lo) / (hi - lo) * (bar_width - 1))))

        zero = column(0.0)
        marks = {column(x) for x in self._lines}
        lines: list[Content] = []
        if self._ranked:
            first = self.page * PAGE_ROWS + 1
            header = f"top {first:,}–{first + len(rows) - 1:,} of {len(self._rows):,} by {self._what} · [ ] page"
            lines.append(Content.styled(header[:width], "dim"))
        for row in rows:
            start, end = column(row.low), column(row.high)
            parts: list[Content | str | tuple[str, str]] = [(f"{row.channel:>{label_width}} ", "dim")]
            for col in range(bar_width):
                in_bar = start <= col <= end and (row.high != row.low)
                colour = self._colours[0] if col < zero else self._colours[1]
                if col in marks:
                    parts.append(("│", f"{THRESHOLD_STYLE} on ${colour}" if in_bar else THRESHOLD_STYLE))
                elif in_bar:
                    parts.append((BAR, f"${colour}"))
                else:
                    parts.append(" ")
            parts.append(f" {row.text:>{text_width}}")
            lines.append(Content.assemble(*parts))
        lines.append(self._axis(label_width, bar_width, column, lo, hi))
        return Content("\n").join(lines)

    def _axis(self, label_width: int, bar_width: int, column, lo: float, hi: float) -> Content:
        """The scale under the bars: its ends, and each threshold at its column."""
        cells = [" "] * bar_width
        styles: list[str] = [""] * bar_width

        def put(text: str, at: int, style: str = "dim") -> None:
            at = max(0, min(at, bar_width - len(text)))
            if any(c != " " for c in cells[max(0, at - 1) : at + len(text) + 1]):
                return  # would overlap a label already placed
            for i, ch in enumerate(text):
                cells[at + i], styles[at + i] = ch, style

        for x in self._lines:
            put(f"↑{x:g}", column(x), THRESHOLD_STYLE)
        put(f"{lo:.3g}", 0)
        put(f"{hi:.3g}", bar_width)
        parts: list[Content | str | tuple[str, str]] = [" " * (label_width + 1)]
        parts += [(ch, style) for ch, style in zip(cells, styles)]
        return Content.assemble(*parts)


def _limits(lower: float | None, upper: float | None) -> str:
    """The threshold lines in words: ``│ band [0.5, 2]`` or ``│ threshold 3.5``."""
    if lower is not None and upper is not None:
        return f"│ band [{lower:g}, {upper:g}]"
    if lower is not None or upper is not None:
        return f"│ threshold {lower if lower is not None else upper:g}"
    return ""
