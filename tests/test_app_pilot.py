"""The app, driven with the keyboard the way a user drives it (Textual's Pilot).

Most tests open the bundled ``showcase`` sample (calibrated on its first 8
batches to stay fast); the ones about slow, failing or broken models use the
small model files in ``tests/app_models/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from app_helpers import (
    DYNAMIC,
    MODELS,
    OUTLIER,
    SHOWCASE_BATCHES,
    SIZE,
    SLOW_MODEL,
    TOLERANCE_INPUT,
    calibrate,
    detail_follows,
    make_app,
    set_input,
    settle,
    text_of,
    walk_to,
)
from textual.widgets import Checkbox, Input, Static

from tui_quantreport import cli
from tui_quantreport.engine.report import Status
from tui_quantreport.tui.dialogs.export_dialog import ExportDialog
from tui_quantreport.tui.main_screen import MainScreen
from tui_quantreport.tui.panes.calibration_bar import CalibrationBar
from tui_quantreport.tui.panes.channel_plot import ChannelPlot
from tui_quantreport.tui.panes.findings_panel import FindingsPanel
from tui_quantreport.tui.panes.model_summary import ModelSummary
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.panes.stats_table import StatsTable
from tui_quantreport.tui.screens.error_screen import ErrorScreen
from tui_quantreport.tui.screens.help_screen import HelpScreen


async def test_before_calibration_tree_observers_filter_help_palette_and_quit(tmp_path: Path) -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        tree = app.query_one(ModuleTree)
        assert app.report is not None and app.report.batches == 0
        assert {"rgb_stem.conv1", "thermal_proj", "head.classifier"} <= set(tree.nodes)
        assert str(tree.nodes["rgb_stem.conv1"].label) == "conv1 Conv2d"
        assert "press c" in text_of(app.query_one(ModelSummary))
        # One checkbox per registered detector, all enabled by default.
        assert [box.id for box in app.query(Checkbox)] == [f"detector-{name}" for name in app.report.detectors]

        # The showcase is torch.ao-prepared: its observers are hidden until asked for.
        assert "rgb_stem.conv1.activation_post_process" not in tree.nodes
        await pilot.press("o")
        assert "rgb_stem.conv1.activation_post_process" in tree.nodes
        await pilot.press("o")
        assert "rgb_stem.conv1.activation_post_process" not in tree.nodes

        # / filters by name (ancestors stay), Enter keeps the filter, Esc clears it; also by class.
        everything = set(tree.nodes)
        await pilot.press("slash", *"relu")
        assert {"rgb_stem.relu1", "rgb_stem.relu2", "thermal_stem.relu", "head.relu"} <= set(tree.nodes)
        assert "rgb_proj" not in tree.nodes and "rgb_stem" in tree.nodes
        await pilot.press("enter")
        assert tree.has_focus and "rgb_proj" not in tree.nodes
        await pilot.press("slash", "escape")
        assert set(tree.nodes) == everything
        await pilot.press("slash", *"layernorm", "enter")
        assert "head.norm" in tree.nodes and "head.fc" not in tree.nodes and tree.has_focus
        await pilot.press("escape")  # in the tree, Escape clears a kept filter
        assert set(tree.nodes) == everything

        # ? lists every key of the app, with what it does.
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = "\n".join(text_of(s) for s in app.screen.query(".help-section"))
        for binding in MainScreen.BINDINGS:
            assert f"{app.get_key_display(binding)} " in shown and binding.tooltip in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

        # The command palette offers the app's actions: export opens the dialog.
        await pilot.press("ctrl+p", *"Export report")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ExportDialog)

        # A failed export says why, stays open, and leaves no file behind.
        target = tmp_path / "missing" / "report.json"
        app.screen.query_one("#export-path", Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ExportDialog)
        error = app.screen.query_one("#export-error", Static)
        # Words compared without line breaks: the message wraps where the temporary path ends.
        assert error.display and "does not exist" in " ".join(text_of(error).split())
        assert not target.exists() and list(tmp_path.iterdir()) == []
        await pilot.press("escape")
        assert not isinstance(app.screen, ExportDialog)

        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 0


async def test_calibrate_walk_jump_and_export(tmp_path: Path) -> None:
    # torch.ao's x86 target quantizes the showcase's convolutions (7-bit grid), where its conv findings
    # are major; the default torchao-cpu keeps them float.
    app = make_app(batches=SHOWCASE_BATCHES, target="qconfig-x86")
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        tree = app.query_one(ModuleTree)
        report = app.report
        assert report.batches == SHOWCASE_BATCHES
        assert "calibrated on 8 batches" in text_of(app.query_one(ModelSummary))
        assert "Calibrated on 8 batches" in text_of(app.query_one("#calibration-status", Static))
        # The sample's batches are a list: the progress bar knew the total.
        assert app.query_one(CalibrationBar).total == SHOWCASE_BATCHES
        # Badges: one glyph per recommending detector; unobserved containers are dimmed.
        # A badge per detector whose finding is badged (measured as minor, or a duplicate: no badge).
        expected = tuple(d.glyph for name, d in report.detectors.items() if report.badged(name, "rgb_stem.conv2"))
        assert tree.badges_of("rgb_stem.conv2") == expected and len(expected) >= 2
        assert tree.is_dimmed("rgb_stem") and not tree.is_dimmed("rgb_stem.conv2")

        flagged = [fqn for fqn, _ in report.ranked_modules()]  # n walks the engine's order
        await pilot.press("n")
        assert tree.current_fqn == flagged[0]
        await pilot.press("n")
        assert tree.current_fqn == flagged[1]
        await pilot.press("N", "N")
        assert tree.current_fqn == flagged[-1]  # wrapped around

        # n expands collapsed ancestors on the way.
        tree.nodes["head"].collapse()
        await walk_to(app, pilot, "thermal_proj")
        after = flagged[flagged.index("thermal_proj") + 1]
        assert after.startswith("head.")
        await pilot.press("n")
        assert tree.current_fqn == after and tree.nodes["head"].is_expanded
        await detail_follows(app, pilot)

        # The detail view follows the cursor: findings in words, the statistics, the plots.
        await walk_to(app, pilot, "rgb_stem.conv1")
        shown = text_of(app.query_one(FindingsPanel))
        for finding in report.findings_for("rgb_stem.conv1"):
            assert finding.headline in shown and finding.reason[:40] in shown.replace("\n", " ")
        assert app.query_one(StatsTable).row_count > 0
        assert sum(plot.display for plot in app.query(ChannelPlot)) >= 2

        # e: JSON, then Markdown, read back from the files.
        await pilot.press("e")
        assert isinstance(app.screen, ExportDialog)
        target = tmp_path / "report.json"
        app.screen.query_one("#export-path", Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, ExportDialog)
        data = json.loads(target.read_text())
        assert data["format"] == "tui-quantreport.report/1"
        assert data["calibration"]["batches"] == SHOWCASE_BATCHES
        assert set(data["detectors"]) == set(app.report.detectors)

        await pilot.press("e")
        await pilot.click("#format-markdown")
        path_input = app.screen.query_one("#export-path", Input)
        assert path_input.value.endswith(".md")
        path_input.value = str(tmp_path / "report.md")
        await pilot.click("#export")
        await pilot.pause()
        assert (tmp_path / "report.md").read_text().startswith("# Quantization report: showcase")

        # A typed .md path is written as Markdown even with JSON still chosen.
        await pilot.press("e")
        app.screen.query_one("#export-path", Input).value = str(tmp_path / "typed.md")
        await pilot.press("enter")
        await pilot.pause()
        assert (tmp_path / "typed.md").read_text().startswith("# Quantization report: showcase")


async def test_thresholds_and_detector_toggles_update_from_kept_stats() -> None:
    # torch.ao's x86 target quantizes the showcase's convolutions (7-bit grid), where its conv findings
    # are major; the default torchao-cpu keeps them float.
    app = make_app(batches=SHOWCASE_BATCHES, target="qconfig-x86")
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        tree = app.query_one(ModuleTree)
        calibrated = app.report

        # Lowering the tolerance below a module's S flips "dynamic" to "static", without recalibrating.
        findings = calibrated.detectors[DYNAMIC].findings
        dynamic = [findings[fqn] for fqn in calibrated.detectors[DYNAMIC].recommended]
        assert dynamic, "the showcase should have a module recommended for dynamic quantization"
        target = max(dynamic, key=lambda f: f.values["post_observer_comp_stat"])
        s_value = target.values["post_observer_comp_stat"]
        for _ in range(40):  # bounded: a walk that never reaches it fails, never hangs
            if tree.current_fqn == target.module:
                break
            await pilot.press("n")
        assert tree.current_fqn == target.module
        await detail_follows(app, pilot)
        assert "Use dynamic quantization" in text_of(app.query_one(FindingsPanel))
        assert "D" in tree.badges_of(target.module)
        await set_input(pilot, app, TOLERANCE_INPUT, f"{s_value - 0.01:.3f}")
        await settle(app, pilot)
        await detail_follows(app, pilot)
        assert app.report.detectors[DYNAMIC].findings[target.module].status is Status.OK
        assert app.report.batches == SHOWCASE_BATCHES
        assert "Use static quantization" in text_of(app.query_one(FindingsPanel))
        assert "D" not in tree.badges_of(target.module)
        good = app.report

        # A bad value: an inline message, and the last good value stays in force.
        await set_input(pilot, app, TOLERANCE_INPUT, "1.7")
        await settle(app, pilot)
        message = app.query_one(f"#field-{DYNAMIC}-tolerance .param-message", Static)
        assert message.display and "must be in [0, 1]" in text_of(message)
        assert f"keeping {s_value - 0.01:.3f}".rstrip("0") in text_of(message)
        assert app.report is good
        await set_input(pilot, app, TOLERANCE_INPUT, "abc")
        assert "must be a number" in text_of(message) and app.report is good
        await set_input(pilot, app, TOLERANCE_INPUT, "0.5")
        await settle(app, pilot)
        assert not message.display and app.report.detectors[DYNAMIC].params["tolerance"] == 0.5

        # A parameter that changes what is recorded says it needs new data, until recalibrated.
        await set_input(pilot, app, f"#param-{OUTLIER}-reference_percentile", "0.9")
        await settle(app, pilot)
        assert f"{OUTLIER}.reference_percentile" in app.report.stale_params
        stale = app.query_one(f"#field-{OUTLIER}-reference_percentile .param-message", Static)
        assert stale.display and "press c" in text_of(stale)
        await pilot.press("c")
        await settle(app, pilot)
        assert app.report.stale_params == () and not stale.display

        # Unticking a detector removes its badges at once; ticking it brings them back.
        report = app.report
        flagged = next(f for f in report.detectors[OUTLIER].recommended if report.badged(OUTLIER, f))
        assert "O" in tree.badges_of(flagged)
        box = app.query_one(f"#detector-{OUTLIER}", Checkbox)
        box.focus()
        await pilot.press("space")
        await settle(app, pilot)
        assert OUTLIER not in app.report.detectors
        assert not any("O" in tree.badges_of(fqn) for fqn in tree.nodes)
        assert not app.query_one(f"#params-{OUTLIER}").display
        await pilot.press("space")
        await settle(app, pilot)
        assert "O" in tree.badges_of(flagged)


async def test_escape_cancels_calibration_and_keeps_previous_results(monkeypatch) -> None:
    # One batch at a time: a merged group pulls its next batches before running (it would wait on
    # the gate below before counting batch 2).
    monkeypatch.setenv("TUI_QUANTREPORT_MERGE_BATCHES", "0")
    app = make_app(str(SLOW_MODEL), batches=3)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        previous = app.report
        assert previous.batches == 3
        await set_input(pilot, app, "#param-app-batches", "")  # empty: all batches
        assert app.max_batches is None
        slow = _loaded_module(SLOW_MODEL)
        # The model's data stops after two batches until the test lets it go: the keys below
        # arrive mid-calibration on any machine, however fast or loaded.
        slow.GATE.clear()
        slow.HOLD_AFTER[0] = 2
        try:
            app.query_one(ModuleTree).focus()
            await pilot.press("c")
            bar = app.query_one(CalibrationBar)
            for _ in range(1200):  # a guard against hanging, not a time limit: the gate holds batch 3
                if bar.done >= 2:
                    break
                await pilot.pause(0.05)
            assert app.calibrating and bar.running and bar.done == 2
            await pilot.press("down")  # the UI keeps answering during calibration
            await pilot.press("t")  # in a text field, Escape first leaves the field...
            assert isinstance(app.focused, Input)
            await pilot.press("escape")
            assert app.query_one(ModuleTree).has_focus and app.calibrating
            await pilot.press("escape")  # ...then cancels (at the next batch boundary)
            await pilot.pause()
        finally:
            slow.HOLD_AFTER[0] = None
            slow.GATE.set()
        await settle(app, pilot)
        assert not app.calibrating
        assert app.report is previous and app.report.batches == 3
        status = text_of(app.query_one("#calibration-status", Static))
        assert "cancelled" in status and "3 batches" in status


async def test_quit_mid_calibration_stops_the_worker() -> None:
    app = make_app(str(SLOW_MODEL))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        slow = _loaded_module(SLOW_MODEL)
        await pilot.press("c")
        for _ in range(100):
            await pilot.pause(0.05)
            if app.query_one(CalibrationBar).done >= 2:
                break
        await pilot.press("q")
    assert app.return_code == 0
    # The worker stops at the next batch boundary: the count settles well before all batches ran.
    produced = -1
    deadline = time.monotonic() + 5
    while slow.PRODUCED[0] != produced and time.monotonic() < deadline:
        produced = slow.PRODUCED[0]
        time.sleep(0.3)
    assert slow.PRODUCED[0] == produced < slow.BATCHES


def _loaded_module(path: Path):
    """The module the engine loaded from ``path`` (to read its batch counter)."""
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == str(path):
            return module
    return None


async def test_calibration_error_is_shown_and_nothing_is_lost() -> None:
    app = make_app(str(MODELS / "rejecting_model.py"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        before = app.report
        await pilot.press("c")
        await settle(app, pilot)
        status = text_of(app.query_one("#calibration-status", Static))
        assert "batch 3" in status and "module '0' (Linear)" in status  # which batch, which module
        assert not app.calibrating and app.report is before
        assert isinstance(app.screen, type(app.screen)) and not isinstance(app.screen, ErrorScreen)
        await pilot.press("down")
        assert app.query_one(ModuleTree).current_fqn == "0"


async def test_broken_model_shows_error_screen_and_quits_with_status_2() -> None:
    app = make_app(str(MODELS / "broken_model.py"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, ErrorScreen)
        message = text_of(app.screen.query_one("#error-message", Static))
        assert "build_model() raised RuntimeError: checkpoint weights.pt is missing" in message
        await pilot.press("c")  # app actions are off on the error screen
        assert isinstance(app.screen, ErrorScreen)
        await pilot.press("q")
    assert app.return_code == 2


def test_first_paint_does_not_wait_for_torch() -> None:
    """Importing the app loads neither torch nor the engine modules that import it."""
    heavy = [
        "torch",
        *(
            f"tui_quantreport.engine.{m}"
            for m in ("settings", "evaluation", "session", "detectors", "modules", "stats")
        ),
    ]
    code = f"import sys, tui_quantreport.tui.app; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_bad_model_on_command_line_exits_2_before_the_ui(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["no_such_model_file.py"]) == 2
    assert "no_such_model_file.py: file no_such_model_file.py does not exist" in capsys.readouterr().err


async def test_narrow_terminal_collapses_the_sidebar() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        sidebar, detail = app.query_one("#sidebar"), app.query_one("#detail")
        assert sidebar.styles.display == "none" and detail.styles.display == "block"
        await pilot.press("b")
        assert sidebar.styles.display == "block" and detail.styles.display == "none"
        await pilot.press("b")
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert sidebar.styles.display == "block"


async def test_large_model_tree_is_lazy_and_jumps_expand_ancestors() -> None:
    app = make_app("large_generated", batches=1, probe_batches=0)  # the tree, not the measured error
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        tree = app.query_one(ModuleTree)
        assert len(tree.nodes) >= 2000
        assert tree.last_line < 50  # only the top levels are laid out (how fast is the benchmark's to say)
        await pilot.press("c")
        await settle(app, pilot)
        flagged = [fqn for fqn, _ in app.report.ranked_modules()]
        deep = next(fqn for fqn in flagged if fqn.count(".") >= 4)
        app.main.go_to_module(deep)
        await pilot.pause()
        assert tree.current_fqn == deep
        await pilot.press("n")
        assert tree.current_fqn == flagged[flagged.index(deep) + 1]
