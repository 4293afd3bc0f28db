"""One module on screen: a collapsed tree node shows the badges beneath it; the detail view opens
at its top, its statistics never wrap a number, and a finding the measurement does not support is
not headlined; the channel plot draws a threshold at its value, pages a wide layer, and draws the
root's plans to scale."""

from __future__ import annotations

from app_helpers import (
    SENSITIVE,
    SHOWCASE_BATCHES,
    SIZE,
    TARGET,
    calibrate,
    detail_follows,
    make_app,
    plan_settled,
    settle,
    text_of,
    walk_to,
)
from rich.console import Console
from textual.app import App, ComposeResult

from tui_quantreport.engine.report import Series
from tui_quantreport.tui.panes.channel_plot import PAGE_ROWS, ChannelPlot
from tui_quantreport.tui.panes.findings_panel import FindingsPanel
from tui_quantreport.tui.panes.module_detail import ModuleDetail
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.panes.plan_summary import PlanSummary
from tui_quantreport.tui.panes.stats_table import ROWS, StatsTable


async def _stats_lines(size: tuple[int, int], fqn: str) -> tuple[list[str], StatsTable]:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=size) as pilot:
        await calibrate(app, pilot)
        await walk_to(app, pilot, fqn)
        await pilot.pause()
        table = app.query_one(StatsTable)
        width = table.content_region.width
        console = Console(width=width, file=None, record=True, color_system=None, legacy_windows=False)
        with console.capture() as capture:
            console.print(table.content)
        return capture.get().splitlines(), table


class _PlotApp(App[None]):
    def __init__(self, series: Series) -> None:
        super().__init__()
        self.series = series

    def compose(self) -> ComposeResult:
        yield ChannelPlot(classes="channel-plot")

    def on_mount(self) -> None:
        self.query_one(ChannelPlot).show_series(self.series, "accent")


def _plot_lines(plot: ChannelPlot) -> list[str]:
    return plot.render().plain.splitlines()


async def test_a_collapsed_node_shows_the_badges_beneath_it_and_their_count() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        tree = app.query_one(ModuleTree)
        node = tree.nodes["rgb_stem"]
        glyphs, count = tree.rollup_of("rgb_stem")
        flagged = [f for f in app.report.recommended_modules() if f.startswith("rgb_stem.")]
        assert count == len(flagged) and set(glyphs) == {g for f in flagged for g in tree.badges_of(f)}
        assert "×" not in tree.render_label(node, tree.rich_style, tree.rich_style).plain  # expanded
        node.collapse()
        await pilot.pause()
        label = tree.render_label(node, tree.rich_style, tree.rich_style).plain
        assert f"▸ {' '.join(glyphs)} ×{count}" in label


async def test_a_new_module_opens_at_the_top_of_the_detail_view() -> None:
    """N after scrolling down shows the next module's title, not the middle of its page."""
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await walk_to(app, pilot, "rgb_stem.conv1")
        await detail_follows(app, pilot)
        await settle(app, pilot)  # the measurement redraws the page: scroll once it has
        detail = app.query_one(ModuleDetail)
        for _ in range(50):  # the page is laid out a refresh after its content changes
            detail.scroll_end(animate=False)
            await pilot.pause(0.02)
            if detail.scroll_y > 0:
                break
        assert detail.scroll_y > 0
        app.query_one(ModuleTree).focus()
        await pilot.press("n")
        await detail_follows(app, pilot)
        await pilot.pause()
        assert detail.fqn != "rgb_stem.conv1" and detail.scroll_y == 0


async def test_statistics_never_wrap_a_number_at_80x24_and_120x40() -> None:
    """Every value and header on one line; input and output stacked when they do not fit."""
    for size in ((80, 24), (120, 40)):
        lines, table = await _stats_lines(size, "rgb_stem.conv2")
        text = "\n".join(lines)
        assert table.stacked  # the detail view is too narrow for the two side by side
        assert "input" in text and "output" in text
        for point in table.points:
            for label, read in ROWS:
                value = read(point, table.batches)
                assert any(label in line and value in line for line in lines), (size, label, value, text)


async def test_a_finding_the_measurement_does_not_support_is_not_headlined_as_recommended() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        report = app.report
        minor = next(
            fqn
            for (detector, fqn), sev in report.severities.items()
            if detector == "per_channel_detector" and sev.level.value == "minor"
        )
        await walk_to(app, pilot, minor)
        text = text_of(app.query_one(FindingsPanel))
        block = text[text.index("Per-channel weights") :].splitlines()[0]
        assert "change recommended" not in block and "measured gain too small" in block


async def test_a_threshold_is_drawn_at_its_value_and_over_the_bars() -> None:
    """The 3.5 line is in the column of 3.5 on every row, also across the longest bar,
    and the axis labels it there."""
    series = Series("outlier ratio", (1.0, 2.9, 13.7, 3.4), upper=3.5, ylabel="ratio")
    app = _PlotApp(series)
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        lines = _plot_lines(app.query_one(ChannelPlot))
        bars, axis = lines[:4], lines[-1]
        columns = {line.index("│") for line in bars}
        assert len(columns) == 1  # the same column on every row, including 13.7's (over its bar)
        column = columns.pop()
        start = len("0 ")  # channel label width 1, then a space
        bar_width = len(bars[2]) - start - len(" 13.7")
        assert column - start == round(3.5 / 13.7 * (bar_width - 1))
        assert axis.index("↑3.5") == column
        # 2.9 stops left of the line, 3.4 stops left of it too, 13.7 runs through it.
        assert bars[1][column - 1] != "█" or bars[1].rstrip().endswith("2.9")
        assert bars[2][column - 1] == "█" and bars[2][column + 1] == "█"


async def test_a_wide_layer_shows_its_top_channels_and_pages() -> None:
    """Gap: 1,024 channels show the top ones by value with their indices; ] pages on."""
    values = tuple(float(c % 97) for c in range(1024))
    app = _PlotApp(Series("ratio", values, upper=50.0))
    async with app.run_test(size=(60, 30)) as pilot:
        await pilot.pause()
        plot = app.query_one(ChannelPlot)
        first = plot.shown_rows()
        assert len(first) == PAGE_ROWS and first[0].high == 96.0
        assert "top 1–16 of 1,024" in _plot_lines(plot)[0]
        plot.focus()
        await pilot.press("right_square_bracket")
        assert plot.page == 1 and plot.shown_rows()[0] not in first


async def test_the_root_plot_draws_float_as_float_and_scales_to_the_values_shown() -> None:
    app = make_app(batches=SHOWCASE_BATCHES, target=TARGET)  # its convolutions quantized: f keeps one float
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        await walk_to(app, pilot, SENSITIVE)
        await pilot.press("f")
        await plan_settled(app, pilot)
        await walk_to(app, pilot, "")
        await settle(app, pilot)  # the root's measurements that follow a plan change (limit, depth) end
        lines = text_of(app.query_one(PlanSummary)).splitlines()
        row = next((line for line in lines if line.startswith(("thermal_stem", "…rmal_stem"))), None)
        assert row is not None, lines
        assert "█" not in row and "float" in row and "dB" not in row
        axis = lines[-1].split()
        assert float(axis[0]) > 0  # the scale starts near the lowest value shown, not at 0
        bars = [line.count("█") for line in lines if "dB" in line and "█" in line]
        assert len(set(bars)) > 2  # 35.4, 35.5 and 35.8 dB no longer look identical to 38.8 and 39.4
