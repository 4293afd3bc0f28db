"""One-at-a-time end-to-end sensitivity per (decision unit x scheme), re-run only from the change on.

The end-to-end SQNR with only one unit quantized (a module, or a fused group of
modules quantized together) is what the planner allocates bits from. Measured
naively it costs one forward pass over the probes per (unit, scheme); most of
that pass recomputes float activations that do not depend on the change.

:class:`ActivationCache` records, during one float pass, the output of each
*cacheable* module per probe batch: the blocks (the children of the model's
repeated container, an ``nn.ModuleList``/``nn.Sequential`` of layers, with the
siblings along its path; else every top-level child) and, within the memory
bound, their children and grandchildren. For a pass that quantizes unit ``u``,
every cached module whose forward *ended before u's first call started* (in the
float pass) is made to return its recorded float output (a copy; no compute):
nothing before ``u`` is quantized, so those outputs are exactly what the
uncached pass computes, and the result is bit-identical while the pass costs
only from ``u`` onward.

Guards: a module is cached only when it is called exactly once per forward on
every probe batch and its output is tensors in plain tuples/lists/dicts; a
cached pass that replays further down the model than any before is checked
against the uncached pass (bit for bit, on the SQNR), about one check per block;
a mismatch or an error in a cached pass turns caching off for the rest
(``fallback`` says why) and the uncached pass is used.

:class:`Sensitivity` runs the passes with progress, an ETA and cancel; what was
measured before a cancel is kept (``results``) and not measured again.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.batches import first_tensor
from tui_quantreport.engine.quantsim.error_analysis import (
    _MISSING,
    ErrorAnalysis,
    MeasurementCancelled,
    SimulationError,
    _check_cancel,
    _measurement,
    _one_line,
    _restore_forwards,
)
from tui_quantreport.engine.quantsim.merged_sensitivity import MergeError, batch_rows, merge, merged_pass, refused
from tui_quantreport.engine.quantsim.outputs import OutputsSqnr
from tui_quantreport.engine.quantsim.sqnr import PreparedReference, Sqnr

ProgressCallback = Callable[[int, int | None], None]

#: Default memory bound of the activation cache (MiB).
DEFAULT_CACHE_MB = 1024.0
#: Levels cached below a block (0: the blocks only).
MAX_DEPTH = 2
#: Length of a unit's kept output error (:class:`ErrorSketch`): the error itself when the model's
#: outputs over the probes have at most this many elements, else a CountSketch of it (8 bytes each).
SKETCH_DIM = 1 << 16
#: Elements of an output error sketched at a time (bounds the draws' memory).
SKETCH_CHUNK = 1 << 20


@dataclass
class _Node:
    """A cacheable module: its place in the float pass and its recorded outputs."""

    fqn: str
    module: nn.Module
    depth: int
    #: Event index (batch 0) at which its first call started / its forward ended.
    start: int = -1
    end: int = -1
    calls: list[int] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    nbytes: int = 0
    storable: bool = True
    kept: bool = False


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (torch.Tensor, int, float, bool, str)):
        return True
    if type(value) in (tuple, list):
        return all(_is_plain(v) for v in value)
    if type(value) is dict:
        return all(_is_plain(v) for v in value.values())
    return False


def _copy(value: Any) -> Any:
    """A copy of a plain output: tensors detached and cloned, containers rebuilt."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if type(value) is tuple:
        return tuple(_copy(v) for v in value)
    if type(value) is list:
        return [_copy(v) for v in value]
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    return value


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if type(value) in (tuple, list):
        return sum(_nbytes(v) for v in value)
    if type(value) is dict:
        return sum(_nbytes(v) for v in value.values())
    return 0


def find_blocks(model: nn.Module) -> tuple[str | None, list[tuple[str, nn.Module]]]:
    """(the repeated container's fqn, the level-0 modules): the container's children and the
    siblings along the path from the root to it; without one (no ``ModuleList``/``Sequential``
    of two or more children holding parameters), every top-level child."""
    best: tuple[int, str] | None = None
    for fqn, module in model.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)):
            continue
        children = [c for c in module.children() if any(True for _ in c.parameters())]
        if len(children) < 2:
            continue
        params = sum(p.numel() for p in module.parameters())
        if best is None or params > best[0]:
            best = (params, fqn)
    if best is None:
        return None, [(name, child) for name, child in model.named_children()]
    container = best[1]
    level: list[tuple[str, nn.Module]] = []
    parts = container.split(".") if container else []
    prefix = ""
    parent = model
    for part in parts:
        for name, child in parent.named_children():
            if name != part:
                level.append((prefix + name, child))
        parent = parent.get_submodule(part)
        prefix += part + "."
    level += [(prefix + name, child) for name, child in parent.named_children()]
    return container, level


