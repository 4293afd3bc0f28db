"""A sample calibrated once, measured afresh on every call: for tests holding a fast path equal to the
path it replaces (run the measurement, switch the fast path, run it again)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tui_quantreport.engine import Session, Settings, load_model, open_batches
from tui_quantreport.engine.quantsim import ErrorAnalysis, ProbeRecorder


def sample_measurer(
    sample: str, *, advice: bool, schemes: tuple[str, ...] | None = None
) -> Callable[[], dict[str, Any]]:
    """``measure()``: a fresh :class:`ErrorAnalysis` of ``sample`` (2 probe batches, the calibration
    done once here) and its local measurements (``advice``: the clipped and equalized variants too;
    ``schemes``: those measured, default all)."""
    loaded = load_model(sample)
    session = Session(loaded.model)
    recorder = ProbeRecorder(open_batches(loaded), 2)
    stats = session.calibrate(recorder, Settings.build())

    def measure() -> dict[str, Any]:
        analysis = ErrorAnalysis.from_stats(loaded.model, session.catalog, recorder.probes, stats, schemes=schemes)
        return analysis.local_measurements(advice=advice)

    return measure


def failing_for(real: Callable[..., Any], fqn: str, message: str) -> Callable[..., Any]:
    """``real`` (a builder of a module's measurement, its target first) with the measurement of the
    module ``fqn`` raising ``RuntimeError(message)`` on every call."""

    def builder(target: Any, *args: Any) -> Any:
        measure = real(target, *args)
        if target.fqn != fqn:
            return measure

        def broken(x: Any, y: Any) -> None:
            raise RuntimeError(message)

        return broken

    return builder
