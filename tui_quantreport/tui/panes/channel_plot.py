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

Every number has a defined rendering, so no value can take the app down: the scale
is set by the finite values only (and never overflows, even for ±1e308); ``+inf``
draws a bar to the right edge ending in ``▶`` (``-inf``: from the left edge,
``◀``), NaN draws no bar and is written ``NaN``; a wide layer ranks NaN last.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
#: The end of a bar whose value is beyond the scale (±inf).
BEYOND_RIGHT = "▶"
BEYOND_LEFT = "◀"


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
        values = {c: float(v) for c, v in enumerate(series.values) if v is not None}
        rows = [_Row(c, _low(v, v), _high(v, v), _number(v, ".4g")) for c, v in values.items()]
        self._set(
            rows,
            key=lambda row: _rank(values[row.channel]),
            lines=(series.lower, series.upper),
            colours=(colour, colour),
            what=series.ylabel or "value",
        )
        self.border_title = series.title
        self.border_subtitle = _limits(series.lower, series.upper)

    def show_range(self, title: str, channel_min: Sequence[float], channel_max: Sequence[float]) -> None:
        """The minimum and maximum of every channel, as bars left and right of zero."""
        rows = [
            _Row(c, *_span(float(lo), float(hi)), f"{_number(lo)} … {_number(hi)}")
            for c, (lo, hi) in enumerate(zip(channel_min, channel_max))
        ]
        self._set(
            rows, key=lambda row: _rank(row.high - row.low), lines=(), colours=(MIN_COLOUR, MAX_COLOUR), what="range"
        )
        self.border_title = title
        self.border_subtitle = ""

    def _set(self, rows: list[_Row], key, lines, colours: tuple[str, str], what: str) -> None:
        self._ranked = len(rows) > PAGE_ROWS
        self._rows = sorted(rows, key=key, reverse=True) if self._ranked else rows
        self._lines = tuple(float(x) for x in lines if x is not None and math.isfinite(x))
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
        lo, hi = scale([*(r.low for r in self._rows), *(r.high for r in self._rows), *self._lines])

        def column(x: float) -> int:
            return plot_column(x, lo, hi, bar_width)

        zero = column(0.0)
        marks = {column(x) for x in self._lines}
        lines: list[Content] = []
        if self._ranked:
            first = self.page * PAGE_ROWS + 1
            header = f"top {first:,}–{first + len(rows) - 1:,} of {len(self._rows):,} by {self._what} · [ ] page"
            lines.append(Content.styled(header[:width], "dim"))
        for row in rows:
            drawn = not (math.isnan(row.low) or math.isnan(row.high)) and row.high != row.low
            start, end = (column(row.low), column(row.high)) if drawn else (-1, -2)
            parts: list[Content | str | tuple[str, str]] = [(f"{row.channel:>{label_width}} ", "dim")]
            for col in range(bar_width):
                in_bar = start <= col <= end
                colour = self._colours[0] if col < zero else self._colours[1]
                if col in marks:
                    parts.append(("│", f"{THRESHOLD_STYLE} on ${colour}" if in_bar else THRESHOLD_STYLE))
                elif in_bar and col == end and row.high == math.inf:
                    parts.append((BEYOND_RIGHT, f"bold ${colour}"))
                elif in_bar and col == start and row.low == -math.inf:
                    parts.append((BEYOND_LEFT, f"bold ${colour}"))
                elif in_bar:
                    parts.append((BAR, f"${colour}"))
                else:
                    parts.append(" ")
            parts.append(f" {row.text:>{text_width}}")
            lines.append(Content.assemble(*parts))
        lines.append(self._axis(label_width, bar_width, column, lo, hi))
        return Content("\n").join(lines)

    def _axis(self, label_width: int, bar_width: int, column: Callable[[float], int], lo: float, hi: float) -> Content:
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


def scale(values: Sequence[float]) -> tuple[float, float]:
    """The plotted range: from the smallest to the largest finite value, always including 0 (an
    empty or non-finite set gives [0, 1])."""
    finite = [x for x in values if math.isfinite(x)]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def plot_column(x: float, lo: float, hi: float, width: int) -> int:
    """The column (0 to ``width - 1``) of ``x`` on the scale [lo, hi]: beyond it (±inf) at an edge,
    NaN at 0 (callers draw no bar for NaN). Computed on halves, so ±1e308 never overflows."""
    if math.isnan(x):
        return 0
    span = hi / 2 - lo / 2
    fraction = (min(max(x, lo), hi) / 2 - lo / 2) / span if span > 0 else 0.0
    return min(width - 1, max(0, round(fraction * (width - 1))))


def _number(value: float, spec: str = ".3g") -> str:
    """A value as written beside its bar: ``NaN``, ``inf``, ``-inf`` or ``format(value, spec)``."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    return format(value, spec)


def _low(lo: float, hi: float) -> float:
    """Where a bar from ``lo`` to ``hi`` starts: it always touches 0 (NaN stays NaN: no bar)."""
    return math.nan if math.isnan(lo) or math.isnan(hi) else min(0.0, lo)


def _high(lo: float, hi: float) -> float:
    return math.nan if math.isnan(lo) or math.isnan(hi) else max(0.0, hi)


def _span(lo: float, hi: float) -> tuple[float, float]:
    """A range bar's ends (NaN when either is NaN: no bar)."""
    return (math.nan, math.nan) if math.isnan(lo) or math.isnan(hi) else (lo, hi)


def _rank(value: float) -> float:
    """A sort key for ranking channels by value, largest first: NaN ranks last."""
    return -math.inf if math.isnan(value) else value


def _limits(lower: float | None, upper: float | None) -> str:
    """The threshold lines in words: ``│ band [0.5, 2]`` or ``│ threshold 3.5``."""
    if lower is not None and upper is not None:
        return f"│ band [{lower:g}, {upper:g}]"
    if lower is not None or upper is not None:
        return f"│ threshold {lower if lower is not None else upper:g}"
    return ""
