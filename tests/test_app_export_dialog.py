"""The export dialog: arrows pick the kind of file, keys typed right after ``e`` land in the path
in order, and a report exported while calibrating is the one current when it is saved."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app_helpers import (
    MODELS,
    SHOWCASE_BATCHES,
    SIZE,
    make_app,
    settle,
    text_of,
)
from textual import events
from textual.widgets import Input, Static

from tui_quantreport.tui.dialogs.export_dialog import ExportDialog


def _module_from(path: Path):
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == str(path):
            return module
    raise AssertionError(f"{path} was not loaded")


async def test_arrows_in_the_export_dialog_pick_the_kind_of_file() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("e")
        dialog = app.screen
        assert isinstance(dialog, ExportDialog) and dialog.target.key == "json"
        assert isinstance(dialog.focused, Input)  # it opens in the path field
        await pilot.press("down")
        await pilot.pause()
        assert dialog.target.key == "markdown"
        assert dialog.query_one("#export-path", Input).value.endswith(".md")
        await pilot.press("up")
        await pilot.pause()
        assert dialog.target.key == "json"


async def test_keys_typed_right_after_e_land_in_the_path_in_order(tmp_path: Path) -> None:
    """E, ctrl+u and a path typed in one burst (as a terminal delivers them)."""
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


async def test_export_while_calibrating_writes_the_report_current_when_saved(tmp_path: Path) -> None:
    """The file holds the calibration that finished while the dialog was open."""
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
