"""The frontier in the app (F), driven as a user does: the planner's plans by size, a point picked with
Enter becomes the plan (the header shows its size and SQNR, the plan export follows); and a snapshot
of the plot itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

from app_helpers import SHOWCASE_BATCHES, SIZE, calibrate, make_app, plan_settled, settle, text_of
from textual.app import App, ComposeResult
from textual.widgets import Input

from tui_quantreport.engine.planner_report import FrontierRow
from tui_quantreport.tui.dialogs.export_dialog import ExportDialog
from tui_quantreport.tui.screens.frontier_plot import FrontierPlot
from tui_quantreport.tui.screens.frontier_screen import FrontierScreen


async def test_picking_a_frontier_point_makes_it_the_plan(tmp_path: Path) -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        main = app.main
        recommended = main.plan
        await pilot.press("F")
        await settle(app, pilot)
        assert isinstance(app.screen, FrontierScreen)
        plot = app.screen.query_one(FrontierPlot)
        assert app.screen.focused is plot and len(plot.rows) >= 3
        frontier = main._frontier
        assert frontier is not None
        shown = plot.render().plain
        assert "uniform" in shown and " bpw " in shown
        # The first point on the plot that is not the current plan.
        target = next(
            i for i, row in enumerate(plot.rows) if frontier.point(row).plan.modules != dict(recommended.modules)
        )
        for _ in range(target - plot.cursor):
            await pilot.press("down")
        assert plot.cursor == target
        point = frontier.point(plot.rows[target])
        await pilot.press("enter")
        await plan_settled(app, pilot)
        assert not isinstance(app.screen, FrontierScreen)
        assert dict(main.plan.modules) == dict(point.plan.modules)
        assert main.plan_sqnr == point.simulated
        assert f"{point.bits_per_weight:.1f} b/w" in app.sub_title  # the size once, as every plan's
        if point.simulated.db is not None:
            assert f"{point.simulated.db:.1f} dB" in app.sub_title
        # A plan below 20 dB end to end says so, naming the units that cost the most.
        low = [n for n in app._notifications if "below 20 dB" in str(n.message)]
        if point.simulated.db is not None and point.simulated.db < 20:
            assert low and low[-1].severity == "warning" and "cost the most" in str(low[-1].message)
        else:
            assert not low

        # The plan export is the picked plan.
        await pilot.press("e")
        assert isinstance(app.screen, ExportDialog)
        path = tmp_path / "picked.plan.json"
        app.screen.query_one("#export-path", Input).value = str(path)
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        data = json.loads(path.read_text())
        assert {fqn: entry["scheme"] for fqn, entry in data["modules"].items()} == dict(point.plan.modules)

        # F again shows the kept frontier at once (nothing is measured again).
        passes = main._planner[1].sens.passes
        await pilot.press("F")
        await settle(app, pilot)
        assert isinstance(app.screen, FrontierScreen) and main._planner[1].sens.passes == passes
        notes = text_of(app.screen.query_one("#frontier-notes"))
        assert "one-at-a-time passes" in notes
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, FrontierScreen)
        assert dict(main.plan.modules) == dict(point.plan.modules)


ROWS = (
    FrontierRow(0, 8.03, 0.412, 1.7, 1.9, None, False, False),
    FrontierRow(1, 8.44, 0.431, 21.5, 22.0, "weight_only", False, False),
    FrontierRow(2, 10.32, 0.529, 17.6, 17.8, "dynamic", False, False),
    FrontierRow(3, 11.26, 0.577, 24.7, 25.8, None, True, False),
    FrontierRow(4, 15.52, 0.795, math.inf, math.nan, None, False, False),
    FrontierRow(5, 32.0, 1.64, None, None, None, False, True),
)


class PlotApp(App[None]):
    def compose(self) -> ComposeResult:
        yield FrontierPlot(ROWS)


def test_frontier_plot_snapshot(snap_compare) -> None:
    async def down(pilot) -> None:
        await pilot.press("down")

    assert snap_compare(PlotApp(), terminal_size=(110, 8), run_before=down)
