"""The deployment target in the sidebar: picked with the keyboard (``T``, then the list), the plan is
measured again the way that target runs the model; the title, the plan, the picker's refusals and
the exported files follow; ``v`` puts the achieved SQNR beside the predicted one; the choice is kept
for the next launch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_helpers import SHOWCASE_BATCHES, SIZE, calibrate, export_to, make_app, settle
from textual.widgets import Select

from tui_quantreport.tui import user_settings
from tui_quantreport.tui.controllers.plan import refused_schemes
from tui_quantreport.tui.screens.verify_screen import VerifyScreen

pytest.importorskip("torchao", reason="the torchao target's export and v run torchao")

TARGET_SELECT = "#param-app-target"
#: The registry's order (the list in the sidebar).
ORDER = ("torchao-cpu", "torchao-cuda", "pt2e-x86-static", "pt2e-x86-dynamic", "qconfig-x86", "qconfig-qnnpack")


async def pick_target(app, pilot, name: str) -> None:
    """``T`` focuses the target's list; Enter opens it, the arrows move to ``name``, Enter picks it."""
    await pilot.press("T")
    await pilot.pause()
    select = app.query_one(TARGET_SELECT, Select)
    assert app.focused is select
    steps = ORDER.index(name) - ORDER.index(select.value)
    await pilot.press("enter")
    await pilot.pause()
    for _ in range(abs(steps)):
        await pilot.press("down" if steps > 0 else "up")
    await pilot.press("enter")
    await pilot.pause()
    await settle(app, pilot)


def convolutions(main) -> list[str]:
    analysis = main.measured.analysis
    return [fqn for fqn in main.plan.modules if fqn in analysis.targets and analysis.targets[fqn].kind.name == "conv"]


async def verify_beside_the_title(app, pilot, title_db: float) -> None:
    """``v`` on the current target: the achieved SQNR is the title's within 0.5 dB and goes beside it."""
    await pilot.press("v")
    await settle(app, pilot)
    assert isinstance(app.screen, VerifyScreen)
    await pilot.press("escape")
    await pilot.pause()
    verified = app.main.verified
    assert verified is not None and verified.target == app.main.target and verified.achieved_db is not None
    assert abs(verified.achieved_db - title_db) < 0.5  # the title's SQNR is what the target achieves
    assert f"· verify {verified.achieved_db:.1f} dB" in app.sub_title


async def test_picking_the_target_measures_the_plan_for_it_and_the_exports_follow(tmp_path: Path) -> None:
    app = make_app(batches=SHOWCASE_BATCHES, target="qconfig-x86")
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        main = app.main
        assert main.target == "qconfig-x86"
        convs = convolutions(main)
        assert convs and all(main.plan.modules[c] != "float" for c in convs)  # torch.ao x86 quantizes them
        before = main.plan_sqnr.db
        assert f"plan {before:.1f} dB on qconfig-x86" in app.sub_title

        await pick_target(app, pilot, "torchao-cpu")
        assert main.target == "torchao-cpu" and main.model.target == "torchao-cpu"
        assert main.measured is not None and main.plan.target == "torchao-cpu"
        # torchao on CPU leaves Conv2d float: no weight-only Conv2d, and the picker says why
        assert all(main.plan.modules[c] == "float" for c in convs)
        refused = refused_schemes(main.measured, [convs[0]])
        assert "weight_only" in refused and refused["weight_only"]
        after = main.plan_sqnr.db
        assert after is not None and abs(after - before) > 1.0
        assert f"plan {after:.1f} dB on torchao-cpu" in app.sub_title

        await export_to(app, pilot, tmp_path / "t.plan.json")
        plan = json.loads((tmp_path / "t.plan.json").read_text())
        assert plan["target"] == "torchao-cpu"
        assert all(plan["modules"][c]["scheme"] == "float" for c in convs)
        await export_to(app, pilot, tmp_path / "t.torchao.py", target="torchao-cpu")
        config = (tmp_path / "t.torchao.py").read_text()
        assert f"predicted end-to-end SQNR {after:.2f} dB" in config
        assert not any(f'"{c}"' in config for c in convs)  # the float convolutions are not configured

        await verify_beside_the_title(app, pilot, after)


async def test_the_picked_target_is_kept_for_the_next_launch() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.main.target == "torchao-cpu"  # the default: torchao on the model's device
        await pick_target(app, pilot, "qconfig-qnnpack")
        assert app.main.target == "qconfig-qnnpack"
        assert "--target qconfig-qnnpack" in app.main.command_line()
    assert user_settings.load()[0].target == "qconfig-qnnpack"

    again = make_app()
    async with again.run_test(size=SIZE) as pilot:
        await settle(again, pilot)
        assert again.main.target == "qconfig-qnnpack" and again.main.model.target == "qconfig-qnnpack"
        assert again.query_one(TARGET_SELECT, Select).value == "qconfig-qnnpack"

    named = make_app(target="pt2e-x86-static")  # --target wins over the saved choice
    async with named.run_test(size=SIZE) as pilot:
        await settle(named, pilot)
        assert named.main.target == "pt2e-x86-static"


@pytest.mark.parametrize("model", ["showcase", "drifting_mlp"])
async def test_on_the_default_target_the_title_is_what_verify_achieves(model: str) -> None:
    """torchao on CPU, the default: the plan holds no weight-only Conv2d, and the SQNR in the title
    is the one ``v`` achieves with torchao (within 0.5 dB)."""
    app = make_app(model, batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        main = app.main
        assert main.target == "torchao-cpu"
        assert not any(main.plan.modules[c] == "weight_only" for c in convolutions(main))
        title = main.plan_sqnr.db
        assert title is not None and f"plan {title:.1f} dB on torchao-cpu" in app.sub_title
        await verify_beside_the_title(app, pilot, title)


async def test_the_header_takes_the_longest_form_that_fits_after_a_resize() -> None:
    app = make_app("drifting_mlp")
    async with app.run_test(size=(80, 24)) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        narrow = app.sub_title
        assert narrow.startswith("plan ") and "on torchao-cpu" not in narrow  # the short form at 80 columns
        await pilot.resize_terminal(200, 60)
        await settle(app, pilot)
        assert app.sub_title.startswith("drifting_mlp · plan ") and " on torchao-cpu" in app.sub_title
        await pilot.resize_terminal(80, 24)
        await settle(app, pilot)
        assert app.sub_title == narrow
