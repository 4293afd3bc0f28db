"""Who reads whom, traced by tensor identity during a float pass: the dataflow between leaf
modules, each quantizable module's output edge (readers, ReLU-like successors, output range)."""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from tui_quantreport.engine.module_kinds import PASS_THROUGH_TYPES as PASS_THROUGH_TYPES  # re-exported
from tui_quantreport.engine.module_kinds import passes_through_class
from tui_quantreport.engine.quantsim.analysis_base import (
    SHARED_READER,
    first_tensor,
)
from tui_quantreport.engine.quantsim.forward import SHARED_QPARAMS_TYPES
from tui_quantreport.engine.quantsim.outputs import output_tensors
from tui_quantreport.engine.quantsim.qparams import (
    activation_qparams,
)
from tui_quantreport.engine.quantsim.schemes import (
    StaticInput,
)

if TYPE_CHECKING:
    from tui_quantreport.engine.quantsim.error_analysis import ErrorAnalysis


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
        #: Ops sharing their input's grid that read the output of an ``nn.ReLU`` module reading a
        #: target's raw output (PT2E's fused Conv/Linear + ReLU pattern, under its global config).
        self.fused_shared_readers: dict[str, set[str]] = {}
        #: id(tensor) -> weak ref: the outputs of such ReLU modules in this batch.
        self.fused: dict[int, weakref.ref] = {}
        #: target -> the targets whose raw outputs ``torch.cat`` joins with its own (itself included),
        #: and the extremes of all of them (one observer: PT2E's shared qparams for cat's inputs).
        self.cat_groups: dict[str, set[tuple[str, ...]]] = {}
        self.cat_lo: dict[str, torch.Tensor] = {}
        self.cat_hi: dict[str, torch.Tensor] = {}

    def new_batch(self) -> None:
        self.live.clear()
        self.fused.clear()
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
                if raw:
                    self.shared_readers.setdefault(key, set()).add(fqn)
                elif self._fused_output(x):
                    self.fused_shared_readers.setdefault(key, set()).add(fqn)
            elif monotone:
                # The output of this module carries the producer on: tracked by a one-off forward hook.
                self._pending.append(
                    module.register_forward_hook(self._chain(key, raw, fused=raw and type(module) is nn.ReLU))
                )
            else:
                self.consumers[key].add("")
            return

        return hook

    def _fused_output(self, tensor: torch.Tensor) -> bool:
        ref = self.fused.get(id(tensor))
        return ref is not None and ref() is tensor

    def _chain(self, key: str, direct: bool, fused: bool = False):
        def hook(module, args, output):
            for h in self._pending:
                h.remove()
            self._pending.clear()
            if isinstance(output, torch.Tensor) and output.is_floating_point() and output.numel():
                self.live[id(output)] = (weakref.ref(output), key, False)
                if fused:
                    self.fused[id(output)] = weakref.ref(output)
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

    def cat(self, tensors: Any, output: Any) -> None:
        """``output = torch.cat(tensors)``: where every input is a target's raw output, the group
        (X86InductorQuantizer quantizes all of cat's inputs with one shared observer when each
        comes from a quantized op); any other cat is a float reader of its inputs."""
        if not isinstance(tensors, (list, tuple)):
            return
        sources = [self.producer(t) for t in tensors]
        if sources and all(s is not None and s[1] for s in sources):
            group = tuple(sorted({s[0] for s in sources if s is not None}))
            name = "\x00".join(group)
            for key in group:
                self.cat_groups.setdefault(key, set()).add(group)
                self.raw_readers.setdefault(key, set()).add(CAT_READER)
                self.consumers[key].add(CAT_READER)
            for t in tensors:
                if t.is_floating_point() and t.numel():
                    _fold_extremes(self.cat_lo, self.cat_hi, name, t.detach())
            return
        for source in sources:
            if source is not None:
                self.consumers[source[0]].add("")

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
        tables = (self.out_lo, self.out_hi, self.chain_lo, self.chain_hi, self.cat_lo, self.cat_hi)
        floats: list[dict[str, float]] = [{}, {}, {}, {}, {}, {}]
        kept = [(i, key, t) for i, table in enumerate(tables) for key, t in table.items()]
        if kept:  # one read back for the whole pass
            device = kept[0][2].device
            values = torch.stack([t.to(device) for _, _, t in kept]).cpu().tolist()
            for (i, key, _), value in zip(kept, values, strict=True):
                floats[i][key] = value
        out_lo, out_hi, chain_lo, chain_hi, cat_lo, cat_hi = floats
        for fqn, target in analysis.targets.items():
            target.consumers = self.consumers.get(fqn, set())
            target.shared_readers = self.shared_readers.get(fqn, set())
            target.fused_shared_readers = self.fused_shared_readers.get(fqn, set())
            groups = self.cat_groups.get(fqn, set())
            if len(groups) == 1 and self.raw_readers.get(fqn) == {CAT_READER}:
                (group,) = groups
                name = "\x00".join(group)
                shared = activation_qparams(cat_lo[name], cat_hi[name], analysis.backend)
                if shared is not None:
                    target.cat_inputs = group
                    target.cat_static = StaticInput(shared.scale, shared.zero_point, shared.quant_min, shared.quant_max)
            if fqn in chain_lo:
                fused = activation_qparams(chain_lo[fqn], chain_hi[fqn], analysis.backend)
                if fused is not None:
                    target.fused_static = StaticInput(fused.scale, fused.zero_point, fused.quant_min, fused.quant_max)
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
#: The reader name ``torch.cat`` of quantized outputs gets in :class:`_EdgeTracer`.
CAT_READER = "<torch.cat>"


class _Cat(TorchFunctionMode):
    """During a range pass, tells the edge tracer about every ``torch.cat`` (no module hook sees
    it): PT2E's X86InductorQuantizer quantizes cat's inputs on one shared grid."""

    def __init__(self, edges: _EdgeTracer):
        super().__init__()
        self.edges = edges

    def __torch_function__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        if func in _CAT_FUNCTIONS:
            tensors = args[0] if args else (kwargs or {}).get("tensors")
            self.edges.cat(tensors, output)
        return output


_CAT_FUNCTIONS = frozenset({torch.cat, torch.concat, torch.concatenate})


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
