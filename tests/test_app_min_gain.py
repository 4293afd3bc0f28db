"""The minimum-gain threshold in the sidebar (issue 7 item 4), driven as a user does: it re-judges
the kept measurement (no new measurement), and the badges, "minor" labels, the model summary, the
n / N order and the plan in the header follow; a bad value is refused with a message."""

from __future__ import annotations

import json

import pytest
from app_helpers import SHOWCASE_BATCHES, SIZE, calibrate, make_app, set_input, settle, text_of
from textual.widgets import Input, Static

from tui_quantreport.engine.export import render
from tui_quantreport.engine.report import Level
from tui_quantreport.tui.controllers import measure as measure_controller
from tui_quantreport.tui.panes.findings_panel import FindingsPanel
from tui_quantreport.tui.panes.model_summary import ModelSummary
from tui_quantreport.tui.panes.module_tree import ModuleTree

MIN_GAIN_INPUT = "#param-app-min_gain_db"


def measured_badges(app) -> dict[str, tuple[str, ...]]:
    """The tree's badges of findings that carry a measured gain (unmeasured ones keep theirs)."""
    tree = app.query_one(ModuleTree)
    report = app.report
    out = {}
    for (detector, fqn), sev in report.severities.items():
        if sev.gain_db is not None and report.detectors[detector].glyph in tree.badges_of(fqn):
            out[fqn] = out.get(fqn, ()) + (report.detectors[detector].glyph,)
    return out


async def test_min_gain_rejudges_the_kept_measurement(monkeypatch) -> None:
    measures = []
    real_measure = measure_controller.measure
    monkeypatch.setattr(measure_controller, "measure", lambda *a, **k: measures.append(1) or real_measure(*a, **k))
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        main = app.main
        analysis = main.measured.analysis
        assert len(measures) == 1 and main.min_gain_db == 1.0
        before = measured_badges(app)
        assert before, "the showcase has measured findings above 1 dB"
        first = app.report.walk_order()
        field = app.query_one(MIN_GAIN_INPUT, Input)
        assert field.value == "1"

        await set_input(pilot, app, MIN_GAIN_INPUT, "1000")
        await settle(app, pilot)
        report = app.report
        assert main.min_gain_db == 1000 and report.min_gain_db == 1000
        assert measured_badges(app) == {}  # every measured finding is minor now
        assert not any(s.level is Level.MAJOR for s in report.severities.values())
        fqn = next(iter(before))
        app.query_one(ModuleTree).reveal(fqn)
        await pilot.pause(0.1)
        await settle(app, pilot)
        assert "minor" in text_of(app.query_one(FindingsPanel)) and "1000 dB threshold" in text_of(
            app.query_one(FindingsPanel)
        )
        tree = app.query_one(ModuleTree)
        badged = {f for f in app.report.modules if tree.badges_of(f)}
        assert set(app.report.walk_order()) == badged  # n / N walk what is badged, no minor one
        assert main._recommended == app.report.walk_order() != first
        # The recommended plan follows: the cheapest scheme within 1000 dB of the best everywhere.
        assert not main.plan_pending and main.plan == main.measured.recommended
        assert set(main.plan.quantized.values()) == {"static_per_channel"}
        assert f"plan {main.plan_sqnr.db:.1f} dB" in app.sub_title and "recomputing" not in app.sub_title
        # The report's recommended plan (what the JSON export writes) follows too.
        exported = json.loads(render(app.report, "json"))["measured"]["plan"]
        schemes = {fqn: m["scheme"] for fqn, m in exported["modules"].items()}
        assert set(schemes.values()) == {"static_per_channel", "float"}
        # Float: the Conv2d modules, which the default target (torchao-cpu) does not run.
        assert {f for f, s in schemes.items() if s == "float"} == {
            "rgb_stem.conv1",
            "rgb_stem.conv2",
            "thermal_stem.conv",
        }
        assert exported["sqnr_db"] == pytest.approx(main.plan_sqnr.db)
        assert exported["predicted_sqnr_db"] == pytest.approx(main.plan_sqnr.db)

        await set_input(pilot, app, MIN_GAIN_INPUT, "0")
        await settle(app, pilot)
        assert main.min_gain_db == 0 and app.report.min_gain_db == 0
        again = measured_badges(app)
        assert set(before) <= set(again)  # the badges come back (and those between 0 and 1 dB too)
        assert app.report.walk_order()[: len(first)] != [] and set(first) <= set(app.report.walk_order())

        # Bad input: a clear message, the last good value stays in force.
        for bad, words in (("abc", "must be a number >= 0"), ("-1", "must be >= 0")):
            field.focus()
            await pilot.pause()
            field.value = ""
            await pilot.press(*bad, "enter")
            await settle(app, pilot)
            message = app.query_one("#field-app-min_gain_db .param-message", Static)
            assert message.display and words in text_of(message) and "keeping 0" in text_of(message)
            assert main.min_gain_db == 0 and app.report.min_gain_db == 0
            await pilot.press("escape")

        # m puts the keyboard on the field (the sidebar shown if hidden); Enter applies and returns.
        await pilot.press("m")
        assert field.has_focus
        await pilot.press(*"2.5", "enter")
        await settle(app, pilot)
        assert main.min_gain_db == 2.5 and app.report.min_gain_db == 2.5
        assert app.query_one(ModuleTree).has_focus

        assert len(measures) == 1 and main.measured.analysis is analysis  # never measured again


