"""The app and stats files: `s` saves, `tui-quantreport run.qstats` opens without the model,
and `--stats` reuses a file's statistics on the model it came from."""

from __future__ import annotations

import io
from pathlib import Path

from app_helpers import walk_to
from rich.console import Console
from textual.widgets import Input, Static

from tui_quantreport.cli import app_options
from tui_quantreport.engine import render, statsfile
from tui_quantreport.tui.app import QuantReportApp
from tui_quantreport.tui.dialogs.export_dialog import ExportDialog
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.screens.error_screen import ErrorScreen

SIZE = (120, 40)
DYNAMIC = "dynamic_vs_static_detector"


def make_app(model: str, **options: object) -> QuantReportApp:
    return QuantReportApp(model, app_options(model, **options))


async def settle(app: QuantReportApp, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


def status_text(app: QuantReportApp) -> str:
    console = Console(width=300, file=io.StringIO(), record=True, color_system=None)
    console.print(app.query_one("#calibration-status", Static).content)
    return console.export_text()


async def test_s_saves_and_the_saved_file_opens_without_the_model(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app("showcase", batches=6)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("s")  # nothing calibrated yet: nothing written
        await settle(app, pilot)
        assert not (tmp_path / "showcase.qstats").exists()
        await pilot.press("c")
        await settle(app, pilot)
        await pilot.press("s")  # asks where: the path is prefilled, absolute
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        assert dialog.query_one("#export-path", Input).value == str(tmp_path / "showcase.qstats")
        assert not dialog.query("#export-format") and "Statistics file" in status_of(dialog.query_one("#export-what"))
        await pilot.press("escape")  # Esc: nothing written
        await settle(app, pilot)
        assert not isinstance(app.screen, ExportDialog) and not (tmp_path / "showcase.qstats").exists()
        await pilot.press("s", "enter")
        await settle(app, pilot)
        assert not isinstance(app.screen, ExportDialog)
        live = app.report
        badges = app.query_one(ModuleTree).badges_of("rgb_stem.conv2")
        live_local = {fqn: {k: v.db for k, v in schemes.items()} for fqn, schemes in app.main.measured.local.items()}
        live_plan, live_sqnr = app.main.plan.modules, app.main.plan_sqnr.db
    saved = statsfile.load(tmp_path / "showcase.qstats")
    assert saved.stats.batches == 6 and saved.spec == "showcase"

    app = make_app("showcase.qstats")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert not isinstance(app.screen, ErrorScreen)
        assert app.main.model is not None and app.main.model.unavailable is not None
        assert render(app.report, "json") == render(live, "json")
        tree = app.query_one(ModuleTree)
        assert badges and tree.badges_of("rgb_stem.conv2") == badges
        # The measured error came back with the file: local SQNR per scheme, the plan and its SQNR,
        # shown as they were; editing the plan needs the model, and says so.
        measured = app.main.measured
        assert measured is not None and measured.analysis is None
        assert {fqn: {k: v.db for k, v in schemes.items()} for fqn, schemes in measured.local.items()} == live_local
        assert app.main.plan.modules == live_plan and app.main.plan_sqnr.db == live_sqnr
        assert f"plan {live_sqnr:.1f} dB" in app.sub_title
        await walk_to(app, pilot, "rgb_stem.conv1")
        await pilot.press("f")
        await pilot.pause()
        assert app.main.plan.modules == live_plan
        assert any("Editing the plan needs the model" in n.message for n in app._notifications)
        assert "6 batches from showcase.qstats" in status_text(app) and "unavailable" in status_text(app)
        assert "--stats showcase.qstats" in status_text(app)
        # Recalibrating needs the model: shown disabled, and nothing starts.
        assert app.main.check_action("calibrate", ()) is None
        await pilot.press("c")
        await settle(app, pilot)
        assert not app.calibrating and app.report.batches == 6
        app.main.action_calibrate()  # from the palette: says why
        await pilot.pause()
        assert any("unavailable" in n.message and "--stats showcase.qstats" in n.message for n in app._notifications)
        # Thresholds still re-judge the kept statistics.
        app.main.settings = app.settings.with_param(DYNAMIC, "tolerance", 0.0)
        app.main._reevaluate()
        await settle(app, pilot)
        assert app.report.detectors[DYNAMIC].recommended == []
        assert app.report.batches == 6


async def test_stats_option_reuses_a_matching_file_and_refuses_another_model(tmp_path: Path) -> None:
    from tui_quantreport.cli import main

    path = tmp_path / "run.qstats"
    assert main(["calibrate", "showcase", "--output", str(path), "--batches", "3"]) == 0
    app = make_app("showcase", stats=str(path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.report.batches == 3 and not app.calibrating
        assert f"3 batches from {path}" in status_text(app)
        assert app.main.check_action("calibrate", ()) is True

    app = make_app("tiny_transformer", stats=str(path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, ErrorScreen)
        await pilot.press("q")
    assert app.return_code == 2


async def test_s_asks_before_overwriting_and_says_why_a_path_is_unwritable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    existing = tmp_path / "showcase.qstats"
    existing.write_text("keep me")
    app = make_app("showcase", batches=3)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        await pilot.press("s")
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        await pilot.press("enter")  # the file exists: asks first, writes nothing
        await settle(app, pilot)
        error = dialog.query_one("#export-error", Static)
        assert app.screen is dialog and error.display and "exists" in status_of(error)
        assert existing.read_text() == "keep me"
        # An unwritable path: one clear line, the dialog stays, nothing written.
        field = dialog.query_one("#export-path", Input)
        field.value = str(tmp_path / "no-such-folder" / "run.qstats")
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen is dialog and "the folder" in status_of(error) and "does not exist" in status_of(error)
        assert len(status_of(error).strip().splitlines()) == 1
        assert not (tmp_path / "no-such-folder").exists()
        field.value = str(tmp_path)  # a folder
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen is dialog and "it is a folder" in status_of(error)
        field.value = str(existing)
        await pilot.press("enter")  # asks again for this path
        await settle(app, pilot)
        assert app.screen is dialog and existing.read_text() == "keep me"
        await pilot.press("enter")  # the second Enter overwrites
        await settle(app, pilot)
        assert app.screen is not dialog
    assert statsfile.load(existing).stats.batches == 3


def status_of(widget: Static) -> str:
    console = Console(width=300, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()
