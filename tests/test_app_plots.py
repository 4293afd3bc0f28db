"""Plots never take the app down: every number they draw (NaN, ±inf, 0, huge) has a defined
rendering. A unit test of the per-channel plot, and the user's path that used to crash it."""

from __future__ import annotations

import math

from app_helpers import SHOWCASE_BATCHES, SIZE, calibrate, make_app, walk_to
from textual.app import App, ComposeResult

from tui_quantreport.engine.report import Series
from tui_quantreport.tui.panes.channel_plot import BEYOND_LEFT, BEYOND_RIGHT, PAGE_ROWS, ChannelPlot, plot_column, scale

AWKWARD = (math.nan, math.inf, -math.inf, 0.0, 1e30, 1.0, -2.0, 1e308, -1e308)


class _PlotApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ChannelPlot()


def _lines(plot: ChannelPlot) -> list[str]:
    return plot.render().plain.splitlines()


def test_the_scale_uses_finite_values_and_never_overflows() -> None:
    assert scale([math.nan, math.inf, -math.inf]) == (0.0, 1.0)
    assert scale([1e308, -1e308]) == (-1e308, 1e308)
    assert plot_column(math.inf, 0.0, 10.0, 21) == 20
    assert plot_column(-math.inf, 0.0, 10.0, 21) == 0
    assert plot_column(5.0, 0.0, 10.0, 21) == 10
    assert plot_column(1e308, -1e308, 1e308, 21) == 20
    assert plot_column(0.0, -1e308, 1e308, 21) == 10
    assert plot_column(math.nan, 0.0, 1.0, 21) == 0


async def test_a_series_of_nan_inf_zero_and_huge_values_draws_each_one() -> None:
    app = _PlotApp()
    async with app.run_test(size=(70, 20)) as pilot:
        plot = app.query_one(ChannelPlot)
        plot.show_series(Series("scale", AWKWARD, lower=math.nan, upper=math.inf, ylabel="scale"), "accent")
        await pilot.pause()
        lines = _lines(plot)
        rows = {int(line.split()[0]): line for line in lines[:-1]}
        assert set(rows) == set(range(len(AWKWARD)))
        assert rows[0].rstrip().endswith("NaN") and "█" not in rows[0]  # NaN: written, no bar
        assert BEYOND_RIGHT in rows[1] and rows[1].rstrip().endswith("inf")  # +inf: to the right edge
        assert BEYOND_LEFT in rows[2] and rows[2].rstrip().endswith("-inf")
        assert "█" not in rows[3] and rows[3].rstrip().endswith(" 0")  # zero: no bar
        assert "█" in rows[7] and "█" in rows[8]  # ±1e308: the full scale, no overflow
        assert "↑" not in lines[-1]  # non-finite thresholds draw no line


async def test_a_wide_layer_of_awkward_values_ranks_nan_last_and_ranges_draw_too() -> None:
    app = _PlotApp()
    async with app.run_test(size=(70, 30)) as pilot:
        plot = app.query_one(ChannelPlot)
        values = AWKWARD * 3
        plot.show_series(Series("scale", values), "accent")
        await pilot.pause()
        assert len(values) > PAGE_ROWS
        first = _lines(plot)[1]
        assert first.rstrip().endswith("inf") and not first.rstrip().endswith("-inf")
        for _ in range(plot.pages):
            await pilot.press("right_square_bracket")
            _lines(plot)
        plot.show_range("range", [math.nan, -math.inf, 0.0, -1e30], [1.0, math.inf, 0.0, math.nan])
        await pilot.pause()
        lines = _lines(plot)
        assert "NaN … 1" in lines[0] and "█" not in lines[0]
        assert BEYOND_LEFT in lines[1] and BEYOND_RIGHT in lines[1]


async def test_paging_through_the_equalization_plot_of_dead_input_channels_keeps_the_app_up() -> None:
    """The first finding of the showcase (rgb_proj, dead input channels: a scale of inf), then J
    down its plots: the app used to crash on the equalization plot."""
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await walk_to(app, pilot, "rgb_proj")
        for _ in range(24):
            await pilot.press("J")
            await pilot.pause(0.02)
        await pilot.pause()
        assert app.is_running and app._exception is None
        plots = list(app.query(ChannelPlot))
        assert plots and any("inf" in line for plot in plots for line in _lines(plot))


async def test_the_depth_plot_scales_to_the_values_shown_and_names_the_output_in_full() -> None:
    import math

    from tui_quantreport.tui.panes.depth_plot import DepthPlot, DepthPoint

    class _DepthApp(App[None]):
        def compose(self) -> ComposeResult:
            yield DepthPlot()

    app = _DepthApp()
    async with app.run_test(size=(80, 20)) as pilot:
        plot = app.query_one(DepthPlot)
        plot.points = [
            DepthPoint("fc1", "dynamic", 36.2, math.inf),
            DepthPoint("fc2", "dynamic", 36.8, 35.0),
            DepthPoint("fc3", "float", None, 34.0),
            DepthPoint("fc4", "dynamic", math.nan, None),
        ]
        plot.output_db = 30.0
        await pilot.pause()
        lines = [line.plain for line in plot.lines(80)]
        rows = {line.split()[0]: line for line in lines[1:] if line.split()}
        assert rows["fc1"].count("█") < rows["fc2"].count("█")  # 36.2 and 36.8 dB look different
        assert "float" in rows["fc3"] and "█" not in rows["fc3"]
        assert "█" not in rows["fc4"]  # NaN: no bar, no crash
        assert any(line.startswith("model output") for line in lines)
