"""Instrumenting a model with forward hooks and calibrating it.

A :class:`Session` owns one model and its :class:`~.modules.ModelCatalog`. Its
:meth:`Session.calibrate` attaches hooks where the detectors asked to observe,
feeds the batches, and returns an immutable :class:`Stats` snapshot; the hooks
are removed and the model is put back as it was (training flags, and the
buffers of any ``torch.ao`` observers, which running data would otherwise
move). No FX tracing is involved, so any eager module works.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.errors import CalibrationCancelled, CalibrationError, exit_call
from tui_quantreport.engine.layout import LayoutTracker, integer_layout
from tui_quantreport.engine.modules import ModelCatalog, is_quant_helper
from tui_quantreport.engine.settings import Settings, observation_plan, observed_settings
from tui_quantreport.engine.stats import (
    Accumulator,
    Point,
    PointLayout,
    PointRequest,
    Reducer,
    Stats,
    TensorSummary,
    WeightRange,
    channels_view,
    summarize,
)

ProgressCallback = Callable[[int, int | None], None]

#: A tensor's entry in the per-batch cache: a weak reference to it, its summaries by
#: the percentiles they hold, and each reducer's contribution.
_CacheEntry = tuple["weakref.ref[torch.Tensor]", dict[tuple[float, ...], "TensorSummary | None"], dict[Reducer, Any]]


def call_batch(model: nn.Module, batch: Any) -> Any:
    """Run one batch: a tensor is passed as is, a tuple/list spread, a dict as keywords."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in a module's inputs or outputs (nested tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):  # keyword inputs, and outputs like HuggingFace's ModelOutput
        value = tuple(value.values())
    if isinstance(value, (tuple, list)):  # never other iterables: iterating may consume them
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