class _Recording:
    """The state of :meth:`ActivationCache.record`'s float pass and the hooks that fill it: the event
    counter (module calls and returns, in order), the probe batch, the modules reading each tensor."""

    def __init__(self, first_call: dict[str, int]):
        self.first_call = first_call
        self.events = [0]
        self.batch = [0]
        self.keep_all = [True]
        #: id(tensor) -> (weak ref, the targets reading it): ids are reused once a tensor dies.
        self.readers: dict[int, tuple[weakref.ref, list[str]]] = {}
        self.groups: dict[frozenset[str], None] = {}

    def group(self, members: list[str]) -> None:
        if len(members) > 1:
            self.groups[frozenset(members)] = None

    def end_first_batch(self) -> None:
        for _, members in self.readers.values():
            self.group(members)
        self.readers.clear()

    def node_pre(self, node: _Node):
        events, batch = self.events, self.batch

        def hook(module, args, kwargs):
            b = batch[0]
            while len(node.calls) <= b:
                node.calls.append(0)
            node.calls[b] += 1
            if b == 0 and node.start < 0:
                node.start = events[0]
            events[0] += 1

        return hook

    def node_post(self, node: _Node):
        events, batch, keep_all = self.events, self.batch, self.keep_all

        def hook(module, args, output):
            b = batch[0]
            if b == 0 and node.end < 0:
                node.end = events[0]
            events[0] += 1
            if not node.storable or node.calls[b] != 1:
                return
            if not _is_plain(output):
                node.storable = False
                return
            if keep_all[0] or node.kept:
                if b == 0:
                    node.nbytes = _nbytes(output)
                node.outputs.append(_copy(output))

        return hook

    def target_pre(self, fqn: str):
        events, batch, readers, first_call, group = self.events, self.batch, self.readers, self.first_call, self.group

        def hook(module, args, kwargs):
            x = first_tensor(args) if args else first_tensor(kwargs)
            if batch[0] == 0:
                first_call.setdefault(fqn, events[0])
                if x is not None:
                    entry = readers.get(id(x))
                    if entry is None or entry[0]() is not x:
                        if entry is not None:
                            group(entry[1])
                        entry = readers[id(x)] = (weakref.ref(x), [])
                    entry[1].append(fqn)
            events[0] += 1

        return hook


