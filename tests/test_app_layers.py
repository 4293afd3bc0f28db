"""Which layers hurt: the sortable module table, the SQNR along depth, the sentence naming what
limits the plan, and n / N walking by sensitivity."""

from __future__ import annotations

from dataclasses import replace

import pytest
from app_helpers import (
    SENSITIVE,
    SHOWCASE_BATCHES,
    SIZE,
    TARGET,
    calibrate,
    make_app,
    measure_sensitivity,
    plan_settled,
    settle,
    text_of,
    walk_to,
)

from tui_quantreport.engine.layers import LayerRow, filter_rows, limiting_candidates, sort_rows
from tui_quantreport.tui.panes.depth_plot import DepthPlot
from tui_quantreport.tui.panes.module_tree import ModuleTree
from tui_quantreport.tui.panes.plan_summary import PlanSummary
from tui_quantreport.tui.screens.layer_table import LayerTable
from tui_quantreport.tui.screens.layers_screen import LayersScreen


def _row(depth: int, module: str, plan_db: float | None, sensitivity: float | None = None) -> LayerRow:
    return LayerRow(depth, module, "Linear", "dynamic", plan_db, sensitivity, "", None, "", depth)


def test_rows_sort_by_any_column_with_missing_values_last_either_way() -> None:
    rows = [_row(0, "a", 30.0), _row(1, "b", None), _row(2, "c", 20.0), _row(3, "d", 30.0)]
    assert [r.module for r in sort_rows(rows, "plan_db")] == ["c", "a", "d", "b"]
    assert [r.module for r in sort_rows(rows, "plan_db", descending=True)] == ["a", "d", "c", "b"]
    assert [r.module for r in sort_rows(rows, "module", descending=True)] == ["d", "c", "b", "a"]
    assert [r.module for r in filter_rows(rows, "B")] == ["b"]


def test_rows_sort_by_tokens_seen_with_unmeasured_last() -> None:
    rows = [
        replace(_row(0, "a", 30.0), rows=64),
        replace(_row(1, "b", 20.0), rows=None),
        replace(_row(2, "c", 1.0), rows=4096),
    ]
    assert [r.module for r in sort_rows(rows, "rows", descending=True)] == ["c", "a", "b"]
    assert [r.module for r in sort_rows(rows, "rows")] == ["a", "c", "b"]


def test_what_may_limit_the_plan_is_the_least_sensitive_else_the_lowest_local() -> None:
    plan = {"a": "dynamic", "b": "dynamic", "c": "float"}
    local = {"a": {"dynamic": 20.0}, "b": {"dynamic": 30.0}, "c": {"dynamic": 1.0}}
    assert limiting_candidates(plan, local) == ["a", "b"]
    assert limiting_candidates(plan, local, {"a": 40.0, "b": 25.0}) == ["b", "a"]
    assert limiting_candidates(plan, local, count=1) == ["a"]
    assert limiting_candidates({"c": "float"}, local) == []


