"""One plan everywhere: the plan on screen (with its edits) is the one the JSON and Markdown
reports, the stats file, the plan file, the torchao configuration and ``v`` use, each saying it is
an edited plan, with the same predicted end-to-end SQNR; sensitivity measured in the app reaches
the reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_helpers import (
    SENSITIVE,
    SHOWCASE_BATCHES,
    SIZE,
    TARGET,
    calibrate,
    export_to,
    make_app,
    measure_sensitivity,
    plan_settled,
    settle,
    text_of,
    walk_to,
)
from textual.widgets import Input, Static

from tui_quantreport.tui.dialogs.export_dialog import ExportDialog
from tui_quantreport.tui.screens.verify_screen import VerifyScreen

#: The module that limits the showcase's plan for the default target, torchao-cpu (which keeps the
#: convolutions float, and verifies with torchao; qconfig-x86 cannot trace the showcase for v).
LIMITING = "thermal_proj"

pytest.importorskip("torchao", reason="the torchao configuration and v run torchao")


async def test_an_edited_plan_reaches_every_export_the_stats_file_and_verify(tmp_path: Path) -> None:
    app = make_app(batches=SHOWCASE_BATCHES)  # torchao-cpu: v verifies with torchao
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        main = app.main
        recommended = main.measured.recommended_sqnr.db
        await walk_to(app, pilot, LIMITING)
        await pilot.press("f")
        await plan_settled(app, pilot)
        predicted = main.plan_sqnr.db
        assert predicted is not None and abs(predicted - recommended) > 0.5
        assert main.plan_origin == "edited"

        await export_to(app, pilot, tmp_path / "m.json")
        report = json.loads((tmp_path / "m.json").read_text())["measured"]
        assert report["plan"]["origin"] == "edited"
        assert report["plan"]["sqnr_db"] == pytest.approx(predicted)
        assert report["plan"]["predicted_sqnr_db"] == pytest.approx(predicted)
        assert report["plan"]["modules"][LIMITING]["scheme"] == "float"

        await export_to(app, pilot, tmp_path / "m.md")
        markdown = (tmp_path / "m.md").read_text()
        assert f"Edited plan for target torchao-cpu: end-to-end SQNR {predicted:.1f} dB" in markdown
        kept_line = next(line for line in markdown.splitlines() if "kept float: " in line)
        assert f"`{LIMITING}`" in kept_line.split("kept float: ", 1)[1]

        await export_to(app, pilot, tmp_path / "m.plan.json")
        plan = json.loads((tmp_path / "m.plan.json").read_text())
        assert plan["origin"] == "edited" and plan["predicted_sqnr_db"] == pytest.approx(predicted)

        await export_to(app, pilot, tmp_path / "m.torchao.py", target="torchao-cpu")
        header = (tmp_path / "m.torchao.py").read_text()
        assert "Plan: edited in the app, 4 kept float" in header  # the 3 Conv2d and LIMITING
        assert f"predicted end-to-end SQNR {predicted:.2f} dB" in header

        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ExportDialog)
        app.screen.query_one("#export-path", Input).value = str(tmp_path / "m.qstats")
        await pilot.press("enter")
        await settle(app, pilot)
        assert (tmp_path / "m.qstats").exists()

        await pilot.press("v")
        await settle(app, pilot)
        assert isinstance(app.screen, VerifyScreen)
        text = str(app.screen.query_one("#verify-text", Static).render())
        assert "Plan: edited in the app" in text
        assert f"predicted (plan)            {predicted:7.2f} dB" in text
        await pilot.press("escape")

    reopened = make_app(str(tmp_path / "m.qstats"))
    async with reopened.run_test(size=SIZE) as pilot:
        await settle(reopened, pilot)
        main = reopened.main
        assert main.plan is not None and main.plan.modules[LIMITING] == "float"
        assert main.plan_origin == "edited"
        assert main.plan_sqnr.db == pytest.approx(predicted)
        assert f"plan {predicted:.1f} dB" in reopened.sub_title
        assert main.measured.recommended.modules[LIMITING] != "float"


async def test_sensitivity_measured_in_the_app_reaches_the_json_and_markdown(tmp_path: Path) -> None:
    app = make_app(batches=SHOWCASE_BATCHES, target=TARGET)  # its convolutions quantized
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        await measure_sensitivity(app, pilot)
        sensitivity = app.main.sensitivity
        assert sensitivity and sensitivity[SENSITIVE].db is not None
        await export_to(app, pilot, tmp_path / "s.json")
        measured = json.loads((tmp_path / "s.json").read_text())["measured"]
        assert measured["sensitivity"] is True
        assert measured["plan"]["origin"] == "recommended"
        assert measured["modules"][SENSITIVE]["sensitivity_db"] == pytest.approx(sensitivity[SENSITIVE].db)
        assert all(measured["modules"][fqn]["sensitivity_db"] is not None for fqn in app.main.plan.quantized)
        await export_to(app, pilot, tmp_path / "s.md")
        row = next(
            line for line in (tmp_path / "s.md").read_text().splitlines() if line.startswith(f"| `{SENSITIVE}` |")
        )
        assert f"| {sensitivity[SENSITIVE].db:.1f} |" in row
        assert f"Recommended plan for target {TARGET}: end-to-end SQNR" in (tmp_path / "s.md").read_text()
        assert text_of(app.query_one("#calibration-status"))


async def test_plan_edits_undo_redo_survive_a_relaunch_and_load_from_a_file(tmp_path: Path, capsys) -> None:
    plan_file = tmp_path / "edited.plan.json"
    app = make_app(batches=SHOWCASE_BATCHES, target=TARGET)  # its convolutions quantized
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        main = app.main
        recommended = main.measured.recommended
        await walk_to(app, pilot, SENSITIVE)
        await pilot.press("f")
        await plan_settled(app, pilot)
        edited_db = main.plan_sqnr.db
        await pilot.press("u")
        await plan_settled(app, pilot)
        assert main.plan == recommended and main.plan_origin == "recommended"
        await pilot.press("U")
        await plan_settled(app, pilot)
        assert main.plan.modules[SENSITIVE] == "float" and main.plan_sqnr.db == pytest.approx(edited_db)
        await export_to(app, pilot, plan_file)
        await settle(app, pilot)

    relaunched = make_app(batches=SHOWCASE_BATCHES, target=TARGET)  # the same model: the edits come back
    async with relaunched.run_test(size=SIZE) as pilot:
        await calibrate(relaunched, pilot)
        await settle(relaunched, pilot)
        await plan_settled(relaunched, pilot)
        main = relaunched.main
        assert main.plan.modules[SENSITIVE] == "float" and main.plan_origin == "edited"
        assert main.plan_sqnr.db == pytest.approx(edited_db)
        await pilot.press("u")  # back to the recommended plan: nothing kept any more
        await plan_settled(relaunched, pilot)
        await settle(relaunched, pilot)
        assert main.plan_origin == "recommended"

    from_file = make_app(batches=SHOWCASE_BATCHES, target=TARGET, plan=str(plan_file))
    async with from_file.run_test(size=SIZE) as pilot:
        await calibrate(from_file, pilot)
        await settle(from_file, pilot)
        await plan_settled(from_file, pilot)
        main = from_file.main
        assert main.plan.modules[SENSITIVE] == "float" and main.plan_origin == "edited"
        await pilot.press("u")
        await plan_settled(from_file, pilot)
        assert main.plan_origin == "recommended"
        # The palette's "Load a plan file": a bad path is said in the dialog, a good one loads.
        main.action_load_plan()
        await pilot.pause()
        field = from_file.screen.query_one("#plan-load-path", Input)
        field.value = str(tmp_path / "missing.plan.json")
        await pilot.press("enter")
        assert "does not exist" in text_of(from_file.screen.query_one("#plan-load-error"))
        field.value = str(plan_file)
        await pilot.press("enter")
        await plan_settled(from_file, pilot)
        assert main.plan.modules[SENSITIVE] == "float"

    from tui_quantreport import cli

    assert cli.main(["showcase", "--plan", str(tmp_path / "missing.plan.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err


async def test_a_stats_file_from_calibrate_with_probe_batches_opens_with_the_measured_plan(
    tmp_path: Path, capsys
) -> None:
    from tui_quantreport import cli

    path = tmp_path / "showcase.qstats"
    argv = ["calibrate", "showcase", "--batches", str(SHOWCASE_BATCHES), "--output", str(path)]
    assert cli.main([*argv, "--sensitivity"]) == 2  # sensitivity needs measurement
    assert "--sensitivity needs measurement" in capsys.readouterr().err
    assert cli.main([*argv, "--probe-batches", "4"]) == 0
    assert "measured the error on 4 probe batches" in capsys.readouterr().err

    live = make_app(batches=SHOWCASE_BATCHES)
    async with live.run_test(size=SIZE) as pilot:
        await calibrate(live, pilot)
        await settle(live, pilot)
        live_plan, live_db = dict(live.main.plan.modules), live.main.plan_sqnr.db
        live_badges = {fqn for fqn, _ in live.report.ranked_modules()}

    opened = make_app(str(path))
    async with opened.run_test(size=SIZE) as pilot:
        await settle(opened, pilot)
        main = opened.main
        assert main.measured is not None and main.plan_origin == "recommended"
        assert dict(main.plan.modules) == live_plan
        assert main.plan_sqnr.db == pytest.approx(live_db, abs=0.01)
        assert f"plan {live_db:.1f} dB" in opened.sub_title
        assert opened.report.measured is not None  # findings judged by measurement, not heuristics
        assert {fqn for fqn, _ in opened.report.ranked_modules()} == live_badges


async def test_an_edited_plan_carries_its_own_size_into_every_export(tmp_path: Path) -> None:
    from tui_quantreport.engine import statsfile

    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        main = app.main
        recommended = main.measured.analysis.plan_size(main.measured.recommended)
        await walk_to(app, pilot, LIMITING)
        await pilot.press("f")
        await plan_settled(app, pilot)
        edited = main.measured.analysis.plan_size(main.plan)
        assert edited.mb > recommended.mb  # one more module kept float
        mb, bpw = f"{edited.mb:.3g} MB", f"{edited.bits_per_weight:.2f} bits per weight"
        assert f"{edited.mb:.3g} MB" in app.sub_title

        await export_to(app, pilot, tmp_path / "z.json")
        measured = json.loads((tmp_path / "z.json").read_text())["measured"]
        assert measured["plan_size"]["mb"] == pytest.approx(edited.mb)
        assert measured["plan_size"]["bits_per_weight"] == pytest.approx(edited.bits_per_weight)

        await export_to(app, pilot, tmp_path / "z.md")
        assert f"size {mb}, {bpw}" in (tmp_path / "z.md").read_text()

        await export_to(app, pilot, tmp_path / "z.plan.json")
        size = json.loads((tmp_path / "z.plan.json").read_text())["size"]
        assert size["mb"] == pytest.approx(edited.mb) and size["bits_per_weight"] == pytest.approx(
            edited.bits_per_weight
        )
        assert size["float_mb"] == pytest.approx(edited.float_mb)

        await export_to(app, pilot, tmp_path / "z.torchao.py", target="torchao-cpu")
        assert f"{mb} at {bpw}" in (tmp_path / "z.torchao.py").read_text()

        await pilot.press("s")
        await pilot.pause()
        app.screen.query_one("#export-path", Input).value = str(tmp_path / "z.qstats")
        await pilot.press("enter")
        await settle(app, pilot)
        saved = statsfile.load(str(tmp_path / "z.qstats")).measured
        assert saved.plan_size_mb == pytest.approx(edited.mb)
        assert saved.plan_bits_per_weight == pytest.approx(edited.bits_per_weight)
