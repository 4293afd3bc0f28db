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
- **one-at-a-time sensitivity** (:meth:`ErrorAnalysis.sensitivity`): the end-to-end SQNR with
  only module i quantized, for every quantized module of a plan: N passes over the probes, with
  progress, cancel, and :meth:`ErrorAnalysis.cost` to say what it will take before starting.

Static input qparams come from the calibrated min/max at the module's input (``activation_ranges``,
from the calibration stats when present), else from the probes (:meth:`ErrorAnalysis.range_source`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.core.activation_recipe import ActivationRecipe
from tui_quantreport.engine.defaults import MIN_ROWS
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.model_lock import model_lock
from tui_quantreport.engine.model_state import freeze_model_state
from tui_quantreport.engine.module_info import is_expert
from tui_quantreport.engine.modules import ModelCatalog, is_quant_helper
from tui_quantreport.engine.plan import Plan
from tui_quantreport.engine.quantsim.analysis_base import (
    _MISSING,
    CLIPPED,
    DEFAULT_CLIP_PERCENTILE,
    DEFAULT_MIN_GAIN_DB,
    DEFAULT_PROBE_BATCHES,
    EQUALIZED,
    STATIC_OUTPUTS,
    Cost,
    LocalMeasurement,
    MeasurementCancelled,
    PlanSize,
    ProgressCallback,
    Runs,
    SimulationError,
    _check_cancel,
    _measurement,
    _one_line,
    _restore_forwards,
    _Target,
    call_batch,
    find_targets,
    ranges_from_stats,
    rows_from_stats,
)
from tui_quantreport.engine.quantsim.batchnorm_fold import fold_batchnorm
from tui_quantreport.engine.quantsim.fastpath import attention_fastpath_off
from tui_quantreport.engine.quantsim.forward import (
    PT2E_INT8_POOLING_TYPES,
    SHARED_QPARAMS_TYPES,
    _Grids,
    _InputMemo,
    _simulated_forward,
)
from tui_quantreport.engine.quantsim.local_pass import measure_pass
from tui_quantreport.engine.quantsim.measurer import _measurer
from tui_quantreport.engine.quantsim.merged_probes import Segments, merge_check
from tui_quantreport.engine.quantsim.outputs import output_tensors, select
from tui_quantreport.engine.quantsim.outputs import prepared as prepared_outputs
from tui_quantreport.engine.quantsim.plan_pass import simulate, swapped
from tui_quantreport.engine.quantsim.probes import MergedProbes, copy_batch
from tui_quantreport.engine.quantsim.qparams import (
    QParams,
    activation_qparams,
    activation_range,
)
from tui_quantreport.engine.quantsim.range_pass import range_pass
from tui_quantreport.engine.quantsim.recommend import recommended_scheme, refusals
from tui_quantreport.engine.quantsim.reference import float_reference
from tui_quantreport.engine.quantsim.schemes import (
    FLOAT,
    PREFERENCE,
    SCHEMES,
    Scheme,
    StaticInput,
    WeightFacts,
)
from tui_quantreport.engine.quantsim.sizes import plan_size
from tui_quantreport.engine.quantsim.sqnr import PreparedReference, Sqnr
from tui_quantreport.engine.quantsim.tracers import PASS_THROUGH_TYPES, Dataflow, passes_through_class

#: Re-exported: the names other modules (sensitivity, depth, graph_eager, the package facade, tests)
#: import from here since the passes moved to their own files.
__all__ = [
    "CLIPPED",
    "DEFAULT_CLIP_PERCENTILE",
    "DEFAULT_MIN_GAIN_DB",
    "DEFAULT_PROBE_BATCHES",
    "EQUALIZED",
    "PASS_THROUGH_TYPES",
    "PT2E_INT8_POOLING_TYPES",
    "SHARED_QPARAMS_TYPES",
    "STATIC_OUTPUTS",
    "_MISSING",
    "Cost",
    "Dataflow",
    "ErrorAnalysis",
    "LocalMeasurement",
    "MeasurementCancelled",
    "PlanSize",
    "SimulationError",
    "_InputMemo",
    "_check_cancel",
    "_measurement",
    "_measurer",
    "_restore_forwards",
    "_simulated_forward",
    "passes_through_class",
    "ranges_from_stats",
    "rows_from_stats",
]


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

    @_measurement
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
        min_rows: int = MIN_ROWS,
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
            backend, static_outputs = recipe.backend, recipe.static_outputs
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
        if recipe is not None and recipe.fold_batchnorm:  # the target quantizes the folded conv weight
            self.model = fold_batchnorm(self.model)
        self.catalog = catalog
        self.probes = list(probes)
        self.backend = backend
        self.quant_min, self.quant_max = activation_range(backend)
        self.clip_percentile = clip_percentile
        self._given_ranges = dict(activation_ranges or {})
        self._given_channels = dict(channel_ranges or {})
        self._module_map: dict[str, nn.Module] | None = None
        #: Simulated forwards by (fqn, scheme, output qparams): built once, reused by every plan.
        self._forwards: dict[tuple, Callable[..., Any]] = {}
        #: The modules measured, and the weighted modules the simulation cannot reproduce (with why).
        self.targets: dict[str, _Target]
        self.unsupported: dict[str, str]
        self.targets, self.unsupported = find_targets(catalog, self.submodule)
        #: Modules whose local measurement raised (the reason, one line): their SQNR is undefined.
        self.measure_failures: dict[str, str] = {}
        self._init_caches()
        self._apply_given_ranges()

    def _init_caches(self) -> None:
        """The measurements' kept state: empty until the first pass fills it."""
        #: Fake-quantized weights by (fqn, the scheme's weight facts): schemes quantizing a
        #: weight alike share one copy.
        self._weights: dict[tuple[str, WeightFacts], torch.Tensor] = {}
        #: :meth:`plan_size`'s reads of the model, made once.
        self._size_layout_cache: tuple[list[tuple[str, _Target, int, int, float]], list[tuple[int, float]]] | None = (
            None
        )
        self._scheme_bits_cache: dict[tuple[str, str], float | None] = {}
        #: (fqn, scheme) whose weight recipe raised, with the reason.
        self._failed: dict[tuple[str, str], str] = {}
        self._reference: list[dict[str, torch.Tensor]] | None = None
        #: The reference outputs prepared for :meth:`SqnrAccumulator.prepared_terms` (with the list they came from).
        self._prepared: tuple[list, list[dict[str, PreparedReference]]] | None = None
        #: Per-output end-to-end SQNR of the plans measured, by plan key (see :meth:`plan_output_sqnr`).
        self._plan_outputs: dict[tuple, dict[str, Sqnr]] = {}
        #: Whether a range pass measured the clip percentiles and channel extremes (advice only).
        self._advice_ranges = False
        #: The forwards a plan swaps in, by the plan's (fqn, scheme) items (a few recent plans).
        self._swaps: dict[tuple, list[tuple[nn.Module, Callable[..., Any]]]] = {}
        #: The last static input quantized in a plan pass (shared by the modules that read it).
        self._memo = _InputMemo()
        #: Plan evaluations run the probes merged into one batch where :mod:`.merged_probes`'s rule holds
        #: (False: always one probe at a time); ``merge_reason`` says why not, once checked.
        self.merge_probes = True
        self.merge_reason = ""
        self._merge: tuple[MergedProbes | None] | None = None
        self._segments = Segments()
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

    @_measurement
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
        # A module calibration saw never called has no range to measure: no range pass for it alone.
        skipped = [t for t in self.targets.values() if t.range is None and self._uncalled_in_calibration(t)]
        need_ranges = any(t.range is None for t in self.targets.values()) and not self._ranges_done
        range_pass = (need_ranges and len(skipped) < sum(t.range is None for t in self.targets.values())) or (
            advice and not self._advice_ranges
        )
        passes = [2 if range_pass else 1]
        step = [0]

        def tick(done: int, total: int | None) -> None:
            if progress is not None:
                progress(step[0] + done, passes[0] * len(self.probes))

        if range_pass:
            self._range_pass(tick, should_cancel, advice=advice)
            step[0] = len(self.probes)
        measured = measure_pass(self, tick, should_cancel, advice)
        if not self._ranges_done and any(measured[t.fqn].calls for t in skipped):
            # The check: one of them is called on the probes after all: its range is measured, then all again.
            passes[0] += 2
            step[0] += len(self.probes)
            self._range_pass(tick, should_cancel, advice=advice)
            step[0] += len(self.probes)
            measured = measure_pass(self, tick, should_cancel, advice)
        self._local = measured
        self._local_advice = advice
        return self._local

    def _range_pass(
        self, progress: ProgressCallback, should_cancel: Callable[[], bool] | None, *, advice: bool = False
    ) -> None:
        """One float pass over the probes measuring input ranges (:func:`.range_pass.range_pass`)."""
        range_pass(self, progress, should_cancel, advice=advice)

    def _never_called_words(self, target: _Target) -> str:
        """Why a module never called has no SQNR (an expert: never routed to)."""
        when = "during calibration" if self._given_ranges or self._given_rows else "on the probe batches"
        if is_expert(target.fqn):
            return f"'{target.fqn}' was never routed to {when} (the router sent it no token)"
        return f"'{target.fqn}' was never called {when}"

    def _never_called(self, target: _Target) -> bool:
        uncalled = self._ranges_done or self._uncalled_in_calibration(target)
        return target.range is None and target.range_source == "none" and uncalled

    def _uncalled_in_calibration(self, target: _Target) -> bool:
        """Whether calibration saw ``target``'s input never hold a value (its point counted 0 rows)."""
        return self._given_rows.get(target.fqn) == 0 and target.fqn not in self._given_ranges

    # Plans.

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
        """The model's parameter size under ``plan`` (:func:`.sizes.plan_size`: each quantized weight at
        its scheme's deployed bits per weight, every other parameter at its dtype's)."""
        return plan_size(self, plan)

    def recommended_scheme(self, fqn: str, min_gain_db: float = DEFAULT_MIN_GAIN_DB) -> str:
        """The cheapest scheme within ``min_gain_db`` of the best, by local SQNR
        (:func:`.recommend.recommended_scheme`)."""
        return recommended_scheme(self, fqn, min_gain_db)

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
        """{fqn: {scheme: why the target does not run it}} (:func:`.recommend.refusals`)."""
        return refusals(self)

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

    @_measurement
    def plan_sqnr(self, plan: Plan, should_cancel: Callable[[], bool] | None = None) -> Sqnr:
        """End-to-end SQNR of the model's output under ``plan`` against the float model."""
        key = plan.key
        cached = self._plan_cache.get(key)
        if cached is not None:
            return cached
        result = self._simulate(plan.quantized, should_cancel, merge=True)
        if len(self._plan_cache) > 256:
            self._plan_cache.pop(next(iter(self._plan_cache)))
            self._plan_outputs.pop(next(iter(self._plan_outputs)), None)
        self._plan_cache[key] = result
        self._plan_outputs[key] = self._last_outputs
        return result

    @_measurement
    def plan_output_sqnr(self, plan: Plan, should_cancel: Callable[[], bool] | None = None) -> dict[str, Sqnr]:
        """The end-to-end SQNR of each model output on its own under ``plan`` (:meth:`plan_sqnr`
        is their energy-weighted combination); empty when the plan could not be simulated."""
        self.plan_sqnr(plan, should_cancel)
        return dict(self._plan_outputs.get(plan.key, {}))

    @_measurement
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
            result[fqn] = self._simulate({fqn: scheme}, should_cancel, merge=True)
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

    @_measurement
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

    def _simulate(
        self, quantized: Mapping[str, str], should_cancel: Callable[[], bool] | None, merge: bool = False
    ) -> Sqnr:
        """The end-to-end SQNR under ``quantized``; ``merge``: the probes merged where :mod:`.merged_probes` allows."""
        return simulate(self, quantized, should_cancel, merge)

    def _swapped(self, quantized: Mapping[str, str]) -> contextlib.AbstractContextManager[None]:
        """Each quantized module's forward replaced for the duration (:func:`.plan_pass.swapped`)."""
        return swapped(self, quantized)

    def _merged_probes(self) -> MergedProbes | None:
        """The probes merged into one batch for plan evaluation, or None (checked once: :func:`.merged_probes.merge_check`)."""
        if not self.merge_probes:
            return None
        if self._merge is None:
            merged, self.merge_reason = merge_check(self)
            self._merge = (merged,)
        return self._merge[0]

    def _outputs(self, output: Any) -> dict[str, torch.Tensor]:
        """The model output's floating-point tensors the end-to-end SQNR reads, by name."""
        return select(output_tensors(output), self.output_key)

    def _prepared_reference(self, reference: list[dict[str, torch.Tensor]]) -> list[dict[str, PreparedReference]]:
        """The reference outputs as :class:`PreparedReference` (built once per reference list)."""
        if self._prepared is None or self._prepared[0] is not reference:
            self._prepared = (reference, [prepared_outputs(r) for r in reference])
        return self._prepared[1]

    @contextmanager
    def _float_mode(self) -> Iterator[None]:
        """Eval mode, no grad, and no fused attention fast path (it skips the Linear modules
        inside ``nn.TransformerEncoderLayer``, so they could be neither seen nor simulated).

        The public measurements run with the garbage collector paused and the model's lock held
        (:func:`_measurement`); the passes run outside them (the planner's, the root plot's) hold
        the lock here: one pass at a time runs the model.
        """
        with model_lock(self.model):
            restore = self._freeze()
            try:
                if self._all_modules is None or any(m.training for m in self._all_modules):
                    self.model.eval()
                with attention_fastpath_off(), torch.no_grad():  # reference-counted: measurements overlap
                    yield
            finally:
                restore()

    def _freeze(self) -> Callable[[], None]:
        """Remember training flags and ``torch.ao`` observer state (module list walked once):
        :func:`~tui_quantreport.engine.model_state.freeze_model_state` with the kept lists."""
        if self._all_modules is None:
            self._all_modules = list(self.model.modules())
            self._helpers = [m for m in self._all_modules if is_quant_helper(m)]
        return freeze_model_state(self.model, self._all_modules, self._helpers)

    def _run(self, batch: Any, index: int) -> Any:
        try:
            # A fresh copy for every forward: a model that changes its input in place must not hand
            # the next run (the float reference, another scheme) an input it already changed.
            return call_batch(self.model, copy_batch(batch))
        except (MeasurementCancelled, UserError):
            raise
        except Exception as exc:
            raise SimulationError(f"probe batch {index + 1} failed under simulation: {_one_line(exc)}") from exc