async def test_the_layers_screen_sorts_by_sensitivity_and_follows_the_plan() -> None:
    app = make_app(batches=SHOWCASE_BATCHES, target=TARGET)  # its convolutions quantized
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        main = app.main
        analysis = main.measured.analysis
        # The root names what limits the plan, with the SQNR keeping it float gives.
        await walk_to(app, pilot, "")
        float_db = analysis.plan_sqnr(main.plan.with_scheme([SENSITIVE], "float")).db
        summary = text_of(app.query_one(PlanSummary))
        assert f"{SENSITIVE} limits the plan; keeping it float gives {float_db:.1f} dB" in summary

        await measure_sensitivity(app, pilot)
        assert "sens " in text_of(app.query_one(PlanSummary))  # sensitivity lands in the root plot

        await pilot.press("l")
        await settle(app, pilot)
        assert isinstance(app.screen, LayersScreen)
        table = app.screen.query_one(LayerTable)
        assert table.sort_by == "sensitivity_db"  # measured: the most sensitive first
        assert table.shown()[0].module == SENSITIVE
        await pilot.press("L")  # by local SQNR under the plan's scheme, worst first
        assert table.sort_by == "plan_db"
        assert [r.plan_db for r in table.shown()] == sorted(r.plan_db for r in table.shown())
        await pilot.press("S")
        assert table.sort_by == "sensitivity_db" and not table.descending
        await pilot.press("S")  # again: the other way
        assert table.descending and table.shown()[-1].module == SENSITIVE
        await pilot.press("slash", *"head")
        assert {r.module for r in table.shown()} == {"head.fc", "head.classifier"}
        await pilot.press("escape")
        assert len(table.shown()) == len(main.plan.modules)

        # Calls and the tokens (rows) each module's input saw in calibration, sortable: most first.
        await pilot.press("R")
        assert table.sort_by == "rows" and table.descending
        seen = {fqn: m.rows for fqn, m in main.report.measured.modules.items()}
        shown = table.shown()
        assert all(r.rows == seen[r.module] and r.rows for r in shown)
        assert [r.rows for r in shown] == sorted((r.rows for r in shown), reverse=True)
        columns = [str(c.label).split(" ")[0] for c in table.columns.values()]
        cells = table.get_row_at(0)
        assert str(cells[columns.index("tokens/rows")]) == f"{shown[0].rows:,}"
        assert str(cells[columns.index("calls")]) == f"{shown[0].calls:,}" and shown[0].calls > 0

        plot = app.screen.query_one(DepthPlot)
        lines = text_of(plot).splitlines()
        assert lines[-2].startswith("model output") and f"{main.plan_sqnr.db:.1f}" in lines[-2]

        # Enter shows the module in the main screen.
        table.move_cursor(row=[r.module for r in table.shown()].index(SENSITIVE))
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, LayersScreen)
        assert app.query_one(ModuleTree).current_fqn == SENSITIVE

        # A plan edit lands in the open table and the plot (a float module drawn as float).
        await pilot.press("f")
        await plan_settled(app, pilot)
        await pilot.press("l")
        await settle(app, pilot)
        await pilot.pause()
        table = app.screen.query_one(LayerTable)
        row = next(r for r in table.entries if r.module == SENSITIVE)
        assert row.scheme == "float" and row.plan_db is None
        line = next(x for x in text_of(app.screen.query_one(DepthPlot)).splitlines() if x.startswith(SENSITIVE))
        assert "float" in line and "█" not in line
        await pilot.press("escape")
        # With it in float, the sentence names a module only where keeping it float gains something.
        await walk_to(app, pilot, "")
        await settle(app, pilot)
        fqn, sqnr = main.limit
        summary = text_of(app.query_one(PlanSummary))
        if sqnr.db - main.plan_sqnr.db < 0.1:
            assert "No single module limits the plan" in summary and "limits the plan;" not in summary
        else:
            assert f"{fqn} limits the plan; keeping it float gives {sqnr.db:.1f} dB" in summary


async def test_n_walks_by_sensitivity_after_w() -> None:
    app = make_app(batches=SHOWCASE_BATCHES, target=TARGET)  # its convolutions quantized
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        await measure_sensitivity(app, pilot)
        sensitivity = app.main.sensitivity
        order = sorted(sensitivity, key=lambda f: sensitivity[f].value)
        await walk_to(app, pilot, "")
        await pilot.press("w", "n")
        assert app.query_one(ModuleTree).current_fqn == order[0] == SENSITIVE
        await pilot.press("n")
        assert app.query_one(ModuleTree).current_fqn == order[1]
        await pilot.press("w", "n")  # back to the findings by gain
        assert app.main.walk_by == "gain"


@pytest.mark.parametrize("key", ["l"])
async def test_the_layers_screen_says_so_before_anything_is_measured(key: str) -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press(key)
        assert not isinstance(app.screen, LayersScreen)
