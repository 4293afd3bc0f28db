"""Snapshots of the app's screens (pytest-textual-snapshot), at 120x40.

Regenerate after an intended change with ``pytest tests/test_app_snapshots.py
--snapshot-update`` and look at the SVGs in ``tests/__snapshots__/``. Each
snapshot is taken when nothing moves: no calibration running (so no elapsed
time or progress bar), no notification, the tree focused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_quantreport.cli import app_options
from tui_quantreport.tui.app import QuantReportApp
from tui_quantreport.tui.panes.module_detail import ModuleDetail
from tui_quantreport.tui.panes.module_tree import ModuleTree

MODELS = Path(__file__).parent / "app_models"
SIZE = (120, 40)
SHOWCASE_BATCHES = 8


def make_app(model: str = "showcase", **options: object) -> QuantReportApp:
    return QuantReportApp(model, app_options(model, batches=SHOWCASE_BATCHES, **options))


async def loaded(pilot) -> None:
    """Wait for the model to load (the loader imports torch in a worker thread, then posts a
    message: wait for the screen to have handled it, not only for the worker to end)."""
    for _ in range(1000):
        await pilot.app.workers.wait_for_complete()
        if pilot.app.main.loaded or pilot.app.main.load_failed:
            break
        await pilot.pause(0.05)
    await pilot.pause()


async def calibrated(pilot) -> None:
    """Calibrate, then wait for the measurement that follows it (the plan's SQNR in the header)."""
    await loaded(pilot)
    await pilot.press("c")
    for _ in range(600):
        await pilot.app.workers.wait_for_complete()
        if pilot.app.main.measured is not None and not pilot.app.main.measuring:
            break
        await pilot.pause(0.05)
    await pilot.pause()


async def on_a_module_with_findings(pilot) -> None:
    """Calibrate, then press n once (the most severe finding first) and let the detail view follow."""
    await calibrated(pilot)
    tree = pilot.app.query_one(ModuleTree)
    await pilot.press("n")
    assert tree.current_fqn, "n must move the cursor to a module with findings"
    await detail_followed(pilot)


async def detail_followed(pilot) -> None:
    """Let the detail view show the module under the tree's cursor (it redraws once the cursor rests)."""
    tree, detail = pilot.app.query_one(ModuleTree), pilot.app.query_one(ModuleDetail)
    for _ in range(500):
        if detail.fqn == tree.current_fqn:
            break
        await pilot.pause(0.02)
    await pilot.pause()


def test_main_screen_before_calibration(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=loaded)


def test_main_screen_after_calibration(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=calibrated)


def test_detail_view_of_a_module_with_findings(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=on_a_module_with_findings)


def test_help_screen(snap_compare) -> None:
    async def help_open(pilot) -> None:
        await loaded(pilot)
        await pilot.press("question_mark")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=help_open)


def test_error_screen(snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(MODELS)  # a relative spec keeps the message the same on every machine
    assert snap_compare(make_app("broken_model.py"), terminal_size=SIZE, run_before=loaded)


def test_detail_view_plots(snap_compare) -> None:
    async def plots_in_view(pilot) -> None:
        await on_a_module_with_findings(pilot)
        detail = pilot.app.query_one(ModuleDetail)
        detail.scroll_to_widget(detail.query_one("#plots-heading"), top=True, animate=False)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=plots_in_view)


def test_detail_view_sqnr_with_a_module_kept_float(snap_compare) -> None:
    """The measured error of thermal_stem.conv after f kept it in float; the header's plan SQNR."""

    async def kept_float(pilot) -> None:
        await calibrated(pilot)
        tree = pilot.app.query_one(ModuleTree)
        tree.reveal("thermal_stem.conv")  # its advice is minor now, so n does not stop there
        await pilot.pause()
        assert tree.current_fqn == "thermal_stem.conv"
        await pilot.press("f")
        for _ in range(600):
            await pilot.app.workers.wait_for_complete()
            if not pilot.app.main.plan_pending:
                break
            await pilot.pause(0.05)
        await detail_followed(pilot)

    # qconfig-x86 quantizes the convolutions (the default torchao-cpu keeps them float).
    assert snap_compare(make_app(target="qconfig-x86"), terminal_size=SIZE, run_before=kept_float)


def test_root_plan_view_at_200x60(snap_compare) -> None:
    """The what-if plan at the root: end-to-end SQNR, keep-float list, SQNR by layer."""
    assert snap_compare(make_app(), terminal_size=(200, 60), run_before=calibrated)


async def layers_open(pilot) -> None:
    """Calibrate, open the "which layers hurt" screen and wait for its SQNR along depth."""
    await calibrated(pilot)
    await pilot.press("l")
    for _ in range(600):
        await pilot.app.workers.wait_for_complete()
        if pilot.app.main.depth is not None:
            break
        await pilot.pause(0.05)
    await pilot.pause()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_layers_screen(snap_compare, size: tuple[int, int]) -> None:
    """The module table sorted by local SQNR (worst first) over the SQNR along depth."""
    assert snap_compare(make_app(), terminal_size=size, run_before=layers_open)


async def target_list_open(pilot) -> None:
    """Load, then T (the sidebar's deployment target; on a narrow terminal the sidebar is shown) and
    Enter: the registry's targets, the current one highlighted."""
    await loaded(pilot)
    await pilot.press("T")
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_target_field_in_the_sidebar(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=target_list_open)
