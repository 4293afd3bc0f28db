"""Which axis of an observed tensor holds its channels, decided per observation point.

The same ``(batch, tokens, features)`` tensor goes through Linear layers, norms
and activations; a ``(N, C, H, W)`` tensor through convolutions; ConvNeXt
permutes between the two. A point's channel axis is decided from what the
tensor *is*, in this order:

1. an override (``--ch-axis``, globally or per module pattern), never clamped:
   an axis out of the tensor's range is reported at the point instead;
2. the module's own rule (:func:`~tui_quantreport.engine.modules.axis_rule`):
   Linear-family layers, attention and embeddings keep features last;
   convolutions, BatchNorm, GroupNorm and pooling keep channels on axis 1; a
   LayerNorm-style norm of C features uses the axis of size C (so LayerNorm2d
   over NCHW gets axis 1, RMSNorm the last);
3. for modules that do not say (activations, dropout, identity, unknown
   leaves): the module that *produced* the tensor, learned during the first
   batch by identity: each module's output tensor is tagged with its layout,
   and an elementwise module passes its input's tag to its output;
4. else the module that *consumes* it (a GELU whose input comes from a
   functional op but whose output feeds a Linear is feature-last): decided at
   the end of the first batch, once every consumer has been seen;
5. else the tensor's shape against the model's layers: a 3-D tensor whose last
   size is one of the model's Linear-style feature sizes (and whose axis 1 is no
   convolution's channel count) is feature-last; anything else axis 1.

Decisions are taken once per point (in the first batch that reaches it) and
kept, so every batch of a point uses the same axis and the later batches cost
nothing extra. Integer and bool tensors (token ids, masks) are not activations
and get no per-channel statistics.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.batches import ObserverFault, first_tensor
from tui_quantreport.engine.modules import (
    AXIS_CHANNELS,
    AXIS_FOLLOW,
    AXIS_KEEP,
    AXIS_LAST,
    AXIS_NORM,
    ModelCatalog,
    is_quant_helper,
    norm_axis,
)
from tui_quantreport.engine.stats import Point, PointLayout


@dataclass(frozen=True)
class Decision:
    """An axis rule for one point: the last axis, or a fixed (possibly negative) axis."""

    last: bool
    axis: int
    reason: str

    def resolve(self, ndim: int) -> tuple[int | None, str]:
        """The axis of an ``ndim``-D tensor, or (None, why) when the rule does not fit it."""
        if ndim <= 1:
            return 0, "a 0-D or 1-D tensor: axis 0"
        if self.last:
            return ndim - 1, self.reason
        axis = self.axis if self.axis >= 0 else ndim + self.axis
        if not 0 <= axis < ndim:
            return None, f"axis {self.axis} is out of range for a {ndim}-D tensor ({self.reason})"
        return axis, self.reason

    def where(self) -> str:
        return "features on the last axis" if self.last else f"channels on axis {self.axis}"


def integer_layout(tensor: torch.Tensor) -> PointLayout:
    dtype = str(tensor.dtype).replace("torch.", "")
    what = "a mask" if tensor.dtype == torch.bool else "indices (token ids, positions)"
    return PointLayout(None, f"{dtype} tensor: {what}, not an activation", dtype, integer=True)


class LayoutTracker:
    """Decides each observed point's channel axis (see the module docstring).

    During the first batch (:attr:`discovering`) it hooks every module to learn
    which module produced and which consumed each tensor; afterwards only the
    kept decisions are read.
    """

    def __init__(self, catalog: ModelCatalog):
        self.catalog = catalog
        self.decisions: dict[Point, Decision] = {}
        self.discovering = True
        #: id(tensor) -> (weak ref, decision, producer fqn): the layout of module outputs.
        self._produced: dict[int, tuple[weakref.ref, Decision, str]] = {}
        #: id(tensor) -> (weak ref, [(decision, consumer fqn)]): what modules that say read it as.
        self._consumed: dict[int, tuple[weakref.ref, list[tuple[Decision, str]]]] = {}
        #: fqn -> its output in this batch (strong refs, first batch only, for deferred points).
        self._outputs: dict[str, torch.Tensor] = {}
        self._deferred: set[str] = set()
        sizes_last, sizes_channels = _feature_sizes(catalog)
        self._sizes_last, self._sizes_channels = sizes_last, sizes_channels

    # -- discovery hooks (first batch only) --------------------------------------------

    def traced(self, fqn: str, module: nn.Module) -> bool:
        """Whether discovery follows module ``fqn`` (user modules, not the root, not quantization helpers)."""
        return bool(fqn) and fqn in self.catalog.modules and not is_quant_helper(module)

    def attach(self, model: nn.Module, skip: frozenset[str] | set[str] = frozenset()) -> list:
        """Hook every user module (but those in ``skip``) to tag produced tensors and record consumers."""
        handles = []
        for fqn, module in model.named_modules():
            if fqn in skip or not self.traced(fqn, module):
                continue
            handles.append(module.register_forward_pre_hook(self._consumer_hook(fqn), with_kwargs=True))
            handles.append(module.register_forward_hook(self._producer_hook(fqn), with_kwargs=True))
        return handles

    def end_discovery(self) -> None:
        self.discovering = False
        self._produced.clear()
        self._consumed.clear()
        self._outputs.clear()
        self._deferred.clear()

    def consume(self, fqn: str, args: Any, kwargs: Any) -> None:
        """Module ``fqn`` is about to read ``args``/``kwargs``: record what it reads them as."""
        tensor = _first_float(args) if args else _first_float(kwargs)
        if tensor is None:
            return
        decision = self.own_decision(fqn, tensor)
        if decision is None:
            return
        entry = self._consumed.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            entry = self._consumed[id(tensor)] = (weakref.ref(tensor), [])
        entry[1].append((decision, fqn))

    def produce(self, fqn: str, args: Any, kwargs: Any, output: Any) -> None:
        """Module ``fqn`` returned ``output``: tag it with its layout."""
        out = _first_float(output)
        if out is None:
            return
        if fqn in self._deferred:
            self._outputs[fqn] = out
        known = self._produced.get(id(out))
        if known is not None and known[0]() is out:
            return  # an inner module already said what this tensor is
        decision = self.own_decision(fqn, out)
        if decision is None:
            source = _first_float(args) if args else _first_float(kwargs)
            keeps = self.catalog.axis_rules.get(fqn, (AXIS_FOLLOW,))[0] == AXIS_KEEP
            if source is None or (source.dim() != out.dim() if keeps else source.shape != out.shape):
                return  # not elementwise (nor a pad): the input's layout says nothing about the output
            decision = self.produced(source)
            if decision is None:
                return
        self._produced[id(out)] = (weakref.ref(out), decision, fqn)

    def _consumer_hook(self, fqn: str):
        @_ours
        def hook(module, args, kwargs):
            self.consume(fqn, args, kwargs)

        return hook

    def _producer_hook(self, fqn: str):
        @_ours
        def hook(module, args, kwargs, output):
            self.produce(fqn, args, kwargs, output)

        return hook

    # -- decisions ------------------------------------------------------------------------

    def own_decision(self, fqn: str, tensor: torch.Tensor) -> Decision | None:
        """What module ``fqn`` says of the tensors it reads or writes (None: it does not say)."""
        rule, features, why = self.catalog.axis_rules.get(fqn, (AXIS_FOLLOW, None, ""))
        if rule == AXIS_LAST:
            return Decision(True, -1, why)
        if rule == AXIS_CHANNELS:
            return Decision(False, 1, why)
        if rule == AXIS_NORM and features is not None and tensor.dim() >= 2:
            name = self.catalog.modules[fqn].class_name
            axis, reason = norm_axis(name, fqn in self.catalog.own_forward, features, tuple(tensor.shape))
            return Decision(axis == tensor.dim() - 1, axis, reason)
        return None

    def produced(self, tensor: torch.Tensor) -> Decision | None:
        entry = self._produced.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return entry[1]

    def producer_decision(self, fqn: str, tensor: torch.Tensor) -> Decision | None:
        entry = self._produced.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        decision, producer = entry[1], entry[2]
        name = self.catalog.modules[fqn].class_name
        cls = self.catalog.modules[producer].class_name
        return Decision(
            decision.last,
            decision.axis,
            f"{name} follows its input's producer '{producer}' ({cls}): {decision.where()}",
        )

    def decide(self, point: Point, tensor: torch.Tensor, override: tuple[int, str] | None) -> Decision | None:
        """The point's decision (kept after the first), or None to decide at the end of the batch."""
        known = self.decisions.get(point)
        if known is not None:
            return known
        decision = self._decide_now(point, tensor, override)
        if decision is not None:
            self.decisions[point] = decision
        elif self.discovering:
            self._deferred.add(point[0])
        else:
            decision = self.decisions[point] = self.by_shape(point[0], tensor)
        return decision

    def _decide_now(self, point: Point, tensor: torch.Tensor, override: tuple[int, str] | None) -> Decision | None:
        fqn, role = point
        if override is not None:
            axis, text = override
            return Decision(False, axis, f"set by --ch-axis {text}")
        own = self.own_decision(fqn, tensor)
        if own is not None:
            return own
        if role == "pre":
            return self.producer_decision(fqn, tensor) if self.discovering else None
        # The output of a module that does not say: as its input was read, else its producer.
        pre = self.decisions.get((fqn, "pre"))
        if pre is not None:
            return pre
        tagged = self.produced(tensor) if self.discovering else None
        if tagged is not None:
            name = self.catalog.modules[fqn].class_name
            return Decision(tagged.last, tagged.axis, f"{name}'s output keeps its input's layout: {tagged.where()}")
        return None

    def decide_deferred(self, point: Point, tensor: torch.Tensor) -> Decision:
        """At the end of the first batch: the consumers of the tensor (or of the module's output), else its shape."""
        known = self.decisions.get(point)
        if known is not None:
            return known
        fqn = point[0]
        name = self.catalog.modules[fqn].class_name
        candidates = [tensor]
        output = self._outputs.get(fqn)
        if output is not None and output.shape == tensor.shape:
            candidates.append(output)
        for candidate in candidates:
            entry = self._consumed.get(id(candidate))
            if entry is None or entry[0]() is not candidate:
                continue
            for decision, consumer in entry[1]:
                if consumer == fqn:
                    continue
                cls = self.catalog.modules[consumer].class_name
                which = "input" if candidate is tensor else "output"
                decided = Decision(
                    decision.last,
                    decision.axis,
                    f"{name}: no module produced its input; its {which} goes to '{consumer}' ({cls}): "
                    f"{decision.where()}",
                )
                self.decisions[point] = decided
                self._consumed_as(tensor, decided, fqn)
                return decided
        decided = self.decisions[point] = self.by_shape(fqn, tensor)
        return decided

    def _consumed_as(self, tensor: torch.Tensor, decision: Decision, fqn: str) -> None:
        """Record a deferred point's decision as its input's consumer, for the points decided after it.

        Deferred points are decided last-first, so an activation feeding another
        activation that feeds a Linear learns its layout through the second one.
        """
        entry = self._consumed.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            entry = self._consumed[id(tensor)] = (weakref.ref(tensor), [])
        entry[1].append((Decision(decision.last, decision.axis, decision.where()), fqn))

    def by_shape(self, fqn: str, tensor: torch.Tensor) -> Decision:
        """The last resort: a 3-D tensor whose last size is a Linear-style feature size is feature-last."""
        name = self.catalog.modules[fqn].class_name
        shape = tuple(tensor.shape)
        if len(shape) == 3 and shape[-1] in self._sizes_last and shape[1] not in self._sizes_channels:
            return Decision(
                True,
                -1,
                f"{name}: no module next to it says (functional ops around it); its last axis has "
                f"{shape[-1]} entries, a feature size of the model's Linear-style layers",
            )
        return Decision(
            False,
            1,
            f"{name}: no module next to it says (functional ops around it); axis 1, the (N, C, ...) convention",
        )


