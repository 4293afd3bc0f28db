"""What every measurement pass of :class:`~.error_analysis.ErrorAnalysis` shares: its constants,
exceptions, result types, the per-module target record, and small helpers."""

from __future__ import annotations

import contextlib
import functools
import gc
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.batches import call_batch as call_batch  # re-exported for the passes
from tui_quantreport.engine.batches import first_tensor as first_tensor  # re-exported for the passes
from tui_quantreport.engine.defaults import MIN_GAIN_DB, PROBE_BATCHES
from tui_quantreport.engine.errors import CalibrationCancelled, UserError
from tui_quantreport.engine.model_lock import model_lock
from tui_quantreport.engine.quantsim.kinds import ModuleKind, kind_of
from tui_quantreport.engine.quantsim.kinds import _unsupported as _unsupported_call
from tui_quantreport.engine.quantsim.qparams import (
    QParams,
)
from tui_quantreport.engine.quantsim.schemes import (
    StaticInput,
)
from tui_quantreport.engine.quantsim.sqnr import Sqnr

ProgressCallback = Callable[[int, int | None], None]
#: A target's eligibility check: ``runs(scheme, kind name, weight shape) -> reason | None``.
Runs = Callable[[str, str, tuple[int, ...]], "str | None"]

#: Probe batches by default (the first K calibration batches).
DEFAULT_PROBE_BATCHES = PROBE_BATCHES
#: Percentile of each probe's input the clipped range keeps (low side 1 - p).
DEFAULT_CLIP_PERCENTILE = 0.9999
#: Percentiles are read from at most this many values per tensor (a strided sample beyond).
PERCENTILE_SAMPLE = 1 << 20
#: The recommended plan prefers the cheaper scheme unless another gains at least this (dB).
DEFAULT_MIN_GAIN_DB = MIN_GAIN_DB
#: Weight-only (float activations) is recommended only where no activation-quantizing
#: scheme reaches this local SQNR.
WEIGHT_ONLY_BELOW_DB = 20.0

#: Weights are fake-quantized in stacks of at most this many elements (same shapes together).
WEIGHT_STACK_ELEMENTS = 1 << 22

#: What a statically quantized module emits (``ErrorAnalysis(static_outputs=...)``).
STATIC_OUTPUTS = ("int8", "float", "shared")
#: The reader name :class:`_EdgeTracer` gives an op that shares its input's grid (:data:`SHARED_QPARAMS_TYPES`).
SHARED_READER = "<shared qparams op>"

CLIPPED = "clipped"
EQUALIZED = "equalized"


