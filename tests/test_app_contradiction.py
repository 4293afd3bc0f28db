"""Where our measurement contradicts a detector that did not flag a module, the detail view says
so beside the detector's verdict (untraceable's refine.fc_out: the dynamic-vs-static detector says
"static is fine", the simulation measures dynamic several dB better and the plan uses it)."""

from __future__ import annotations

from app_helpers import calibrate, make_app, walk_to

from tui_quantreport.tui.panes.findings_panel import FindingsPanel

FQN = "refine.fc_out"


async def test_a_measured_gain_on_an_unflagged_module_is_shown_and_said() -> None:
    app = make_app("untraceable", batches=8)
    async with app.run_test(size=(120, 40)) as pilot:
        await calibrate(app, pilot)
        severity = app.report.severity("dynamic_vs_static_detector", FQN)
        assert severity is not None and severity.contradicts and severity.gain_db >= 1.0
        assert not app.report.detectors["dynamic_vs_static_detector"].findings[FQN].recommended
        await walk_to(app, pilot, FQN)
        text = "\n".join(panel.content.plain for panel in app.query(FindingsPanel))
        section = text[text.index("Dynamic vs static") :]
        assert "no change needed" in section.splitlines()[0]
        assert "measured: not flagged (+" in section
        assert "The detector does not flag it, but the measurement gains at least 1 dB." in section
        # A module whose unflagged advice gains nothing shows no measured line for it.
        quiet = [
            (d, f)
            for (d, f), s in app.report.severities.items()
            if s.level.value == "none" and not s.contradicts and d == "per_channel_detector"
        ]
        assert quiet
