"""What fits on the screen (issue 13 leftovers): badges on deep tree rows, the header at 80x24, and
the help screen's footer, which lists the help screen's own keys and nothing of the screen beneath."""

from __future__ import annotations

import pytest
from app_helpers import MODELS, SHOWCASE_BATCHES, SIZE, calibrate, make_app, settle, walk_to
from textual.widgets import Footer
from textual.widgets._footer import FooterKey
from textual.widgets._header import HeaderTitle

from tui_quantreport.tui.main_screen import MainScreen
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.panes.sqnr_panel import SqnrPanel
from tui_quantreport.tui.screens.help_screen import HelpScreen

DEEP_MODEL = str(MODELS / "deep_model.py")


def visible_row(tree: ModuleTree, fqn: str) -> str:
    """The text of ``fqn``'s row as the pane shows it (cropped to the pane)."""
    node = tree.nodes[fqn]
    return tree.render_line(node.line - round(tree.scroll_offset.y)).text


@pytest.mark.parametrize("size", [(80, 24), SIZE])
async def test_badges_stay_visible_on_deep_rows(size) -> None:
    app = make_app(DEEP_MODEL, probe_batches=0)  # unmeasured: every recommendation is badged
    async with app.run_test(size=size) as pilot:
        await calibrate(app, pilot)
        tree = app.query_one(ModuleTree)
        deep = max(tree.nodes, key=lambda fqn: fqn.count("."))
        glyphs = tree.badges_of(deep)
        assert glyphs, "the deep Linear is flagged"
        tree.reveal(deep)
        await pilot.pause()
        row = visible_row(tree, deep).rstrip()
        assert row.endswith(" ".join(glyphs)), row  # the badges, not cut off the right edge
        assert "…" in row  # the name gave way instead
        assert tree.virtual_size.width <= tree.scrollable_content_region.width  # nothing off the edge
        for fqn in tree.nodes:  # every row fits the pane
            assert tree.get_label_width(tree.nodes[fqn]) <= tree.scrollable_content_region.width


async def test_the_header_fits_at_80x24_with_the_plan_sqnr() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=(80, 24)) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        main = app.main
        title = app.screen.query_one(HeaderTitle)

        def shown() -> str:
            return app.format_title(app.title, app.sub_title).plain

        assert len(shown()) <= title.content_region.width, shown()
        # The default target (torchao-cpu) keeps the 3 Conv2d float; f keeps a Linear float too.
        # At 80 columns the SQNR and the plan's size fill the room: the float count gives way.
        assert shown() == f"tui-quantreport — plan {main.plan_sqnr.db:.1f} dB{main._plan_size_text(main.plan)}"
        assert " MB, " in shown() and len(main.plan.kept_float) == 3
        await walk_to(app, pilot, "head.fc")
        await pilot.press("f")  # recomputing: still fits, the last value stays
        assert len(shown()) <= title.content_region.width, shown()
        await settle(app, pilot)
        assert len(main.plan.kept_float) == 4 and len(shown()) <= title.content_region.width
        assert f"plan {main.plan_sqnr.db:.1f} dB{main._plan_size_text(main.plan)}" in shown()
        await pilot.resize_terminal(*SIZE)  # wide again: the long form, with the model's name
        await pilot.pause()
        assert shown().startswith("tui-quantreport — showcase · plan") and "3 quantized, 4 float" in shown()


async def test_the_help_footer_lists_the_help_keys_not_the_dead_main_ones() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)

        def footer_keys() -> set[tuple[str, str]]:
            footer = app.screen.query_one(Footer)
            return {(key.key, key.action) for key in footer.query(FooterKey)}

        main_keys = footer_keys()
        assert ("c", "calibrate") in main_keys and ("question_mark", "help") in main_keys
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.pause()
        shown = footer_keys()
        help_keys = {(b.key, b.action) for b in HelpScreen.BINDINGS if b.show}
        assert shown == help_keys == {("escape", "dismiss")}, shown
        main_actions = {b.action for b in MainScreen.BINDINGS}
        assert not {action for _, action in shown} & main_actions  # no dead key of the screen beneath
        await pilot.press("escape")
        await pilot.pause()
        assert footer_keys() == main_keys


