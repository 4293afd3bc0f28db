"""Instrumenting a model with forward hooks and calibrating it.

A :class:`Session` owns one model and its :class:`~.modules.ModelCatalog`. Its
:meth:`Session.calibrate` attaches hooks where the detectors asked to observe,
feeds the batches, and returns an immutable :class:`Stats` snapshot; the hooks
are removed and the model is put back as it was (training flags, and the
buffers of any ``torch.ao`` observers, which running data would otherwise
move). No FX tracing is involved, so any eager module works.
"""

from __future__ import annotations

import copy as copying
import functools
import gc
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from tui_quantreport.engine.batches import ObserverFault, batch_count, call_batch, first_tensor
from tui_quantreport.engine.errors import CalibrationCancelled, CalibrationError, exit_call
from tui_quantreport.engine.graph import GraphView, is_exported_graph
from tui_quantreport.engine.graph_runner import GraphRunner, _Sites, freeze_graph_state, weight_ranges
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
    selection,
    summarize,
)
from tui_quantreport.engine.stats.accumulator import MAX_SHAPES_KEPT, rows_of
from tui_quantreport.engine.stats.grouped import Bank, bankable, channel_split, row_of, spans, summarize_group, take

ProgressCallback = Callable[[int, int | None], None]

#: Host tensors with at most this many elements are held to the end of the batch and
#: reduced together with the others of their shape (see :mod:`.stats.grouped`); bigger
#: ones are reduced at once (holding them makes the model's own forward page-fault).
SMALL_NUMEL = 16384

#: While calibrating (automatic collection paused), the young generations are collected every so many batches.
GC_EVERY = 16

# Kinds of the per-batch queue's entries (see _Observer).
_HELD, _SUMMARY, _COUNT, _EMPTY = 0, 1, 2, 3
_F32, _F64 = np.dtype(np.float32).str, np.dtype(np.float64).str
_STRIDED = torch.strided
_TENSOR = torch.Tensor

#: A tensor's entry in the per-batch cache: a weak reference to it, its summaries by
#: the percentiles they hold, and each reducer's contribution.
_CacheEntry = tuple["weakref.ref[torch.Tensor]", dict[tuple[float, ...], "TensorSummary | None"], dict[Reducer, Any]]


