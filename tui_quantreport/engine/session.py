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
import gc
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any, Protocol

import torch
from torch import nn

from tui_quantreport.engine import merged_batches
from tui_quantreport.engine.batches import ObserverFault, batch_count, call_batch
from tui_quantreport.engine.batches import first_tensor as first_tensor  # re-exported: callers import it from here
from tui_quantreport.engine.errors import CalibrationCancelled, CalibrationError, exit_call
from tui_quantreport.engine.graph_calibration import _calibrate_graph, _graph_view
from tui_quantreport.engine.graph_runner import weight_ranges
from tui_quantreport.engine.instrument import (
    _END,
    _eval,
    _fault,
    _global_hooks,
    _Holder,
    _hook,
    _Layouts,
    _no_op,
    _nothing,
    _pop_into,
    _signature,
    _wrappable,
    _wrapper,
)
from tui_quantreport.engine.model_lock import model_lock
from tui_quantreport.engine.model_state import freeze_model_state
from tui_quantreport.engine.modules import ModelCatalog, is_quant_helper
from tui_quantreport.engine.observer import GC_EVERY, _Observer
from tui_quantreport.engine.stats import (
    Point,
    PointRequest,
    Stats,
    WeightRange,
)

ProgressCallback = Callable[[int, int | None], None]


