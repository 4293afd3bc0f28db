"""The what-if plan (issue 7 item 5), driven as a user does: the recommended plan after a
calibration, f toggling a module and a subtree to float and back, the header's end-to-end SQNR,
p picking a scheme, e saving the plan, S measuring sensitivity."""

from __future__ import annotations

import json
from pathlib import Path

from app_helpers import (
    SENSITIVE,
    SHOWCASE_BATCHES,
    SIZE,
    TARGET,
    calibrate,
    make_app,
    plan_settled,
    sensitivity_dialog,
    settle,
    text_of,
    walk_to,
)
from textual.widgets import Input, OptionList

from tui_quantreport.tui.dialogs.confirm_dialog import ConfirmDialog
from tui_quantreport.tui.dialogs.export_dialog import ExportDialog
from tui_quantreport.tui.dialogs.scheme_picker import SchemePicker
from tui_quantreport.tui.main_screen import seconds_text
from tui_quantreport.tui.panes.plan_summary import PlanSummary
from tui_quantreport.tui.panes.sqnr_panel import SqnrPanel


async def _measured(app, pilot) -> None:
    await calibrate(app, pilot)
    await settle(app, pilot)  # the measurement follows the calibration
    assert app.main.measured is not None and app.main.plan is not None


async def test_f_toggles_a_module_and_a_subtree_and_the_header_follows(tmp_path: Path) -> None:
    app = make_app(batches=SHOWCASE_BATCHES, target=TARGET)
    async with app.run_test(size=SIZE) as pilot:
        await _measured(app, pilot)
        main = app.main
        recommended = main.measured.recommended
        assert all(scheme != "float" for scheme in recommended.modules.values())
        before = main.plan_sqnr
        assert f"plan {before.db:.1f} dB" in app.sub_title and "0 float" in app.sub_title

        await walk_to(app, pilot, SENSITIVE)
        panel = app.query_one(SqnrPanel)
        shown = text_of(panel)
        assert "◀ plan" in shown and recommended.modules[SENSITIVE] in shown
        await pilot.press("f")
        assert main.plan.modules[SENSITIVE] == "float"
        # A single change is evaluated at once (no debounce timer); only quick successions wait.
        assert main._plan_timer is None
        # The root's plan summary, hidden behind the module view, is not redrawn until shown.
        assert app.query_one(PlanSummary)._stale
        if main.plan_pending:  # a quiet machine may already be done: never depend on speed
            assert "recomputing" in app.sub_title  # the last value stays visible
            assert f"{before.db:.1f} dB" in app.sub_title
        await plan_settled(app, pilot)
        assert not main.plan_pending and "1 float" in app.sub_title
        assert main.plan_sqnr.db is not None and main.plan_sqnr.db > before.db  # keeping it float helps
        assert "kept in float" in text_of(panel)

        await pilot.press("f")  # back to its recommended scheme
        await plan_settled(app, pilot)
        assert main.plan.modules[SENSITIVE] == recommended.modules[SENSITIVE]
        assert main.plan_sqnr == before

        await walk_to(app, pilot, "rgb_stem")  # a subtree: both convs at once
        await pilot.press("f")
        await plan_settled(app, pilot)
        assert main.plan.kept_float == ("rgb_stem.conv1", "rgb_stem.conv2")

        await walk_to(app, pilot, "")
        summary = text_of(app.query_one(PlanSummary))
        assert "Keep float: rgb_stem.conv1, rgb_stem.conv2" in summary and "SQNR by layer" in summary

        # p picks a scheme from a list that shows each one's local SQNR.
        await walk_to(app, pilot, "head.fc")
        await pilot.press("p")
        assert isinstance(app.screen, SchemePicker)
        options = app.screen.query_one(OptionList)
        assert "weight_only" in app.screen.refused  # torch.ao's x86 target has no weight-only Linear
        options.highlighted = app.screen.schemes.index("static_per_channel")
        await pilot.press("enter")
        await plan_settled(app, pilot)
        assert main.plan.modules["head.fc"] == "static_per_channel"

        # e saves the plan with its end-to-end SQNR.
        await pilot.press("e")
        assert isinstance(app.screen, ExportDialog)
        target = tmp_path / "showcase.plan.json"
        app.screen.query_one("#export-path", Input).value = str(target)
        await pilot.pause()
        assert app.screen.target.key == "plan"  # the radio followed the .plan.json suffix
        await pilot.press("enter")
        await pilot.pause()
        data = json.loads(target.read_text())
        assert data["format"] == "tui-quantreport.plan/1"
        assert data["modules"]["rgb_stem.conv1"]["scheme"] == "float"
        assert data["modules"]["head.fc"]["scheme"] == "static_per_channel"
        assert abs(data["predicted_sqnr_db"] - main.plan_sqnr.db) < 1e-6


