"""Measured quantization error: local SQNR per module and scheme, end-to-end SQNR of a plan.

:class:`ErrorAnalysis` holds one model, its catalog, a few *probe* batches (the
first K calibration batches) and the calibrated input ranges of its weighted
modules. It measures, always against the float model on the same probes:

- **local SQNR** (:meth:`ErrorAnalysis.local_sqnr`): for every quantizable
  module and scheme, the module's output with its (float) input and its weight
  quantized, against its float output. Streaming: during one float pass over
  the probes, a forward hook on each quantizable module computes every
  scheme's output from the input it was just given and folds ``||y||^2`` and
  ``||y - y_hat||^2`` into running sums. No activation is kept: the memory on
  top of the float forward is, at any moment, one module's input copies and
  outputs, in buffers kept for the pass (so sized for the largest module seen
  so far, released when the pass ends), plus the fake-quantized weights (at
  most twice the model's weight bytes, kept for later plan evaluations). With
  ``advice=True`` it also measures the two corrections detectors suggest: the
  input range clipped to percentiles (outliers) and input-weight equalization,
  which needs a first float pass for the percentiles and channel extremes (so
  2 float passes; 1 otherwise, or 2 when a module has no calibrated range).
- **end-to-end SQNR** of a :class:`Plan` (:meth:`ErrorAnalysis.plan_sqnr`):
  each quantized module's ``forward`` is replaced for the pass by its
  simulated form (fake-quantized input and weight) and the model's output is
  compared with the float output kept from the first pass. The model is left
  exactly as it was: instance ``forward`` attributes, hooks, training flags
  and ``torch.ao`` observer buffers are restored.
- **one-at-a-time sensitivity** (:meth:`ErrorAnalysis.sensitivity`): the
  end-to-end SQNR with only module i quantized, for every quantized module of
  a plan: N passes over the probes, with progress, cancel, and
  :meth:`ErrorAnalysis.cost` to say what it will take before starting.

Static input qparams come from the calibrated min/max at the module's input
(``activation_ranges``, from the calibration stats when present), else from the
probe batches; :meth:`ErrorAnalysis.range_source` says which.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from tui_quantreport.engine.apply.targets.recipe import ActivationRecipe
from tui_quantreport.engine.defaults import MIN_GAIN_DB, PROBE_BATCHES
from tui_quantreport.engine.detectors.under_calibrated import DEFAULT_MIN_ROWS, is_expert
from tui_quantreport.engine.errors import CalibrationCancelled, UserError
from tui_quantreport.engine.module_kinds import passes_through_class
from tui_quantreport.engine.modules import ModelCatalog, is_quant_helper
from tui_quantreport.engine.quantsim.kinds import ModuleKind, kind_of
from tui_quantreport.engine.quantsim.kinds import _conv as _conv_call
from tui_quantreport.engine.quantsim.kinds import _linear as _linear_call
from tui_quantreport.engine.quantsim.kinds import _unsupported as _unsupported_call
from tui_quantreport.engine.quantsim.outputs import OutputsSqnr, output_tensors, select
from tui_quantreport.engine.quantsim.outputs import prepared as prepared_outputs
from tui_quantreport.engine.quantsim.plan import Plan
from tui_quantreport.engine.quantsim.probes import copy_batch
from tui_quantreport.engine.quantsim.qparams import (
    F32_MAX,
    FAST_FAKE_QUANT_MIN,
    QParams,
    activation_qparams,
    activation_range,
    fake_quantize_float32,
    fake_quantize_float32_,
    fake_quantize_weight,
)
from tui_quantreport.engine.quantsim.reference import float_reference
from tui_quantreport.engine.quantsim.schemes import (
    FLOAT,
    PREFERENCE,
    SCHEMES,
    InputContext,
    Scheme,
    StaticInput,
    WeightFacts,
)
from tui_quantreport.engine.quantsim.sqnr import PreparedReference, Scratch, SharedReference, Sqnr
from tui_quantreport.engine.session import _freeze_model_state, call_batch, first_tensor
from tui_quantreport.engine.stats.accumulator import rows_of

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


def _gc_paused(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``method`` with Python's cyclic garbage collector paused (as ``timeit`` does).

    A measurement allocates a few objects per module and call; on a model of thousands
    of modules that triggers full collections walking every object of the model (and
    its calibration statistics), which cost more than the simulation itself (150 ms a
    collection on large_generated). Nothing a measurement allocates is cyclic garbage;
    the collector resumes, with its counts, when the call returns.
    """

    @functools.wraps(method)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return method(*args, **kwargs)
        gc.disable()
        try:
            return method(*args, **kwargs)
        finally:
            gc.enable()

    return paused


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
    #: Ops sharing their input's grid (pooling, flatten) that read its output (directly or after a ReLU).
    shared_readers: set[str] = field(default_factory=set)


@dataclass
class _RangePass:
    """Per-module sums of one float pass: extremes, channel extremes and percentiles."""

    lo: float = math.inf
    hi: float = -math.inf
    channel_lo: torch.Tensor | None = None
    channel_hi: torch.Tensor | None = None
    channels_ok: bool = True
    p_lo: float = 0.0
    p_hi: float = 0.0
    calls: int = 0
    rows: int = 0
    finite: bool = True
    extra: dict = field(default_factory=dict)
    #: The per-batch sums, kept on the data's device (float64: lo, hi, finite, p_lo, p_hi) and
    #: read back once at the end of the pass (:meth:`read_back`).
    sums: torch.Tensor | None = None

    def add(self, lo: torch.Tensor, hi: torch.Tensor, p_lo: torch.Tensor | None, p_hi: torch.Tensor | None) -> None:
        """One batch's extremes (and percentiles), folded in on the device, branch-free: the
        same values as ``min``/``max`` and ``+=`` of Python floats (a NaN never replaces a kept
        extreme; the sums taken in float64 in the same order)."""
        lo, hi = lo.to(torch.float64), hi.to(torch.float64)
        zero = torch.zeros((), dtype=torch.float64, device=lo.device)
        batch = torch.stack(
            [
                lo,
                hi,
                (torch.isfinite(lo) & torch.isfinite(hi)).to(torch.float64),
                zero if p_lo is None else p_lo.to(torch.float64),
                zero if p_hi is None else p_hi.to(torch.float64),
            ]
        )
        if self.sums is None:
            start = [math.inf, -math.inf, 1.0, 0.0, 0.0]
            self.sums = torch.tensor(start, dtype=torch.float64, device=lo.device)
        kept = self.sums
        self.sums = torch.stack(
            [
                torch.where(batch[0] < kept[0], batch[0], kept[0]),
                torch.where(batch[1] > kept[1], batch[1], kept[1]),
                torch.minimum(batch[2], kept[2]),
                kept[3] + batch[3],
                kept[4] + batch[4],
            ]
        )

    def read_back(self, values: list[float]) -> None:
        """Set the Python fields from the sums read back (one read for the whole pass)."""
        lo, hi, finite, p_lo, p_hi = values
        self.finite = finite == 1.0
        self.lo, self.hi, self.p_lo, self.p_hi = lo, hi, p_lo, p_hi


