"""The sidebar's settings: kept per user and reset, and a detector checkbox that shows its state
without colour."""

from __future__ import annotations

import json

from app_helpers import (
    SHOWCASE_BATCHES,
    SIZE,
    TOLERANCE_INPUT,
    make_app,
    set_tolerance,
    settle,
)
from textual.widgets import Input

from tui_quantreport.tui import user_settings


async def test_settings_persist_per_user_and_reset() -> None:
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await set_tolerance(pilot, app, "0.3")
        app.theme = "nord"
        await pilot.pause()
        saved = json.loads(user_settings.settings_path().read_text())
        assert saved["params"] == {"dynamic_vs_static_detector": {"tolerance": 0.3}} and saved["theme"] == "nord"

    again = make_app(batches=SHOWCASE_BATCHES)
    async with again.run_test(size=SIZE) as pilot:
        await settle(again, pilot)
        assert again.theme == "nord"
        assert again.settings.params["dynamic_vs_static_detector"]["tolerance"] == 0.3
        assert again.query_one(TOLERANCE_INPUT, Input).value == "0.3"
        again.main.reset_user_settings()
        await settle(again, pilot)
        assert not user_settings.settings_path().exists()
        assert again.settings.params["dynamic_vs_static_detector"]["tolerance"] == 0.5
        assert again.query_one(TOLERANCE_INPUT, Input).value == "0.5"  # the sidebar shows the reset

    # A command-line option wins over a saved value.
    user_settings.save(user_settings.UserSettings(params={"dynamic_vs_static_detector": {"tolerance": 0.2}}))
    third = make_app(batches=SHOWCASE_BATCHES, tolerance="0.7")
    async with third.run_test(size=SIZE) as pilot:
        await settle(third, pilot)
        assert third.settings.params["dynamic_vs_static_detector"]["tolerance"] == 0.7


async def test_a_detector_checkbox_shows_its_state_without_colour() -> None:
    from textual.widgets import Checkbox

    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        box = app.query_one("#detector-outlier_detector", Checkbox)
        assert box.render().plain.startswith("▐X▌")
        box.value = False
        await pilot.pause()
        assert box.render().plain.startswith("▐ ▌")
