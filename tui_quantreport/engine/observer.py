"""The per-batch observer of a calibration: reduce each distinct tensor once, fold it into its points.

Moved out of :mod:`.session` (which drives the calibration and attaches the observer); the
grouping of small held tensors and the replay of an unchanged batch live here.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from tui_quantreport.engine.layout import LayoutTracker, integer_layout
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.stats import (
    Accumulator,
    Point,
    PointLayout,
    PointRequest,
    Reducer,
    TensorSummary,
    channels_view,
    selection,
    summarize,
)
from tui_quantreport.engine.stats.accumulator import MAX_SHAPES_KEPT, rows_of
from tui_quantreport.engine.stats.grouped import Bank, bankable, channel_split, row_of, spans, summarize_group, take

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
        #: While a merged forward runs (see :mod:`.merged_batches`): its calls, observed later.
        self.recording: list[tuple[Point, torch.Tensor | None, int]] | None = None
        #: While the first batch runs, where merging may follow: its observed tensors' bytes by id.
        self.sizes: dict[int, int] | None = None

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
        if (self.recording is not None or self.sizes is not None) and self._tap(point, tensor):
            return
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

    def _tap(self, point: Point, tensor: torch.Tensor | None) -> bool:
        """For merged batches (see :mod:`.merged_batches`): during a merged forward, record the call
        (True: nothing else to do, it is folded in per batch afterwards); during the first batch,
        note the tensor's bytes (False: observed as usual)."""
        recording = self.recording
        if recording is not None:
            recording.append((point, tensor, tensor._version if tensor is not None else 0))
            return True
        if self.sizes is not None and tensor is not None:
            self.sizes[id(tensor)] = tensor.numel() * tensor.element_size()
        return False

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
        groups, meta, held_of_group, where, stale_held = _group_held(held)
        stale = {item[0] for item in queue if item[1] == _HELD and item[2] in stale_held} if stale_held else set()
        wanted: dict[tuple, set[tuple[float, ...]]] = {key: set() for key in groups}
        batched, single = self._sort_calls(queue, held, where, meta, stale, wanted)
        percentiles_of_group = {key: tuple(sorted({p for ps in wanted[key] for p in ps})) for key in groups}
        summaries = {
            key: summarize_group(members, key[1], percentiles_of_group[key]) for key, members in groups.items()
        }
        terms = _GroupTerms(summaries)
        updates, accs, call_rows = self._fold_banks(batched, summaries, terms)
        if not stale and not single:  # every call went through a bank: the next batch may replay this one
            self._plan = _Plan(
                queue,
                [(key, held_of_group[key], key[1], percentiles_of_group[key]) for key in groups],
                updates,
                accs,
                call_rows,
            )
        self._fold_single(single, held, where, summaries, terms)
        return stale

    def _sort_calls(
        self,
        queue: list[tuple],
        held: list[tuple[torch.Tensor, int, int, tuple[int, ...]]],
        where: list[tuple[tuple, int] | None],
        meta: dict[tuple, tuple[int, str]],
        stale: set[Point],
        wanted: dict[tuple, set[tuple[float, ...]]],
    ) -> tuple[dict[tuple, tuple[list, list, list, list, list]], list[tuple]]:
        """The batch's calls, sorted: those folded in together per (group, reducers), and the rest.

        Per (group, reducers): [accumulators, tensor rows] to start a bank row, [bank rows, tensor
        rows] to update one, and each call's (shape, axis); everything else goes through
        Accumulator.update. ``wanted`` gains the percentiles each group's points read.
        """
        calls = Counter(item[0] for item in queue)
        info = self._info
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
            else:
                slot[2].append(acc)
                slot[3].append(row)
            slot[4].append((shape, axis))
        return batched, single

    def _fold_banks(
        self,
        batched: dict[tuple, tuple[list, list, list, list, list]],
        summaries: dict[tuple, Any],
        terms: _GroupTerms,
    ) -> tuple[list[tuple[tuple, Bank, np.ndarray, np.ndarray]], list[Accumulator], list[int]]:
        """Fold the batched calls into their banks' rows; returns (updates, accumulators, rows per
        call), what a next batch making the same calls replays."""
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
            bank_terms = {r: terms(key, r) for r in bank.reducers}
            if starting:
                for acc, row in zip(starting, bank.start(group, np.asarray(start_rows), span, bank_terms)):
                    acc.bank, acc.row = bank, int(row)
            if updating:
                bank.update(np.asarray([acc.row for acc in updating]), group, np.asarray(update_rows), span, bank_terms)
            updates.append(
                (key, bank, np.asarray([acc.row for acc in starting + updating]), np.asarray(start_rows + update_rows))
            )
            accs += starting + updating
        return updates, accs, call_rows

    def _fold_single(
        self,
        single: list[tuple],
        held: list[tuple[torch.Tensor, int, int, tuple[int, ...]]],
        where: list[tuple[tuple, int] | None],
        summaries: dict[tuple, Any],
        terms: _GroupTerms,
    ) -> None:
        """Fold the calls no bank took in, one Accumulator.update each."""
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
                        return take(terms(key, reducer), row)
                    return reducer.contribution(summary, lambda: channels_view(tensor, axis))

                acc.update(shape, axis, summary, contribution if acc.reducers else None)

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


def _group_held(
    held: list[tuple[torch.Tensor, int, int, tuple[int, ...]]],
) -> tuple[dict[tuple, list[torch.Tensor]], dict[tuple, tuple[int, str]], dict[tuple, list[int]], list, set[int]]:
    """Held tensors by (shape, axis, dtype): one reduction per group.

    Returns the groups' members, what each group's summary will hold (its channel count and array
    dtype), each group's held indices, where each held tensor went ((group, row), or None), and
    the stale held indices: a tensor whose _version moved was modified in place after it was seen;
    it is not read, and its points are stale.
    """
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
            meta[key] = (channel_split(shape, axis)[1], _F64 if tensor.dtype == torch.float64 else _F32)
        where.append((key, len(members)))
        members.append(tensor)
        held_of_group[key].append(i)
    return groups, meta, held_of_group, where, stale_held


class _GroupTerms:
    """Each reducer's contribution over a group's summary, computed once per (group, reducer)."""

    def __init__(self, summaries: dict[tuple, Any]):
        self.summaries = summaries
        self.known: dict[tuple, Any] = {}

    def __call__(self, key: tuple, reducer: Reducer) -> Any:
        known = self.known.get((key, reducer))
        if known is None:
            known = self.known[(key, reducer)] = reducer.contribution(self.summaries[key], _no_tensor)
        return known
