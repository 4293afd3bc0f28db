"""The app shows names from a model literally: escape sequences in module names, class names and
the spec reach no terminal title, tree label, detail title or toast raw."""

from __future__ import annotations

from pathlib import Path

from app_helpers import SIZE, make_app, settle

from tui_quantreport.tui.panes.module_tree import ModuleTree

HOSTILE = """
import torch
from torch import nn

TITLE = "\\x1b]0;pwned\\x07"
CLIP = "\\x1b]52;c;cHduZWQ=\\x07"


def build_model():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("a" + TITLE, nn.Linear(4, 4))
    model.add_module("b" + CLIP + "\\n", type("Evil" + TITLE, (nn.ReLU,), {})())
    return model


def calibration_batches():
    return [torch.randn(2, 4) for _ in range(2)]
"""


def _clean(text: str) -> bool:
    return "\x1b" not in text and "\x07" not in text and "\n" not in text


async def test_hostile_names_are_shown_printable_in_the_app(tmp_path: Path) -> None:
    folder = tmp_path / "dir\x1b]0;spec\x07"
    folder.mkdir()
    model = folder / "hostile.py"
    model.write_text(HOSTILE)
    app = make_app(str(model))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert _clean(app.title) and _clean(app.sub_title) and "\\x1b" in app.sub_title
        tree = app.query_one(ModuleTree)
        labels = [str(node.label) for node in tree.root.children]
        assert len(labels) == 2 and all(_clean(label) for label in labels), labels
        assert any("\\x1b]0;pwned\\x07" in label for label in labels)
        app.notify("x\x1b]52;c;AAAA\x07y", title="t\x1b[2J")
        await pilot.pause()
        assert all(_clean(n.message.replace("\n", "")) and _clean(n.title) for n in app._notifications)


async def test_the_app_never_exports_over_the_models_own_file(tmp_path: Path) -> None:
    from textual.widgets import Input, RadioButton

    from tui_quantreport.tui.dialogs.export_dialog import ExportDialog

    model = tmp_path / "tiny.py"
    model.write_text((Path(__file__).parent / "models" / "tiny.py").read_text())
    before = model.read_bytes()
    app = make_app(str(model))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        dialog.query_one("#format-json", RadioButton).value = True
        path_input = dialog.query_one("#export-path", Input)
        path_input.value = str(model)
        path_input.focus()
        await pilot.press("enter")  # "exists: press Enter again to overwrite"
        await pilot.pause()
        await pilot.press("enter")
        await settle(app, pilot)
    assert model.read_bytes() == before
