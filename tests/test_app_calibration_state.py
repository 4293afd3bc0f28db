"""What the app says and offers around loading, calibrating and measuring: "not calibrated" before
a calibration; a bad option exits with one line; quitting while the model loads does not wait;
``v`` before calibrating says what it runs; a cancelled measurement runs again; the scheme picker
offers only what applies; a long status message stays on one line; after a calibration, no
Cancel, human labels, ``o`` without observers and the help screen's own footer."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest
from app_helpers import (
    SHOWCASE_BATCHES,
    SIZE,
    calibrate,
    make_app,
    settle,
    text_of,
    walk_to,
)
from textual.widgets import Footer, Input, Label, Static

from tui_quantreport.tui.panes.calibration_bar import CalibrationBar
from tui_quantreport.tui.panes.findings_panel import FindingsPanel
from tui_quantreport.tui.panes.model_summary import ModelSummary
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.screens.help_screen import HelpScreen

OUTLIER = "outlier_detector"


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


async def test_before_calibration_everything_says_not_calibrated(tmp_path: Path) -> None:
    """No "never called during calibration" before any calibration; stale settings say
    "needs recalibration"."""
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await walk_to(app, pilot, "rgb_stem.relu1")
        shown = text_of(app.query_one(FindingsPanel))
        assert "not calibrated" in shown and "never called" not in shown

        await pilot.press("e")
        target = tmp_path / "before.md"
        app.screen.query_one("#export-path", Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        text = target.read_text()
        assert "**not calibrated**" in text and "never called during calibration" not in text
        assert "| Outlier channels | – |" in text and "not calibrated" in text.split("| Outlier channels |")[1]

        await calibrate(app, pilot)
        field = app.query_one(f"#param-{OUTLIER}-reference_percentile", Input)
        field.focus()
        await pilot.pause()
        field.value = ""
        await pilot.press(*"0.9", "enter")
        await settle(app, pilot)
        await walk_to(app, pilot, "rgb_stem.relu1")
        shown = text_of(app.query_one(FindingsPanel))
        assert "needs recalibration" in shown


async def test_a_bad_option_exits_with_one_line_instead_of_blaming_the_model() -> None:
    app = make_app(batches=SHOWCASE_BATCHES, tolerance="5")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
    assert app.return_code == 2
    assert "tolerance" in app.error_line and "\n" not in app.error_line


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


async def test_a_long_status_message_stays_on_one_line_at_80_columns() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.query_one(CalibrationBar).say("word " * 80)
        await pilot.pause()
        assert app.query_one("#calibration-status").size.height == 1


async def test_after_calibrating_no_cancel_human_labels_observers_key_and_the_help_footer() -> None:
    """O without observers, the help's own footer, no Cancel after a calibration, human
    labels, no '….'."""
    app = make_app("drifting_mlp", batches=4)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        tree = app.query_one(ModuleTree)
        before = set(tree.nodes)
        await pilot.press("o")
        await pilot.pause()
        assert set(tree.nodes) == before and not tree.show_helpers
        assert any("no observers" in str(n.message) for n in app._notifications)

    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        cancel = [b for b in app.screen.active_bindings.values() if b.binding.action == "cancel_calibration"]
        assert not cancel or not app.main.check_action("cancel_calibration", ())
        summary = text_of(app.query_one(ModelSummary))
        assert "…." not in summary and " more." in summary
        labels = [str(label.content) for label in app.query(".param-label").results(Label)]
        assert "Batches a channel must use" in "\n".join(labels)
        assert not any("fraction_batches_used_threshold" in label for label in labels)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        footer = app.screen.query_one(Footer)
        assert footer.screen is app.screen