async def test_sensitivity_says_what_it_costs_and_asks_first() -> None:
    app = make_app(batches=SHOWCASE_BATCHES, target=TARGET)
    async with app.run_test(size=SIZE) as pilot:
        await _measured(app, pilot)
        main = app.main
        quantized = len(main.plan.quantized)
        dialog = await sensitivity_dialog(app, pilot)  # only the first module ran: to time it
        assert main.sensitivity is None and len(main._sens_done) == 1
        text = text_of(dialog.query_one("#confirm-text"))
        assert f"{quantized} forward passes over the {main.measured.probe_batches} probe batches" in text
        # The estimate comes from the module just timed, for the modules left.
        assert f"1 of {quantized} are measured already" in text
        assert "Estimate: about " in text and "per module, timed on the first module" in text
        assert "Enter starts, Esc" in text
        await pilot.press("escape")  # cancelled: nothing more started
        await settle(app, pilot)
        assert not isinstance(app.screen, ConfirmDialog)
        assert not main.measuring and main.sensitivity is None

        await sensitivity_dialog(app, pilot)  # the timed module is kept: nothing runs before asking
        await pilot.press("enter")  # a worker: progress and Esc on the bar while it runs
        assert not isinstance(app.screen, ConfirmDialog)
        await settle(app, pilot)
        assert "Sensitivity measured" in text_of(app.query_one("#calibration-status"))
        sensitivity = main.sensitivity
        assert set(sensitivity) == set(main.plan.quantized)
        assert min(sensitivity, key=lambda f: sensitivity[f].value) == SENSITIVE
        await walk_to(app, pilot, SENSITIVE)
        assert "only this module quantized" in text_of(app.query_one(SqnrPanel))


async def test_a_cancelled_sensitivity_keeps_what_was_measured_and_resumes() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await _measured(app, pilot)
        main = app.main
        plan = main.plan
        await sensitivity_dialog(app, pilot)
        timed = dict(main._sens_done)
        # Cancel after one more module: the run stops between modules and keeps what it measured.
        analysis = main.measured.analysis
        real = analysis.sensitivity
        measured_again: list[str] = []
        cancel = [True]

        def counting(alone, *args, **kwargs):
            result = real(alone, *args, **kwargs)
            measured_again.extend(alone.quantized)
            if cancel[0]:
                main._measure_cancel.set()  # as Esc does
            return result

        analysis.sensitivity = counting
        await pilot.press("enter")
        await settle(app, pilot)
        kept = dict(main._sens_done)
        assert main.sensitivity is None and len(timed) < len(kept) < len(plan.quantized)
        assert "kept: S resumes" in text_of(app.query_one("#calibration-status"))
        cancel[0] = False
        measured_again.clear()
        dialog = await sensitivity_dialog(app, pilot)
        assert f"{len(kept)} of {len(plan.quantized)} are measured already" in text_of(
            dialog.query_one("#confirm-text")
        )
        await pilot.press("enter")
        await settle(app, pilot)
        assert set(main.sensitivity) == set(plan.quantized)
        assert not set(measured_again) & set(kept)  # resumed: nothing measured twice
        assert {f: s for f, s in main.sensitivity.items() if f in kept} == kept


def test_seconds_text() -> None:
    assert seconds_text(0.42) == "0.42 s" and seconds_text(3.25) == "3.2 s" and seconds_text(42) == "42 s"
    assert seconds_text(200) == "3 min 20 s"
