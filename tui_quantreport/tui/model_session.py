"""The app's handle on the engine: load, calibrate and evaluate, off the UI thread.

Every method here may import torch (through the engine's settings, evaluation, session,
spec and detectors modules), so they are imported inside the methods and the
methods are only called from worker threads. The class holds what does not
change once loaded (the model and its engine session); the stats snapshot and
the settings live in the app and are passed in, so concurrent calls never share
mutable state.
"""

from __future__ import annotations

import threading
from argparse import Namespace
from concurrent.futures import Future
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import Report

if TYPE_CHECKING:  # the engine's types, for type checkers only: importing them at run time loads torch
    from tui_quantreport.engine.settings import Settings
    from tui_quantreport.engine.detectors import Detector
    from tui_quantreport.engine.session import Session
    from tui_quantreport.engine.stats import Stats
    from tui_quantreport.engine.spec import LoadedModel


class DetectorInfo(Protocol):
    """What the app reads of a detector class (its registry entry): no torch needed to use it."""

    name: str
    title: str
    glyph: str
    description: str
    params: tuple[Param, ...]


@dataclass(frozen=True)
class Loaded:
    """What loading produced: the session, its first (uncalibrated) report, settings and detectors."""

    session: ModelSession
    report: Report
    settings: Settings
    stats: Stats  # empty
    detectors: tuple[type[Detector], ...]


@dataclass(frozen=True)
class Calibrated:
    """What a calibration produced: the new stats and the report evaluated with ``settings``."""

    stats: Stats
    report: Report
    settings: Settings


class ModelSession:
    """One loaded model and its engine session."""

    def __init__(self, loaded_model: LoadedModel, session: Session) -> None:
        from tui_quantreport.engine.evaluation import Evaluator

        self.loaded_model = loaded_model
        self.session = session
        self.spec: str = loaded_model.spec
        #: Keeps recent measurements and reports, so a threshold change re-judges from kept numbers.
        self.evaluator = Evaluator(session.catalog)

    @classmethod
    def load_in_background(cls, spec: str, options: Namespace | None) -> Future[Loaded]:
        """Start :meth:`load` in a daemon thread (quitting never waits for it); a future of its result."""
        future: Future[Loaded] = Future()

        def run() -> None:
            try:
                future.set_result(cls.load(spec, options))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(exc)

        threading.Thread(target=run, name="load-model", daemon=True).start()
        return future

    @classmethod
    def load(cls, spec: str, options: Namespace | None) -> Loaded:
        """Build settings from the command-line options, load the model, and evaluate it uncalibrated.

        Raises :class:`~tui_quantreport.engine.errors.UserError` (one clear sentence) when the
        options, the model spec or the model's factory are wrong.
        """
        from tui_quantreport.engine.detectors import DETECTORS
        from tui_quantreport.engine.session import Session
        from tui_quantreport.engine.settings import Settings
        from tui_quantreport.engine.stats import Stats
        from tui_quantreport.engine.spec import load_model

        settings = Settings.from_options(
            detectors=_option(options, "detectors"),
            params=_option(options, "param") or (),
            tolerance=_option(options, "tolerance"),
            backend=_option(options, "backend"),
            ch_axis=_option(options, "ch_axis"),
        )
        loaded_model = load_model(spec, _option(options, "calibration"))
        session = Session(loaded_model.model, label=loaded_model.spec)
        stats = Stats.empty()
        model = cls(loaded_model, session)
        report = model.evaluate(stats, settings)
        return Loaded(model, report, settings, stats, tuple(DETECTORS.values()))

    def evaluate(self, stats: Stats, settings: Settings) -> Report:
        """The report for ``stats`` judged with ``settings``: pure, never touches the model."""
        return self.evaluator.evaluate(stats, settings, spec=self.spec)

    def calibrate(
        self,
        settings: Settings,
        max_batches: int | None,
        progress: Callable[[int, int | None], None],
        should_cancel: Callable[[], bool],
    ) -> Calibrated:
        """Run the calibration batches with what ``settings`` needs observed, then evaluate.

        Raises :class:`~tui_quantreport.engine.errors.CalibrationError` (which batch, which
        module, the cause), :class:`~tui_quantreport.engine.errors.SpecError` (no or bad
        calibration data) or :class:`~tui_quantreport.engine.errors.CalibrationCancelled`.
        """
        from tui_quantreport.engine.spec import open_batches

        stats = self.session.calibrate(
            open_batches(self.loaded_model),  # sized when the model's batches are: the bar shows done / total
            settings,
            max_batches=max_batches,
            progress=progress,
            should_cancel=should_cancel,
        )
        report = self.evaluate(stats, settings)
        return Calibrated(stats, report, settings)


def _option(options: Namespace | None, name: str) -> Any:
    return getattr(options, name, None) if options is not None else None