class _Observer:
    """The per-batch path: reduce each distinct tensor once, fold it into its points.

    With ``defer`` (the default), a batch's calls are queued and folded in at
    :meth:`end_batch`: small host tensors are held (de-duplicated by identity
    and ``_version``) and reduced per group of one shape; big ones are reduced
    at once and only their summaries wait. A held tensor whose ``_version``
    changed by the end of the batch (modified in place after it was seen) is
    not read: :meth:`end_batch` returns its points, which the session measures
    again by re-running the batch with those points reduced at once (and keeps
    reducing at once from then on).
    """

    def __init__(self, catalog: ModelCatalog, *, defer: bool = True, immediate: set[Point] | None = None):
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
        #: False while the session re-runs a failing batch to name its module: observe nothing.
        self.active = True
        self.defer = defer
        #: Points whose tensors are reduced at once (a held one was modified in place).
        self.immediate: set[Point] = immediate if immediate is not None else set()
        self._rerun: set[Point] | None = None
        self._queue: list[tuple] = []
        #: Held tensors: (tensor, its _version when seen, axis, shape), and their index by (id, version, axis).
        self._held: list[tuple[torch.Tensor, int, int, tuple[int, ...]]] = []
        self._held_index: dict[tuple[int, int, int], int] = {}
        self._info: dict[Point, tuple[Accumulator, frozenset[Reducer] | None, tuple[float, ...]]] = {}
        #: Per point whose calls so far were all held: (torch.Size, dtype, axis, shape tuple) of them.
        self._steady: dict[Point, tuple[torch.Size, torch.dtype, int, tuple[int, ...]]] = {}
        self._steady_kept: dict[Point, tuple[torch.Size, torch.dtype, int, tuple[int, ...]]] = {}
        #: Layouts an earlier calibration recorded, for the steady points' first calls (see Session).
        self._kept_layouts: dict[Point, PointLayout] = {}
        self._layout_order: list[Point] = []
        #: Whether this batch took the general path anywhere (else it may replay the last batch's plan).
        self._general = True
        self._plan: _Plan | None = None
        self._banks: dict[tuple, Bank] = {}

    @property
    def deferring(self) -> bool:
        return self.defer and self._rerun is None

    def request(self, point: Point, request: PointRequest) -> None:
        self.requests[point] = request
        self.percentiles[point] = request.percentiles
        acc = self.accumulators[point] = Accumulator(request.reducers)
        #: Per point: its accumulator, its reducers as a bank key (None: not bankable), its percentiles.
        self._info[point] = (acc, request.reducers if bankable(request.reducers) else None, request.percentiles)

    def new_batch(self) -> None:
        self._general = False
        self._cache.clear()
        self._last_input.clear()
        self._pending.clear()
        self._queue.clear()
        self._held.clear()
        self._held_index.clear()

    def end_batch(self) -> set[Point]:
        """Decide the points the batch left open (by their consumers), fold the batch in, end discovery.

        Returns the points whose held tensors were modified in place after they
        were seen: nothing of this batch was recorded for them.
        """
        pending, self._pending = self._pending, []
        for point, copy, original in reversed(pending):  # later points first: they may decide earlier ones
            self._record(point, copy, tuple(copy.shape), self.tracker.decide_deferred(point, original))
        stale = self._flush()
        if self.tracker.discovering:
            self.end_discovery()
        return stale

    def begin_rerun(self, points: set[Point]) -> None:
        """Observe only ``points``, each tensor reduced at once (a second run of the batch)."""
        self.immediate |= points
        self._rerun = set(points)
        self._cache.clear()
        self._last_input.clear()
        self._steady, self._steady_kept = {}, {k: v for k, v in self._steady.items() if k not in points}
        self._plan = None

    def end_rerun(self) -> None:
        self._rerun = None
        self._cache.clear()
        self._last_input.clear()
        self._steady = self._steady_kept

    def ordered_layouts(self) -> dict[Point, PointLayout]:
        """The layouts recorded, in the order the general path records them (kept ones in the
        order of the calibration that learned them)."""
        if not self._layout_order:
            return dict(self.layouts)
        first = {point: self.layouts[point] for point in self._layout_order if point in self.layouts}
        return {**first, **{p: v for p, v in self.layouts.items() if p not in first}}

    def end_discovery(self) -> None:
        for handle in self.discovery_handles:
            handle.remove()
        self.discovery_handles = []
        self.tracker.end_discovery()

    def observe(self, point: Point, tensor: torch.Tensor | None) -> None:
        steady = self._steady.get(point)
        if (
            steady is not None
            and tensor is not None
            and tensor.dtype is steady[1]
            and tensor.shape == steady[0]
            and tensor.layout is _STRIDED
            and tensor.is_cpu
        ):
            # Like its earlier calls (a small float host tensor of this shape, decided): held at once.
            version = tensor._version
            key = (id(tensor), version, steady[2])
            index = self._held_index.get(key)
            if index is None:
                index = self._held_index[key] = len(self._held)
                self._held.append((tensor, version, steady[2], steady[3]))
            self._queue.append((point, _HELD, index))
            if self._last_input:
                self._last_input.pop(point[0], None)
            if self._kept_layouts:
                layout = self._kept_layouts.pop(point, None)
                if layout is not None and point not in self.layouts:
                    self.layouts[point] = layout
            return
        self._general = True
        if self._rerun is not None and point not in self._rerun:
            return
        if tensor is None or tensor.is_complex() or tensor.layout != torch.strided:
            return  # nothing to order (complex) or no dense values to read (sparse, nested)
        if tensor.is_quantized:
            tensor = tensor.dequantize()
        shape = tuple(tensor.shape)
        if tensor.numel() == 0:  # no values: not a call (it would dilute S and the batch counts)
            if self.deferring:
                self._queue.append((point, _EMPTY, shape))
            else:
                self.accumulators[point].skip_empty(shape)
            return
        if not tensor.is_floating_point():
            # Token ids, positions, masks: counted as calls, never judged as activations.
            if point not in self.layouts:
                self.layouts[point] = integer_layout(tensor)
            self._count(point, shape)
            return
        request = self.requests[point]
        override = (request.axis, request.axis_rule or str(request.axis)) if request.axis is not None else None
        decision = self.tracker.decide(point, tensor, override)
        if decision is None:  # first batch, no module says: decided at the end of the batch
            self._pending.append((point, tensor.detach().clone(), tensor))
            return
        self._record(point, tensor, shape, decision)

    def _count(self, point: Point, shape: tuple[int, ...]) -> None:
        """A call without per-channel values."""
        if self.deferring:
            self._queue.append((point, _COUNT, shape))
        else:
            self.accumulators[point].update(shape, 0, None)

    def _record(self, point: Point, tensor: torch.Tensor, shape: tuple[int, ...], decision) -> None:
        axis, reason = decision.resolve(len(shape))
        if point not in self.layouts:
            dtype = str(tensor.dtype).replace("torch.", "")
            self.layouts[point] = PointLayout(axis, reason, dtype, error=reason if axis is None else "")
        if axis is None:  # an override out of range: counted, no per-channel view (never clamped)
            self._count(point, shape)
            return
        if (
            self.deferring
            and tensor.numel() <= SMALL_NUMEL
            and selection.on_host(tensor)
            and point not in self.immediate
        ):
            self._hold(point, tensor, shape, axis)
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

        if self.deferring:  # the summary waits for the end of the batch; the tensor does not
            computed = {r: contribution(r) for r in reducers} if contribution is not None else None
            self._queue.append((point, _SUMMARY, shape, axis, summary, computed))
            return
        self.accumulators[point].update(shape, axis, summary, contribution)

    def _hold(self, point: Point, tensor: torch.Tensor, shape: tuple[int, ...], axis: int) -> None:
        version = tensor._version
        key = (id(tensor), version, axis)  # the held tensor stays alive: its id is not reused this batch
        index = self._held_index.get(key)
        if index is None:
            index = self._held_index[key] = len(self._held)
            self._held.append((tensor, version, axis, shape))
        self._queue.append((point, _HELD, index))
        if point[1] == "pre":
            self._last_input.pop(point[0], None)
        self._steady[point] = (tensor.shape, tensor.dtype, axis, shape)

    def _flush(self) -> set[Point]:
        """Fold the queued calls of this batch into the accumulators; returns the stale points."""
        queue, held = self._queue, self._held
        self._queue, self._held, self._held_index = [], [], {}
        if not queue:
            return set()
        plan, self._plan = self._plan, None
        if (
            plan is not None
            and not self._general
            and queue == plan.queue
            and all(tensor._version == version for tensor, version, _, _ in held)
        ):
            self._replay(plan, held)
            self._plan = plan
            return set()
        # Held tensors by (shape, axis, dtype): one reduction per group. A tensor whose _version
        # moved was modified in place after it was seen: it is not read, its points are stale.
        groups: dict[tuple, list[torch.Tensor]] = {}
        meta: dict[tuple, tuple[int, str]] = {}
        held_of_group: dict[tuple, list[int]] = {}
        where: list[tuple[tuple, int] | None] = []
        stale_held = set()
        for i, (tensor, version, axis, shape) in enumerate(held):
            if tensor._version != version:
                stale_held.add(i)
                where.append(None)
                continue
            key = (shape, axis, tensor.dtype)
            members = groups.get(key)
            if members is None:
                members = groups[key] = []
                held_of_group[key] = []
                # What the group's summary will hold: its channel count and array dtype.
                meta[key] = (channel_split(shape, axis)[1], _F64 if tensor.dtype == torch.float64 else _F32)
            where.append((key, len(members)))
            members.append(tensor)
            held_of_group[key].append(i)
        stale = {item[0] for item in queue if item[1] == _HELD and item[2] in stale_held} if stale_held else set()
        calls = Counter(item[0] for item in queue)
        info = self._info
        wanted: dict[tuple, set[tuple[float, ...]]] = {key: set() for key in groups}
        # Calls folded in together per (group, reducers): [accumulators, tensor rows] to start a bank
        # row, [bank rows, tensor rows] to update one; everything else goes through Accumulator.update.
        batched: dict[tuple, tuple[list, list, list, list, list]] = {}
        single: list[tuple] = []
        for item in queue:
            point = item[0]
            if stale and point in stale:
                continue
            if item[1] != _HELD:
                single.append(item)
                continue
            acc, rkey, percentiles = info[point]
            key, row = where[item[2]]  # type: ignore[misc]
            wanted[key].add(percentiles)
            bank = acc.bank
            if (
                rkey is None
                or calls[point] != 1
                or (
                    (acc.range_sum is not None)
                    if bank is None
                    else (not acc.channels_consistent or (bank.channels, bank.dtype.str) != meta[key])
                )
            ):
                single.append(item)
                continue
            slot = batched.get((key, rkey))
            if slot is None:
                slot = batched[(key, rkey)] = ([], [], [], [], [])
            _, _, axis, shape = held[item[2]]
            if acc.bank is None:
                slot[0].append(acc)
                slot[1].append(row)
                slot[4].append((shape, axis))
            else:
                slot[2].append(acc)
                slot[3].append(row)
                slot[4].append((shape, axis))
        percentiles_of_group = {key: tuple(sorted({p for ps in wanted[key] for p in ps})) for key in groups}
        summaries = {
            key: summarize_group(members, key[1], percentiles_of_group[key]) for key, members in groups.items()
        }
        group_terms: dict[tuple, Any] = {}

        def group_term(key: tuple, reducer: Reducer) -> Any:
            known = group_terms.get((key, reducer))
            if known is None:
                known = group_terms[(key, reducer)] = reducer.contribution(summaries[key], _no_tensor)
            return known

        updates: list[tuple[tuple, Bank, np.ndarray, np.ndarray]] = []
        accs: list[Accumulator] = []
        call_rows: list[int] = []
        for (key, rkey), (starting, start_rows, updating, update_rows, calls_seen) in batched.items():
            group = summaries[key]
            channels, dtype = group.channel_min.shape[1], group.channel_min.dtype
            bank = self._banks.get((channels, dtype.str, rkey))
            if bank is None:
                bank = self._banks[(channels, dtype.str, rkey)] = Bank(
                    channels, dtype, (starting or updating)[0].reducers
                )
            for acc, (shape, axis) in zip(starting + updating, calls_seen):
                acc.calls += 1
                rows = rows_of(shape, axis)
                acc.rows += rows
                call_rows.append(rows)
                if len(acc.shapes) < MAX_SHAPES_KEPT and shape not in acc.shapes:
                    acc.shapes.append(shape)
                if acc.bank is None:
                    acc.axis = axis
                elif axis != acc.axis:
                    acc.axis_consistent = False
            span = spans(group)
            terms = {r: group_term(key, r) for r in bank.reducers}
            if starting:
                for acc, row in zip(starting, bank.start(group, np.asarray(start_rows), span, terms)):
                    acc.bank, acc.row = bank, int(row)
            if updating:
                bank.update(np.asarray([acc.row for acc in updating]), group, np.asarray(update_rows), span, terms)
            updates.append(
                (key, bank, np.asarray([acc.row for acc in starting + updating]), np.asarray(start_rows + update_rows))
            )
            accs += starting + updating
        if not stale and not single:  # every call went through a bank: the next batch may replay this one
            self._plan = _Plan(
                queue,
                [(key, held_of_group[key], key[1], percentiles_of_group[key]) for key in groups],
                updates,
                accs,
                call_rows,
            )
        for item in single:
            point, kind = item[0], item[1]
            acc = self.accumulators[point]
            if kind == _COUNT:
                acc.update(item[2], 0, None)
            elif kind == _EMPTY:
                acc.skip_empty(item[2])
            elif kind == _SUMMARY:
                _, _, shape, axis, summary, computed = item
                acc.update(shape, axis, summary, computed.__getitem__ if computed is not None else None)
            else:
                index = item[2]
                tensor, _, axis, shape = held[index]
                key, row = where[index]  # type: ignore[misc]
                summary = row_of(summaries[key], row)

                def contribution(reducer: Reducer, key=key, row=row, summary=summary, tensor=tensor, axis=axis) -> Any:
                    if reducer.elementwise:
                        return take(group_term(key, reducer), row)
                    return reducer.contribution(summary, lambda: channels_view(tensor, axis))

                acc.update(shape, axis, summary, contribution if acc.reducers else None)
        return stale

    def _replay(self, plan: _Plan, held: list[tuple[torch.Tensor, int, int, tuple[int, ...]]]) -> None:
        """Fold in a batch whose calls match the last batch's, call for call: its groups and bank rows."""
        summaries = {
            key: summarize_group([held[i][0] for i in members], axis, percentiles)
            for key, members, axis, percentiles in plan.groups
        }
        terms: dict[tuple, Any] = {}
        for key, bank, rows, index in plan.updates:
            group = summaries[key]
            for r in bank.reducers:
                if (key, r) not in terms:
                    terms[(key, r)] = r.contribution(group, _no_tensor)
            bank.update(rows, group, index, spans(group), {r: terms[(key, r)] for r in bank.reducers})
        for acc, call_rows in zip(plan.accs, plan.rows):  # the same calls, so the same shapes and rows
            acc.calls += 1
            acc.rows += call_rows

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

    def propagate(self, fqn: str, forward: Callable[[torch.Tensor], torch.Tensor], output: Any) -> None:
        """Derive the output summary of an order-preserving module from its input's.

        For f elementwise and monotone non-decreasing (ReLU, clamps, identity),
        the per-channel min, max and k-th smallest of f(x) are f of those of x,
        exactly; the next module reading this output then needs no selection.
        ``forward`` is the module's own forward (not our wrapper).
        """
        last = self._last_input.get(fqn)
        if last is None or not isinstance(output, torch.Tensor):
            return
        (shape, axis, percentiles), s = last
        if s is None or tuple(output.shape) != shape:
            return
        self._cache[(id(output), output._version, axis)] = (
            weakref.ref(output),
            {percentiles: s.mapped(forward)},
            {},
        )