def test_the_app_leaves_one_core_to_the_ui(monkeypatch) -> None:
    """torch's pool takes one core fewer in the app (its spinning threads starved the UI thread and
    the worker's GIL on a 2-core machine: a toggle's evaluation stalled for seconds), once per process,
    and never against a thread count the user set."""
    import torch

    from tui_quantreport.tui import model_session

    threads = torch.get_num_threads()
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(model_session, "_UI_CORE_LEFT", False)
    model_session.leave_a_core_to_the_ui()
    model_session.leave_a_core_to_the_ui()
    assert calls == [3]
    monkeypatch.setattr(model_session, "_UI_CORE_LEFT", False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    model_session.leave_a_core_to_the_ui()
    assert calls == [3] and threads >= 1


async def test_the_panes_are_resized_with_the_keyboard() -> None:
    """< > narrow and widen the sidebar, [ ] the tree; the detail view takes the rest, within limits."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        sidebar, tree, detail = (app.query_one(s) for s in ("#sidebar", "#tree-pane", "#detail"))
        side0, tree0, detail0 = sidebar.outer_size.width, tree.outer_size.width, detail.outer_size.width
        await pilot.press("greater_than_sign", "greater_than_sign")
        await pilot.pause()
        assert sidebar.outer_size.width == side0 + 8 and detail.outer_size.width == detail0 - 8
        await pilot.press("less_than_sign", "less_than_sign", "less_than_sign")
        await pilot.pause()
        assert sidebar.outer_size.width == side0 - 4 and detail.outer_size.width == detail0 + 4
        for _ in range(20):  # never below its limit
            await pilot.press("less_than_sign")
        await pilot.pause()
        assert sidebar.outer_size.width == MainScreen.PANE_LIMITS["sidebar"][0]
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert tree.outer_size.width == tree0 + 4
        await pilot.press("left_square_bracket", "left_square_bracket")
        await pilot.pause()
        assert tree.outer_size.width == tree0 - 4


@pytest.mark.parametrize("size", [(80, 24), SIZE])
async def test_the_running_strip_is_one_line_and_keeps_esc_cancels_visible(size) -> None:
    """Measuring at 80x24 wrapped the strip onto two lines and pushed "Esc cancels" off it."""
    from tui_quantreport.tui.panes.calibration_bar import CANCEL_HINT, CalibrationBar

    app = make_app(probe_batches=0)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        bar = app.query_one(CalibrationBar)
        bar.start("Measuring the error on 4 probe batches, a phrase far too long for a narrow strip…", "passes")
        bar.advance(3, 8)
        await pilot.pause()
        assert bar.outer_size.height == 1
        status, hint = bar.query_one("#calibration-status"), bar.query_one("#calibration-hint")
        assert status.size.height == 1 and hint.display and str(hint.render()) == CANCEL_HINT
        assert hint.region.right <= app.size.width - 1  # on screen, not cut
        bar.stop("Calibrated on 8 batches.")
        await pilot.pause()
        assert not hint.display


async def test_the_measured_error_rows_fit_the_pane_at_80x24() -> None:
    """Each scheme's row (name, size, SQNR) on one line of the detail pane at 80 columns: the name
    column as wide as the names shown, a name too long for the pane cut with "…"."""
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=(80, 24)) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        await walk_to(app, pilot, "thermal_proj")  # int8_weight_only_per_group: 26 characters
        await settle(app, pilot)
        panel = app.query_one(SqnrPanel)
        lines = [panel.render_line(y).text.rstrip() for y in range(panel.size.height)]
        rows = [line for line in lines if "b/w" in line]
        assert len(rows) >= 4, lines
        assert all(" dB" in row and len(row) <= panel.content_region.width for row in rows), lines
        assert any("…" in row for row in rows)  # the longest name gave way
        assert not any(line.strip().startswith("dB") for line in lines), lines  # no dB alone on a line