class ActivationCache:
    """Float outputs of cacheable modules per probe batch, recorded in one float pass.

    The pass also records, for the planner, which quantizable modules read one input
    tensor (``shared_inputs``) and each one's first call (``first_call``).
    """

    def __init__(self, analysis: ErrorAnalysis, memory_mb: float = DEFAULT_CACHE_MB):
        if not (memory_mb >= 0 and math.isfinite(memory_mb)):
            raise ValueError("memory_mb must be a finite number >= 0")
        self.analysis = analysis
        self.memory_bytes = int(memory_mb * (1 << 20))
        self.container, level = find_blocks(analysis.model)
        self.nodes: dict[str, _Node] = {}
        self._collect(level)
        self.first_call: dict[str, int] = {}
        self.shared_inputs: list[tuple[str, ...]] = []
        self.recorded = False
        #: Why cached passes are not used (None while they are).
        self.fallback: str | None = None if memory_mb > 0 else "the cache's memory bound is 0"
        self.verified = False
        self.kept_bytes = 0

    def _collect(self, level: Sequence[tuple[str, nn.Module]]) -> None:
        frontier = [(fqn, module, 0) for fqn, module in level]
        seen: set[int] = set()
        while frontier:
            fqn, module, depth = frontier.pop(0)
            if id(module) in seen:  # a module reachable twice is never "called once"
                continue
            seen.add(id(module))
            self.nodes[fqn] = _Node(fqn, module, depth)
            if depth < MAX_DEPTH:
                frontier += [(f"{fqn}.{name}", child, depth + 1) for name, child in module.named_children()]

    @property
    def kept(self) -> list[_Node]:
        return [n for n in self.nodes.values() if n.kept]

    @_measurement
    def record(self, progress: ProgressCallback | None = None, should_cancel: Callable[[], bool] | None = None) -> None:
        """One float pass over the probes: call order, shared inputs, and the kept outputs."""
        analysis = self.analysis
        probes = analysis.probes
        rec = _Recording(self.first_call)
        handles = []
        for node in self.nodes.values():
            handles.append(node.module.register_forward_pre_hook(rec.node_pre(node), with_kwargs=True))
            handles.append(node.module.register_forward_hook(rec.node_post(node)))
        for fqn, target in analysis.targets.items():
            handles.append(target.module.register_forward_pre_hook(rec.target_pre(fqn), with_kwargs=True))
        try:
            with analysis._float_mode():
                for i, probe in enumerate(probes):
                    _check_cancel(should_cancel)
                    rec.batch[0] = i
                    analysis._run(probe, i)
                    if i == 0:
                        rec.end_first_batch()
                        self._select(len(probes))
                        rec.keep_all[0] = False
                    if progress is not None:
                        progress(i + 1, len(probes))
        finally:
            for h in handles:
                h.remove()
        self._finish(len(probes), rec.groups)

    def _finish(self, batches: int, groups: Iterable[frozenset[str]]) -> None:
        """After the pass: keep only the outputs of modules called once on every batch; the shared inputs."""
        for node in self.nodes.values():
            ok = node.storable and len(node.calls) == batches and all(c == 1 for c in node.calls)
            if not (ok and node.kept and len(node.outputs) == batches):
                node.kept = False
                node.outputs = []
        self.kept_bytes = sum(n.nbytes * batches for n in self.kept)
        order = {fqn: i for i, fqn in enumerate(self.analysis.targets)}
        self.shared_inputs = [tuple(sorted(g, key=lambda f: order.get(f, 0))) for g in groups]
        self.recorded = True
        if not self.kept and self.fallback is None:
            self.fallback = "no module of the model can be cached (none is called once per forward before another)"

    def _select(self, batches: int) -> None:
        """After batch 0: keep the useful outputs (some quantizable module starts after the module
        ended) within the memory bound, blocks first, then their children, then grandchildren."""
        last_start = max(self.first_call.values(), default=-1)
        budget = self.memory_bytes
        used = 0
        for depth in range(MAX_DEPTH + 1):
            for node in sorted(self.nodes.values(), key=lambda n: n.start):
                if node.depth != depth:
                    continue
                useful = node.storable and node.end >= 0 and node.end < last_start and node.calls[:1] == [1]
                cost = node.nbytes * batches
                if useful and used + cost <= budget:
                    node.kept = True
                    used += cost
        for node in self.nodes.values():
            if not node.kept:
                node.outputs = []

    def skipped(self, members: Iterable[str]) -> list[_Node]:
        """The kept modules a pass quantizing ``members`` replays (the outermost ones)."""
        if self.fallback is not None:
            return []
        starts = [self.first_call.get(m) for m in members]
        if not starts or any(s is None for s in starts):
            return []
        first = min(s for s in starts if s is not None)
        done = [n for n in self.kept if n.end < first]
        names = {n.fqn for n in done}
        return [n for n in done if not any(n.fqn.startswith(other + ".") for other in names)]

    @contextmanager
    def replaying(self, nodes: Sequence[_Node]) -> Iterator[None]:
        """Each of ``nodes`` returns a copy of its recorded output for the current probe batch."""
        if not nodes:
            yield
            return
        batch = [-1]

        def next_batch(module, args, kwargs):
            batch[0] += 1

        def replay(node: _Node):
            outputs = node.outputs

            def forward(*args, **kwargs):
                b = batch[0]
                if not 0 <= b < len(outputs):
                    raise RuntimeError("the cached pass lost track of the probe batch")
                return _copy(outputs[b])

            return forward

        saved: list[tuple[nn.Module, Any]] = []
        handle = self.analysis.model.register_forward_pre_hook(next_batch, with_kwargs=True)
        try:
            for node in nodes:
                saved.append((node.module, node.module.__dict__.get("forward", _MISSING)))
                node.module.__dict__["forward"] = replay(node)
            yield
        finally:
            _restore_forwards(saved)
            handle.remove()