class Observing(Protocol):
    """What a calibration is asked to record, as the detectors' :class:`~.settings.Settings`
    say it (the calibration layer never imports the detectors: it is handed this)."""

    def observations(self, catalog: ModelCatalog) -> dict[Point, PointRequest]:
        """The points to observe and what to reduce at each."""
        ...

    def observed(self) -> dict[str, Any]:
        """The facts that decided what is recorded (kept with the stats)."""
        ...


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
        self._plan: tuple[Observing, dict[Point, PointRequest]] | None = None
        #: The channel-axis decisions of the last calibration that discovered them, and what they fit.
        self._layouts: _Layouts | None = None
        #: How many batches the last calibration folded in from merged forwards (see merged_batches).
        self.merged_batches = 0
        #: The last merge check: (a batch's signature, the plan, whether it passed, the group size).
        #: A calibration alike takes its verdict: merged without the first-batch-alone check, from its
        #: first batch on where its layouts are known too, or one batch at a time without trying
        #: (the check costs the first batch alone and the group's merged forward).
        self._merge_check: tuple[Any, Mapping[Point, PointRequest], bool, int] | None = None
        #: Whether the model holds torch.ao fake-quantize modules (then no merging).
        self._helpers: bool | None = None

    def calibrate(
        self,
        batches: Iterable[Any],
        settings: Observing,
        *,
        max_batches: int | None = None,
        progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        rerun_failures: bool = True,
    ) -> Stats:
        """Run ``batches`` through the model, recording what ``settings`` needs.

        ``settings`` (the detectors' :class:`~.settings.Settings`) name the points to observe
        (:func:`~.settings.observation_plan`); the
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
            with model_lock(self.model):  # no measurement's simulated forwards are calibrated
                plan = self._plan_for(settings)
                stats = self._observe(
                    batches,
                    plan,
                    max_batches=max_batches,
                    progress=progress,
                    should_cancel=should_cancel,
                    rerun_failures=rerun_failures,
                )
                return replace(stats, observed=settings.observed())
        finally:
            if frozen:
                gc.enable()

    def _plan_for(self, settings: Observing) -> dict[Point, PointRequest]:
        """settings.observations(catalog), kept for the next calibration with equal settings."""
        kept = self._plan
        if kept is not None and kept[0] == settings:
            return kept[1]
        plan = settings.observations(self.catalog)
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
        restore = freeze_model_state(self.model, list(self._modules.values()))
        detach: Callable[[], None] = _nothing
        done = 0
        merge: _Merge | None = None
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
                    _reuse_layouts(observer, memory)  # type: ignore[arg-type]
                # Batches after the first may run several as one forward (see merged_batches):
                # never where a batch must not run twice (rerun_failures off: side effects).
                merge = _Merge(should_cancel, plan) if self._may_merge(rerun_failures) else None
                if merge is not None:  # the first batch alone sizes the groups, unless known (resume)
                    observer.sizes = None if known and merge.resume(self._merge_check, signature) else {}

                def tick() -> None:
                    nonlocal done
                    done += 1
                    if done % GC_EVERY == 0 and not gc.isenabled():
                        gc.collect(1)
                    if progress is not None:
                        progress(done, total)

                while max_batches is None or done < max_batches:
                    if done > 0:
                        batch = merge.take(iterator) if merge is not None else next(iterator, _END)
                    if batch is _END:
                        break
                    if should_cancel is not None and should_cancel():
                        raise CalibrationCancelled()
                    if merge is not None and (done > 0 or merge.from_first) and not merge.off:
                        room = None if max_batches is None else max_batches - done
                        self._calibrate_merged(observer, merge, batch, iterator, room, done + 1, tick)
                        continue
                    self._calibrate_batch(observer, batch, done + 1, rerun_failures, signature, plan)
                    tick()
        finally:
            detach()
            observer.end_discovery()
            observer.new_batch()
            restore()
        self.merged_batches = merge.folded if merge is not None else 0
        points = {key: acc.freeze() for key, acc in observer.accumulators.items()}
        return Stats(
            batches=done,
            points=points,
            weights=self.weight_ranges(),
            layouts=observer.ordered_layouts(),
        )

    def _calibrate_batch(
        self,
        observer: _Observer,
        batch: Any,
        index: int,
        rerun_failures: bool,
        signature: Any,
        plan: Mapping[Point, PointRequest],
    ) -> None:
        """Run batch ``index`` and fold it in; the first batch's discoveries are kept for the next
        calibration that starts alike (``signature``, ``plan``)."""
        observer.new_batch()
        self._run_batch(observer, batch, index, rerun_failures)
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
                self._run_batch(observer, batch, index, rerun_failures)
            finally:
                observer.end_rerun()

    def _may_merge(self, rerun_failures: bool) -> bool:
        """Whether this calibration may merge batches: not where a batch must not run twice
        (``rerun_failures`` off: side effects), nor in a model holding torch.ao fake-quantize
        modules (their observers' state moves with every forward, and their output with it: a
        merged forward would quantize its batches with other parameters; a plain observer
        returns its input, and the calibration restores its state), nor when turned off."""
        if not rerun_failures or not merged_batches.enabled():
            return False
        if self._helpers is None:
            self._helpers = any(
                any(c.__name__ == "FakeQuantizeBase" for c in type(m).__mro__) for m in (self._modules or {}).values()
            )
        return not self._helpers

    def _calibrate_merged(
        self,
        observer: _Observer,
        merge: _Merge,
        batch: Any,
        iterator: Iterator[Any],
        room: int | None,
        index: int,
        tick: Callable[[], None],
    ) -> None:
        """Calibrate ``batch`` and the batches after it (as many as the group takes, at most
        ``room``) as one forward, folded in batch by batch; where the rules of
        :mod:`.merged_batches` do not hold, batch by batch as usual (and merging stops)."""
        signature = _signature(batch)
        if merge.size is None:  # the first group: its size from the first batch's observed tensors
            merge.size = merged_batches.group_size(observer.sizes or {})
            observer.sizes = None
            last = self._merge_check
            if last is not None and last[0] == signature and last[1] is merge.plan:
                if last[2]:
                    merge.checked = signature  # passed in an earlier calibration
                else:
                    merge.off = True  # refused in an earlier calibration: one batch at a time at once
        if merge.size < 2:  # small groups do not pay: one batch at a time
            merge.off = True
        group = [batch]
        while not merge.off and len(group) < merge.size and (room is None or len(group) < room):
            more = next(iterator, _END)
            if more is _END:
                break
            if _signature(more) != signature:  # another shape ends the group; it starts the next
                merge.pending = more
                break
            group.append(more)
        shares = self._merged_shares(observer, merge, group, signature) if len(group) > 1 else None
        if shares is None:
            if len(group) > 1:  # the group broke the rule: one batch at a time from now on
                merge.off = True
                self._merge_check = (signature, merge.plan, False, merge.size) if signature is not None else None
            for i, item in enumerate(group):
                if i and merge.should_cancel is not None and merge.should_cancel():
                    raise CalibrationCancelled()
                self._calibrate_batch(observer, item, index + i, True, None, {})
                tick()
            return
        if signature is not None:
            self._merge_check = (signature, merge.plan, True, merge.size)
        for i, (item, share) in enumerate(zip(group, shares)):
            if i and merge.should_cancel is not None and merge.should_cancel():
                raise CalibrationCancelled()
            self._fold_share(observer, item, share, index + i)
            merge.folded += 1
            tick()

    def _merged_shares(
        self, observer: _Observer, merge: _Merge, group: list[Any], signature: Any
    ) -> list[list[tuple[Point, torch.Tensor | None]]] | None:
        """Each batch's share of the group's merged forward, or None where the group may not merge."""
        rows = merged_batches.batch_rows(group[0])
        if not rows or signature is None:
            return None
        alone = None
        if merge.checked != signature:  # once per batch shape: the first batch alone, to compare
            alone = self._record(observer, group[0])
            if alone is None:
                return None
        calls = self._record(observer, merged_batches.concat(group))
        if calls is None:
            return None
        shares = merged_batches.split(calls, len(group), rows)
        if shares is None:
            return None
        if alone is not None:
            if not merged_batches.same_calls(alone, shares[0]):
                return None
            merge.checked = signature
        return shares

    def _record(self, observer: _Observer, batch: Any) -> list[merged_batches.Call] | None:
        """The observed calls of one forward of ``batch``, nothing folded in (None: the model rejected it)."""
        observer.new_batch()
        calls: list[merged_batches.Call] = []
        observer.recording = calls
        try:
            call_batch(self.model, batch)
        except (Exception, SystemExit):  # run again batch by batch, where the failure is explained
            return None
        finally:
            observer.recording = None
        return calls

    def _fold_share(
        self, observer: _Observer, batch: Any, share: list[tuple[Point, torch.Tensor | None]], index: int
    ) -> None:
        """Fold in one batch's share of a merged forward, call by call, as its own forward would have."""
        observer.new_batch()
        try:
            for point, tensor in share:
                observer.observe(point, tensor)
            stale = observer.end_batch()
        except ObserverFault:
            raise
        except Exception as exc:  # our own work, like the wrappers'
            raise _fault(exc) from exc
        if stale:  # (cannot happen: nothing runs between the recording and the fold) measured again
            observer.begin_rerun(stale)
            try:
                self._run_batch(observer, batch, index, True)
            finally:
                observer.end_rerun()

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

    def _sites(
        self, observer: _Observer, plan: Mapping[Point, PointRequest]
    ) -> dict[str, tuple[tuple[Point, ...], tuple[Point, ...], tuple[str, ...]]]:
        """Request ``plan``'s points from ``observer``; returns, per module to observe, its pre
        points, its post points, and the fqns whose input summary it propagates."""
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
        return {fqn: (tuple(pre), tuple(post), tuple(propagate)) for fqn, (pre, post, propagate) in lists.items()}

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
        sites = self._sites(observer, plan)
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