class _Plan(NamedTuple):
    """How the last batch was folded in, for a next batch that makes the same calls."""

    queue: list[tuple]
    #: (group key, held indices, axis, percentiles)
    groups: list[tuple[tuple, list[int], int, tuple[float, ...]]]
    #: (group key, bank, bank rows, group rows)
    updates: list[tuple[tuple, Bank, np.ndarray, np.ndarray]]
    accs: list[Accumulator]
    #: Rows of each call in ``accs`` (the same order).
    rows: list[int]


def _no_tensor() -> torch.Tensor:
    raise AssertionError("an elementwise reducer asked for the tensor")


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
        #: Points whose tensors were modified in place after being seen: reduced at once from then on.
        self._immediate: set[Point] = set()
        #: fqn -> (the weight it was computed from, its (version, data pointer, shape, dtype), the range).
        self._weight_cache: dict[str, tuple[weakref.ref, tuple, WeightRange]] = {}
        #: Kept between calibrations: the modules by name, and each observed module's instance-level
        #: forward (wrapper, its points, the instance forward and class forward it was made around).
        self._modules: dict[str, nn.Module] | None = None
        self._wrappers: dict[str, tuple[Callable[..., Any], tuple, Any, Any]] = {}
        #: The calibration the wrappers report to (None between calibrations: they just call forward).
        self._holder = _Holder()
        #: The last settings calibrated with (a copy) and their observation plan.
        self._plan: tuple[Settings, dict[Point, PointRequest]] | None = None
        #: The channel-axis decisions of the last calibration that discovered them, and what they fit.
        self._layouts: _Layouts | None = None

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
        # The collector's automatic scans are paused while calibration runs: on a model with
        # thousands of modules one full scan costs as much as several forward passes, and the
        # per-point bookkeeping allocates enough to trigger many. The young generations are
        # collected every GC_EVERY batches instead (see _observe), so cycles a model makes per
        # batch stay bounded; the collector is enabled again afterwards.
        frozen = gc.isenabled()
        if frozen:
            gc.disable()
        try:
            plan = self._plan_for(settings)
            stats = self._observe(
                batches,
                plan,
                max_batches=max_batches,
                progress=progress,
                should_cancel=should_cancel,
                rerun_failures=rerun_failures,
            )
            return replace(stats, observed=observed_settings(settings))
        finally:
            if frozen:
                gc.enable()

    def _plan_for(self, settings: Settings) -> dict[Point, PointRequest]:
        """observation_plan(catalog, settings), kept for the next calibration with equal settings."""
        kept = self._plan
        if kept is not None and kept[0] == settings:
            return kept[1]
        plan = observation_plan(self.catalog, settings)
        self._plan = (copying.deepcopy(settings), plan)
        return plan

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
            return _calibrate_graph(
                self, batches, plan, max_batches=max_batches, progress=progress, should_cancel=should_cancel
            )
        total = batch_count(batches)
        if max_batches is not None:
            total = max_batches if total is None else min(total, max_batches)
        observer = _Observer(self.catalog, defer=rerun_failures, immediate=self._immediate)
        if self._modules is None:  # the module tree the catalog was built from
            self._modules = dict(self.model.named_modules())
        restore = _freeze_model_state(self.model, list(self._modules.values()))
        detach: Callable[[], None] = _nothing
        done = 0
        try:
            _eval(self.model)
            with torch.no_grad():
                iterator = iter(batches)
                # Stop before pulling batch N+1: a slow or failing loader pays for N batches only.
                batch = next(iterator, _END) if max_batches is None or max_batches > 0 else _END
                # The layouts learned by an earlier calibration are kept when this one starts alike
                # (same first-batch shapes, same points and axis overrides): no discovery pass then.
                signature = _signature(batch)
                memory = self._layouts
                known = memory is not None and memory.fits(signature, plan)
                detach = self._attach(observer, plan, discover=not known)
                if known:
                    observer.tracker.decisions.update(memory.decisions)  # type: ignore[union-attr]
                    observer.end_discovery()
                    # The points its first batch held take the steady path from the first call (their
                    # layout is recorded on that call, as the general path would record it).
                    observer._steady.update(memory.steady)  # type: ignore[union-attr]
                    observer._kept_layouts = dict(memory.layouts)  # type: ignore[union-attr]
                    observer._layout_order = list(memory.layouts)  # type: ignore[union-attr]
                while max_batches is None or done < max_batches:
                    if done > 0:
                        batch = next(iterator, _END)
                    if batch is _END:
                        break
                    if should_cancel is not None and should_cancel():
                        raise CalibrationCancelled()
                    observer.new_batch()
                    self._run_batch(observer, batch, done + 1, rerun_failures)
                    learned = observer.tracker.discovering
                    try:
                        stale = observer.end_batch()
                    except ObserverFault:
                        raise
                    except Exception as exc:  # the end of batch is our own work, like the wrappers'
                        raise _fault(exc) from exc
                    if learned and signature is not None:
                        self._layouts = _Layouts.learned(
                            signature, plan, observer.tracker.decisions, observer._steady, observer.layouts
                        )
                    if stale:  # held tensors modified in place after being seen: measure them again, at once
                        observer.begin_rerun(stale)
                        try:
                            self._run_batch(observer, batch, done + 1, rerun_failures)
                        finally:
                            observer.end_rerun()
                    done += 1
                    if done % GC_EVERY == 0 and not gc.isenabled():
                        gc.collect(1)
                    if progress is not None:
                        progress(done, total)
        finally:
            detach()
            observer.end_discovery()
            observer.new_batch()
            restore()
        points = {key: acc.freeze() for key, acc in observer.accumulators.items()}
        return Stats(
            batches=done,
            points=points,
            weights=self.weight_ranges(),
            layouts=observer.ordered_layouts(),
        )

    def _run_batch(self, observer: _Observer, batch: Any, index: int, rerun_failures: bool) -> None:
        try:
            call_batch(self.model, batch)
        except ObserverFault:
            raise
        except (Exception, SystemExit) as exc:  # a model's sys.exit() is a bad batch too
            observer.active = False
            raise self._explain_failure(batch, index, exc, rerun_failures) from exc

    def weight_ranges(self) -> dict[str, WeightRange]:
        """Per-channel min/max of every weighted layer's weight.

        Along the weight's input-channel axis (as its kind declares: dim 1 for
        Linear, Conv and attention, dim 0 for transformers' Conv1D), or per row
        for layers without input channels (embeddings).
        """
        if self.graph is not None:
            return weight_ranges(self.graph)
        ranges = {}
        cache = self._weight_cache
        modules = self._modules
        with torch.no_grad():
            for fqn, kind in self.catalog.kinds.items():
                if self.catalog.modules[fqn].quantized:  # torchao's weights are not plain tensors
                    continue
                module = modules.get(fqn) if modules is not None else None
                weight = kind.weight_of(module if module is not None else self.model.get_submodule(fqn))
                if weight is None or weight.dim() < 2:
                    continue
                rows = kind.in_axis is None
                axis = kind.out_axis if rows else kind.in_axis
                if axis is None:  # a kind that names neither axis has no per-channel weight range
                    continue
                # Kept between calibrations while the weight is the same tensor, unchanged
                # (an in-place update bumps its _version; a new .data moves its data pointer).
                key = (weight._version, weight.data_ptr(), weight.shape, weight.dtype, axis, rows)
                known = cache.get(fqn)
                if known is not None and known[1] == key and known[0]() is weight:
                    ranges[fqn] = known[2]
                    continue
                w = weight.detach().float().transpose(0, axis)
                w = w.reshape(w.shape[0], -1)
                ranges[fqn] = WeightRange(w.amin(dim=1).cpu(), w.amax(dim=1).cpu(), axis, rows)
                try:
                    cache[fqn] = (weakref.ref(weight), key, ranges[fqn])
                except TypeError:  # a weight that takes no weak reference is simply not kept
                    pass
        return ranges

    def _attach(
        self, observer: _Observer, plan: Mapping[Point, PointRequest], *, discover: bool = True
    ) -> Callable[[], None]:
        """Observe ``plan``'s points; returns the function that takes every change back.

        Each observed module gets an instance-level ``forward`` that observes
        around the module's own: the module keeps torch's fast call path (a
        hook would send it through the slow one). A module that already has
        hooks, or that cannot take an instance attribute (TorchScript), is
        observed with hooks, as are all when global module hooks exist: their
        order around the user's hooks is then the one the model expects. The
        first batch's layout discovery hooks every other module.
        """
        if self._modules is None:  # the module tree the catalog was built from
            self._modules = dict(self.model.named_modules())
        # Per module: its pre points, its post points, and the fqns whose input summary it propagates.
        lists: dict[str, tuple[list[Point], list[Point], list[str]]] = {}
        for (fqn, role), request in plan.items():
            if fqn not in self.catalog.modules:
                continue
            point = (fqn, role)
            observer.request(point, request)
            info = self.catalog.modules[fqn]
            if role == "pre":
                entry = lists.setdefault(fqn, ([], [], []))
                entry[0].append(point)
                if info.monotone:
                    entry[2].append(fqn)
            else:
                # The output of a Linear/Conv inside a fused module (LinearReLU, ConvReLU2d)
                # is what the fused module returns: that is the tensor that gets quantized.
                source = info.fused_parent if info.fused_parent is not None else fqn
                lists.setdefault(source, ([], [], []))[1].append(point)
        sites: dict[str, tuple[tuple[Point, ...], tuple[Point, ...], tuple[str, ...]]] = {
            fqn: (tuple(pre), tuple(post), tuple(propagate)) for fqn, (pre, post, propagate) in lists.items()
        }
        global_hooks = _global_hooks()
        tracker = observer.tracker
        modules = self._modules
        wrapped: dict[str, tuple[nn.Module, bool, Any]] = {}  # fqn -> (module, had its own forward, that forward)
        handles: list = []
        hooked = [fqn for fqn in sites if global_hooks or not _wrappable(modules[fqn])]
        # Discovery follows the other modules with hooks (first batch only; they go at its end),
        # registered first, so a module's output is tagged before it is observed.
        if discover:
            observer.discovery_handles = tracker.attach(self.model, skip=set(sites) - set(hooked))
        cache = self._wrappers
        for fqn, site in sites.items():
            module = modules[fqn]
            if fqn in hooked:
                handles += _hook(module, observer, site[0], site[1], site[2])
                continue
            own = module.__dict__.get("forward")
            known = cache.get(fqn)
            # A wrapper is kept between calibrations while its points and the forward it calls are the same.
            if known is None or known[1] != site or known[2] is not own or known[3] is not type(module).forward:
                pre, post, propagate = site
                wrapper = _wrapper(
                    self._holder, fqn, module, module.forward, pre, post, propagate, tracker.traced(fqn, module)
                )
                known = cache[fqn] = (wrapper, site, own, type(module).forward)
            module.__dict__["forward"] = known[0]
            wrapped[fqn] = (module, own is not None, own)
        self._holder.observer = observer
        # nn.TransformerEncoderLayer takes its fused fast path only when no module inside it has
        # hooks; with hooks its inner modules ran (and were observed): keep that decision.
        inside = {id(module) for module, _, _ in wrapped.values()}
        for module in modules.values():
            if isinstance(module, nn.TransformerEncoderLayer) and any(id(m) in inside for m in module.modules()):
                handles.append(module.register_forward_pre_hook(_no_op))

        def detach() -> None:
            self._holder.observer = None
            for handle in handles:
                handle.remove()
            for module, had, own in wrapped.values():
                if had:
                    module.__dict__["forward"] = own
                else:
                    module.__dict__.pop("forward", None)

        return detach

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
            handles.append(module.register_forward_hook(_pop_into(stack)))
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