class ErrorSketch:
    """The output error of one-at-a-time passes, kept so that a plan's errors can be added as vectors.

    The error of item ``i`` is ``e_i = y_i - y`` over every probe batch and model output (the float
    reference ``y``), divided by ``||y||``: its squared norm is the item's noise ``10^(-S/10)``. A plan's
    first-order error is ``sum e_i``, and its noise ``||sum e_i||^2`` keeps the cross terms
    ``2 <e_i, e_j>`` that the additive prediction ``sum ||e_i||^2`` drops (errors of different units
    that cancel, or add up, at the output).

    Kept exactly when the outputs have at most ``dim`` elements; else as a CountSketch (each element
    added, with a sign, to one of ``dim`` buckets, both drawn from a generator seeded by the element's
    probe batch and output): the same map for every item, so inner products are estimated without
    bias, with a relative error about ``1/sqrt(dim)``.
    """

    def __init__(self, analysis: ErrorAnalysis, dim: int = SKETCH_DIM):
        reference = analysis.reference_outputs()
        self.order = [list(batch) for batch in reference]
        self.sizes = [[batch[name].numel() for name in batch] for batch in reference]
        total = sum(sum(s) for s in self.sizes)
        self.exact = total <= dim
        self.dim = total if self.exact else dim
        energy = sum(float(t.detach().to(torch.float64).square().sum()) for batch in reference for t in batch.values())
        #: 1 / ||y|| (None when the reference is zero or not finite: no sketch is kept).
        self.scale = 1.0 / math.sqrt(energy) if energy > 0 and math.isfinite(energy) else None

    def add_to(self, vector: torch.Tensor, batch: int, index: int, offset: int, error: torch.Tensor) -> None:
        """Add one output's error (probe batch ``batch``, output ``index``) into the kept ``vector``;
        ``offset``: where it starts when kept exactly. Sketched in chunks of :data:`SKETCH_CHUNK`
        elements (the draws continue from chunk to chunk: the same map for every item)."""
        flat = error.reshape(-1)
        if self.exact:
            vector[offset : offset + flat.numel()] += flat
            return
        generator = torch.Generator().manual_seed(1_000_003 * batch + index)
        for start in range(0, flat.numel(), SKETCH_CHUNK):
            piece = flat[start : start + SKETCH_CHUNK]
            buckets = torch.randint(self.dim, (piece.numel(),), generator=generator)
            signs = torch.randint(0, 2, (piece.numel(),), generator=generator, dtype=torch.float64)
            vector.index_add_(0, buckets, piece * (signs * 2 - 1))


class _SketchingSqnr(OutputsSqnr):
    """:class:`OutputsSqnr` that also keeps the error's :class:`ErrorSketch` vector (batches in probe order)."""

    def __init__(self, sketch: ErrorSketch, first_batch: int = 0):
        super().__init__()
        self.sketch = sketch
        self.batch = first_batch
        self.vector: torch.Tensor | None = (
            torch.zeros(sketch.dim, dtype=torch.float64) if sketch.scale is not None else None
        )

    def add(self, reference: Mapping[str, PreparedReference], approx: Mapping[str, torch.Tensor]) -> None:
        super().add(reference, approx)
        sketch, b = self.sketch, self.batch
        self.batch += 1
        scale = sketch.scale
        if self.vector is None or scale is None:
            return
        if b >= len(sketch.order) or list(reference) != sketch.order[b]:
            self.vector = None
            return
        offset = sum(sum(s) for s in sketch.sizes[:b]) if sketch.exact else 0
        for index, name in enumerate(sketch.order[b]):
            ref, out = reference[name].reference, approx.get(name)
            if out is None or out.shape != ref.shape:
                self.vector = None
                return
            error = (out.detach().to(torch.float64) - ref) * scale
            if not bool(torch.isfinite(error).all()):
                self.vector = None
                return
            sketch.add_to(self.vector, b, index, offset, error.cpu())
            offset += ref.numel()

    def error(self) -> torch.Tensor | None:
        """The kept error vector, when every probe batch was added and every output was finite."""
        return self.vector if self.vector is not None and self.batch == len(self.sketch.order) else None


@dataclass(frozen=True)
class Item:
    """One sensitivity measurement: these modules quantized together with this scheme."""

    members: tuple[str, ...]
    scheme: str