class _Merge:
    """Merged batches during one calibration: the group size (decided at the first group),
    whether the first group's check passed, whether merging stopped, batches folded so far."""

    def __init__(self, should_cancel: Callable[[], bool] | None, plan: Mapping[Point, PointRequest]) -> None:
        self.should_cancel = should_cancel
        #: The observation plan (kept by the session between calibrations with equal settings).
        self.plan = plan
        self.size: int | None = None
        #: The batch signature the first-batch-alone check passed for (None: not checked yet).
        self.checked: Any = None
        self.off = False
        self.folded = 0
        #: A batch pulled to end a group (another shape): the next one to calibrate.
        self.pending: Any = _END
        #: Whether the first batch merges too (:meth:`resume`).
        self.from_first = False

    def resume(self, last: tuple[Any, Mapping[Point, PointRequest], bool, int] | None, signature: Any) -> bool:
        """Take an earlier calibration's passed check for batches like ``signature`` and this plan (its
        group size, no first-batch-alone check): the first batch merges too. False when there is none."""
        if signature is None or last is None or last[0] != signature or last[1] is not self.plan or not last[2]:
            return False
        if last[3] < 2:
            return False
        self.size, self.checked, self.from_first = last[3], signature, True
        return True

    def take(self, iterator: Iterator[Any]) -> Any:
        """The next batch: the one that ended the last group, else the iterator's next."""
        batch, self.pending = self.pending, _END
        return next(iterator, _END) if batch is _END else batch


def _reuse_layouts(observer: _Observer, memory: _Layouts) -> None:
    """Start ``observer`` with the layouts an earlier calibration learned (no discovery pass)."""
    observer.tracker.decisions.update(memory.decisions)
    observer.end_discovery()
    # The points its first batch held take the steady path from the first call (their
    # layout is recorded on that call, as the general path would record it).
    observer._steady.update(memory.steady)
    observer._kept_layouts = dict(memory.layouts)
    observer._layout_order = list(memory.layouts)