class _Observer:
    """The per-batch path: reduce each distinct tensor once, fold it into its points."""

    def __init__(self, catalog: ModelCatalog):
        self.catalog = catalog
        self.tracker = LayoutTracker(catalog)
        self.layouts: dict[Point, PointLayout] = {}
        #: Points the first batch could not decide yet: (point, a copy, the tensor itself).
        self._pending: list[tuple[Point, torch.Tensor, torch.Tensor]] = []
        self.discovery_handles: list = []
        self.accumulators: dict[Point, Accumulator] = {}
        self.requests: dict[Point, PointRequest] = {}
        #: The percentiles each point's reducers read, resolved once per calibration.
        self.percentiles: dict[Point, tuple[float, ...]] = {}
        # (tensor id, version, axis) -> (weak ref to the tensor, {percentiles: summary}, {reducer: contribution})
        self._cache: dict[tuple, _CacheEntry] = {}
        self._last_input: dict[str, tuple[tuple, TensorSummary | None]] = {}

    def request(self, point: Point, request: PointRequest) -> None:
        self.requests[point] = request
        self.percentiles[point] = request.percentiles
        self.accumulators[point] = Accumulator(request.reducers)

    def new_batch(self) -> None:
        self._cache.clear()
        self._last_input.clear()
        self._pending.clear()

    def end_batch(self) -> None:
        """Decide the points the batch left open (by their consumers), then end discovery."""
        pending, self._pending = self._pending, []
        for point, copy, original in reversed(pending):  # later points first: they may decide earlier ones
            self._record(point, copy, tuple(copy.shape), self.tracker.decide_deferred(point, original))
        if self.tracker.discovering:
            self.end_discovery()

    def end_discovery(self) -> None:
        for handle in self.discovery_handles:
            handle.remove()
        self.discovery_handles = []
        self.tracker.end_discovery()

    def observe(self, point: Point, tensor: torch.Tensor | None) -> None:
        if tensor is None or tensor.is_complex() or tensor.layout != torch.strided:
            return  # nothing to order (complex) or no dense values to read (sparse, nested)
        if tensor.is_quantized:
            tensor = tensor.dequantize()
        shape = tuple(tensor.shape)
        if tensor.numel() == 0:  # no values: not a call (it would dilute S and the batch counts)
            self.accumulators[point].skip_empty(shape)
            return
        if not tensor.is_floating_point():
            # Token ids, positions, masks: counted as calls, never judged as activations.
            if point not in self.layouts:
                self.layouts[point] = integer_layout(tensor)
            self.accumulators[point].update(shape, 0, None)
            return
        request = self.requests[point]
        override = (request.axis, request.axis_rule or str(request.axis)) if request.axis is not None else None
        decision = self.tracker.decide(point, tensor, override)
        if decision is None:  # first batch, no module says: decided at the end of the batch
            self._pending.append((point, tensor.detach().clone(), tensor))
            return
        self._record(point, tensor, shape, decision)

    def _record(self, point: Point, tensor: torch.Tensor, shape: tuple[int, ...], decision) -> None:
        axis, reason = decision.resolve(len(shape))
        if point not in self.layouts:
            dtype = str(tensor.dtype).replace("torch.", "")
            self.layouts[point] = PointLayout(axis, reason, dtype, error=reason if axis is None else "")
        if axis is None:  # an override out of range: counted, no per-channel view (never clamped)
            self.accumulators[point].update(shape, 0, None)
            return
        percentiles, reducers = self.percentiles[point], self.requests[point].reducers
        entry = self._entry(tensor, axis)
        summary = self._summary(entry, tensor, axis, percentiles)
        if point[1] == "pre":
            self._last_input[point[0]] = ((shape, axis, percentiles), summary)
        contribution = None
        if reducers and summary is not None:
            known = entry[2]

            def contribution(reducer: Reducer) -> Any:
                if reducer not in known:
                    known[reducer] = reducer.contribution(summary, lambda: channels_view(tensor, axis))
                return known[reducer]

        self.accumulators[point].update(shape, axis, summary, contribution)

    def _entry(self, tensor: torch.Tensor, axis: int) -> _CacheEntry:
        """This batch's cache entry for ``tensor`` along ``axis`` (a fresh one for a new tensor)."""
        key = (id(tensor), tensor._version, axis)
        entry = self._cache.get(key)
        if entry is None or entry[0]() is not tensor:
            entry = self._cache[key] = (weakref.ref(tensor), {}, {})
        return entry

    def _summary(
        self, entry: _CacheEntry, tensor: torch.Tensor, axis: int, percentiles: tuple[float, ...]
    ) -> TensorSummary | None:
        """This batch's summary of ``tensor`` along ``axis`` with at least ``percentiles``.

        A tensor seen at several points (one module's output is the next one's
        input) is reduced once; a later point that needs more percentiles reuses
        the channel min and max already computed.
        """
        known = entry[1]
        wanted = set(percentiles)
        for recorded, summary in known.items():
            if wanted <= set(recorded):
                return summary
        reuse = next(iter(known.values()), None)
        summary = known[percentiles] = summarize(tensor, axis, percentiles, known=reuse)
        return summary

    def propagate(self, fqn: str, module: nn.Module, output: Any) -> None:
        """Derive the output summary of an order-preserving module from its input's.

        For f elementwise and monotone non-decreasing (ReLU, clamps, identity),
        the per-channel min, max and k-th smallest of f(x) are f of those of x,
        exactly; the next module reading this output then needs no selection.
        """
        last = self._last_input.get(fqn)
        if last is None or not isinstance(output, torch.Tensor):
            return
        (shape, axis, percentiles), s = last
        if s is None or tuple(output.shape) != shape:
            return
        self._cache[(id(output), output._version, axis)] = (
            weakref.ref(output), {percentiles: s.mapped(module.forward)}, {},
        )


