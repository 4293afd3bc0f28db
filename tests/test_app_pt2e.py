"""A PT2E-prepared graph in the app, as a user opens one (issue 9): the tree is the user's modules
(rebuilt from nn_module_stack, the quantizer's observers hidden as helpers), calibration judges
them, and the measured error is there as for an eager model (the simulation runs on a copy whose
Linear/Conv nodes are modules again)."""

from __future__ import annotations

import pytest
from app_helpers import SIZE, calibrate, make_app, settle, walk_to

from tui_quantreport.tui.panes.calibration_bar import CalibrationBar
from tui_quantreport.tui.panes.module_detail import ModuleDetail
from tui_quantreport.tui.panes.module_tree import ModuleTree


@pytest.fixture(autouse=True)
def _trust_our_own_pt2_files():
    """These tests open .pt2 files they saved themselves: as --trust-pickle does."""
    from tui_quantreport.engine.graph_file import trust_pickle

    trust_pickle()
    yield
    trust_pickle(False)


async def test_a_pt2e_prepared_graph_opens_calibrates_and_says_what_is_not_measured() -> None:
    app = make_app("pt2e_prepared", batches=4)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        tree = app.query_one(ModuleTree)
        labels = {node.data: str(node.label) for node in tree.root.children}
        # The user's names and classes, not aten nodes; the observers are helpers, hidden by default.
        assert labels["conv2"].startswith("conv2 Conv2d") and labels["fc1"].startswith("fc1 Linear")
        assert not any("observer" in str(fqn).lower() or "activation_post_process" in str(fqn) for fqn in labels)

        await calibrate(app, pilot)
        await settle(app, pilot)
        assert app.report.batches == 4
        measured = app.main.measured
        assert measured is not None and set(measured.local) == {"conv1", "conv2", "fc1", "fc2"}
        assert measured.recommended_sqnr.db is not None and "plan" in app.sub_title
        assert not [n for n in app._notifications if n.severity == "error"]
        bar = str(app.query_one(CalibrationBar).query_one("#calibration-status").render())
        assert "Calibrated on 4 batches" in bar and "end to end" in bar
        # The per-tensor weight observer on conv2 is flagged; whether it earns a badge is measured.
        assert app.report.severity("per_channel_detector", "conv2") is not None

        await walk_to(app, pilot, "conv2")
        assert app.query_one(ModuleDetail).fqn == "conv2"

        # Applying a plan needs the eager model: v is shown disabled, and from the palette it says why.
        assert app.main.check_action("verify", ()) is None
        app.main.action_verify()
        await pilot.pause()
        assert any("exported graph" in n.message and "convert_pt2e" in n.message for n in app._notifications)
        assert not app.main.applying


async def test_a_saved_program_file_opens_calibrates_and_is_measured(tmp_path) -> None:
    """A .pt2 saved by torch.export.save (its classes need not be importable): the app opens it,
    calibrates on a calibration file, and measures the error as for the eager model."""
    from pt2e_models import CALIBRATION, save_program

    program = tmp_path / "convlinear.pt2"
    save_program(program)
    (tmp_path / "cal.py").write_text(CALIBRATION)
    app = make_app(str(program), calibration=str(tmp_path / "cal.py"))
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        assert app.report.batches == 5 and app.report.model_class == "ConvLinear"
        tree = app.query_one(ModuleTree)
        assert {node.data for node in tree.root.children} >= {"conv", "head"}
        assert app.main.measured is not None and set(app.main.measured.local) == {"conv", "head.0", "head.2"}
        assert not [n for n in app._notifications if n.severity == "error"]
