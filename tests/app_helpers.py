"""What the app tests share: the app as the command line starts it, and a user's waits and walks
with Textual's Pilot (settle, calibrate, walk the tree, type into a field, wait for the plan,
measure sensitivity, export)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from textual.content import Content
from textual.widgets import Input, RadioButton, Static

from tui_quantreport import cli
from tui_quantreport.tui.app import QuantReportApp
from tui_quantreport.tui.dialogs.confirm_dialog import ConfirmDialog
from tui_quantreport.tui.dialogs.export_dialog import ExportDialog
from tui_quantreport.tui.panes.module_detail import ModuleDetail
from tui_quantreport.tui.panes.module_tree import ModuleTree

MODELS = Path(__file__).parent / "app_models"
SLOW_MODEL = MODELS / "slow_model.py"
SIZE = (120, 40)
SHOWCASE_BATCHES = 8
DYNAMIC = "dynamic_vs_static_detector"
OUTLIER = "outlier_detector"
TOLERANCE_INPUT = f"#param-{DYNAMIC}-tolerance"


def make_app(model: str = "showcase", **options: object) -> QuantReportApp:
    """The app as ``tui-quantreport MODEL [options]`` starts it."""
    return QuantReportApp(model, cli.app_options(model, **options))


async def settle(app: QuantReportApp, pilot) -> None:
    """Wait for the workers (loading, calibrating, evaluating, measuring: one may start another when
    it finishes) and the messages they posted."""
    for _ in range(1000):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not any(worker.is_running for worker in app.workers) and not app.main.measuring:
            return


async def calibrate(app: QuantReportApp, pilot) -> None:
    await settle(app, pilot)
    await pilot.press("c")
    await settle(app, pilot)
    assert app.report is not None and app.report.batches > 0


def text_of(widget: Static) -> str:
    """What a Static shows, as plain text."""
    if isinstance(widget.content, Content):
        return widget.content.plain
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


async def walk_to(app: QuantReportApp, pilot, fqn: str) -> None:
    """Press down (or up) in the tree until the cursor is on ``fqn``, then let the detail view follow."""
    tree = app.query_one(ModuleTree)
    tree.focus()
    order = list(tree.nodes)
    for _ in range(len(order) * 2):
        if tree.current_fqn == fqn:
            await detail_follows(app, pilot)
            return
        key = "down" if order.index(tree.current_fqn) < order.index(fqn) else "up"
        await pilot.press(key)
    raise AssertionError(f"could not reach {fqn!r}; cursor on {tree.current_fqn!r}")


async def detail_follows(app: QuantReportApp, pilot) -> None:
    """Wait until the detail view shows the module under the tree's cursor (it redraws once the cursor rests)."""
    tree, detail = app.query_one(ModuleTree), app.query_one(ModuleDetail)
    for _ in range(100):
        if detail.fqn == tree.current_fqn:
            return
        await pilot.pause(0.02)
    raise AssertionError(f"the detail view shows {detail.fqn!r}, the cursor is on {tree.current_fqn!r}")


async def set_input(pilot, app: QuantReportApp, selector: str, text: str) -> None:
    """Focus an input, type ``text`` over its value, press Enter, then Escape back to the tree."""
    field = app.query_one(selector, Input)
    field.focus()
    await pilot.pause()
    field.value = ""
    await pilot.press(*text, "enter", "escape")
    assert app.query_one(ModuleTree).has_focus


# The plan and its measurements -------------------------------------------------------------

SENSITIVE = "thermal_stem.conv"  # the showcase's one module whose quantization costs accuracy
#: A target that quantizes the showcase's convolutions (torchao-cpu, the default, keeps them float),
#: so that f has quantized modules to keep float.
TARGET = "qconfig-x86"


async def plan_settled(app, pilot) -> None:
    """Wait for the debounced plan evaluation (it starts once the plan rests) and its worker."""
    for _ in range(400):
        if not app.main.plan_pending:
            break
        await pilot.pause(0.05)
        await app.workers.wait_for_complete()
    await pilot.pause()
    assert not app.main.plan_pending


async def sensitivity_dialog(app, pilot) -> ConfirmDialog:
    """Press S: the first module is timed (in a worker), then the dialog asks about the rest."""
    await pilot.press("S")
    await settle(app, pilot)
    assert isinstance(app.screen, ConfirmDialog)
    return app.screen


async def measure_sensitivity(app, pilot) -> None:
    """S, Enter in the dialog, and wait for the measurement."""
    await sensitivity_dialog(app, pilot)
    await pilot.press("enter")
    await settle(app, pilot)
    assert app.main.sensitivity is not None


async def export_to(app, pilot, path: Path, target: str | None = None) -> None:
    """``e``, pick ``target`` (else the one the suffix picks), type the path, Enter; wait for it."""
    await pilot.press("e")
    await pilot.pause()
    dialog = app.screen
    assert isinstance(dialog, ExportDialog)
    if target is not None:
        dialog.query_one(f"#format-{target}", RadioButton).value = True
        await pilot.pause()
    field = dialog.query_one("#export-path", Input)
    field.value = str(path)
    field.focus()
    await pilot.pause()
    await pilot.press("enter")
    await settle(app, pilot)
    assert path.exists(), f"{path} was not written"


async def set_tolerance(pilot, app, text: str) -> None:
    """Type ``text`` into the dynamic-vs-static tolerance field, press Enter, wait for the work it starts."""
    field = app.query_one(TOLERANCE_INPUT, Input)
    field.focus()
    await pilot.pause()
    field.value = ""
    await pilot.press(*text, "enter")
    await settle(app, pilot)
