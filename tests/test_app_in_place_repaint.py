"""A what-if toggle repaints only what changed (issue 25, the toggle's paint): the header's text and
the detail pane's panes are redrawn in place, without a layout or a repaint of the whole screen
(each ~25-40 ms on a 2,000-module tree, from the UI thread while the worker runs the model)."""

from __future__ import annotations

from app_helpers import SHOWCASE_BATCHES, SIZE, calibrate, make_app, settle, text_of, walk_to
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual.widgets._header import HeaderTitle

from tui_quantreport.tui.panes.app_header import AppHeader, InPlaceTitle
from tui_quantreport.tui.panes.in_place import update_in_place
from tui_quantreport.tui.panes.sqnr_panel import SqnrPanel


class Spy:
    """Counts the screen's layouts and full-screen repaints from the moment it is made."""

    def __init__(self, app: App) -> None:
        self.layouts = self.full = 0
        screen = app.screen
        layout, full = screen._refresh_layout, screen._compositor.render_full_update

        def counted_layout(*args, **kwargs):
            self.layouts += 1
            return layout(*args, **kwargs)

        def counted_full(*args, **kwargs):
            self.full += 1
            return full(*args, **kwargs)

        screen._refresh_layout = counted_layout  # type: ignore[method-assign]
        screen._compositor.render_full_update = counted_full  # type: ignore[method-assign]


class Panes(App[None]):
    CSS = "#auto { width: auto; } #capped { max-height: 2; }"

    def compose(self) -> ComposeResult:
        yield AppHeader()
        with Vertical():
            yield Static("one\ntwo", id="pane")
            yield Static("short", id="auto")
            yield Static("a", id="capped")
            yield Static("below", id="below")


async def test_same_height_content_repaints_in_place() -> None:
    app = Panes()
    async with app.run_test(size=(40, 12)) as pilot:
        await pilot.pause()
        pane = app.query_one("#pane", Static)
        spy = Spy(app)
        update_in_place(pane, "uno\ndos")
        await pilot.pause()
        assert (spy.layouts, spy.full) == (0, 0)
        assert [pane.render_line(y).text.rstrip() for y in (0, 1)] == ["uno", "dos"]


async def test_content_of_another_height_or_width_is_laid_out() -> None:
    app = Panes()
    async with app.run_test(size=(40, 12)) as pilot:
        await pilot.pause()
        pane, below = app.query_one("#pane", Static), app.query_one("#below", Static)
        top = below.region.y
        spy = Spy(app)
        update_in_place(pane, "1\n2\n3")
        await pilot.pause()
        assert spy.layouts and pane.size.height == 3 and below.region.y == top + 1
        spy.layouts = 0
        update_in_place(pane, "x " * 30)  # one line wrapped to two at 40 columns
        await pilot.pause()
        assert spy.layouts and pane.size.height == 2 and below.region.y == top
        spy.layouts = 0
        auto = app.query_one("#auto", Static)  # its width follows its content: always laid out
        update_in_place(auto, "a longer line")
        await pilot.pause()
        assert spy.layouts and auto.size.width == len("a longer line")
        spy.layouts = 0
        capped = app.query_one("#capped", Static)  # 1 line -> 5, clamped to 2 by max-height
        update_in_place(capped, "1\n2\n3\n4\n5")
        await pilot.pause()
        assert spy.layouts and capped.size.height == 2


async def test_the_header_title_repaints_in_place() -> None:
    app = Panes()
    async with app.run_test(size=(40, 12)) as pilot:
        await pilot.pause()
        title = app.query_one(HeaderTitle)
        assert isinstance(title, InPlaceTitle)  # Textual's header, its title swapped in
        spy = Spy(app)
        app.title = "a new title"  # Textual's App.title repaints the screen itself: its title moves
        await pilot.pause()
        assert spy.layouts == 0 and "a new title" in title.render_line(0).text


async def test_a_toggle_repaints_the_header_and_panes_in_place() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        await walk_to(app, pilot, "head.fc")
        await settle(app, pilot)  # the detail view's own layout for the module, done
        await pilot.pause()
        main = app.main
        spy = Spy(app)
        await pilot.press("f")
        await settle(app, pilot)
        assert main.plan.modules["head.fc"] == "float" and not main.plan_pending
        # The header's new text is on the screen, the SQNR panel says the module is kept float ...
        shown = app.screen.query_one(HeaderTitle).render_line(0).text
        assert f"{main.plan_sqnr.db:.1f} dB" in shown and "(recomputing" not in shown
        assert "kept in float by the plan" in text_of(app.query_one(SqnrPanel))
        # ... and the screen was neither laid out nor repainted whole for it (the pending header,
        # the SQNR, the SQNR panel's plan mark: the same sizes).
        assert (spy.layouts, spy.full) == (0, 0)
