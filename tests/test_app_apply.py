"""The app's hooks for applying the plan (issue 8), driven with Pilot: ``v`` verifies the
torchao export in a worker and shows achieved against predicted SQNR; ``e`` offers the
torchao / PT2E / torch.ao configurations beside JSON and Markdown."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, RadioButton, Static

from tui_quantreport.cli import app_options
from tui_quantreport.tui.app import QuantReportApp
from tui_quantreport.tui.dialogs.export_dialog import ExportDialog
from tui_quantreport.tui.screens.verify_screen import VerifyScreen

pytest.importorskip("torchao", reason="the exports run torchao")
pytest.importorskip(
    "tui_quantreport.engine.quantsim", reason="the recommended plan comes from the measured-error engine"
)

MODEL = "unbalanced_equalization"  # small, Linear only


def make_app() -> QuantReportApp:
    return QuantReportApp(MODEL, app_options(MODEL))


async def settle(app: QuantReportApp, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_v_verifies_the_torchao_export_and_shows_achieved_next_to_predicted() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("v")
        await settle(app, pilot)
        assert isinstance(app.screen, VerifyScreen)
        text = str(app.screen.query_one("#verify-text", Static).render())
        assert "predicted (plan)" in text and "achieved" in text and "Int8Tensor" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, VerifyScreen)


@pytest.mark.parametrize(("target", "suffix"), [("torchao-cpu", ".torchao.py"), ("pt2e-x86-static", ".pt2e.py")])
async def test_e_exports_a_configuration_target(target: str, suffix: str, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        dialog.query_one(f"#format-{target}", RadioButton).value = True
        await pilot.pause()
        path_input = dialog.query_one("#export-path", Input)
        assert path_input.value.endswith(suffix)
        output = tmp_path / f"model{suffix}"
        path_input.value = str(output)
        path_input.focus()
        await pilot.press("enter")
        await settle(app, pilot)
        assert output.exists()
        text = output.read_text()
        assert text.startswith("# ") and "predicted end-to-end SQNR" in text
        if target == "torchao-cpu":
            assert output.with_suffix(".json").exists() and output.with_suffix(".safetensors").exists()
            assert "quantize_(model, torchao_config(entries, set_inductor_config), filter_fn=None)" in text
        else:
            assert "X86InductorQuantizer" in text and "MODE = 'static'" in text