def _ours(hook):
    """A discovery hook whose errors are ours, not the model's, and say so."""

    def guarded(*args):
        try:
            return hook(*args)
        except Exception as exc:
            raise ObserverFault(
                f"tui-quantreport failed while tracing tensor layouts: {type(exc).__name__}: {exc}"
            ) from exc

    return guarded


def _first_float(value: Any) -> torch.Tensor | None:
    """The first tensor in a module's inputs or outputs, when it is a dense float tensor."""
    tensor = first_tensor(value)
    if tensor is None or not (tensor.is_floating_point() or tensor.is_quantized):
        return None
    return tensor


def _feature_sizes(catalog: ModelCatalog) -> tuple[frozenset[int], frozenset[int]]:
    """Feature sizes of the model's feature-last layers, and channel counts of its (N, C, ...) layers."""
    last: set[int] = set()
    channels: set[int] = set()
    for fqn, (rule, features, _) in catalog.axis_rules.items():
        sizes = catalog.feature_sizes.get(fqn, ())
        if rule == AXIS_LAST:
            last.update(sizes)
        elif rule == AXIS_CHANNELS:
            channels.update(sizes)
        elif rule == AXIS_NORM and features is not None and fqn not in catalog.own_forward:
            last.add(features)
    return frozenset(last), frozenset(channels)


def why_not_judged(catalog: ModelCatalog, stats: Any, fqn: str, role: str) -> tuple[str, str] | None:
    """Why the tensor at point (``fqn``, ``role``) cannot be judged as an activation, or None.

    Returns ``(status, reason)`` with status ``"not_applicable"`` (token ids, an
    axis out of range) or ``"not_observed"`` (an input no hook can see).
    """
    info = catalog.modules[fqn]
    layout = stats.layout(fqn, role) if hasattr(stats, "layout") else None
    side = "input" if role == "pre" else "output"
    if layout is not None and layout.integer:
        return "not_applicable", (
            f"The {side} of {info.class_name} '{fqn}' is a {layout.reason}: there is no activation "
            "range to quantize here."
        )
    if layout is not None and layout.error:
        return "not_applicable", (
            f"No per-channel view of the {side} of '{fqn}': {layout.error}. Choose an axis the "
            "tensor has (--ch-axis PATTERN=AXIS), or 'auto'."
        )
    if role == "pre" and info.hidden_input:
        point = stats.point(fqn, role) if hasattr(stats, "point") else None
        if point is None or point.calls == 0:
            return "not_observed", f"The input of {info.class_name} '{fqn}' cannot be observed: {info.hidden_input}."
    return None
