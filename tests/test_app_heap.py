"""The session's long-lived objects are kept out of the collector's full scans (issue 25: a
what-if toggle that met a full collection took 813 ms against a 150 ms median on the 2,028-module
sample; a full scan of the ~700,000 objects there: ~680 ms, ~18 ms with them frozen). Frozen once
the model is loaded and once the error is measured; given back before a new calibration replaces
them, and when the app exits."""

from __future__ import annotations

import gc

from app_helpers import SHOWCASE_BATCHES, SIZE, calibrate, make_app, settle

from tui_quantreport.tui import heap


async def test_the_session_is_frozen_once_measured_and_given_back(monkeypatch) -> None:
    events: list[tuple[str, int]] = []
    freeze, unfreeze = heap.gc.freeze, heap.gc.unfreeze

    def recorded_freeze() -> None:
        freeze()
        events.append(("freeze", gc.get_freeze_count()))

    def recorded_unfreeze() -> None:
        unfreeze()
        events.append(("unfreeze", gc.get_freeze_count()))

    monkeypatch.setattr(heap.gc, "freeze", recorded_freeze)
    monkeypatch.setattr(heap.gc, "unfreeze", recorded_unfreeze)
    app = make_app(batches=SHOWCASE_BATCHES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert events and events[-1][0] == "freeze" and events[-1][1] > 0  # the model, loaded
        await calibrate(app, pilot)
        await settle(app, pilot)
        assert app.main.measured is not None
        # Calibrating gave the loaded objects back, the measurement froze what the session holds.
        kinds = [kind for kind, _ in events]
        assert kinds[-2:] == ["unfreeze", "freeze"] and events[-2][1] == 0
        frozen = events[-1][1]
        assert frozen > 0
        # A full scan walks the objects made since (fewer), not these (freed ones leave the count).
        assert len(gc.get_objects()) < gc.get_freeze_count()
        events.clear()
        await pilot.press("c")  # a new calibration replaces the statistics and the measurement
        await settle(app, pilot)
        assert [kind for kind, _ in events] == ["unfreeze", "freeze"] and events[0][1] == 0
    assert events[-1] == ("unfreeze", 0) and gc.get_freeze_count() == 0  # the app exited
