"""torch's own ModelReport, prepared as its documentation says, for comparison."""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from benchmarks.timing import example_inputs


def describe_failure(exc: BaseException) -> str:
    """One short line: 'TraceError: symbolically traced ...' (first line, trimmed)."""
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    if len(message) > 110:
        message = message[:107] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def short_reason(exc: BaseException) -> str:
    """What the table says when the reference cannot run a model."""
    message = str(exc)
    if "quantile() input tensor is too large" in message:
        return "fails: quantile() input tensor is too large"
    if type(exc).__name__ == "TraceError" or "symbolically traced" in message:
        return "fails: not FX-traceable (" + describe_failure(exc) + ")"
    return "fails: " + describe_failure(exc)


@dataclass
class PreparedReference:
    """A prepared, detector-instrumented GraphModule and its ModelReport."""

    model: nn.Module
    report: Any
    prepare_seconds: float
    observers: int = 0
    notes: list[str] = field(default_factory=list)


def prepare_reference(float_model: nn.Module, first_batch: Any, device: torch.device) -> PreparedReference:
    """prepare_fx(deepcopy, get_default_qconfig_mapping("x86")) -> ModelReport with the
    same four detectors -> prepare_detailed_calibration(); then moved to ``device``.

    Prepared on the CPU (the reference inserts its ModelReportObservers as CPU
    modules), on a deep copy so our run uses an untouched model.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx._model_report.detector import (
        DynamicStaticDetector,
        InputWeightEqualizationDetector,
        OutlierDetector,
        PerChannelDetector,
    )
    from torch.ao.quantization.fx._model_report.model_report import ModelReport
    from torch.ao.quantization.quantize_fx import prepare_fx

    started = time.perf_counter()
    model = copy.deepcopy(float_model).cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), example_inputs(first_batch))
        detectors = {
            PerChannelDetector("x86"),
            DynamicStaticDetector(),
            InputWeightEqualizationDetector(0.5),
            OutlierDetector(),
        }
        report = ModelReport(prepared, detectors)
        prepared = _detailed_calibration_one_recompile(report, prepared)
    prepared = prepared.to(device).eval()
    seconds = time.perf_counter() - started
    observers = sum(1 for m in prepared.modules() if "ModelReportObserver" in type(m).__name__)
    return PreparedReference(prepared, report, seconds, observers)


def _detailed_calibration_one_recompile(report: Any, prepared: Any) -> Any:
    """``report.prepare_detailed_calibration()``, recompiling the GraphModule once.

    The stock method calls ``GraphModule.recompile()`` after inserting each
    observer: quadratic, about 300 s for the 2,012 observers of large_generated.
    The observers, the graph and the generated code are the same when the
    recompile runs once at the end; only the (untimed) setup gets faster.
    """
    real = type(prepared).recompile
    prepared.recompile = lambda: None  # instance attribute shadows the method
    try:
        result = report.prepare_detailed_calibration()
    finally:
        del prepared.recompile
    real(prepared)
    return result


def generate_report(prepared: PreparedReference) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepared.report.generate_model_report(remove_inserted_observers=False)
