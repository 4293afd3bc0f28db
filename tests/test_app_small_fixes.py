"""Smaller things a new user trips over, each driven as a user does and failing without its fix."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from test_app_pilot import SHOWCASE_BATCHES, SIZE, calibrate, make_app, settle, text_of, walk_to
from test_app_plan import SENSITIVE, TARGET, plan_settled
from textual.widgets import Input, Static

from tui_quantreport import cli
from tui_quantreport.tui.dialogs.export_dialog import ExportDialog
from tui_quantreport.tui.panes.calibration_bar import CalibrationBar
from tui_quantreport.tui.panes.findings_panel import FindingsPanel
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.panes.plan_summary import PlanSummary
from tui_quantreport.tui.screens.help_screen import HelpScreen


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


async def test_a_bad_option_exits_with_one_line_instead_of_blaming_the_model() -> None:
    app = make_app(batches=SHOWCASE_BATCHES, tolerance="5")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
    assert app.return_code == 2
    assert "tolerance" in app.error_line and "\n" not in app.error_line


async def test_a_cancelled_measurement_can_be_run_again_without_recalibrating(monkeypatch) -> None:
    from tui_quantreport.tui.controllers import measure as measure_controller

    real = measure_controller.measure
    cancelled = []

    def cancelled_by_escape(session, stats, settings, probes, progress, should_cancel, *args):
        if not cancelled:  # the first measurement: Esc arrives while it runs
            cancelled.append(True)
            app.main._measure_cancel.set()
        return real(session, stats, settings, probes, progress, should_cancel, *args)

    monkeypatch.setattr(measure_controller, "measure", cancelled_by_escape)
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        assert app.main.measured is None
        assert "r measures again" in text_of(app.query_one("#calibration-status", Static))
        batches = app.main.stats.batches
        await pilot.press("r")
        await settle(app, pilot)
        assert app.main.measured is not None and app.main.stats.batches == batches


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


async def test_a_finding_the_measurement_does_not_support_is_not_headlined_as_recommended() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        report = app.report
        minor = next(
            fqn
            for (detector, fqn), sev in report.severities.items()
            if detector == "per_channel_detector" and sev.level.value == "minor"
        )
        await walk_to(app, pilot, minor)
        text = text_of(app.query_one(FindingsPanel))
        block = text[text.index("Per-channel weights") :].splitlines()[0]
        assert "change recommended" not in block and "measured gain too small" in block


async def test_a_long_status_message_stays_on_one_line_at_80_columns() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.query_one(CalibrationBar).say("word " * 80)
        await pilot.pause()
        assert app.query_one("#calibration-status").size.height == 1


def test_the_top_level_help_names_config_and_verify(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "config MODEL" in out and "verify MODEL" in out


async def test_help_lists_every_detector_badge() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        glyphs = {d.glyph for d in app.main.detectors}
        symbols = next(line for line in text_of_screen(app.screen) if "A detector's badge" in line)
        assert all(glyph in symbols for glyph in glyphs)


def text_of_screen(screen) -> list[str]:
    return [line for widget in screen.query(Static) for line in text_of(widget).splitlines()]


async def test_the_root_plot_draws_float_as_float_and_scales_to_the_values_shown() -> None:
    app = make_app(batches=SHOWCASE_BATCHES, target=TARGET)  # its convolutions quantized: f keeps one float
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        await walk_to(app, pilot, SENSITIVE)
        await pilot.press("f")
        await plan_settled(app, pilot)
        await walk_to(app, pilot, "")
        await settle(app, pilot)  # the root's measurements that follow a plan change (limit, depth) end
        lines = text_of(app.query_one(PlanSummary)).splitlines()
        row = next((line for line in lines if line.startswith(("thermal_stem", "…rmal_stem"))), None)
        assert row is not None, lines
        assert "█" not in row and "float" in row and "dB" not in row
        axis = lines[-1].split()
        assert float(axis[0]) > 0  # the scale starts near the lowest value shown, not at 0
        bars = [line.count("█") for line in lines if "dB" in line and "█" in line]
        assert len(set(bars)) > 2  # 35.4, 35.5 and 35.8 dB no longer look identical to 38.8 and 39.4


async def test_the_footer_keeps_quit_at_80_columns() -> None:
    from textual.widgets import Footer

    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        footer = app.main.query_one(Footer)
        keys = [item for item in footer.query("FooterKey")]
        quit_key = next(k for k in keys if k.key == "q")
        palette = next(k for k in keys if k.key == "ctrl+p")  # docked right, over what does not fit
        assert quit_key.region.width > 0 and quit_key.region.right <= palette.region.x


async def test_a_detector_checkbox_shows_its_state_without_colour() -> None:
    from textual.widgets import Checkbox

    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        box = app.query_one("#detector-outlier_detector", Checkbox)
        assert box.render().plain.startswith("▐X▌")
        box.value = False
        await pilot.pause()
        assert box.render().plain.startswith("▐ ▌")


async def test_the_scheme_picker_does_not_offer_schemes_that_cannot_apply() -> None:
    from textual.widgets import OptionList

    from tui_quantreport.tui.dialogs.scheme_picker import SchemePicker

    app = make_app("untraceable", batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        embedding = next(f for f in app.main.plan.modules if f.endswith("word"))
        await walk_to(app, pilot, embedding)
        await pilot.press("p")
        picker = app.screen
        assert isinstance(picker, SchemePicker)
        options = picker.query_one(OptionList)
        disabled = {
            options.get_option_at_index(i).id
            for i in range(options.option_count)
            if options.get_option_at_index(i).disabled
        }
        assert {"static_per_tensor", "static_per_channel", "dynamic"} <= disabled
        assert "weight_only" not in disabled and "float" not in disabled
        options.highlighted = picker.schemes.index("static_per_tensor")
        await pilot.press("enter")
        await pilot.pause()
        assert app.main.plan.modules[embedding] != "static_per_tensor"  # nothing chosen


async def test_v_before_calibrating_says_what_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the strip is told when ``v`` runs before a calibration (recorded as it is said, so a
    busy machine that moves on quickly cannot hide it)."""
    said: list[str] = []
    start, say = CalibrationBar.start, CalibrationBar.say

    def recording_start(bar, text, *args, **kwargs):
        said.append(text)
        return start(bar, text, *args, **kwargs)

    def recording_say(bar, text, *args, **kwargs):
        said.append(text)
        return say(bar, text, *args, **kwargs)

    monkeypatch.setattr(CalibrationBar, "start", recording_start)
    monkeypatch.setattr(CalibrationBar, "say", recording_say)
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        said.clear()
        await pilot.press("v")
        for _ in range(6000):
            if said and not app.main.applying:
                break
            await pilot.pause(0.01)
        assert any("recommended plan (calibrating and measuring it first)" in text for text in said), said
        assert not any(text.startswith("Calibrating…") for text in said), said


class _StillLoading(Future):
    """A model that is still loading; counts the threads waiting for it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0

    def result(self, timeout=None):
        self.waiting += 1
        try:
            return super().result(timeout)
        finally:
            self.waiting -= 1


async def test_quitting_while_the_model_loads_does_not_wait_for_it() -> None:
    """The loader thread waits for the model being built; quitting must release it at once (the
    process exits only when the worker threads have)."""
    import asyncio

    app = make_app(batches=SHOWCASE_BATCHES)
    loading = _StillLoading()
    app._loading = loading
    try:
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(500):
                if loading.waiting:
                    break
                await pilot.pause(0.01)
            assert loading.waiting == 1
            await pilot.press("q")
        for _ in range(500):
            if not loading.waiting:
                break
            await asyncio.sleep(0.01)
        assert loading.waiting == 0
    finally:
        loading.set_exception(RuntimeError("test over"))  # without the fix, the thread is still waiting
