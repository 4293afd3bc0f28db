"""Help: the help screen explains the symbols, the mouse and ctrl+q and lists every detector
badge; the top-level ``--help`` names config and verify; the footer keeps quit at 80 columns."""

from __future__ import annotations

import pytest
from app_helpers import (
    SHOWCASE_BATCHES,
    SIZE,
    make_app,
    settle,
    text_of,
)
from textual.widgets import Footer, Static

from tui_quantreport import cli
from tui_quantreport.tui.screens.help_screen import HelpScreen


def text_of_screen(screen) -> list[str]:
    return [line for widget in screen.query(Static) for line in text_of(widget).splitlines()]


async def test_help_explains_the_symbols_the_mouse_and_ctrl_q() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = "\n".join(text_of(s) for s in app.screen.query(".help-section"))
        for needle in ("⟳", "▶", "·", "click", "ctrl+q", "enter", "Open the module's detail view"):
            assert needle in shown, needle


async def test_help_lists_every_detector_badge() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        glyphs = {d.glyph for d in app.main.detectors}
        symbols = next(line for line in text_of_screen(app.screen) if "A detector's badge" in line)
        assert all(glyph in symbols for glyph in glyphs)


def test_the_top_level_help_names_config_and_verify(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "config MODEL" in out and "verify MODEL" in out


async def test_the_footer_keeps_quit_at_80_columns() -> None:

    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        footer = app.main.query_one(Footer)
        keys = [item for item in footer.query("FooterKey")]
        quit_key = next(k for k in keys if k.key == "q")
        palette = next(k for k in keys if k.key == "ctrl+p")  # docked right, over what does not fit
        assert quit_key.region.width > 0 and quit_key.region.right <= palette.region.x
