"""A per-channel bar chart, with the threshold line(s) it is held against.

Plots only what it is given: a :class:`Series` from a finding (values, and a
lower and/or upper threshold), or the per-channel minimum and maximum a
:class:`PointSummary` recorded. Channels without a value (None) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import RenderResult
from textual_plotext import PlotextPlot

from tui_quantreport.engine.report import Series
from tui_quantreport.tui.badges import theme_rgb

#: Theme variables the plot draws with.
THRESHOLD_COLOUR = "error"
MAX_COLOUR = "accent"
MIN_COLOUR = "primary"


class ChannelPlot(PlotextPlot):
    """One per-channel bar chart; the drawing is kept until the data or the size changes."""

    def __init__(self, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self._drawn: tuple[object, ...] | None = None
        self._drawing: RenderResult = ""
        self._version = 0

    def render(self) -> RenderResult:
        key = (self._version, self.size, self.app.theme)
        if key != self._drawn:
            self._drawing = super().render()
            self._drawn = key
        return self._drawing

    def _rgb(self, name: str) -> tuple[int, int, int]:
        return theme_rgb(name, self.app.theme_variables)

    def show_series(self, series: Series, colour: tuple[int, int, int]) -> None:
        """Bars of ``series.values`` per channel, and its ``lower``/``upper`` thresholds as lines."""
        plt = self.plt
        plt.clear_figure()
        channels = [c for c, v in enumerate(series.values) if v is not None]
        values = [v for v in series.values if v is not None]
        plt.bar(channels, values, color=colour, width=0.6)
        for line in (series.lower, series.upper):
            if line is not None:
                plt.hline(line, self._rgb(THRESHOLD_COLOUR))
        self.border_title = series.title
        self.border_subtitle = _limits(series.lower, series.upper)
        plt.xlabel("channel")
        plt.ylabel(series.ylabel)
        self._version += 1
        self.refresh()

    def show_range(self, title: str, channel_min: Sequence[float], channel_max: Sequence[float]) -> None:
        """The minimum and maximum of every channel, as bars down and up from zero."""
        plt = self.plt
        plt.clear_figure()
        channels = list(range(len(channel_max)))
        plt.bar(channels, list(channel_max), color=self._rgb(MAX_COLOUR), width=0.6, label="max")
        plt.bar(channels, list(channel_min), color=self._rgb(MIN_COLOUR), width=0.6, label="min")
        self.border_title = title
        self.border_subtitle = ""
        plt.xlabel("channel")
        self._version += 1
        self.refresh()


def _limits(lower: float | None, upper: float | None) -> str:
    """The red lines in words: ``red: band [0.5, 2]`` or ``red: threshold 3.5``."""
    if lower is not None and upper is not None:
        return f"red: band [{lower:g}, {upper:g}]"
    if lower is not None or upper is not None:
        return f"red: threshold {lower if lower is not None else upper:g}"
    return ""
