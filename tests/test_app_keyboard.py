"""Keys as a user types them: enter/esc, j/k/g/G, J/K, zoom and copy; escape unzooms with the
tree focused; Enter in a sidebar field gives the keyboard back to the tree."""

from __future__ import annotations

from app_helpers import (
    SHOWCASE_BATCHES,
    SIZE,
    TOLERANCE_INPUT,
    calibrate,
    make_app,
    set_tolerance,
    settle,
)
from textual.widgets import Input

from tui_quantreport.tui.panes.module_detail import ModuleDetail
from tui_quantreport.tui.panes.module_tree import ModuleTree


async def test_keyboard_habits_enter_esc_jk_g_zoom_and_copy() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        tree, detail = app.query_one(ModuleTree), app.query_one(ModuleDetail)
        await pilot.press("j", "j")
        assert tree.current_fqn == "rgb_stem"
        await pilot.press("k")
        assert tree.current_fqn == "quant"
        await pilot.press("G")
        assert tree.current_fqn == "dequant"
        await pilot.press("g")
        assert tree.current_fqn == ""
        await pilot.press("J")  # scrolls the detail view from the tree
        assert detail.scroll_y > 0 and tree.has_focus
        await pilot.press("j", "enter")  # enter opens the detail view...
        assert detail.has_focus
        await pilot.press("escape")  # ...and Esc comes back
        assert tree.has_focus
        await pilot.press("z")
        main = app.query_one("#main")
        assert main.has_class("-zoomed") and detail.has_focus
        assert app.query_one("#tree-pane").styles.display == "none"
        await pilot.press("z")
        assert not main.has_class("-zoomed") and tree.has_focus
        await pilot.press("y")
        assert app.clipboard == "quant"
        await set_tolerance(pilot, app, "0.4")
        await pilot.press("Y")
        assert app.clipboard == "tui-quantreport showcase --param dynamic_vs_static_detector.tolerance=0.4 --batches 8"


async def test_escape_unzooms_with_the_tree_focused() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        main = app.main.query_one("#main")
        await pilot.press("z")
        assert main.has_class("-zoomed")
        app.query_one(ModuleTree).focus()
        await pilot.pause()
        await pilot.press("escape")
        assert not main.has_class("-zoomed")


async def test_enter_in_a_sidebar_field_gives_the_keyboard_back_to_the_tree() -> None:
    """After Enter, the next n moves the tree instead of being typed into the field."""
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