def _guarded_hook(run):
    """Run a hook body; an exception there is ours, not the model's, and says so."""
    try:
        run()
    except Exception as exc:
        raise ObserverFault(f"tui-quantreport failed while observing: {type(exc).__name__}: {exc}") from exc


def _pop_into(stack: list[str]) -> Callable[..., None]:
    """A forward hook that leaves the module it returns from (and returns None: a value would
    replace the module's output)."""

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        stack.pop()

    return hook


def _fault(exc: Exception) -> ObserverFault:
    return ObserverFault(f"tui-quantreport failed while observing: {type(exc).__name__}: {exc}")


def _no_op(*args: Any) -> None:
    return None


def _global_hooks() -> bool:
    """Whether module hooks registered for every module exist (torch.nn.modules.module.register_module_*)."""
    from torch.nn.modules import module as torch_module

    return any(getattr(torch_module, name, None) for name in ("_global_forward_hooks", "_global_forward_pre_hooks"))


def _wrappable(module: nn.Module) -> bool:
    """Whether ``module`` can be observed through an instance-level ``forward``."""
    if isinstance(module, torch.jit.ScriptModule):
        return False
    return not (
        module._forward_hooks or module._forward_pre_hooks or getattr(module, "_forward_hooks_always_called", None)
    )


def _nothing() -> None:
    return None