class ErrorAnalysis:
    """Measured quantization error of one model on a few probe batches.

    ``activation_ranges`` maps a module's fqn to the calibrated (min, max) of its
    input; ``channel_ranges`` optionally to per-channel (min, max) tensors along
    the module's input feature axis (for equalization). Missing ones are measured
    on the probes.

    ``static_outputs`` says what a statically quantized module emits in a plan:
    ``"int8"`` (the default) as torch.ao's converted modules do (``convert_fx``,
    eager ``convert``): the output is quantized once, with its own calibrated range
    (after a fused ReLU), unless every reader quantizes it statically anyway;
    ``"float"`` as torchao's ``Int8StaticActivationInt8WeightConfig`` does: int8
    input and weight, float output; ``"shared"`` as PT2E's ``X86InductorQuantizer`` does:
    the output is quantized only where an op that shares its input's grid (pooling, a
    ReLU-like module before it) reads it, else left float. It does not change local SQNR.

    ``shared_qparams_ops=True`` models what one *global* torch.ao qconfig also does
    to the ops between quantized modules that torch's ``backend_config`` makes share
    their input's observer (:data:`SHARED_QPARAMS_TYPES`: pools, ReLU, ReLU6,
    Hardtanh, Identity, PixelShuffle): reading a static module's int8 output, they
    run on it and emit the same grid, so an average pool's means are rounded again
    on its input's grid. The default (False) is the plan's own QConfigMapping
    (``set_global(None)`` and one ``set_module_name`` per quantized module), where
    those ops stay float. Ops a global qconfig gives their own observer (add, mul,
    LayerNorm, GELU, Sigmoid, ...) are not modeled either way.
    """

    @_gc_paused
    def __init__(
        self,
        model: nn.Module,
        catalog: ModelCatalog,
        probes: Sequence[Any],
        activation_ranges: Mapping[str, tuple[float, float]] | None = None,
        backend: str = "x86",
        *,
        channel_ranges: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
        clip_percentile: float = DEFAULT_CLIP_PERCENTILE,
        static_outputs: str = "int8",
        shared_qparams_ops: bool = False,
        output_key: str | None = None,
        calibration_rows: Mapping[str, int] | None = None,
        min_rows: int = DEFAULT_MIN_ROWS,
        recipe: ActivationRecipe | None = None,
        runs: Runs | None = None,
        target: Any = None,
        schemes: Sequence[str] | None = None,
    ):
        #: The deployment target simulated (``engine/apply/targets``: its name, recipe and ``runs``).
        self.target_name = str(getattr(target, "name", "")) if target is not None else ""
        if target is not None:
            recipe, runs = target.recipe, target.runs
        if recipe is not None:  # the target's recipe decides the activation grid and what it models
            backend = recipe.backend
            static_outputs = recipe.static_outputs
            shared_qparams_ops = recipe.shared_qparams_ops
        self.recipe = recipe
        #: ``runs(scheme, kind name, weight shape)``: why the target does not run a scheme on a
        #: module (None when it does); None: every scheme the simulation measures is eligible.
        self.runs = runs
        self.per_token_min_ndim = recipe.per_token_min_ndim if recipe is not None else 3
        self.fused_relu = recipe.fused_relu if recipe is not None else False
        self._refusals: dict[str, dict[str, str]] | None = None
        if static_outputs not in STATIC_OUTPUTS:
            raise ValueError(f"static_outputs must be one of {', '.join(STATIC_OUTPUTS)}, not {static_outputs!r}")
        self.static_outputs = static_outputs
        #: The one model output the end-to-end SQNR reads (None: every floating output, combined).
        self.output_key = output_key
        #: Rows each module's input saw in calibration (else counted on the probes), and the fewest
        #: a static range is trusted from (the under-calibrated detector's ``min_rows``).
        self._given_rows = dict(calibration_rows or {})
        self.min_rows = min_rows
        #: Why the recommended plan did not take a module's best scheme (under-calibrated, ...).
        self.scheme_reasons: dict[str, str] = {}
        unknown = [name for name in schemes or () if name not in SCHEMES]
        if unknown:
            raise ValueError(f"unknown scheme {unknown[0]!r}; choose from {', '.join(SCHEMES)}")
        #: The schemes the local pass measures (registry order; default all).
        self.schemes: tuple[str, ...] = tuple(n for n in SCHEMES if schemes is None or n in schemes)
        self.shared_qparams_ops = shared_qparams_ops
        self._grid = _Grids()
        #: The model measured: ``model``, or for a QAT model a copy with its fake quantizers off
        #: (:func:`.reference.float_reference`); ``reference`` says which.
        self.model, self.reference = float_reference(model)
        self.catalog = catalog
        self.probes = list(probes)
        self.backend = backend
        self.quant_min, self.quant_max = activation_range(backend)
        self.clip_percentile = clip_percentile
        self._given_ranges = dict(activation_ranges or {})
        self._given_channels = dict(channel_ranges or {})
        self.targets: dict[str, _Target] = {}
        self._module_map: dict[str, nn.Module] | None = None
        #: Simulated forwards by (fqn, scheme, output qparams): built once, reused by every plan.
        self._forwards: dict[tuple, Callable[..., Any]] = {}
        #: Weighted modules the simulation cannot reproduce, with the reason.
        self.unsupported: dict[str, str] = {}
        #: Modules whose local measurement raised (the reason, one line): their SQNR is undefined.
        self.measure_failures: dict[str, str] = {}
        for fqn, info in catalog.modules.items():
            if info.is_quant_helper:
                continue
            module = self.submodule(fqn)
            kind = kind_of(module)
            if kind is None:
                if info.is_weighted:
                    self.unsupported[fqn] = f"{info.class_name} is not a module kind the simulation knows"
                continue
            if kind.call is _unsupported_call:  # a registered weighted kind the simulation does not reproduce
                self.unsupported[fqn] = (
                    f"{info.class_name} is not simulated: the simulation reproduces Linear, Conv, HF Conv1D and "
                    f"Embedding computations, not the {kind.name.replace('_', ' ')} layer's own forward"
                )
                continue
            weight = getattr(module, "weight", None)
            if not isinstance(weight, torch.Tensor) or isinstance(weight, nn.parameter.UninitializedParameter):
                self.unsupported[fqn] = f"{info.class_name} '{fqn}' has no initialized weight"
                continue
            if not kind.supports(module):
                self.unsupported[fqn] = (
                    f"{info.class_name} has its own forward, which the simulation does not reproduce"
                )
                continue
            self.targets[fqn] = _Target(fqn, module, kind, weight.device)
        #: Fake-quantized weights by (fqn, the scheme's weight facts): schemes quantizing a
        #: weight alike share one copy.
        self._weights: dict[tuple[str, WeightFacts], torch.Tensor] = {}
        #: (fqn, scheme) whose weight recipe raised, with the reason.
        self._failed: dict[tuple[str, str], str] = {}
        self._reference: list[dict[str, torch.Tensor]] | None = None
        #: The reference outputs prepared for :meth:`SqnrAccumulator.add_prepared` (with the list they came from).
        self._prepared: tuple[list, list[dict[str, PreparedReference]]] | None = None
        #: Per-output end-to-end SQNR of the plans measured, by plan key (see :meth:`plan_output_sqnr`).
        self._plan_outputs: dict[tuple, dict[str, Sqnr]] = {}
        #: Whether a range pass measured the clip percentiles and channel extremes (advice only).
        self._advice_ranges = False
        #: The forwards a plan swaps in, by the plan's (fqn, scheme) items (a few recent plans).
        self._swaps: dict[tuple, list[tuple[nn.Module, Callable[..., Any]]]] = {}
        #: The last static input quantized in a plan pass (shared by the modules that read it).
        self._memo = _InputMemo()
        self._pass_seconds: float | None = None
        self._ranges_done = False
        self._local: dict[str, LocalMeasurement] | None = None
        self._local_advice = False
        self._plan_cache: dict[tuple, Sqnr] = {}
        self._last_outputs: dict[str, Sqnr] = {}
        self._all_modules: list[nn.Module] | None = None
        self._helpers: list[nn.Module] = []
        #: Who quantizes the tensor each leaf reads (after the first range pass).
        self.dataflow: Dataflow | None = None
        self._apply_given_ranges()

    def measure_schemes(self, names: Sequence[str]) -> None:
        """Measure only ``names`` (registry order kept) from the next local pass on; the schemes
        the recommended plan chooses among are always kept (it reads their SQNR)."""
        unknown = [name for name in names if name not in SCHEMES]
        if unknown:
            raise ValueError(f"unknown scheme {unknown[0]!r}; choose from {', '.join(SCHEMES)}")
        chosen = set(names) | set(PREFERENCE)
        selected = tuple(n for n in SCHEMES if n in chosen)
        if selected != self.schemes:
            self.schemes = selected
            self._local = None

    def submodule(self, fqn: str) -> nn.Module:
        """``model.get_submodule(fqn)``, from a name -> module map built once (2,000 deep
        lookups cost more than the model's forward)."""
        if self._module_map is None:
            self._module_map = dict(self.model.named_modules(remove_duplicate=False))
        module = self._module_map.get(fqn)
        return module if module is not None else self.model.get_submodule(fqn)

    # Construction helpers.

    @classmethod
    def from_stats(
        cls,
        model: nn.Module,
        catalog: ModelCatalog,
        probes: Sequence[Any],
        stats: Any,
        backend: str = "x86",
        **options: Any,
    ) -> ErrorAnalysis:
        """An analysis whose static ranges come from a calibration's input ("pre") points."""
        ranges, channels = ranges_from_stats(stats)
        options.setdefault("calibration_rows", rows_from_stats(stats))
        return cls(model, catalog, probes, ranges, backend, channel_ranges=channels, **options)

    @property
    def quantizable(self) -> tuple[str, ...]:
        """The modules a plan covers, in tree order."""
        return tuple(self.targets)

    def _apply_given_ranges(self) -> None:
        for fqn, target in self.targets.items():
            given = self._given_ranges.get(fqn)
            if given is not None:
                self._set_range(target, float(given[0]), float(given[1]), "calibration")
            if fqn in self._given_rows:
                target.rows = int(self._given_rows[fqn])
            channels = self._given_channels.get(fqn)
            if channels is not None:
                target.channel_range = (channels[0].to(target.device), channels[1].to(target.device))

    def _set_range(self, target: _Target, lo: float, hi: float, source: str) -> None:
        target.range = (lo, hi)
        target.range_source = source
        qp = activation_qparams(lo, hi, self.backend)
        target.qparams = qp
        target.static = None
        self._forwards.clear()
        self._swaps.clear()
        if qp is not None:
            target.static = StaticInput(qp.scale, qp.zero_point, qp.quant_min, qp.quant_max)

    def range_source(self, fqn: str) -> str:
        """Where the static input range of ``fqn`` came from: "calibration", "probes" or "none"."""
        target = self.targets.get(fqn)
        return target.range_source if target is not None else "none"

    def activation_qparams(self, fqn: str) -> QParams | None:
        """The calibrated input qparams of ``fqn`` (None when its range is unknown or not finite)."""
        target = self.targets.get(fqn)
        return target.qparams if target is not None else None

    # Local SQNR.

    def local_sqnr(
        self,
        progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        *,
        advice: bool = True,
    ) -> dict[str, dict[str, Sqnr]]:
        """{fqn: {scheme: Sqnr}} for every quantizable module (and unsupported weighted ones)."""
        measured = self.local_measurements(progress, should_cancel, advice=advice)
        return {fqn: dict(m.sqnr) for fqn, m in measured.items()}

    @_gc_paused
    def local_measurements(
        self,
        progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        *,
        advice: bool = True,
    ) -> dict[str, LocalMeasurement]:
        """Every module's :class:`LocalMeasurement` (computed once, then kept)."""
        if self._local is not None and (self._local_advice or not advice):
            return self._local
        need_ranges = any(t.range is None for t in self.targets.values()) and not self._ranges_done
        range_pass = need_ranges or (advice and not self._advice_ranges)
        passes = 2 if range_pass else 1
        step = [0]

        def tick(done: int, total: int | None) -> None:
            if progress is not None:
                progress(step[0] + done, passes * len(self.probes))

        if range_pass:
            self._range_pass(tick, should_cancel, advice=advice)
            step[0] = len(self.probes)
        self._local = self._measure_pass(tick, should_cancel, advice)
        self._local_advice = advice
        return self._local

    def _range_pass(
        self, progress: ProgressCallback, should_cancel: Callable[[], bool] | None, *, advice: bool = False
    ) -> None:
        """One float pass: input extremes of every target (for static qparams where no calibrated
        range is given), who reads each target's output, and with ``advice`` the channel extremes
        and clip percentiles the advice variants need. Running it again (with ``advice`` after
        without) changes nothing already measured: ranges and channel ranges are only set where
        missing."""
        sums = {fqn: _RangePass() for fqn in self.targets}
        p = self.clip_percentile

        def make_hook(target: _Target):
            acc = sums[target.fqn]

            def hook(module, args, kwargs):
                x = first_tensor(args) if args else first_tensor(kwargs)
                if x is None or not x.is_floating_point() or x.numel() == 0:
                    return
                x = x.detach()
                acc.calls += 1
                acc.rows += rows_of(tuple(x.shape), target.kind.input_axis(x.dim()) if x.dim() else None)
                # Nothing is read back here (no host sync per batch): the extremes and sums are
                # kept on the device. A batch with NaN or infinite values, or beyond float32
                # (whose range is kept, without qparams), leaves the advice statistics unused.
                lo, hi = torch.aminmax(x)
                if not advice:
                    acc.add(lo, hi, None, None)
                    return
                x = x.to(torch.float32)
                axis = target.kind.input_axis(x.dim())
                moved = x.movedim(axis, 0).reshape(x.shape[axis], -1) if x.dim() > 0 else x.reshape(1, 1)
                c_lo, c_hi = moved.amin(dim=1), moved.amax(dim=1)
                if acc.channel_lo is None:
                    acc.channel_lo, acc.channel_hi = c_lo, c_hi
                elif acc.channel_lo.shape == c_lo.shape:
                    acc.channel_lo = torch.minimum(acc.channel_lo, c_lo)
                    acc.channel_hi = torch.maximum(acc.channel_hi, c_hi)
                else:
                    acc.channels_ok = False
                flat = x.reshape(-1)
                if flat.numel() > PERCENTILE_SAMPLE:
                    flat = flat[:: math.ceil(flat.numel() / PERCENTILE_SAMPLE)]
                n = flat.numel()
                k_hi = min(n, max(1, math.ceil(p * n)))
                k_lo = min(n, max(1, math.floor((1 - p) * n) + 1))
                acc.add(lo, hi, torch.kthvalue(flat, k_lo).values, torch.kthvalue(flat, k_hi).values)

            return hook

        handles = [t.module.register_forward_pre_hook(make_hook(t), with_kwargs=True) for t in self.targets.values()]
        edges = _EdgeTracer(self)
        flow = _DataflowTracer(self)
        handles += edges.attach() + flow.attach()
        outputs: list[dict[str, torch.Tensor]] = []
        try:
            started = time.perf_counter()
            relus = _FunctionalRelu(edges) if self.fused_relu else contextlib.nullcontext()
            with self._float_mode(), relus:
                for i, batch in enumerate(self.probes):
                    _check_cancel(should_cancel)
                    edges.new_batch()
                    flow.new_batch()
                    output = self._run(batch, i)
                    edges.model_output(output)
                    outputs.append(self._outputs(output))
                    progress(i + 1, len(self.probes))
            self._note_pass(time.perf_counter() - started)
        finally:
            for h in handles:
                h.remove()
            edges.new_batch()
        self._reference = outputs
        kept = [(acc, acc.sums) for acc in sums.values() if acc.sums is not None]
        if kept:  # one read back for the whole pass
            device = kept[0][1].device
            values = torch.stack([t.to(device) for _, t in kept]).cpu().tolist()
            for (acc, _), row in zip(kept, values, strict=True):
                acc.read_back(row)
        edges.finish()
        self.dataflow = flow.finish()
        for fqn, target in self.targets.items():
            acc = sums[fqn]
            target.calls = acc.calls
            if fqn not in self._given_rows:
                target.rows = acc.rows
            if acc.calls == 0:
                continue
            if target.range is None:
                lo, hi = (acc.lo, acc.hi) if acc.finite else (math.nan, math.nan)
                self._set_range(target, lo, hi, "probes")
            if not advice or not acc.finite or max(-acc.lo, acc.hi) > F32_MAX:
                continue
            if (
                target.channel_range is None
                and acc.channels_ok
                and acc.channel_lo is not None
                and acc.channel_hi is not None
            ):
                target.channel_range = (acc.channel_lo, acc.channel_hi)
            target.clip_range = (acc.p_lo / acc.calls, acc.p_hi / acc.calls)
        self._ranges_done = True
        self._advice_ranges = self._advice_ranges or advice
        self._swaps.clear()  # who reads each output is known now: output steps may change

    def _measure_pass(
        self, progress: ProgressCallback, should_cancel: Callable[[], bool] | None, advice: bool
    ) -> dict[str, LocalMeasurement]:
        """One float pass; each target's forward, swapped for the pass, runs the module as it is
        and then simulates every scheme on the input it was given."""
        accs: dict[str, SharedReference] = {}
        scratch = Scratch()  # one module runs at a time: its temporaries are the next one's
        saved: list[tuple[nn.Module, Any]] = []
        outputs: list[dict[str, torch.Tensor]] = []
        for key in dict.fromkeys(SCHEMES[name].weight_key for name in self.schemes):
            self._quantize_weights(next(SCHEMES[n] for n in self.schemes if SCHEMES[n].weight_key == key))
        try:
            for fqn, target in self.targets.items():
                variants = _grouped(self._variants(target, advice))
                accs[fqn] = SharedReference([v.name for v in variants])
                module = target.module
                saved.append((module, module.__dict__.get("forward", _MISSING)))
                module.__dict__["forward"] = _measuring_forward(
                    module.forward, _measurer(target, variants, accs[fqn], scratch), self._failure_noter(fqn)
                )
            started = time.perf_counter()
            with self._float_mode():
                for i, batch in enumerate(self.probes):
                    _check_cancel(should_cancel)
                    outputs.append(self._outputs(self._run(batch, i)))
                    progress(i + 1, len(self.probes))
            self._note_pass(time.perf_counter() - started)
        finally:
            _restore_forwards(saved)
        if self._reference is None:
            self._reference = outputs
        result: dict[str, LocalMeasurement] = {}
        for fqn, target in self.targets.items():
            why = self.measure_failures.get(fqn)
            if why is not None:
                undefined = Sqnr.undefined(why)
                result[fqn] = LocalMeasurement(
                    fqn,
                    target.kind.name,
                    {s: undefined for s in SCHEMES},
                    undefined if advice and target.kind.quantizes_input else None,
                    undefined if advice and target.kind.quantizes_input else None,
                    target.range_source,
                    target.calls,
                    target.rows,
                )
                continue
            result[fqn] = self._local_result(target, accs[fqn], advice)
        for fqn, why in self.unsupported.items():
            undefined = Sqnr.undefined(why)
            result[fqn] = LocalMeasurement(fqn, "unsupported", {s: undefined for s in self.schemes})
        return result

    def _failure_noter(self, fqn: str) -> Callable[[Exception], None]:
        def failed(exc: Exception) -> None:
            self.measure_failures[fqn] = f"measuring '{fqn}' failed: {_one_line(exc)}"

        return failed

    def _variants(self, target: _Target, advice: bool) -> list[_Variant]:
        """What the measure pass simulates for ``target``: every scheme it can run, then (with
        ``advice``) the clipped input range and input-weight equalization."""
        kind = target.kind
        ctx = InputContext(target.static, self.quant_min, self.quant_max, self.per_token_min_ndim)
        variants: list[_Variant] = []
        for name in self.schemes:
            scheme = SCHEMES[name]
            if self._ineligible(target, scheme) is not None or (scheme.needs_range and target.static is None):
                continue
            try:
                wq = self.quantized_weight(target.fqn, scheme)
            except Exception as exc:  # noqa: BLE001 - a library recipe's refusal becomes the pair's reason
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                self._failed[(target.fqn, name)] = f"{name}'s weight recipe failed: {type(exc).__name__}: {detail}"
                continue
            variants.append(_Variant(name, scheme.input_key, scheme.input_function(ctx), wq))
        if not advice or not kind.quantizes_input:
            return variants
        wq = self.quantized_weight(target.fqn, True)
        if target.clip_range is not None:
            lo, hi = target.clip_range
            clip = StaticInput.from_range(lo, hi, self.quant_min, self.quant_max)
            variants.append(_Variant(CLIPPED, CLIPPED, clip.apply, wq))
        equalize = self._equalizer(target)
        if equalize is not None:
            variants.append(equalize)
        return variants

    def _equalizer(self, target: _Target) -> _Variant | None:
        """Input-weight equalization simulated with its scales s_c = sqrt(r_w,c / r_x,c).

        The input channel c is multiplied by s_c and the weight's input channel c
        divided by it (``torch.ao``'s ``_equalize``); the scaled input is then
        quantized with the range its channels' scaled extremes give, and the
        scaled weight per channel.
        """
        if target.channel_range is None:
            return None
        kind, module = target.kind, target.module
        weight = module.weight.detach().to(torch.float32)
        groups = int(getattr(module, "groups", 1))
        c_lo, c_hi = (t.to(torch.float32) for t in target.channel_range)
        w_range = _weight_input_ranges(weight, kind, groups)
        if w_range is None or w_range.numel() != c_lo.numel():
            return None
        x_range = c_hi - c_lo
        scale = torch.sqrt(w_range / x_range)
        scale = torch.where(torch.isfinite(scale) & (scale > 0), scale, torch.ones_like(scale))
        eq_weight = _scale_weight_inputs(weight, 1 / scale, kind, groups)
        wq = fake_quantize_weight(eq_weight, True, kind.weight_out_axis).to(module.weight.dtype)
        lo = float(torch.minimum(c_lo * scale, c_hi * scale).min())
        hi = float(torch.maximum(c_lo * scale, c_hi * scale).max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        static = StaticInput.from_range(lo, hi, self.quant_min, self.quant_max)

        def quantize(x: torch.Tensor) -> torch.Tensor:
            axis = kind.input_axis(x.dim())
            shape = [1] * x.dim()
            shape[axis] = -1
            scaled = (x.to(torch.float32) * scale.view(shape)).to(x.dtype)
            return static.apply(scaled)

        return _Variant(EQUALIZED, EQUALIZED, quantize, wq)

    def _local_result(self, target: _Target, accs: SharedReference, advice: bool) -> LocalMeasurement:
        calls = accs.calls
        sqnr: dict[str, Sqnr] = {}
        beyond = None
        if target.range is not None and all(math.isfinite(v) for v in target.range):
            widest = max(-target.range[0], target.range[1])
            beyond = widest if widest > F32_MAX else None
        for name in self.schemes:
            scheme = SCHEMES[name]
            why = self._ineligible(target, scheme) or self._failed.get((target.fqn, name))
            if why is not None:
                sqnr[name] = Sqnr.undefined(why)
            elif beyond is not None and not scheme.facts.weight_only:
                sqnr[name] = Sqnr.undefined(
                    f"the input of '{target.fqn}' reaches {beyond:.3g}, beyond float32's range, in which "
                    "torch computes int8 qparams"
                )
            elif name in accs.names:
                sqnr[name] = accs.result(name)
            elif self._never_called(target):
                sqnr[name] = Sqnr.undefined(self._never_called_words(target))
            elif target.range is not None:
                sqnr[name] = Sqnr.undefined(
                    f"the input range of '{target.fqn}' is not finite (NaN or infinite values were seen)"
                )
            else:
                sqnr[name] = Sqnr.undefined(f"no calibrated input range for '{target.fqn}'")
        clipped = equalized = None
        if advice and target.kind.quantizes_input:
            clipped = accs.result(CLIPPED) if CLIPPED in accs.names else Sqnr.undefined("no clip range was measured")
            equalized = (
                accs.result(EQUALIZED)
                if EQUALIZED in accs.names
                else Sqnr.undefined("no per-channel input ranges (or channels the weight does not match)")
            )
        return LocalMeasurement(
            target.fqn, target.kind.name, sqnr, clipped, equalized, target.range_source, calls, target.rows
        )

    def _never_called_words(self, target: _Target) -> str:
        """Why a module never called has no SQNR (an expert: never routed to)."""
        when = "during calibration" if self._given_ranges or self._given_rows else "on the probe batches"
        if is_expert(target.fqn):
            return f"'{target.fqn}' was never routed to {when} (the router sent it no token)"
        return f"'{target.fqn}' was never called {when}"

    def _never_called(self, target: _Target) -> bool:
        return target.range is None and target.range_source == "none" and self._ranges_done

    # Plans.

    def _quantize_weights(self, scheme: Scheme) -> None:
        """Fake-quantize every eligible target's weight not yet cached under ``scheme``'s weight
        facts; where the scheme has a stacked form (:meth:`Scheme.weights`), same-shaped weights
        together, in stacks of at most :data:`WEIGHT_STACK_ELEMENTS`."""
        groups: dict[tuple, list[str]] = {}
        for fqn, target in self.targets.items():
            w = target.module.weight
            if (fqn, scheme.weight_key) in self._weights or self._ineligible(target, scheme) is not None:
                continue
            groups.setdefault((tuple(w.shape), w.dtype, w.device, target.kind), []).append(fqn)
        for (shape, _dtype, _device, kind), fqns in groups.items():
            per_stack = max(1, WEIGHT_STACK_ELEMENTS // max(1, math.prod(shape)))
            for start in range(0, len(fqns), per_stack):
                chunk = fqns[start : start + per_stack]
                quantized = (
                    scheme.weights(torch.stack([self.targets[f].module.weight.detach() for f in chunk]), kind)
                    if len(chunk) > 1
                    else None
                )
                if quantized is None:
                    continue  # each weight is quantized when its variant is built (a failure is its reason)
                for i, fqn in enumerate(chunk):
                    self._weights[(fqn, scheme.weight_key)] = quantized[i]

    def quantized_weight(self, fqn: str, scheme: Scheme | str | bool) -> torch.Tensor:
        """The fake-quantized weight of ``fqn`` under ``scheme`` (a scheme or its name; True /
        False: the int8 per-channel / per-tensor weight), kept: one copy per distinct weight facts."""
        if isinstance(scheme, bool):
            scheme = SCHEMES["static_per_channel" if scheme else "static_per_tensor"]
        elif isinstance(scheme, str):
            scheme = SCHEMES[scheme]
        key = (fqn, scheme.weight_key)
        cached = self._weights.get(key)
        if cached is None:
            target = self.targets[fqn]
            with torch.no_grad():
                cached = self._weights[key] = scheme.weight(target.module.weight.detach(), target.kind)
        return cached

    def _ineligible(self, target: _Target, scheme: Scheme) -> str | None:
        """Why ``scheme`` cannot take ``target`` (its kind, weight shape and dtype), or None."""
        w = target.module.weight
        return scheme.eligible(target.kind, tuple(w.shape), w.dtype)

    def bits_per_weight(self, fqn: str) -> dict[str, float | None]:
        """{scheme: deployed bits per weight of ``fqn``} for the measured schemes (None where ineligible)."""
        target = self.targets.get(fqn)
        if target is None:
            return dict.fromkeys(self.schemes)
        shape = tuple(target.module.weight.shape)
        result: dict[str, float | None] = {}
        for name in self.schemes:
            scheme = SCHEMES[name]
            result[name] = None if self._ineligible(target, scheme) else scheme.bits_per_weight(shape, target.kind)
        return result

    def plan_size(self, plan: Plan) -> PlanSize:
        """The model's parameter size under ``plan``: each quantized weight at its scheme's deployed
        bits per weight, every other parameter (biases, norms, float modules) at its dtype's."""
        quantized = plan.quantized
        bits = float_bits = 0.0
        weight_bits = weight_numel = 0.0
        planned: dict[int, float] = {}
        for fqn, target in self.targets.items():
            w = target.module.weight
            native = w.numel() * w.element_size() * 8.0
            name = quantized.get(fqn)
            shape = tuple(w.shape)
            if name is not None and self._ineligible(target, SCHEMES[name]) is None:
                planned[id(w)] = SCHEMES[name].bits_per_weight(shape, target.kind) * w.numel()
            weight_bits += planned.get(id(w), native)
            weight_numel += w.numel()
        seen: set[int] = set()
        for p in self.model.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            native = p.numel() * p.element_size() * 8.0
            float_bits += native
            bits += planned.get(id(p), native)
        return PlanSize(bits / 8e6, float_bits / 8e6, weight_bits / weight_numel if weight_numel else None)

    def recommended_scheme(self, fqn: str, min_gain_db: float = DEFAULT_MIN_GAIN_DB) -> str:
        """The cheapest scheme within ``min_gain_db`` of the best, by local SQNR.

        Preference: static_per_channel, static_per_tensor, dynamic (only where torch
        has a dynamic kernel), then weight_only, which keeps activations in float and
        is chosen only where no activation-quantizing scheme reaches
        :data:`WEIGHT_ONLY_BELOW_DB`. ``"float"`` when nothing could be measured.
        """
        local = self.local_measurements()[fqn]
        target = self.targets.get(fqn)
        self.scheme_reasons.pop(fqn, None)
        if target is None:
            return FLOAT
        if self.runs is not None:
            refused = self.refusals().get(fqn, {})
            allowed = [s for s in PREFERENCE if s in local.sqnr and s not in refused]
        else:
            allowed = [
                s
                for s in PREFERENCE
                if s in local.sqnr
                and (SCHEMES[s].facts.activation != "dynamic" or self.backend in target.kind.dynamic_backends)
            ]
        few = self.under_calibrated(fqn)
        if few is not None:
            allowed = [s for s in allowed if not SCHEMES[s].needs_range]
        values = {s: local.sqnr[s].value for s in allowed if local.sqnr[s].defined or local.sqnr[s].infinite}
        quantizing = {s: v for s, v in values.items() if not SCHEMES[s].facts.weight_only}
        if quantizing and max(quantizing.values()) >= WEIGHT_ONLY_BELOW_DB:
            values = quantizing
        chosen = FLOAT
        if values:
            best = max(values.values())
            chosen = next((s for s in allowed if s in values and values[s] >= best - min_gain_db), FLOAT)
        if few is not None:
            instead = "kept float" if chosen == FLOAT else f"{chosen} instead, which needs no calibrated range"
            self.scheme_reasons[fqn] = f"{few}: no static scheme; {instead}"
        return chosen

    def under_calibrated(self, fqn: str) -> str | None:
        """Why ``fqn``'s calibrated input range is not trusted (fewer than ``min_rows`` rows), or None."""
        target = self.targets.get(fqn)
        if target is None or not target.kind.quantizes_input or target.rows is None:
            return None
        if not 0 < target.rows < self.min_rows:
            return None
        rows = f"{target.rows} row{'s' if target.rows != 1 else ''}"
        where = "in calibration" if fqn in self._given_rows else "on the probe batches"
        return f"under-calibrated: its input saw {rows} {where}, fewer than {self.min_rows}"

    def refusals(self) -> dict[str, dict[str, str]]:
        """{fqn: {scheme: why the target does not run it}} for every quantizable module the
        target skips or refuses a scheme on (empty without a target's ``runs``)."""
        if self.runs is None:
            return {}
        cached = self._refusals
        if cached is None:
            cached = {}
            for fqn, target in self.targets.items():
                shape = tuple(target.module.weight.shape)
                refused = {}
                for name in dict.fromkeys((*self.schemes, *PREFERENCE)):
                    why = self.runs(name, target.kind.name, shape)
                    if why is not None:
                        refused[name] = why
                if refused:
                    cached[fqn] = refused
            self._refusals = cached
        return cached

    def recommended_plan(self, min_gain_db: float = DEFAULT_MIN_GAIN_DB) -> Plan:
        """Every quantizable module with its :meth:`recommended_scheme`; a weighted module the
        simulation cannot reproduce (an Embedding subclass with its own forward, such as Whisper's
        positional embedding) is in the plan too, kept float, with the reason in ``scheme_reasons``."""
        modules = {fqn: self.recommended_scheme(fqn, min_gain_db) for fqn in self.targets}
        for fqn, why in self.unsupported.items():
            if fqn in self.catalog.modules and self.catalog.modules[fqn].is_weighted:
                modules[fqn] = FLOAT
                self.scheme_reasons[fqn] = f"kept float: {why}"
        return self.plan(modules)

    def plan(self, modules: Mapping[str, str]) -> Plan:
        """A :class:`Plan` for this model (activation qparams attached)."""
        activation = {fqn: t.qparams for fqn, t in self.targets.items() if t.qparams is not None}
        return Plan(
            dict(modules),
            self.catalog.class_name,
            self.catalog.fingerprint,
            self.backend,
            activation,
            len(self.probes),
            target=self.target_name,
        )

    @_gc_paused
    def plan_sqnr(self, plan: Plan, should_cancel: Callable[[], bool] | None = None) -> Sqnr:
        """End-to-end SQNR of the model's output under ``plan`` against the float model."""
        key = plan.key
        cached = self._plan_cache.get(key)
        if cached is not None:
            return cached
        result = self._simulate(plan.quantized, should_cancel)
        if len(self._plan_cache) > 256:
            self._plan_cache.pop(next(iter(self._plan_cache)))
            self._plan_outputs.pop(next(iter(self._plan_outputs)), None)
        self._plan_cache[key] = result
        self._plan_outputs[key] = self._last_outputs
        return result

    def plan_output_sqnr(self, plan: Plan, should_cancel: Callable[[], bool] | None = None) -> dict[str, Sqnr]:
        """The end-to-end SQNR of each model output on its own under ``plan`` (:meth:`plan_sqnr`
        is their energy-weighted combination); empty when the plan could not be simulated."""
        self.plan_sqnr(plan, should_cancel)
        return dict(self._plan_outputs.get(plan.key, {}))

    @_gc_paused
    def sensitivity(
        self,
        plan: Plan,
        progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> dict[str, Sqnr]:
        """{fqn: end-to-end SQNR with only that module quantized (with its plan scheme)}."""
        quantized = plan.quantized
        total = len(quantized)
        result: dict[str, Sqnr] = {}
        for i, (fqn, scheme) in enumerate(quantized.items()):
            _check_cancel(should_cancel)
            result[fqn] = self._simulate({fqn: scheme}, should_cancel)
            if progress is not None:
                progress(i + 1, total)
        return result

    def cost(self, what: str, plan: Plan | None = None) -> Cost:
        """Estimated cost of "local", "plan" or "sensitivity" (for ``plan``), before running it.

        Seconds come from the duration of the first float pass, once one has run.
        """
        per_pass = self._pass_seconds
        passes: float
        if what == "local":
            passes = 1 + len(self.schemes) + (0 if self._ranges_done else 1)
        elif what == "plan":
            passes = 1.2 + (0 if self._reference is not None else 1)
        elif what == "sensitivity":
            n = len(plan.quantized) if plan is not None else len(self.targets)
            passes = 1.2 * n + (0 if self._reference is not None else 1)
        else:
            raise ValueError(f"unknown measurement {what!r}")
        return Cost(passes, None if per_pass is None else passes * per_pass)

    # Running the model.

    def reference_outputs(self) -> list[dict[str, torch.Tensor]]:
        """The float model's output tensors per probe batch, by name (:func:`.outputs.output_tensors`,
        only ``output_key``'s when one is given): one float pass, then kept."""
        if self._reference is None:
            outputs = []
            started = time.perf_counter()
            with self._float_mode():
                for i, batch in enumerate(self.probes):
                    outputs.append(self._outputs(self._run(batch, i)))
            self._note_pass(time.perf_counter() - started)
            self._reference = outputs
        return self._reference

    def _note_pass(self, seconds: float) -> None:
        """Remember the fastest pass over the probes: the unit of every cost estimate."""
        self._pass_seconds = seconds if self._pass_seconds is None else min(self._pass_seconds, seconds)

    def _output_quantized(self, fqn: str, quantized: Mapping[str, str]) -> StaticInput | None:
        """The qparams a static module's output edge is quantized with under ``quantized``, if any.

        As in a converted int8 model, a static module emits int8: its output is
        quantized once. Where every reader of that output is a module this plan
        quantizes statically, the reader's input quantization is that step (not
        repeated here); otherwise (a float module, another op, the model's output)
        the output is quantized with its own calibrated range (after a ReLU-like
        successor, whose range is the one a fused module would use). None for every
        module when ``static_outputs="float"``.
        """
        target = self.targets[fqn]
        if target.out_static is None or self.static_outputs == "float":
            return None
        readers = target.consumers
        if readers and all(r and r in quantized and SCHEMES[quantized[r]].int8_static_input for r in readers):
            return None
        if self.static_outputs == "shared" and not any(self._pt2e_int8(r, quantized) for r in target.shared_readers):
            # PT2E: an output is quantized only where an op sharing its grid runs on int8
            return None
        return target.out_static

    def _pt2e_int8(self, reader: str, quantized: Mapping[str, str]) -> bool:
        """Whether PT2E's X86InductorQuantizer runs ``reader`` (an op sharing its input's grid, reading
        a statically quantized module's output) on int8, which quantizes that output. Its recipe
        (``_annotate_propagation_quantizable_pattern``): a 2-D pooling whose input comes from a
        quantized op always, whatever reads the pooling's output (a module kept float included);
        a flatten only where a quantizable op (Linear, Conv: quantized or not) reads it; any other
        such op where it carries the output to a module ``quantized`` quantizes statically."""
        module = self.submodule(reader)
        if isinstance(module, PT2E_INT8_POOLING_TYPES):
            return True
        flow = self.dataflow
        found = flow.quantizer_of.get(reader) if flow is not None else None
        if isinstance(module, nn.Flatten):
            return found is not None
        return found is not None and found in quantized and SCHEMES[quantized[found]].needs_range

    def _simulate(self, quantized: Mapping[str, str], should_cancel: Callable[[], bool] | None) -> Sqnr:
        """The end-to-end SQNR under ``quantized`` (every output combined, or ``output_key``'s);
        the SQNR of each output on its own is left in ``_last_outputs``."""
        self._last_outputs = {}
        unknown = [fqn for fqn in quantized if fqn not in self.targets]
        if unknown:
            why = self.unsupported.get(unknown[0], "not a quantizable module of this model")
            return Sqnr.undefined(f"'{unknown[0]}' cannot be simulated: {why}")
        for fqn, scheme in quantized.items():
            target = self.targets[fqn]
            refused = self._ineligible(target, SCHEMES[scheme])
            if refused is not None:
                return Sqnr.undefined(f"'{fqn}' cannot use {scheme}: {refused}")
            if SCHEMES[scheme].needs_range and target.static is None and target.calls:
                return Sqnr.undefined(f"'{fqn}' has no finite calibrated input range, so {scheme} has no qparams")
        if not self._ranges_done and any(SCHEMES[s].needs_range for s in quantized.values()):
            self._range_pass(lambda done, total: None, should_cancel)
        reference = self.reference_outputs()
        if not self.probes:
            return Sqnr.undefined("there are no probe batches")
        if not any(reference):
            return Sqnr.undefined("the model's output holds no floating-point tensor")
        prepared = self._prepared_reference(reference)
        acc = OutputsSqnr()
        memo = self._memo
        try:
            with self._float_mode(), self._swapped(quantized):
                for i, batch in enumerate(self.probes):
                    _check_cancel(should_cancel)
                    self._grid.tensors.clear()
                    memo.clear()
                    try:
                        out = output_tensors(self._run(batch, i))
                    except SimulationError as exc:  # this plan's simulation, not the model: the report stands
                        return Sqnr.undefined(str(exc))
                    acc.add(prepared[i], out)
        finally:
            memo.clear()
            self._grid.tensors.clear()
        self._last_outputs = acc.results()
        return acc.result()

    def _outputs(self, output: Any) -> dict[str, torch.Tensor]:
        """The model output's floating-point tensors the end-to-end SQNR reads, by name."""
        return select(output_tensors(output), self.output_key)

    def _prepared_reference(self, reference: list[dict[str, torch.Tensor]]) -> list[dict[str, PreparedReference]]:
        """The reference outputs as :class:`PreparedReference` (built once per reference list)."""
        if self._prepared is None or self._prepared[0] is not reference:
            self._prepared = (reference, [prepared_outputs(r) for r in reference])
        return self._prepared[1]

    @contextmanager
    def _swapped(self, quantized: Mapping[str, str]) -> Iterator[None]:
        """Replace each quantized module's forward (an instance attribute) for the duration."""
        saved: list[tuple[nn.Module, Any]] = []
        try:
            plan_key = tuple(quantized.items())
            swaps = self._swaps.get(plan_key)
            if swaps is None:
                swaps = self._plan_forwards(quantized)
                if len(self._swaps) >= 8:
                    self._swaps.pop(next(iter(self._swaps)))
                self._swaps[plan_key] = swaps
            for module, forward in swaps:
                saved.append((module, module.__dict__.get("forward", _MISSING)))
                module.__dict__["forward"] = forward
            if self.shared_qparams_ops:
                for fqn, info in self.catalog.modules.items():
                    if not info.is_leaf or fqn in self.targets:
                        continue
                    module = self.submodule(fqn)
                    if isinstance(module, SHARED_QPARAMS_TYPES) and "forward" not in module.__dict__:
                        saved.append((module, _MISSING))
                        module.__dict__["forward"] = _shared_qparams_forward(module.forward, self._grid)
            yield
        finally:
            for module, previous in reversed(saved):
                if previous is _MISSING:
                    module.__dict__.pop("forward", None)
                else:
                    module.__dict__["forward"] = previous

    def _plan_forwards(self, quantized: Mapping[str, str]) -> list[tuple[nn.Module, Callable[..., Any]]]:
        """(module, simulated forward) for every module ``quantized`` simulates."""
        swaps = []
        grid = self._grid if self.shared_qparams_ops else None
        for fqn, scheme_name in quantized.items():
            target = self.targets[fqn]
            scheme = SCHEMES[scheme_name]
            if scheme.needs_range and target.static is None:
                continue  # never called on the probes: nothing to simulate
            out = self._output_quantized(fqn, quantized) if scheme.int8_static_input else None
            key = (fqn, scheme_name, out, grid is not None)
            forward = self._forwards.get(key)
            if forward is None:
                ctx = InputContext(target.static, self.quant_min, self.quant_max, self.per_token_min_ndim)
                wq = self.quantized_weight(fqn, scheme)
                forward = self._forwards[key] = _simulated_forward(
                    target.module, target.kind, scheme, ctx, wq, out, grid, self._memo
                )
            swaps.append((target.module, forward))
        return swaps

    @contextmanager
    def _float_mode(self) -> Iterator[None]:
        """Eval mode, no grad, and no fused attention fast path (it skips the Linear modules
        inside ``nn.TransformerEncoderLayer``, so they could be neither seen nor simulated).

        The public measurements run with the garbage collector paused (:func:`_gc_paused`).
        """
        restore = self._freeze()
        mha = getattr(torch.backends, "mha", None)
        fastpath = mha.get_fastpath_enabled() if mha is not None else None
        try:
            if mha is not None:
                mha.set_fastpath_enabled(False)
            if self._all_modules is None or any(m.training for m in self._all_modules):
                self.model.eval()
            with torch.no_grad():
                yield
        finally:
            if mha is not None:
                mha.set_fastpath_enabled(fastpath)
            restore()

    def _freeze(self) -> Callable[[], None]:
        """Remember training flags and ``torch.ao`` observer state (module list walked once):
        :func:`~tui_quantreport.engine.session._freeze_model_state` with the kept lists."""
        if self._all_modules is None:
            self._all_modules = list(self.model.modules())
            self._helpers = [m for m in self._all_modules if is_quant_helper(m)]
        return _freeze_model_state(self.model, self._all_modules, self._helpers)

    def _run(self, batch: Any, index: int) -> Any:
        try:
            # A fresh copy for every forward: a model that changes its input in place must not hand
            # the next run (the float reference, another scheme) an input it already changed.
            return call_batch(self.model, copy_batch(batch))
        except (MeasurementCancelled, UserError):
            raise
        except Exception as exc:
            raise SimulationError(f"probe batch {index + 1} failed under simulation: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (the type alone when there is no message)."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


_MISSING = object()


def _simulated_forward(
    module: nn.Module,
    kind: ModuleKind,
    scheme,
    ctx: InputContext,
    wq: torch.Tensor,
    out: StaticInput | None = None,
    grid: _Grids | None = None,
    memo: _InputMemo | None = None,
):
    """The module's forward under ``scheme``: its input and weight fake-quantized (and, for a
    static module whose output edge is not quantized downstream, its output, noted in
    ``grid`` when given).

    This runs once per module and batch, so it is kept to one Python frame and one torch op
    per quantization step on the common path (a float32 tensor): torch's own fake-quantize
    kernel below :data:`FAST_FAKE_QUANT_MIN` elements, the vectorised ops of
    :func:`fake_quantize_float32` from there on (in place on the fresh output of a Linear or
    convolution). A static input equal to the one the previous module quantized with the same
    qparams (``memo``: the same tensor, not modified since) is not quantized again.
    """
    run = kind.bind(module)
    fq = fake_quantize_float32
    fq_small = torch.fake_quantize_per_tensor_affine
    small = FAST_FAKE_QUANT_MIN
    f32 = torch.float32
    tensor = torch.Tensor
    quantize_input: Callable[[torch.Tensor], torch.Tensor] | None = None
    if scheme.int8_static_input and ctx.static is not None:
        s_in, z_in, lo_in, hi_in = ctx.static.scale, ctx.static.zero_point, ctx.static.quant_min, ctx.static.quant_max
        inv_in = ctx.static.inv_scale
        key = (s_in, z_in, lo_in, hi_in)

        def quantize_static(x):
            if grid is not None and grid.of(x) is not None:
                return x  # already on the grid its producer shares with this module (PT2E)
            if x.dtype is f32:
                if memo is not None and memo.source is x and memo.version == x._version and memo.key == key:
                    return memo.result
                xq = (
                    fq_small(x, s_in, z_in, lo_in, hi_in)
                    if x.numel() < small
                    else fq(x, s_in, z_in, lo_in, hi_in, inv_in)
                )
                if memo is not None:
                    memo.keep(x, key, xq)
                return xq
            return scheme.input(x, ctx) if x.is_floating_point() else x

        quantize_input = quantize_static
    elif not scheme.facts.weight_only:  # weight-only keeps its input as it is

        def quantize_other(x):
            return scheme.input(x, ctx) if x.is_floating_point() else x

        quantize_input = quantize_other

    if out is None:

        def forward(input, *args, **kwargs):
            if quantize_input is not None and isinstance(input, tensor):
                input = quantize_input(input)
            return run(input, wq)

        return forward

    s_out, z_out, lo_out, hi_out, inv_out = out.scale, out.zero_point, out.quant_min, out.quant_max, out.inv_scale
    # The output of F.linear / a convolution is a fresh tensor nobody else holds: quantized in place.
    fresh = kind.call is _linear_call or kind.call is _conv_call
    fq_out = fake_quantize_float32_ if fresh else fq

    def forward_quantized_output(input, *args, **kwargs):
        if quantize_input is not None and isinstance(input, tensor):
            input = quantize_input(input)
        y = run(input, wq)
        if y.dtype is f32:
            y = (
                fq_small(y, s_out, z_out, lo_out, hi_out)
                if y.numel() < small
                else fq_out(y, s_out, z_out, lo_out, hi_out, inv_out)
            )
        else:
            y = out.apply(y)
        if grid is not None:
            grid.note(y, out)
        return y

    return forward_quantized_output


class _InputMemo:
    """The last static input a simulated module quantized in this batch, with its qparams and
    the result: the next module that reads the very same tensor (the same object, at the same
    version: not modified in place since) with the same qparams takes the result instead of
    quantizing it again (q/k/v projections, the branches of a block that read one normalized
    tensor). The same function of the same values: the same result. Cleared between batches."""

    __slots__ = ("key", "result", "source", "version")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.source: torch.Tensor | None = None
        self.version = -1
        self.key: tuple | None = None
        self.result: torch.Tensor | None = None

    def keep(self, source: torch.Tensor, key: tuple, result: torch.Tensor) -> None:
        self.source, self.version, self.key, self.result = source, source._version, key, result


#: torch.ao's ops whose output shares its input's observer (``backend_config``,
#: ``ObservationType.OUTPUT_SHARE_OBSERVER_WITH_INPUT``, the same for x86, fbgemm, qnnpack
#: and onednn), as modules: converted, they run on the int8 tensor and emit it on the same grid.
SHARED_QPARAMS_TYPES: tuple[type[nn.Module], ...] = (
    nn.Flatten,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.Hardtanh,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.ReLU,
    nn.ReLU6,
)

#: The pooling modules X86InductorQuantizer runs on int8 whenever their input comes from a
#: quantized op (``int8_in_int8_out_ops``: ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d``).
PT2E_INT8_POOLING_TYPES: tuple[type[nn.Module], ...] = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d)


class _Grids:
    """The int8 grid of each tensor a simulated module emitted in this batch (by identity)."""

    def __init__(self) -> None:
        self.tensors: dict[int, tuple[weakref.ref, StaticInput]] = {}

    def note(self, tensor: torch.Tensor, grid: StaticInput) -> None:
        self.tensors[id(tensor)] = (weakref.ref(tensor), grid)

    def of(self, tensor: Any) -> StaticInput | None:
        entry = self.tensors.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None
        return entry[1] if entry is not None and entry[0]() is tensor else None


def _shared_qparams_forward(forward: Callable[..., Any], grid: _Grids):
    """``forward``, its output rounded on its input's int8 grid when the input has one."""

    def shared(*args, **kwargs):
        y = forward(*args, **kwargs)
        qp = grid.of(first_tensor(args) if args else first_tensor(kwargs))
        if qp is not None and isinstance(y, torch.Tensor) and y.is_floating_point():
            y = qp.apply(y)
            grid.note(y, qp)
        return y

    return shared


@dataclass(frozen=True)
class Dataflow:
    """Which leaf modules read the same tensor, and who produced each leaf's input.

    ``quantizer_of[fqn]`` is the quantizable module that quantizes the tensor
    ``fqn`` reads (itself when quantizable; else a quantizable module reading the
    same tensor; else, through a pass-through module, one reading its output),
    or None when no quantizable module reads it.
    """

    quantizer_of: Mapping[str, str | None]


class _DataflowTracer:
    """Tensor identity between leaf modules during one float pass."""

    def __init__(self, analysis: ErrorAnalysis):
        self.analysis = analysis
        self.live: dict[int, tuple[weakref.ref, str]] = {}
        #: id(tensor) -> (weak ref, the leaves that read it): ids are reused once a tensor dies.
        self.readers_now: dict[int, tuple[weakref.ref, list[str]]] = {}
        self.siblings: dict[str, set[str]] = {}
        self.source: dict[str, str] = {}
        self.seen: set[str] = set()

    def new_batch(self) -> None:
        for _, group in self.readers_now.values():
            self._group(group)
        self.readers_now.clear()
        self.live.clear()

    def _group(self, readers: list[str]) -> None:
        for fqn in readers:
            self.siblings.setdefault(fqn, set()).update(readers)

    def attach(self) -> list:
        handles = []
        for fqn, info in self.analysis.catalog.modules.items():
            if info.is_quant_helper or not (info.is_leaf or fqn in self.analysis.targets):
                continue
            module = self.analysis.submodule(fqn)
            handles.append(module.register_forward_pre_hook(self._read(fqn), with_kwargs=True))
            handles.append(module.register_forward_hook(self._wrote(fqn)))
        return handles

    def _read(self, fqn: str):
        def hook(module, args, kwargs):
            x = first_tensor(args) if args else first_tensor(kwargs)
            self.seen.add(fqn)
            if x is None:
                return
            group = self.readers_now.get(id(x))
            if group is None or group[0]() is not x:
                if group is not None:
                    self._group(group[1])
                group = self.readers_now[id(x)] = (weakref.ref(x), [])
            group[1].append(fqn)
            entry = self.live.get(id(x))
            if entry is not None and entry[0]() is x:
                self.source.setdefault(fqn, entry[1])
            return

        return hook

    def _wrote(self, fqn: str):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor):
                self.live[id(output)] = (weakref.ref(output), fqn)

        return hook

    def finish(self) -> Dataflow:
        self.new_batch()
        analysis = self.analysis
        order = {fqn: i for i, fqn in enumerate(analysis.catalog.modules)}
        readers_of: dict[str, list[str]] = {}
        for reader, producer in self.source.items():
            readers_of.setdefault(producer, []).append(reader)
        memo: dict[str, str | None] = {}

        def quantizer(fqn: str, depth: int = 0) -> str | None:
            if fqn in memo:
                return memo[fqn]
            memo[fqn] = None  # cycles (a module called twice) end here
            found = None
            if fqn in analysis.targets:
                found = fqn
            else:
                same = sorted(
                    (s for s in self.siblings.get(fqn, ()) if s in analysis.targets),
                    key=lambda name: order.get(name, len(order)),
                )
                if same:
                    found = same[0]
                elif depth < 64 and _passes_through(analysis.submodule(fqn), analysis.catalog.modules[fqn].monotone):
                    for reader in sorted(readers_of.get(fqn, ()), key=lambda name: order.get(name, len(order))):
                        found = quantizer(reader, depth + 1)
                        if found is not None:
                            break
            memo[fqn] = found
            return found

        return Dataflow(
            {fqn: quantizer(fqn) for fqn in sorted(self.seen, key=lambda name: order.get(name, len(order)))}
        )


def _passes_through(module: nn.Module, monotone: bool) -> bool:
    # ``passes_through``: a graph's leaf standing for such a module (engine/graph_eager.py).
    return monotone or getattr(module, "passes_through", False) is True or passes_through_class(type(module))


class _EdgeTracer:
    """Who reads each quantizable module's output, during one float pass (by tensor identity).

    A ReLU-like (monotone, elementwise) module passes its input's producer on to
    its output, and its output range becomes the producer's output range (what
    a fused Linear/Conv + ReLU quantizes). Readers seen through anything else
    count as "" (not a quantizable module).
    """

    def __init__(self, analysis: ErrorAnalysis):
        self.analysis = analysis
        #: id(tensor) -> (weak ref, producing target, whether it is the producer's raw output)
        self.live: dict[int, tuple[weakref.ref, str, bool]] = {}
        self._pending: list = []
        #: Output extremes, kept on the device (float64) until :meth:`finish` reads them back.
        self.out_lo: dict[str, torch.Tensor] = {}
        self.out_hi: dict[str, torch.Tensor] = {}
        self.chain_lo: dict[str, torch.Tensor] = {}
        self.chain_hi: dict[str, torch.Tensor] = {}
        self.raw_readers: dict[str, set[str]] = {}
        self.consumers: dict[str, set[str]] = {fqn: set() for fqn in analysis.targets}
        self.shared_readers: dict[str, set[str]] = {}

    def new_batch(self) -> None:
        self.live.clear()
        for h in self._pending:
            h.remove()
        self._pending.clear()

    def producer(self, tensor: Any) -> tuple[str, bool] | None:
        """(producing target, raw output?) of a tensor seen in this batch, or None."""
        if not isinstance(tensor, torch.Tensor):
            return None
        entry = self.live.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return entry[1], entry[2]

    def attach(self) -> list:
        handles = []
        targets = self.analysis.targets
        for fqn, info in self.analysis.catalog.modules.items():
            if info.is_quant_helper or not (info.is_leaf or fqn in targets):
                continue
            module = self.analysis.submodule(fqn)
            handles.append(module.register_forward_pre_hook(self._reader(fqn, info.monotone), with_kwargs=True))
            if fqn in targets:
                handles.append(module.register_forward_hook(self._produced(fqn)))
        return handles

    def _reader(self, fqn: str, monotone: bool):
        targets = self.analysis.targets

        def hook(module, args, kwargs):
            x = first_tensor(args) if args else first_tensor(kwargs)
            source = self.producer(x)
            if source is None:
                return
            key, raw = source
            if raw:
                self.raw_readers.setdefault(key, set()).add(fqn)
            if fqn in targets:
                self.consumers[key].add(fqn)
            elif isinstance(module, SHARED_QPARAMS_TYPES) and not monotone:
                self.consumers[key].add(SHARED_READER)
                if raw:  # PT2E does not carry a fused Linear/Conv + ReLU output through pooling
                    self.shared_readers.setdefault(key, set()).add(fqn)
            elif monotone:
                # The output of this module carries the producer on: tracked by a one-off forward hook.
                self._pending.append(module.register_forward_hook(self._chain(key, raw)))
            else:
                self.consumers[key].add("")
            return

        return hook

    def _chain(self, key: str, direct: bool):
        def hook(module, args, output):
            for h in self._pending:
                h.remove()
            self._pending.clear()
            if isinstance(output, torch.Tensor) and output.is_floating_point() and output.numel():
                self.live[id(output)] = (weakref.ref(output), key, False)
                if direct:
                    _fold_extremes(self.chain_lo, self.chain_hi, key, output.detach())

        return hook

    def functional_relu(self, x: Any, output: Any) -> None:
        """``output = relu(x)`` by a function (``F.relu``, ``torch.relu``, ``Tensor.relu``): as a
        ReLU module, it carries ``x``'s producer on, and when ``x`` is the producer's raw output,
        its range is the one the fused Linear/Conv + ReLU pattern quantizes."""
        source = self.producer(x)
        if source is None:
            return
        key, raw = source
        if raw:
            self.raw_readers.setdefault(key, set()).add(FUNCTIONAL_RELU)
        if isinstance(output, torch.Tensor) and output.is_floating_point() and output.numel():
            self.live[id(output)] = (weakref.ref(output), key, False)
            if raw:
                _fold_extremes(self.chain_lo, self.chain_hi, key, output.detach())

    def _produced(self, fqn: str):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor) and output.is_floating_point() and output.numel():
                self.live[id(output)] = (weakref.ref(output), fqn, True)
                _fold_extremes(self.out_lo, self.out_hi, fqn, output.detach())

        return hook

    def model_output(self, output: Any) -> None:
        for tensor in output_tensors(output).values():
            source = self.producer(tensor)
            if source is not None:
                self.consumers[source[0]].add("")

    def finish(self) -> None:
        analysis = self.analysis
        tables = (self.out_lo, self.out_hi, self.chain_lo, self.chain_hi)
        floats: list[dict[str, float]] = [{}, {}, {}, {}]
        kept = [(i, key, t) for i, table in enumerate(tables) for key, t in table.items()]
        if kept:  # one read back for the whole pass
            device = kept[0][2].device
            values = torch.stack([t.to(device) for _, _, t in kept]).cpu().tolist()
            for (i, key, _), value in zip(kept, values, strict=True):
                floats[i][key] = value
        out_lo, out_hi, chain_lo, chain_hi = floats
        for fqn, target in analysis.targets.items():
            target.consumers = self.consumers.get(fqn, set())
            target.shared_readers = self.shared_readers.get(fqn, set())
            lo, hi = out_lo.get(fqn), out_hi.get(fqn)
            readers = self.raw_readers.get(fqn, set())
            if fqn in chain_lo and len(readers) == 1 and next(iter(readers)) not in analysis.targets:
                lo, hi = chain_lo[fqn], chain_hi[fqn]
            if lo is None or hi is None:
                continue
            qp = activation_qparams(lo, hi, analysis.backend)
            if qp is not None:
                target.out_static = StaticInput(qp.scale, qp.zero_point, qp.quant_min, qp.quant_max)


#: The reader name a functional ReLU gets in :class:`_EdgeTracer` (not a module name).
FUNCTIONAL_RELU = "<F.relu>"


class _FunctionalRelu(TorchFunctionMode):
    """During a range pass, tells the edge tracer about every ReLU called as a function (which no
    module hook sees): torch.ao's and PT2E's fusion patterns quantize a Linear/Conv output after it."""

    def __init__(self, edges: _EdgeTracer):
        super().__init__()
        self.edges = edges

    def __torch_function__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        if func in _RELU_FUNCTIONS:
            x = args[0] if args else (kwargs or {}).get("input")
            self.edges.functional_relu(x, output)
        return output


_RELU_FUNCTIONS = frozenset({torch.nn.functional.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_})


def _fold_extremes(lows: dict[str, torch.Tensor], highs: dict[str, torch.Tensor], key: str, t: torch.Tensor) -> None:
    """Fold ``t``'s extremes into ``lows[key]``/``highs[key]`` on the device (float64), branch-free:
    the same values as Python's ``min``/``max`` of the floats (a NaN never replaces a kept one)."""
    lo, hi = t.amin().to(torch.float64), t.amax().to(torch.float64)
    kept_lo, kept_hi = lows.get(key), highs.get(key)
    if kept_lo is None or kept_hi is None:
        # min(inf, lo) is lo unless lo is NaN
        kept_lo = torch.full((), math.inf, dtype=torch.float64, device=lo.device)
        kept_hi = torch.full((), -math.inf, dtype=torch.float64, device=hi.device)
    lows[key] = torch.where(lo < kept_lo, lo, kept_lo)
    highs[key] = torch.where(hi > kept_hi, hi, kept_hi)


@dataclass(frozen=True)
class _Variant:
    """One simulated form of a module in the measure pass: how its input is quantized
    (``input_key`` names the quantized input, shared by variants that quantize it alike)
    and the fake-quantized weight it runs with."""

    name: str
    input_key: str
    #: None: the float input as it is.
    quantize: Callable[[torch.Tensor], torch.Tensor] | None
    weight: torch.Tensor


def _grouped(variants: Sequence[_Variant]) -> list[_Variant]:
    """``variants`` reordered so that those sharing a weight tensor are adjacent (first-seen order)."""
    groups: dict[int, list[_Variant]] = {}
    for v in variants:
        groups.setdefault(id(v.weight), []).append(v)
    return [v for group in groups.values() for v in group]


def _measurer(
    target: _Target, variants: Sequence[_Variant], acc: SharedReference, scratch: Scratch | None = None
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """``measure(x, y)``: every variant's output from the float input ``x``, compared with the float output ``y``.

    ``variants`` must be :func:`_grouped` (``acc`` names them in that order). A float32
    ``nn.Linear`` runs the variants that share a weight as one matmul over their
    quantized inputs laid end to end (static per-channel, dynamic, weight-only and the
    clipped range all use the per-channel weight: two or three matmuls in all, not
    four to six); other modules run each variant in turn. The differences from ``y``
    are taken in place and normed per variant in one op per group; nothing is read
    back to the host. ``scratch`` keeps the large temporaries (the stacks of inputs and
    outputs, the float64 copies the norms are taken of) from one call to the next.
    """
    kind, module = target.kind, target.module
    scratch = scratch if scratch is not None else Scratch()
    run = kind.bind(module)
    names = tuple(v.name for v in variants)
    linear = (
        kind.call is _linear_call
        and isinstance(module, nn.Linear)
        and module.weight.dtype == torch.float32
        and all(v.weight.dtype == torch.float32 for v in variants)
    )
    groups: list[tuple[torch.Tensor, list[str]]] = []
    for v in variants:
        if groups and groups[-1][0] is v.weight:
            groups[-1][1].append(v.input_key)
        else:
            groups.append((v.weight, [v.input_key]))
    bias = module.bias.detach() if linear and module.bias is not None else None
    groups_t = [(weight.t(), keys) for weight, keys in groups] if linear else []
    conv = (
        kind.call is _conv_call and isinstance(module, nn.modules.conv._ConvNd) and module.weight.dtype == torch.float32
    )

    quantizers: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {}
    for v in variants:
        quantizers.setdefault(v.input_key, v.quantize)
    steps = tuple(quantizers.items())

    def inputs(x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not x.is_floating_point():
            return dict.fromkeys(quantizers, x)
        return {key: x if quantize is None else quantize(x) for key, quantize in steps}

    def measure(x: torch.Tensor, y: torch.Tensor) -> None:
        if not names:
            acc.add_norms(y.detach(), None, None, scratch)
            return
        y = y.detach()
        if y.dtype != torch.float32:
            y = acc.add_reference(y)
            quantized = inputs(x)
            for v in variants:
                acc.add(v.name, y, run(quantized[v.input_key], v.weight))
            return
        quantized = inputs(x)
        if linear and x.dtype == torch.float32 and x.dim() >= 1:
            k, n_out = x.shape[-1], y.shape[-1]
            m = y.numel() // n_out if n_out else 0
            # Small stacks (most modules of a big model) skip the kept buffers' bookkeeping.
            kept = scratch if len(names) * m * max(n_out, k) >= Scratch.MIN_ELEMENTS else None
            out = (
                kept.buffer("out", (len(names), m, n_out), torch.float32, y.device)
                if kept is not None
                else torch.empty((len(names), m, n_out), dtype=torch.float32, device=y.device)
            )
            row = 0
            for weight_t, keys in groups_t:
                g = len(keys)
                parts = [quantized[key].reshape(-1, k) for key in keys]
                if g == 1:
                    rows = parts[0]
                elif kept is not None:
                    rows = torch.cat(parts, out=kept.buffer("rows", (g * m, k), torch.float32, y.device))
                else:
                    rows = torch.cat(parts)
                # F.linear's own kernel (addmm with the transposed weight), written into the stack.
                if bias is not None:
                    torch.addmm(bias, rows, weight_t, out=out[row : row + g].view(-1, n_out))
                else:
                    torch.mm(rows, weight_t, out=out[row : row + g].view(-1, n_out))
                row += g
            out.sub_(y.reshape(1, m, n_out))
            acc.add_norms(y, out.view(len(names), -1), None, kept)
            return
        if conv and x.dim() == module.weight.dim() and x.dtype == torch.float32:
            # Samples are independent in a convolution: the variants sharing a weight run as one
            # call over their quantized inputs laid end to end on the batch axis.
            norms = []
            for weight, keys in groups:
                parts = [quantized[key] for key in keys]
                if len(parts) == 1:
                    batch = parts[0]
                elif all(p.is_contiguous() for p in parts):  # laid end to end in a kept buffer
                    shape = (sum(p.shape[0] for p in parts), *parts[0].shape[1:])
                    batch = torch.cat(parts, out=scratch.buffer("rows", shape, torch.float32, y.device))
                else:
                    batch = torch.cat(parts)
                # reshape, not view: a channels_last input gives a channels_last output (strided).
                out = run(batch, weight).reshape(len(keys), *y.shape)
                out.sub_(y)
                norms.append(scratch.vector_norm64(out.reshape(len(keys), -1), 1))
            acc.add_norms(y, None, torch.cat(norms) if len(norms) > 1 else norms[0], scratch)
            return
        out = torch.stack([run(quantized[v.input_key], v.weight) for v in variants])
        out.sub_(y)
        acc.add_norms(y, out.reshape(len(names), -1), None, scratch)

    return measure


def _measuring_forward(
    forward: Callable[..., Any],
    measure: Callable[[torch.Tensor, torch.Tensor], None],
    failed: Callable[[Exception], None] | None = None,
):
    """``forward`` as it is, then ``measure(input, output)`` on its first tensor input and tensor output.

    A measurement that raises is handed to ``failed`` (when given) and not tried again on later
    calls: the module's own output is returned all the same, so the float pass (and every other
    module's measurement) goes on.
    """
    broken = [False]

    def measuring(*args, **kwargs):
        y = forward(*args, **kwargs)
        if broken[0]:
            return y
        x = first_tensor(args) if args else first_tensor(kwargs)
        if x is not None and isinstance(y, torch.Tensor):
            if failed is None:
                measure(x, y)
                return y
            try:
                measure(x, y)
            except (MeasurementCancelled, UserError):
                raise
            except Exception as exc:  # one module's simulation: the rest of the report stands
                broken[0] = True
                failed(exc)
        return y

    return measuring


def _restore_forwards(saved: list[tuple[nn.Module, Any]]) -> None:
    for module, previous in reversed(saved):
        if previous is _MISSING:
            module.__dict__.pop("forward", None)
        else:
            module.__dict__["forward"] = previous


def _check_cancel(should_cancel: Callable[[], bool] | None) -> None:
    if should_cancel is not None and should_cancel():
        raise MeasurementCancelled()


def _weight_input_ranges(weight: torch.Tensor, kind: ModuleKind, groups: int) -> torch.Tensor | None:
    """Range (max - min) of the weight per input channel of the module (all groups laid end to end)."""
    if weight.dim() < 2:
        return None
    if kind.weight_in_axis == 0:
        w = weight.reshape(weight.shape[0], -1)
        return w.amax(dim=1) - w.amin(dim=1)
    out = weight.shape[0]
    if out % groups:
        return None
    w = weight.reshape(groups, out // groups, weight.shape[1], -1)
    return (w.amax(dim=(1, 3)) - w.amin(dim=(1, 3))).reshape(-1)


def _scale_weight_inputs(weight: torch.Tensor, factor: torch.Tensor, kind: ModuleKind, groups: int) -> torch.Tensor:
    """The weight with its input channel c multiplied by ``factor[c]``."""
    if kind.weight_in_axis == 0:
        return weight * factor.view(-1, *([1] * (weight.dim() - 1)))
    out, cin = weight.shape[0], weight.shape[1]
    w = weight.reshape(groups, out // groups, cin, *weight.shape[2:])
    f = factor.reshape(groups, 1, cin, *([1] * (weight.dim() - 2)))
    return (w * f).reshape(weight.shape)


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