def summary_line(app, detector: str) -> str:
    title = app.report.detectors[detector].title
    return next(line for line in text_of(app.query_one(ModelSummary)).splitlines() if title in line)


async def test_model_summary_counts_what_is_badged_and_minor_apart() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await calibrate(app, pilot)
        await settle(app, pilot)
        tree = app.query_one(ModuleTree)
        report = app.report
        assert tree.current_fqn == ""  # the model summary is shown
        seen_minor = False
        for name, detector in report.detectors.items():
            badged = [f for f in detector.recommended if detector.glyph in tree.badges_of(f)]
            minor = [
                f
                for f in detector.recommended
                if report.severity(name, f) is not None and report.severity(name, f).level is Level.MINOR
            ]
            line = summary_line(app, name)
            assert (f"{len(badged)} recommended" if badged else "nothing recommended") in line, line
            if minor:
                seen_minor = True
                assert f"{len(minor)} minor (measured gain below 1 dB)" in line
                assert f"{len(detector.recommended)} recommended" not in line or len(badged) == len(
                    detector.recommended
                )
            else:
                assert "minor" not in line
        assert seen_minor, "the showcase has minor findings at 1 dB"
        assert "Detector heuristic, before measurement:" in text_of(app.query_one(ModelSummary))

        await set_input(pilot, app, MIN_GAIN_INPUT, "1000")
        await settle(app, pilot)
        per_channel = "per_channel_detector"
        flagged = len(app.report.detectors[per_channel].recommended)
        line = summary_line(app, per_channel)
        assert f"nothing recommended · {flagged} minor (measured gain below 1000 dB)" in line, line


async def test_min_gain_is_saved_per_user_given_on_the_command_line_and_reset() -> None:
    """Issue 13 (settings persist): the minimum gain is saved like the thresholds, read back at the
    next start, overridden by ``--min-gain``, copied in the command line, and reset with the rest."""
    from tui_quantreport.tui import user_settings

    app = make_app(batches=SHOWCASE_BATCHES, probe_batches=0)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await set_input(pilot, app, MIN_GAIN_INPUT, "3.5")
        await settle(app, pilot)
        assert app.main.min_gain_db == 3.5
        assert json.loads(user_settings.settings_path().read_text())["min_gain_db"] == 3.5
        assert app.main.command_line().endswith("--batches 8 --min-gain 3.5")

    again = make_app(batches=SHOWCASE_BATCHES, probe_batches=0)
    async with again.run_test(size=SIZE) as pilot:
        await settle(again, pilot)
        assert again.main.min_gain_db == 3.5
        assert again.query_one(MIN_GAIN_INPUT, Input).value == "3.5"
        again.main.reset_user_settings()
        await settle(again, pilot)
        assert again.main.min_gain_db == 1.0 and again.query_one(MIN_GAIN_INPUT, Input).value == "1"
        assert not user_settings.settings_path().exists()

    user_settings.save(user_settings.UserSettings(min_gain_db=6.0))
    given = make_app(batches=SHOWCASE_BATCHES, probe_batches=0, min_gain=2.0)  # --min-gain 2 wins
    async with given.run_test(size=SIZE) as pilot:
        await settle(given, pilot)
        assert given.main.min_gain_db == 2.0 and given.query_one(MIN_GAIN_INPUT, Input).value == "2"


def test_a_bad_saved_min_gain_is_ignored_with_a_notice(tmp_path) -> None:
    from tui_quantreport.tui import user_settings

    user_settings.settings_path().parent.mkdir(parents=True, exist_ok=True)
    user_settings.settings_path().write_text(json.dumps({"min_gain_db": -4, "theme": "nord"}))
    saved, notice = user_settings.load()
    assert saved.min_gain_db is None and saved.theme == "nord"
    assert notice is not None and "min_gain_db -4" in notice
