"""Issue 13's "wrong or misleading" list: each test drives the app as a user does and fails
without its fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from test_app_pilot import (
    MODELS,
    SHOWCASE_BATCHES,
    SIZE,
    TOLERANCE_INPUT,
    calibrate,
    detail_follows,
    make_app,
    settle,
    text_of,
    walk_to,
)
from textual import events
from textual.app import App, ComposeResult
from textual.widgets import Footer, Input, Label, Static

from tui_quantreport.engine.report import Series
from tui_quantreport.tui.dialogs.export_dialog import ExportDialog
from tui_quantreport.tui.panes.channel_plot import PAGE_ROWS, ChannelPlot
from tui_quantreport.tui.panes.findings_panel import FindingsPanel
from tui_quantreport.tui.panes.model_summary import ModelSummary
from tui_quantreport.tui.panes.module_detail import ModuleDetail
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.panes.stats_table import ROWS, StatsTable
from tui_quantreport.tui.screens.help_screen import HelpScreen

OUTLIER = "outlier_detector"


def _module_from(path: Path):
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == str(path):
            return module
    raise AssertionError(f"{path} was not loaded")


async def test_export_while_calibrating_writes_the_report_current_when_saved(tmp_path: Path) -> None:
    """Item 1: the file holds the calibration that finished while the dialog was open."""
    gated = MODELS / "gated_model.py"
    app = make_app(str(gated))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        bar = app.main.query_one("#calibration")
        for _ in range(200):
            if getattr(bar, "done", 0) >= 1:
                break
            await pilot.pause(0.02)
        assert app.calibrating
        await pilot.press("e")
        assert isinstance(app.screen, ExportDialog)
        note = app.screen.query_one("#export-note", Static)
        assert note.display and "calibration is running" in text_of(note).lower()
        _module_from(gated).GATE.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not app.calibrating and not note.display
        target = tmp_path / "during.json"
        app.screen.query_one("#export-path", Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        data = json.loads(target.read_text())
        assert data["calibration"]["batches"] == 5
        assert data["generated"]["calibrated"] is True


async def test_before_calibration_everything_says_not_calibrated(tmp_path: Path) -> None:
    """Item 2: no "never called during calibration" before any calibration; stale settings say
    "needs recalibration"."""
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await walk_to(app, pilot, "rgb_stem.relu1")
        shown = text_of(app.query_one(FindingsPanel))
        assert "not calibrated" in shown and "never called" not in shown

        await pilot.press("e")
        target = tmp_path / "before.md"
        app.screen.query_one("#export-path", Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        text = target.read_text()
        assert "**not calibrated**" in text and "never called during calibration" not in text
        assert "| Outlier channels | – |" in text and "not calibrated" in text.split("| Outlier channels |")[1]

        await calibrate(app, pilot)
        field = app.query_one(f"#param-{OUTLIER}-reference_percentile", Input)
        field.focus()
        await pilot.pause()
        field.value = ""
        await pilot.press(*"0.9", "enter")
        await settle(app, pilot)
        await walk_to(app, pilot, "rgb_stem.relu1")
        shown = text_of(app.query_one(FindingsPanel))
        assert "needs recalibration" in shown


async def test_a_new_module_opens_at_the_top_of_the_detail_view() -> None:
    """Item 4: n after scrolling down shows the next module's title, not the middle of its page."""
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


async def test_statistics_never_wrap_a_number_at_80x24_and_120x40() -> None:
    """Item 5: every value and header on one line; input and output stacked when they do not fit."""
    for size in ((80, 24), (120, 40)):
        lines, table = await _stats_lines(size, "rgb_stem.conv2")
        text = "\n".join(lines)
        assert table.stacked  # the detail view is too narrow for the two side by side
        assert "input" in text and "output" in text
        for point in table.points:
            for label, read in ROWS:
                value = read(point, table.batches)
                assert any(label in line and value in line for line in lines), (size, label, value, text)


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


async def test_a_threshold_is_drawn_at_its_value_and_over_the_bars() -> None:
    """Item 6: the 3.5 line is in the column of 3.5 on every row, also across the longest bar,
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


async def test_keys_typed_right_after_e_land_in_the_path_in_order(tmp_path: Path) -> None:
    """Item 7: e, ctrl+u and a path typed in one burst (as a terminal delivers them)."""
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for key, char in [("e", "e"), ("ctrl+u", None), ("x", "x"), ("full_stop", "."), ("m", "m"), ("d", "d")]:
            app.post_message(events.Key(key, char))
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, ExportDialog)
        assert app.screen.query_one("#export-path", Input).value == "x.md"
        # The radio follows the typed suffix.
        assert app.screen.target.key == "markdown"


async def test_enter_in_a_sidebar_field_gives_the_keyboard_back_to_the_tree() -> None:
    """Item 7: after Enter, the next n moves the tree instead of being typed into the field."""
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        tree = app.query_one(ModuleTree)
        await pilot.press("t")
        assert isinstance(app.focused, Input)
        app.focused.value = ""
        await pilot.press(*"0.4", "enter")
        assert tree.has_focus
        await pilot.press("n")
        assert tree.current_fqn == app.report.ranked_modules()[0][0]
        assert app.query_one(TOLERANCE_INPUT, Input).value == "0.4"


async def test_small_ones() -> None:
    """Item 8: o without observers, the help's own footer, no Cancel after a calibration, human
    labels, no '….'."""
    app = make_app("drifting_mlp", batches=4)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        tree = app.query_one(ModuleTree)
        before = set(tree.nodes)
        await pilot.press("o")
        await pilot.pause()
        assert set(tree.nodes) == before and not tree.show_helpers
        assert any("no observers" in str(n.message) for n in app._notifications)

    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        cancel = [b for b in app.screen.active_bindings.values() if b.binding.action == "cancel_calibration"]
        assert not cancel or not app.main.check_action("cancel_calibration", ())
        summary = text_of(app.query_one(ModelSummary))
        assert "…." not in summary and " more." in summary
        labels = [str(label.content) for label in app.query(".param-label").results(Label)]
        assert "Batches a channel must use" in "\n".join(labels)
        assert not any("fraction_batches_used_threshold" in label for label in labels)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        footer = app.screen.query_one(Footer)
        assert footer.screen is app.screen