def _signature(value: Any) -> Any:
    """What a batch looks like to the model: tensors by shape, dtype, device and layout; plain
    values by value; None for anything else (then no earlier layout is reused)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.device, value.layout, value.is_quantized)
    if value is None or isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, value)
    if isinstance(value, Mapping):
        items = tuple((key, _signature(item)) for key, item in value.items())
        return None if any(sig is None for _, sig in items) else (type(value).__name__, items)
    if isinstance(value, (tuple, list)):
        parts = tuple(_signature(item) for item in value)
        return None if any(sig is None for sig in parts) else (type(value).__name__, parts)
    return None


class _Layouts(NamedTuple):
    """Channel-axis decisions a calibration's first batch discovered, and what they were made for."""

    signature: Any
    #: point -> its axis override (request.axis, request.axis_rule), for every point observed
    overrides: dict[Point, tuple[int | None, str]]
    decisions: dict[Point, Any]
    #: The points that batch held, with what their tensors looked like, and every point's layout.
    steady: dict[Point, tuple[torch.Size, torch.dtype, int, tuple[int, ...]]]
    layouts: dict[Point, PointLayout]

    @classmethod
    def learned(
        cls,
        signature: Any,
        plan: Mapping[Point, PointRequest],
        decisions: Mapping[Point, Any],
        steady: Mapping[Point, tuple[torch.Size, torch.dtype, int, tuple[int, ...]]],
        layouts: Mapping[Point, PointLayout],
    ) -> _Layouts:
        overrides = {point: (request.axis, request.axis_rule) for point, request in plan.items()}
        return cls(signature, overrides, dict(decisions), dict(steady), dict(layouts))

    def fits(self, signature: Any, plan: Mapping[Point, PointRequest]) -> bool:
        """Whether a calibration starting with a batch like ``signature`` would discover the same:
        the same input shapes, and only points these decisions were made among, with the same overrides."""
        if signature is None or signature != self.signature:
            return False
        overrides = self.overrides
        return all(overrides.get(point, _END) == (request.axis, request.axis_rule) for point, request in plan.items())