class Sensitivity:
    """End-to-end SQNR with only one unit quantized, per (unit, scheme); cached, merged passes by default.

    A unit's schemes and the probe batches run as one merged pass (:mod:`.merged_sensitivity`) from the cached
    float activations on; ``merge=False`` (or a merged pass that failed or differed from the full
    pass: ``merge_fallback`` says why) runs one pass per item. ``results`` keeps every measured item
    across calls (a cancelled run keeps what it measured).
    """

    def __init__(
        self,
        analysis: ErrorAnalysis,
        cache_mb: float = DEFAULT_CACHE_MB,
        merge: bool = True,
        sketch_dim: int = SKETCH_DIM,
    ):
        if sketch_dim < 1:
            raise ValueError("sketch_dim must be at least 1")
        self.analysis = analysis
        self.sketch_dim = sketch_dim
        self.cache = ActivationCache(analysis, cache_mb)
        self.results: dict[Item, Sqnr] = {}
        self.passes = 0
        self.seconds = 0.0
        #: Seconds left in the running :meth:`measure`, once a pass has been timed.
        self.eta: float | None = None
        #: Each measured item's output error (:class:`ErrorSketch`), when a merged pass measured it.
        self.errors: dict[Item, torch.Tensor] = {}
        self._sketch: ErrorSketch | None = None
        #: Why merged passes are not used (None while they are).
        self.merge_fallback: str | None = None if merge else "merged passes are turned off"
        #: Units measured by merged passes, and whether a merged pass was checked against a full one.
        self.merged_units = 0
        self.merge_verified = False
        #: How far down the model (the latest replayed module's start) a cached pass was checked.
        self._verified_reach = -1
        self._verified_inner = False

    def prepare(
        self, progress: ProgressCallback | None = None, should_cancel: Callable[[], bool] | None = None
    ) -> None:
        """The float passes everything else reuses: ranges and reference outputs, then the cache."""
        analysis = self.analysis
        if not analysis._ranges_done:
            analysis._range_pass(lambda done, total: None, should_cancel)
        analysis.reference_outputs()
        if not self.cache.recorded:
            self.cache.record(progress, should_cancel)

    def measure(
        self,
        items: Iterable[Item],
        progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> dict[Item, Sqnr]:
        """Every item's end-to-end SQNR (those in ``results`` are not measured again), unit by unit.

        Raises :class:`MeasurementCancelled` when cancelled; ``results`` keeps what was measured.
        """
        wanted = list(dict.fromkeys(items))
        todo = [item for item in wanted if item not in self.results]
        if todo:
            self.prepare(None, should_cancel)
        by_unit: dict[tuple[str, ...], list[Item]] = {}
        for item in todo:
            by_unit.setdefault(item.members, []).append(item)
        started = time.perf_counter()
        total = len(todo)
        done = 0
        for members, unit_items in by_unit.items():
            _check_cancel(should_cancel)
            merged = self._merged(members, [item.scheme for item in unit_items], should_cancel)
            for item in unit_items:
                if item.scheme in merged:
                    self.results[item], error = merged[item.scheme]
                    if error is not None:
                        self.errors[item] = error
                else:
                    _check_cancel(should_cancel)
                    self.results[item] = self._one(item, should_cancel)
                done += 1
                elapsed = time.perf_counter() - started
                self.eta = elapsed / done * (total - done)
                if progress is not None:
                    progress(done, total)
        self.seconds += time.perf_counter() - started
        self.eta = None
        return {item: self.results[item] for item in wanted}

    def _probe_groups(self) -> list[list[int]]:
        """The probe batches merged into one pass: all of them when their tensors concatenate, else one by one."""
        probes = self.analysis.probes
        everything = list(range(len(probes)))
        try:
            rows = [batch_rows(b) for b in probes]
            merge(probes, rows, 1, inputs=True)
        except MergeError:
            return [[i] for i in everything]
        return [everything] if everything else []

    def _copies_per_pass(self, group: Sequence[int], schemes: int) -> int:
        """How many schemes one merged pass over ``group`` takes within the cache's memory bound
        (the largest cached output, or the model's output, per probe batch as the unit of size)."""
        reference = self.analysis.reference_outputs()
        per_batch = max(
            [n.nbytes for n in self.cache.nodes.values()]
            + [sum(t.numel() * t.element_size() for t in reference[i].values()) for i in group]
        )
        if per_batch <= 0:
            return schemes
        return max(1, min(schemes, self.cache.memory_bytes // (per_batch * len(group))))

    @_measurement
    def _merged(
        self, members: tuple[str, ...], schemes: Sequence[str], should_cancel: Callable[[], bool] | None
    ) -> dict[str, tuple[Sqnr, torch.Tensor | None]]:
        """{scheme: (SQNR, its :class:`ErrorSketch` vector or None)} of one unit by merged passes (empty
        when merging is off or fails: the caller measures pass by pass); checked against a full pass
        when :meth:`_needs_check`."""
        analysis = self.analysis
        if self.merge_fallback is None and analysis.shared_qparams_ops:
            self.merge_fallback = "the simulation shares qparams across ops (a tensor's grid is known by its identity)"
        runnable = [s for s in schemes if not refused(analysis, members, s)]
        if self.merge_fallback is not None or not runnable or not analysis.probes:
            return {}
        nodes = self.cache.skipped(members)
        replays = {n.module: n.outputs for n in nodes}
        if self._sketch is None:
            self._sketch = ErrorSketch(analysis, self.sketch_dim)
        sketch = self._sketch
        groups = self._probe_groups()
        accs = {s: _SketchingSqnr(sketch) for s in runnable}
        try:
            for group in groups:
                step = self._copies_per_pass(group, len(runnable))
                for at in range(0, len(runnable), step):
                    chunk = runnable[at : at + step]
                    self.passes += 1
                    merged_pass(analysis, members, chunk, group, replays, [accs[s] for s in chunk], should_cancel)
        except MeasurementCancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a merged pass: measured pass by pass instead
            self.merge_fallback = f"a merged pass failed ({_one_line(exc)}); one pass per scheme and probe batch"
            return {}
        results = {s: (acc.result(), acc.error()) for s, acc in accs.items()}
        if self._needs_check(nodes, merged=True):
            scheme = runnable[0]
            self.passes += 1
            full = analysis._simulate(dict.fromkeys(members, scheme), should_cancel)
            if full != results[scheme][0]:
                self.merge_fallback = (
                    f"the merged pass for '{members[0]}' differed from the full pass ({full} vs {results[scheme][0]}); "
                    "one pass per scheme and probe batch"
                )
                return {}
            self.merge_verified = True
            self._checked(nodes)
        self.merged_units += 1
        return results

    def _needs_check(self, nodes: Sequence[_Node], merged: bool = False) -> bool:
        """A pass is checked bit for bit against the full pass the first time it is merged, whenever it
        replays more blocks than any checked before, and the first time it replays modules inside a block
        (a side effect of a skipped module shows where it is skipped)."""
        reach = max((n.start for n in nodes if n.depth == 0), default=-1)
        inner = any(n.depth > 0 for n in nodes)
        first_merged = merged and not self.merge_verified
        return first_merged or reach > self._verified_reach or (inner and not self._verified_inner)

    def _checked(self, nodes: Sequence[_Node]) -> None:
        if nodes:
            self.cache.verified = True
        self._verified_reach = max([self._verified_reach] + [n.start for n in nodes if n.depth == 0])
        self._verified_inner = self._verified_inner or any(n.depth > 0 for n in nodes)

    @_measurement
    def _one(self, item: Item, should_cancel: Callable[[], bool] | None) -> Sqnr:
        analysis = self.analysis
        quantized = dict.fromkeys(item.members, item.scheme)
        nodes = self.cache.skipped(item.members)
        self.passes += 1
        if not nodes:
            return analysis._simulate(quantized, should_cancel)
        try:
            with self.cache.replaying(nodes):
                cached = analysis._simulate(quantized, should_cancel)
        except MeasurementCancelled:
            raise
        except (SimulationError, RuntimeError) as exc:
            self.cache.fallback = f"a cached pass failed ({exc}); passes run from the input"
            return analysis._simulate(quantized, should_cancel)
        if self._needs_check(nodes):
            self.passes += 1
            full = analysis._simulate(quantized, should_cancel)
            if full != cached:
                self.cache.fallback = (
                    f"the cached pass for '{item.members[0]}' differed from the full pass "
                    f"({full} vs {cached}); passes run from the input"
                )
                return full
            self._checked(nodes)
        return cached


def uncached(analysis: ErrorAnalysis, items: Iterable[Item]) -> dict[Item, Sqnr]:
    """Every item measured with full passes from the input (the reference the cache must equal)."""
    return {item: analysis._simulate(dict.fromkeys(item.members, item.scheme), None) for item in items}


def describe_cache(cache: ActivationCache) -> Mapping[str, Any]:
    """Plain data about the cache (for reports)."""
    return {
        "container": cache.container,
        "cached_modules": len(cache.kept),
        "cached_mb": round(cache.kept_bytes / (1 << 20), 3),
        "memory_bound_mb": round(cache.memory_bytes / (1 << 20), 3),
        "verified": cache.verified,
        "fallback": cache.fallback,
    }


def describe_merging(sens: Sensitivity) -> Mapping[str, Any]:
    """Plain data about the merged passes (for reports)."""
    return {
        "merged_units": sens.merged_units,
        "merge_verified": sens.merge_verified,
        "merge_fallback": sens.merge_fallback,
    }
