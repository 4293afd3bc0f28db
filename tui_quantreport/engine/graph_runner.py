"""Observing an exported graph: run it node by node, hand the watched values on, put it back.

The calibration side of :mod:`~tui_quantreport.engine.graph` (which knows what a graph *is*):
a ``torch.fx.Interpreter`` that reports the values at watched nodes, the order forward hooks
would see them in on the eager model, the graph's state saved and restored around a run, and the
weights' per-channel ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.graph import GraphView, Invocation
from tui_quantreport.engine.module_kinds import is_quant_helper
from tui_quantreport.engine.stats import WeightRange


class GraphRunner(torch.fx.Interpreter):
    """Runs a graph node by node, handing the values at watched nodes to ``on_value``."""

    def __init__(self, view: GraphView, watched: set[torch.fx.Node], on_value: Callable[[torch.fx.Node, Any], None]):
        super().__init__(view.gm, garbage_collect_values=True)
        self.extra_traceback = False
        self.watched = watched
        self.on_value = on_value
        self.failed_at: torch.fx.Node | None = None

    def run_node(self, n: torch.fx.Node) -> Any:
        try:
            value = super().run_node(n)
        except Exception:
            if self.failed_at is None:
                self.failed_at = n
            raise
        if n in self.watched:
            self.on_value(n, value)
        return value


class _Sites:
    """What happens at each watched node, in the order forward hooks would do it on the eager model:
    modules ending there (innermost first: discovery's producer tag, then the "post" point),
    then modules starting there (outermost first: discovery's consumer record, then "pre")."""

    def __init__(self, view: GraphView, points: Iterable[tuple[str, str]]):
        wanted = set(points)
        self.ends: dict[torch.fx.Node, list[tuple[Invocation, bool]]] = {}
        self.starts: dict[torch.fx.Node, list[tuple[Invocation, bool]]] = {}
        depth = {inv.key: (inv.fqn.count(".") + 1 if inv.fqn else 0) for inv in view.invocations}
        for inv in sorted(view.invocations, key=lambda i: depth[i.key]):
            if inv.input is not None:
                self.starts.setdefault(inv.input, []).append((inv, (inv.fqn, "pre") in wanted))
            if inv.output is not None:
                self.ends.setdefault(inv.output, []).append((inv, (inv.fqn, "post") in wanted))
        for entries in self.ends.values():
            entries.reverse()  # innermost first
        self.nodes = set(self.ends) | set(self.starts)


def freeze_graph_state(gm: nn.Module) -> Callable[[], None]:
    """Remember every buffer and training flag (observers', BatchNorm's), and the helpers' plain
    attributes; return a function that puts them back."""
    training = {module: module.training for module in gm.modules()}
    buffers = [
        (module, name, buffer.detach().clone())
        for module in gm.modules()
        for name, buffer in module._buffers.items()
        if buffer is not None
    ]
    attributes = [
        (module, {k: v for k, v in vars(module).items() if not k.startswith("_") and not isinstance(v, torch.Tensor)})
        for module in gm.modules()
        if is_quant_helper(module)
    ]

    def restore() -> None:
        for module, flag in training.items():
            module.training = flag
        for module, name, copy in buffers:
            module._buffers[name] = copy
        for module, attrs in attributes:
            for name, value in attrs.items():
                setattr(module, name, value)

    return restore


def weight_ranges(view: GraphView) -> dict[str, Any]:
    """Per-channel min/max of every weighted layer's float weight, along the axis its kind declares."""
    assert view.catalog is not None  # a view made for calibration holds its catalog
    ranges = {}
    with torch.no_grad():
        for fqn, kind in view.catalog.kinds.items():
            try:
                weight = view.weight(fqn)
            except Exception:
                weight = None
            if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
                continue
            rows = kind.in_axis is None
            axis = kind.out_axis if rows else kind.in_axis
            assert axis is not None  # every registered kind names its output axis
            w = weight.detach().float().transpose(0, axis)
            w = w.reshape(w.shape[0], -1)
            ranges[fqn] = WeightRange(w.amin(dim=1).cpu(), w.amax(dim=1).cpu(), axis, rows)
    return ranges