class _Holder:
    """The observer of the calibration running now, read by the kept wrappers at each call."""

    observer: _Observer | None = None


def _wrapper(
    holder: _Holder,
    fqn: str,
    module: nn.Module,
    forward: Callable[..., Any],
    pre: tuple[Point, ...],
    post: tuple[Point, ...],
    propagate: tuple[str, ...],
    traced: bool,
) -> Callable[..., Any]:
    """The observing forward of one module: discovery (first batch), pre points, forward, post points."""

    def observed_forward(*args: Any, **kwargs: Any) -> Any:
        observer = holder.observer
        if observer is None or not observer.active:
            return forward(*args, **kwargs)
        discovering = traced and observer.tracker.discovering
        try:
            if discovering:
                observer.tracker.consume(fqn, args, kwargs)
            if pre:
                tensor = (
                    args[0]
                    if args and type(args[0]) is _TENSOR
                    else (first_tensor(args) if args else first_tensor(kwargs))
                )
                for point in pre:
                    observer.observe(point, tensor)
        except ObserverFault:
            raise
        except Exception as exc:
            raise _fault(exc) from exc
        output = forward(*args, **kwargs)
        try:
            if discovering:
                observer.tracker.produce(fqn, args, kwargs, output)
            if propagate and observer._last_input:  # only a summary computed at once propagates
                for name in propagate:
                    observer.propagate(name, forward, output)
            if post:
                tensor = output if type(output) is _TENSOR else first_tensor(output)
                for point in post:
                    observer.observe(point, tensor)
        except ObserverFault:
            raise
        except Exception as exc:
            raise _fault(exc) from exc
        return output

    functools.update_wrapper(observed_forward, forward)
    return observed_forward


