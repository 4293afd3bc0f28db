"""Issue 13's gaps, driven as a user does: enter/esc, j/k/g/G, J/K, zoom, copy, persisted
settings with reset, the help's symbols and mouse."""

from __future__ import annotations

import json

from test_app_pilot import SHOWCASE_BATCHES, SIZE, TOLERANCE_INPUT, calibrate, make_app, settle, text_of
from textual.widgets import Input

from tui_quantreport.tui import user_settings
from tui_quantreport.tui.panes.module_detail import ModuleDetail
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.screens.help_screen import HelpScreen


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


async def set_tolerance(pilot, app, text: str) -> None:
    field = app.query_one(TOLERANCE_INPUT, Input)
    field.focus()
    await pilot.pause()
    field.value = ""
    await pilot.press(*text, "enter")
    await settle(app, pilot)


async def test_settings_persist_per_user_and_reset() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await set_tolerance(pilot, app, "0.3")
        app.theme = "nord"
        await pilot.pause()
        saved = json.loads(user_settings.settings_path().read_text())
        assert saved["params"] == {"dynamic_vs_static_detector": {"tolerance": 0.3}} and saved["theme"] == "nord"

    again = make_app(batches=SHOWCASE_BATCHES)
    async with again.run_test(size=SIZE) as pilot:
        await settle(again, pilot)
        assert again.theme == "nord"
        assert again.settings.params["dynamic_vs_static_detector"]["tolerance"] == 0.3
        assert again.query_one(TOLERANCE_INPUT, Input).value == "0.3"
        again.main.reset_user_settings()
        await settle(again, pilot)
        assert not user_settings.settings_path().exists()
        assert again.settings.params["dynamic_vs_static_detector"]["tolerance"] == 0.5
        assert again.query_one(TOLERANCE_INPUT, Input).value == "0.5"  # the sidebar shows the reset

    # A command-line option wins over a saved value.
    user_settings.save(user_settings.UserSettings(params={"dynamic_vs_static_detector": {"tolerance": 0.2}}))
    third = make_app(batches=SHOWCASE_BATCHES, tolerance="0.7")
    async with third.run_test(size=SIZE) as pilot:
        await settle(third, pilot)
        assert third.settings.params["dynamic_vs_static_detector"]["tolerance"] == 0.7


async def test_help_explains_the_symbols_the_mouse_and_ctrl_q() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = "\n".join(text_of(s) for s in app.screen.query(".help-section"))
        for needle in ("⟳", "▶", "·", "click", "ctrl+q", "enter", "Open the module's detail view"):
            assert needle in shown, needle


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
