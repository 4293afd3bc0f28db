"""Timing helpers: one place that knows about devices and synchronisation."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch


def call_batch(model: Any, batch: Any) -> Any:
    """The engine's call convention: Tensor -> model(b), tuple -> model(*b), dict -> model(**b)."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    return value


def example_inputs(batch: Any) -> tuple:
    """Positional example inputs for ``prepare_fx``."""
    if isinstance(batch, Mapping):
        return tuple(batch.values())
    if isinstance(batch, (tuple, list)):
        return tuple(batch)
    return (batch,)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds ``fn()`` took (device synchronised before and after), and its result."""
    gc.collect()
    synchronize(device)
    started = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - started, result


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f}x"
    if x >= 10:
        return f"{x:.1f}x"
    return f"{x:.2f}x"


def fmt_bytes(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"


def calibrated_sample(name: str, k: int) -> tuple[torch.nn.Module, Any, Any, list[Any]]:
    """``(model, session, stats, probes)``: a sample loaded and calibrated on its first ``k`` batches (the
    probes the measured-error benchmarks run), all four detectors."""
    from tui_quantreport.engine import Session, Settings, load_model, open_batches
    from tui_quantreport.engine.quantsim import ProbeRecorder

    loaded = load_model(name)
    session = Session(loaded.model)
    recorder = ProbeRecorder(open_batches(loaded), k)
    stats = session.calibrate(recorder, Settings.build())
    return loaded.model, session, stats, recorder.probes