def _hook(
    module: nn.Module, observer: _Observer, pre: tuple[Point, ...], post: tuple[Point, ...], propagate: tuple[str, ...]
) -> list:
    """Observe ``module`` with forward hooks (where an instance-level forward will not do)."""
    forward = module.forward

    def pre_hook(module, args, kwargs):
        if observer.active:
            tensor = first_tensor(args) if args else first_tensor(kwargs)
            _guarded_hook(lambda: [observer.observe(point, tensor) for point in pre])

    def post_hook(module, args, output):
        if observer.active:
            tensor = first_tensor(output)

            def run() -> None:
                for fqn in propagate:
                    observer.propagate(fqn, forward, output)
                for point in post:
                    observer.observe(point, tensor)

            _guarded_hook(run)

    handles = []
    if pre:
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
    if post or propagate:
        handles.append(module.register_forward_hook(post_hook))
    return handles


def _graph_view(model: nn.Module, catalog: ModelCatalog) -> Any:
    return GraphView(model, catalog) if is_exported_graph(model) else None  # type: ignore[arg-type]


_SETATTR = nn.Module.__setattr__
_TRAIN = nn.Module.train


def _eval(model: nn.Module) -> None:
    """``model.eval()``; where no module's class overrides ``train`` or ``__setattr__``, only the
    modules still in training mode have their flag set (the same modules ``train`` visits, the
    same end state: ``nn.Module.train`` only sets each module's ``training`` flag)."""
    modules = list(model.modules())
    if type(model).eval is not nn.Module.eval or any(
        type(m).train is not _TRAIN or type(m).__setattr__ is not _SETATTR for m in modules
    ):
        model.eval()
        return
    for module in modules:
        if module.__dict__.get("training") is not False:
            module.training = False