class Session:
    """One model, its catalog, and the calibrations run on it."""

    def __init__(self, model: nn.Module, *, label: str = ""):
        if not isinstance(model, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.label = label or type(model).__name__
        self.catalog = ModelCatalog.build(model)
        #: For a torch.export / PT2E graph, how to observe it at its nodes (engine/graph.py); else None.
        self.graph = _graph_view(model, self.catalog)

    def calibrate(
        self,
        batches: Iterable[Any],
        settings: Settings,
        *,
        max_batches: int | None = None,
        progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        rerun_failures: bool = True,
    ) -> Stats:
        """Run ``batches`` through the model, recording what ``settings`` needs.

        The points observed are :func:`~.settings.observation_plan`'s; the
        returned stats remember which settings decided that
        (:func:`~.settings.observed_settings`), so a later change that needs
        new data is detected. Runs in eval mode under ``torch.no_grad()``;
        afterwards the model's training flags and its ``torch.ao`` observer
        buffers are as they were. Raises :class:`CalibrationError` naming the
        batch and module when the model rejects a batch, and
        :class:`CalibrationCancelled` when ``should_cancel()`` turns true
        between batches. To name the module, the failing batch is run a second
        time (the message says so); ``rerun_failures=False`` skips that, for
        models whose forward has side effects.
        """
        plan = observation_plan(self.catalog, settings)
        stats = self._observe(
            batches, plan, max_batches=max_batches, progress=progress, should_cancel=should_cancel,
            rerun_failures=rerun_failures,
        )
        return replace(stats, observed=observed_settings(settings))

    def _observe(
        self,
        batches: Iterable[Any],
        plan: Mapping[Point, PointRequest],
        *,
        max_batches: int | None,
        progress: ProgressCallback | None,
        should_cancel: Callable[[], bool] | None,
        rerun_failures: bool = True,
    ) -> Stats:
        """Feed ``batches`` with observers at ``plan``'s points; the stats carry no settings."""
        if self.graph is not None:  # never .eval() an exported graph: observe it at its nodes
            from tui_quantreport.engine.graph import calibrate_graph

            return calibrate_graph(
                self, batches, plan, max_batches=max_batches, progress=progress, should_cancel=should_cancel
            )
        total = _length(batches)
        if max_batches is not None:
            total = max_batches if total is None else min(total, max_batches)
        observer = _Observer(self.catalog)
        # Discovery hooks first, so a module's output is tagged before it is observed.
        observer.discovery_handles = observer.tracker.attach(self.model)
        handles = self._attach(observer, plan)
        restore = _freeze_model_state(self.model)
        done = 0
        try:
            self.model.eval()
            with torch.no_grad():
                iterator = iter(batches)
                # Stop before pulling batch N+1: a slow or failing loader pays for N batches only.
                while max_batches is None or done < max_batches:
                    batch = next(iterator, _END)
                    if batch is _END:
                        break
                    if should_cancel is not None and should_cancel():
                        raise CalibrationCancelled()
                    observer.new_batch()
                    try:
                        call_batch(self.model, batch)
                    except ObserverFault:
                        raise
                    except (Exception, SystemExit) as exc:  # a model's sys.exit() is a bad batch too
                        raise self._explain_failure(batch, done + 1, exc, rerun_failures) from exc
                    observer.end_batch()
                    done += 1
                    if progress is not None:
                        progress(done, total)
        finally:
            for handle in handles:
                handle.remove()
            observer.end_discovery()
            observer.new_batch()
            restore()
        points = {key: acc.freeze() for key, acc in observer.accumulators.items()}
        return Stats(
            batches=done,
            points=points,
            weights=self.weight_ranges(),
            layouts=dict(observer.layouts),
        )

    def weight_ranges(self) -> dict[str, WeightRange]:
        """Per-channel min/max of every weighted layer's weight.

        Along the weight's input-channel axis (as its kind declares: dim 1 for
        Linear, Conv and attention, dim 0 for transformers' Conv1D), or per row
        for layers without input channels (embeddings).
        """
        if self.graph is not None:
            from tui_quantreport.engine.graph import weight_ranges

            return weight_ranges(self.graph)
        ranges = {}
        with torch.no_grad():
            for fqn, kind in self.catalog.kinds.items():
                if self.catalog.modules[fqn].quantized:  # torchao's weights are not plain tensors
                    continue
                weight = kind.weight_of(self.model.get_submodule(fqn))
                if weight is None or weight.dim() < 2:
                    continue
                rows = kind.in_axis is None
                axis = kind.out_axis if rows else kind.in_axis
                if axis is None:  # a kind that names neither axis has no per-channel weight range
                    continue
                w = weight.detach().float().transpose(0, axis)
                w = w.reshape(w.shape[0], -1)
                ranges[fqn] = WeightRange(w.amin(dim=1).cpu(), w.amax(dim=1).cpu(), axis, rows)
        return ranges

    def _attach(self, observer: _Observer, plan: Mapping[Point, PointRequest]) -> list:
        handles = []
        for (fqn, role), request in plan.items():
            if fqn not in self.catalog.modules:
                continue
            point = (fqn, role)
            observer.request(point, request)
            info = self.catalog.modules[fqn]
            if role == "pre":
                module = self.model.get_submodule(fqn)
                handles.append(module.register_forward_pre_hook(_pre_hook(observer, point), with_kwargs=True))
                if info.monotone:
                    handles.append(module.register_forward_hook(_propagate_hook(observer, fqn)))
            else:
                # The output of a Linear/Conv inside a fused module (LinearReLU, ConvReLU2d)
                # is what the fused module returns: that is the tensor that gets quantized.
                source = info.fused_parent if info.fused_parent is not None else fqn
                module = self.model.get_submodule(source)
                handles.append(module.register_forward_hook(_post_hook(observer, point)))
        return handles

    def _class_name(self, fqn: str) -> str:
        """The class of module ``fqn``, also of one the model made during a forward (not in the catalog)."""
        info = self.catalog.modules.get(fqn)
        if info is not None:
            return info.class_name
        try:
            return type(self.model.get_submodule(fqn)).__name__
        except (AttributeError, TypeError):
            return "made during the forward"

    def _explain_failure(self, batch: Any, index: int, exc: BaseException, rerun: bool = True) -> CalibrationError:
        """Re-run the failing batch with a tracer to name the innermost module that raised.

        The message says the batch was run again; with ``rerun`` false it is not,
        and the message says the module is unknown for that reason.
        """
        if isinstance(exc, SystemExit):
            cause = exit_call(exc)
        else:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            cause = f"{type(exc).__name__}: {detail}"
        if not rerun:
            return CalibrationError(
                f"batch {index} was rejected: {cause} (the batch was not run again to find the module: --no-rerun)",
                batch=index,
            )
        stack: list[str] = []
        failed_in: list[str] = []
        handles = []
        for fqn, module in self.model.named_modules():
            if is_quant_helper(module):
                continue
            handles.append(module.register_forward_pre_hook(lambda m, a, f=fqn: stack.append(f)))
            handles.append(module.register_forward_hook(lambda m, a, o: stack.pop()))
        try:
            call_batch(self.model, batch)
        except (Exception, SystemExit):
            failed_in = list(stack)
        finally:
            for handle in handles:
                handle.remove()
        module = failed_in[-1] if failed_in else None
        where = ""
        if module:
            where = f" in module '{module}' ({self._class_name(module)})"
        elif module == "":
            where = f" in the model's own forward ({self.catalog.class_name})"
        return CalibrationError(
            f"batch {index} was rejected{where}: {cause} (to name the module, tui-quantreport ran batch {index} "
            "again; --no-rerun skips that)",
            batch=index,
            module=module,
        )


_END = object()


class ObserverFault(RuntimeError):
    """A bug in our own hooks: kept apart from errors in the user's model or batches."""


def _guarded_hook(run):
    """Run a hook body; an exception there is ours, not the model's, and says so."""
    try:
        run()
    except Exception as exc:
        raise ObserverFault(f"tui-quantreport failed while observing: {type(exc).__name__}: {exc}") from exc


def _pre_hook(observer: _Observer, point: Point):
    def hook(module, args, kwargs):
        _guarded_hook(lambda: observer.observe(point, first_tensor(args) if args else first_tensor(kwargs)))

    return hook


def _post_hook(observer: _Observer, point: Point):
    def hook(module, args, output):
        _guarded_hook(lambda: observer.observe(point, first_tensor(output)))

    return hook


def _propagate_hook(observer: _Observer, fqn: str):
    def hook(module, args, output):
        _guarded_hook(lambda: observer.propagate(fqn, module, output))

    return hook


def _graph_view(model: nn.Module, catalog: ModelCatalog) -> Any:
    from tui_quantreport.engine.graph import GraphView, is_exported_graph

    return GraphView(model, catalog) if is_exported_graph(model) else None  # type: ignore[arg-type]


def _length(batches: Iterable[Any]) -> int | None:
    try:
        return len(batches)  # type: ignore[arg-type]
    except TypeError:
        return None


def _freeze_model_state(model: nn.Module) -> Callable[[], None]:
    """Remember what calibration could change, and return a function that restores it."""
    training = {module: module.training for module in model.modules()}
    helpers = [module for module in model.modules() if is_quant_helper(module)]
    buffers = [
        (module, name, buffer, buffer.detach().clone())
        for module in helpers
        for name, buffer in module._buffers.items()
        if buffer is not None
    ]
    attributes = [
        (module, {k: v for k, v in vars(module).items() if not k.startswith("_") and not isinstance(v, torch.Tensor)})
        for module in helpers
    ]

    def restore() -> None:
        for module, flag in training.items():
            module.training = flag
        # In place: a tensor the user holds (model.obs.min_val) is the module's buffer again,
        # with its old values, also after an observer resized it (a fresh per-channel observer).
        with torch.no_grad():
            for module, name, original, copy in buffers:
                if original.shape != copy.shape:
                    original.resize_(copy.shape)
                original.copy_(copy)
                module._buffers[name] = original
        for module, attrs in attributes:
            for name, value in attrs.items():
                setattr(module, name, value)

    return restore