def _measurement(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a measurement method (of an :class:`~.error_analysis.ErrorAnalysis`, or of a helper
    holding one as ``analysis``) with its model's :func:`~tui_quantreport.engine.model_lock.model_lock`
    held, and Python's cyclic garbage collector paused (as ``timeit`` does).

    The lock: the app's workers overlap, and a measurement swaps simulated forwards into the
    model and keeps per-call state (the last plan's outputs); another one at the same time would
    measure a mix of both plans (it did: an edited plan restored at launch came out 0.2 to 5 dB
    off while the limiting module was measured beside it).

    The collector: a measurement allocates a few objects per module and call; on a model of
    thousands of modules that triggers full collections walking every object of the model (and
    its calibration statistics), which cost more than the simulation itself (150 ms a
    collection on large_generated). Nothing a measurement allocates is cyclic garbage; the
    collector resumes, with its counts, when the call returns.
    """

    @functools.wraps(method)
    def measured(owner: Any, *args: Any, **kwargs: Any) -> Any:
        model = getattr(getattr(owner, "analysis", owner), "model", None)  # None while __init__ sets it
        with model_lock(model) if model is not None else contextlib.nullcontext():
            if not gc.isenabled():
                return method(owner, *args, **kwargs)
            gc.disable()
            try:
                return method(owner, *args, **kwargs)
            finally:
                gc.enable()

    return measured


class MeasurementCancelled(CalibrationCancelled):
    """A measurement was cancelled between batches (or modules); nothing was kept from it."""


class SimulationError(UserError):
    """A probe batch failed under simulation (one sentence)."""


@dataclass(frozen=True)
class Cost:
    """What a measurement will take: forward passes over the probes, and seconds if known."""

    forward_passes: float
    seconds: float | None

    def __str__(self) -> str:
        passes = f"{self.forward_passes:g} forward passes of the probe batches"
        if self.seconds is None:
            return passes
        return f"{passes}, about {_duration(self.seconds)}"


@dataclass(frozen=True)
class PlanSize:
    """A model's parameters under a plan: megabytes (10^6 bytes) as deployed, in float, and the
    average bits per weight over the quantizable modules' weights (float ones at their dtype's)."""

    mb: float
    float_mb: float
    bits_per_weight: float | None


@dataclass(frozen=True)
class LocalMeasurement:
    """One module's local measurements.

    ``sqnr`` per scheme; ``clipped`` and ``equalized`` are static_per_channel with
    the input range clipped to percentiles, and after input-weight equalization
    (None when not measured). ``range_source`` is "calibration", "probes" or "none".
    """

    fqn: str
    kind: str
    sqnr: Mapping[str, Sqnr]
    clipped: Sqnr | None = None
    equalized: Sqnr | None = None
    range_source: str = "none"
    calls: int = 0
    #: Rows its input saw (calibration's when known, else the probes'); None when not counted.
    rows: int | None = None


@dataclass
class _Target:
    """A quantizable module and what the simulation precomputes for it."""

    fqn: str
    module: Any  # an nn.Module of ``kind``: its weight, bias and kind-specific attributes are read
    kind: ModuleKind
    device: torch.device
    static: StaticInput | None = None
    qparams: QParams | None = None
    range: tuple[float, float] | None = None
    range_source: str = "none"
    channel_range: tuple[torch.Tensor, torch.Tensor] | None = None
    clip_range: tuple[float, float] | None = None
    #: Calls seen in the range pass (0: never called on the probes).
    calls: int = 0
    #: Rows (values per input channel) its input saw: in calibration when known, else on the probes.
    rows: int | None = None
    #: Where its output goes: fqns of the quantizable modules that read it (directly or
    #: through ReLU-like modules), "" for anything else (another module, the model output).
    consumers: set[str] = field(default_factory=set)
    #: qparams for its output edge: the range after a ReLU-like successor, else its own output range.
    out_static: StaticInput | None = None
    #: Ops sharing their input's grid (pooling, flatten) that read its raw output.
    shared_readers: set[str] = field(default_factory=set)
    #: Ops sharing their input's grid that read its output after an ``nn.ReLU`` module (PT2E's
    #: fused Conv/Linear + ReLU pattern), and the qparams of the range after that ReLU.
    fused_shared_readers: set[str] = field(default_factory=set)
    fused_static: StaticInput | None = None
    #: The targets whose raw outputs ``torch.cat`` joins with its own (its only reader), and the
    #: qparams of all of them together (PT2E's shared qparams for cat's inputs).
    cat_inputs: tuple[str, ...] = ()
    cat_static: StaticInput | None = None


def find_targets(catalog: Any, submodule: Callable[[str], nn.Module]) -> tuple[dict[str, _Target], dict[str, str]]:
    """(the modules the simulation measures, {weighted module it cannot reproduce: why}) of a
    model's ``catalog``; ``submodule(fqn)`` finds a module."""
    targets: dict[str, _Target] = {}
    unsupported: dict[str, str] = {}
    for fqn, info in catalog.modules.items():
        if info.is_quant_helper:
            continue
        module = submodule(fqn)
        kind = kind_of(module)
        if kind is None:
            if info.is_weighted:
                unsupported[fqn] = f"{info.class_name} is not a module kind the simulation knows"
            continue
        if kind.call is _unsupported_call:  # a registered weighted kind the simulation does not reproduce
            unsupported[fqn] = (
                f"{info.class_name} is not simulated: the simulation reproduces Linear, Conv, HF Conv1D and "
                f"Embedding computations, not the {kind.name.replace('_', ' ')} layer's own forward"
            )
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or isinstance(weight, nn.parameter.UninitializedParameter):
            unsupported[fqn] = f"{info.class_name} '{fqn}' has no initialized weight"
            continue
        if not kind.supports(module):
            unsupported[fqn] = f"{info.class_name} has its own forward, which the simulation does not reproduce"
            continue
        targets[fqn] = _Target(fqn, module, kind, weight.device)
    return targets, unsupported


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (the type alone when there is no message)."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


_MISSING = object()


def _restore_forwards(saved: list[tuple[nn.Module, Any]]) -> None:
    for module, previous in reversed(saved):
        if previous is _MISSING:
            module.__dict__.pop("forward", None)
        else:
            module.__dict__["forward"] = previous


def _check_cancel(should_cancel: Callable[[], bool] | None) -> None:
    if should_cancel is not None and should_cancel():
        raise MeasurementCancelled()


def rows_from_stats(stats: Any) -> dict[str, int]:
    """Rows (values per channel) each module's input saw in calibration, from the "pre" points that count them."""
    rows: dict[str, int] = {}
    for (fqn, role), point in getattr(stats, "points", {}).items():
        if role == "pre" and getattr(point, "rows", None) is not None:
            rows[fqn] = int(point.rows)
    return rows


def ranges_from_stats(
    stats: Any,
) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Calibrated input ranges per module from a stats snapshot's "pre" points.

    Returns ({fqn: (min, max)}, {fqn: (channel_min, channel_max)}); points never
    called are left out (their ranges are then measured on the probes).
    """
    ranges: dict[str, tuple[float, float]] = {}
    channels: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for (fqn, role), point in getattr(stats, "points", {}).items():
        if role != "pre" or point.calls == 0:
            continue
        if point.global_min == math.inf and point.global_max == -math.inf:
            continue
        ranges[fqn] = (point.global_min, point.global_max)
        if point.channel_min is not None:
            channels[fqn] = (point.channel_min, point.channel_max)
    return ranges, channels


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"
