"""Names from a model are data: the exporters escape them, and the app shows module names,
markup and export paths literally (docs/bad-input.md)."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import model_file

# Exporters escape names ----------------------------------------------------------------------


def test_markdown_and_text_escape_names():
    from tui_quantreport.engine.export import _code, _md, _printable

    assert _printable("a\nb\x1b[31mc\rd") == "a\\nb\\x1b[31mc\\rd"
    assert "\n" not in _md("x\ny") and "\x1b" not in _md("\x1b[2J")
    assert _md("a|b") == "a\\|b"
    assert _md("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert _md("`x`") == "\\`x\\`"
    assert _code("plain") == "`plain`"
    assert _code("a`b") == "``a`b``"
    assert _code("`a``") == "``` `a`` ```"
    assert _code("<b>") == "`<b>`"


# The app shows model and user strings literally ---------------------------------------------

MARKUP_MODEL = """
import torch
from torch import nn


class Failing(nn.Module):
    def forward(self, x):
        raise RuntimeError("bad [/] input [bold]x[/bold]")


def build_model():
    m = nn.Sequential()
    m.add_module("[bold red]boom[/]", nn.Linear(4, 4))
    m.add_module("[/link]", Failing() if FAIL else nn.ReLU())
    return m


def calibration_batches():
    return [torch.randn(2, 4) for _ in range(2)]
"""


def markup_app(tmp_path: Path, fail: bool):
    from tui_quantreport.cli import app_options
    from tui_quantreport.tui.app import QuantReportApp

    path = model_file(tmp_path, f"FAIL = {fail}\n" + MARKUP_MODEL, name="markup_model.py")
    return QuantReportApp(str(path), app_options(str(path)))


def toasts_text(app) -> list[str]:
    from textual.widgets._toast import Toast

    return [str(toast.render()) for toast in app.screen.query(Toast)]


async def test_app_failing_module_named_like_markup(tmp_path):
    from tui_quantreport.tui.panes.module_tree import ModuleTree

    app = markup_app(tmp_path, fail=True)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        tree = app.query_one(ModuleTree)
        label = tree.nodes["[bold red]boom[/]"].label
        assert label.plain.startswith("[bold red]boom[/]") and label.spans[0].style != "bold red"
        app.main.go_to_module("[bold red]boom[/]")
        for _ in range(50):
            await pilot.pause(0.02)
        title = app.query_one("#detail-title").render()
        assert "[bold red]boom[/]" in str(title), str(title)
        await pilot.press("c")
        await app.workers.wait_for_complete()
        await pilot.pause()
        shown = "\n".join(toasts_text(app))
        assert "'[/link]'" in shown and "bad [/] input [bold]x[/bold]" in shown, shown
        status = app.query_one("#calibration-status").render()
        assert "[/link]" in str(status)
    assert app.return_code in (None, 0)


async def test_app_export_path_with_markup(tmp_path):
    app = markup_app(tmp_path, fail=False)
    (tmp_path / "x[").mkdir()
    target = str(tmp_path / "x[") + "/]y.json"
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        from textual.widgets import Input

        app.screen.query_one("#export-path", Input).value = target
        await pilot.press("enter")
        await pilot.pause()
        assert Path(target).exists()
        assert any(target in text for text in toasts_text(app)), toasts_text(app)
    assert app.return_code in (None, 0)


def test_palette_shows_module_names_literally():
    from textual.fuzzy import Matcher

    from tui_quantreport.tui.commands import highlight

    shown = highlight(Matcher("boom"), "Go to [bold red]boom[/]")
    assert shown.plain == "Go to [bold red]boom[/]"
    shown = highlight(Matcher("x"), "Go to [/link]")
    assert shown.plain == "Go to [/link]"