def _freeze_model_state(
    model: nn.Module, modules: list[nn.Module] | None = None, helpers: list[nn.Module] | None = None
) -> Callable[[], None]:
    """Remember what calibration could change, and return a function that restores it.

    ``modules`` (default: all of ``model``'s) and ``helpers`` (the torch.ao observers and stubs
    among them) may be given by a caller that keeps them. A training flag or helper attribute
    still holding its remembered value is not set again (each ``Module.__setattr__`` costs more
    than a small model's ops); observer buffers are copied back in place.
    """
    if modules is None:
        modules = list(model.modules())
    if helpers is None:
        helpers = [module for module in modules if is_quant_helper(module)]
    flags = [module.training for module in modules]
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
        for module, flag in zip(modules, flags):
            if module.training != flag:
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
            now = vars(module)
            for name, value in attrs.items():
                if now.get(name, _UNSET) is not value:
                    setattr(module, name, value)

    return restore


_UNSET = object()


def _calibrate_graph(
    session: Any,
    batches: Iterable[Any],
    plan: Mapping[tuple[str, str], Any],
    *,
    max_batches: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Any:
    """:meth:`Session.calibrate` for an exported graph: the same loop, observed at nodes."""
    view: GraphView = session.graph
    total = batch_count(batches)
    if max_batches is not None:
        total = max_batches if total is None else min(total, max_batches)
    observer = _Observer(session.catalog)
    for point, request in plan.items():
        if point[0] in session.catalog.modules:
            observer.request(point, request)
    sites = _Sites(view, observer.accumulators)
    tracker = observer.tracker
    inputs: dict[str, Any] = {}  # invocation key -> its input value (first batch: producer tags need it)

    def on_value(node: torch.fx.Node, value: Any) -> None:
        try:
            for inv, observed in sites.ends.get(node, ()):
                if tracker.discovering:
                    source = inputs.get(inv.key)
                    tracker._producer_hook(inv.fqn)(None, (source,) if source is not None else (), {}, value)
                if observed:
                    observer.observe((inv.fqn, "post"), first_tensor(value))
            for inv, observed in sites.starts.get(node, ()):
                if tracker.discovering:
                    inputs[inv.key] = value
                    tracker._consumer_hook(inv.fqn)(None, (value,), {})
                if observed:
                    observer.observe((inv.fqn, "pre"), first_tensor(value))
        except Exception as exc:
            raise ObserverFault(f"tui-quantreport failed while observing: {type(exc).__name__}: {exc}") from exc

    runner = GraphRunner(view, sites.nodes, on_value)
    restore = freeze_graph_state(view.gm)
    done = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if max_batches is not None and done >= max_batches:
                    break
                if should_cancel is not None and should_cancel():
                    raise CalibrationCancelled()
                observer.new_batch()
                runner.failed_at = None
                try:
                    runner.run(*view.flat_inputs(batch), enable_io_processing=False)
                except ObserverFault:
                    raise
                except Exception as exc:
                    raise _graph_rejected(session, runner.failed_at, done + 1, exc) from exc
                finally:
                    runner.env = {}
                observer.end_batch()
                inputs.clear()
                done += 1
                if progress is not None:
                    progress(done, total)
    finally:
        observer.end_discovery()
        observer.new_batch()
        inputs.clear()
        restore()
    points = {key: acc.freeze() for key, acc in observer.accumulators.items()}
    return Stats(batches=done, points=points, weights=weight_ranges(view), layouts=dict(observer.layouts))


def _graph_rejected(session: Any, node: torch.fx.Node | None, index: int, exc: Exception) -> Exception:
    module = session.graph.module_of(node) if node is not None else None
    where = ""
    if module:
        info = session.catalog.modules.get(module)
        where = f" in module '{module}' ({info.class_name if info else 'unknown'})"
    elif node is not None:
        where = f" in the model's own forward ({session.catalog.class_name})"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CalibrationError(
        f"batch {index} was rejected{where}: {type(exc).__name__}: {detail}", batch=index, module=module
    )
