"""An exported graph made measurable: a copy whose Linear/Conv work is done by real modules.

The quantization simulation (``engine/quantsim``) works on modules: it swaps a Linear's or a
Conv's ``forward`` for a simulated one. In a ``torch.export`` / PT2E graph the user's ``fc1``
is a plain container of ``weight`` and ``bias``, and an ``aten.linear`` node does the work.
:func:`measurable_copy` deep-copies the graph and turns each such node back into a call of a
real ``nn.Linear`` / ``nn.Conv1d/2d/3d`` at the user's name (``fc1``), holding the copy's own
weight and bias, so the simulation measures the graph exactly as it measures the eager model
of the same architecture. The user's graph, its observers, buffers and meta are not touched:
everything happens on the copy.

What is converted: ``aten.linear.default`` and ``aten.conv{1,2,3}d.default`` nodes whose weight
(and bias) come, possibly through the quantizer's observer or fake-quantize modules, from one
of the graph's parameters, inside a module of the user's tree that holds exactly that weight
and bias. Anything else stays a node of the copy (run in float, not simulated), and
:attr:`MeasurableGraph.skipped` says why.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.graph import _resolve_class, _stack, op_name
from tui_quantreport.engine.module_kinds import passes_through_class
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.spec import quiet_library_logs

#: aten op name -> (module class, number of spatial dims; 0 for linear)
_CONVERTIBLE: dict[str, tuple[type[nn.Module], int]] = {
    "linear": (nn.Linear, 0),
    "conv1d": (nn.Conv1d, 1),
    "conv2d": (nn.Conv2d, 2),
    "conv3d": (nn.Conv3d, 3),
}


@dataclass
class MeasurableGraph:
    """The converted copy, the catalog the simulation walks, and what could not be converted."""

    model: nn.Module
    catalog: ModelCatalog
    converted: dict[str, str] = field(default_factory=dict)  # fqn -> the class it became
    skipped: dict[str, str] = field(default_factory=dict)  # fqn -> why it stays a graph node


def _parameter_source(gm: torch.fx.GraphModule, node: Any) -> tuple[str, torch.Tensor] | None:
    """The ``get_attr`` target a weight/bias argument reads (through observer / fake-quantize
    modules, which pass their input on in forward), and its tensor; None when it is computed."""
    seen = 0
    while isinstance(node, torch.fx.Node) and seen < 8:
        seen += 1
        if node.op == "get_attr":
            value: Any
            try:
                value = gm.get_parameter(str(node.target))
            except AttributeError:
                try:
                    value = gm.get_buffer(str(node.target))
                except AttributeError:
                    value = getattr(gm, str(node.target), None)
            return (str(node.target), value) if isinstance(value, torch.Tensor) else None
        if node.op == "call_module" and len(node.args) == 1:
            node = node.args[0]  # an observer or fake quantizer in a prepared graph
            continue
        return None
    return None


def _conv_args(node: torch.fx.Node, dims: int) -> dict[str, Any] | None:
    """stride, padding, dilation, groups of an ``aten.convNd.default`` node (None: not plain ints)."""
    names = ("stride", "padding", "dilation", "groups")
    defaults: dict[str, Any] = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}
    values = dict(defaults)
    for i, name in enumerate(names):
        if len(node.args) > 3 + i:
            values[name] = node.args[3 + i]
        elif name in node.kwargs:
            values[name] = node.kwargs[name]
    for name in ("stride", "padding", "dilation"):
        value = values[name]
        if isinstance(value, int):
            value = (value,) * dims
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
            return None  # e.g. padding="same" (another overload) or a symbolic size
        values[name] = tuple(value) if len(value) == dims else (tuple(value) * dims)[:dims]
    if not isinstance(values["groups"], int):
        return None
    return values


def measurable_copy(gm: torch.fx.GraphModule, catalog: ModelCatalog) -> MeasurableGraph:
    """A deep copy of ``gm`` with its Linear/Conv nodes as calls of real modules (see the module doc)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's pytree deprecation notes on copying the in/out specs
        work = copy.deepcopy(gm)
    result = MeasurableGraph(work, catalog)
    by_fqn: dict[str, list[torch.fx.Node]] = {}
    for node in work.graph.nodes:
        if node.op != "call_function" or op_name(node) not in _CONVERTIBLE or str(node.target).endswith(".padding"):
            continue
        stack = _stack(node)
        if not stack:
            continue
        by_fqn.setdefault(stack[-1][1], []).append(node)

    for fqn, nodes in by_fqn.items():
        if fqn not in catalog.modules:
            continue
        made = _converted_module(work, fqn, nodes)
        if isinstance(made, str):
            result.skipped[fqn] = made
            continue
        parent_name, _, child = fqn.rpartition(".")
        parent = work.get_submodule(parent_name) if parent_name else work
        setattr(parent, child, made)
        for node in nodes:
            x = node.args[0]
            with work.graph.inserting_before(node):
                call = work.graph.call_module(fqn, (x,))
            call.meta = dict(node.meta)
            node.replace_all_uses_with(call)
            work.graph.erase_node(node)
        result.converted[fqn] = type(made).__name__
    for fqn, reason in _wrap_leaves(work, catalog, result.converted).items():
        result.skipped.setdefault(fqn, reason)
    work.graph.lint()
    work.recompile()
    _to_eval(work)

    # The simulation walks the catalog's modules: keep the ones the copy holds as modules.
    kept = {}
    for fqn, info in catalog.modules.items():
        try:
            work.get_submodule(fqn)
        except AttributeError:
            continue
        if fqn in result.converted or not info.is_weighted:
            kept[fqn] = info
    result.catalog = replace(catalog, modules=kept)
    for fqn, info in catalog.modules.items():
        if info.is_weighted and not info.is_quant_helper and fqn not in result.converted and fqn not in result.skipped:
            result.skipped[fqn] = (
                "its work is not one aten linear/conv node (the copy keeps it as graph nodes, in float)"
            )
    return result


def _converted_module(work: torch.fx.GraphModule, fqn: str, nodes: list[torch.fx.Node]) -> nn.Module | str:
    """The real Linear/Conv module that does what the weight-op ``nodes`` of module ``fqn`` do,
    or why they cannot be one."""
    name = op_name(nodes[0])
    if any(op_name(n) != name for n in nodes):
        return "it runs several kinds of weight op"
    cls, dims = _CONVERTIBLE[name]
    first = nodes[0]
    weight = _parameter_source(work, first.args[1] if len(first.args) > 1 else first.kwargs.get("weight"))
    bias_arg = first.args[2] if len(first.args) > 2 else first.kwargs.get("bias")
    bias = _parameter_source(work, bias_arg) if bias_arg is not None else None
    if weight is None or (bias_arg is not None and bias is None):
        return "its weight or bias is computed in the graph, not read from a parameter"
    if weight[0] != f"{fqn}.weight" or (bias is not None and bias[0] != f"{fqn}.bias"):
        return f"its weight is {weight[0]}, not {fqn}.weight"
    conv = _conv_args(first, dims) if dims else {}
    if conv is None or any((_conv_args(n, dims) if dims else {}) != conv for n in nodes):
        return "its convolution arguments are not plain integers"
    if any((_parameter_source(work, n.args[1]) or ("",))[0] != weight[0] for n in nodes):
        return "its calls read different weights"
    try:
        container = work.get_submodule(fqn)
    except AttributeError:
        return "the graph holds no module of that name"
    own = {k for k, _ in container.named_parameters(recurse=False)} | {
        k for k, _ in container.named_buffers(recurse=False)
    }
    if list(container.children()) or own - {"weight", "bias"}:
        return "its module in the graph holds more than a weight and a bias"
    return _module_for(cls, dims, weight[1], bias[1] if bias is not None else None, conv)


class _GraphLeaf(torch.fx.GraphModule):
    """A leaf module of the user's tree (ReLU, pooling, a norm...) as the graph runs it: its
    nodes, moved into a submodule so the simulation sees its input and output as it sees an
    eager leaf's (which tensor each module reads, and who quantizes it)."""

    #: Whether the module it stands for carries its input's values on (see quantsim's pass-through).
    passes_through: bool = False


def _wrap_leaves(work: torch.fx.GraphModule, catalog: ModelCatalog, converted: dict[str, str]) -> dict[str, str]:
    """Move each remaining leaf's nodes into a submodule at its name: a real module for the
    weighted kinds the simulation knows whose work is several nodes (``nn.Embedding``, HF
    ``Conv1D``: added to ``converted``), else a :class:`_GraphLeaf`. Returns the leaves left as
    plain nodes, with why (their data flow is then not followed: findings there stay unmeasured)."""
    skipped: dict[str, str] = {}
    groups: dict[str, list[torch.fx.Node]] = {}
    keys: dict[str, set[str]] = {}
    stack_class: dict[str, str] = {}
    for node in work.graph.nodes:
        if node.op != "call_function":
            continue
        stack = _stack(node)
        if not stack:
            continue
        key, fqn, qualified = stack[-1]
        info = catalog.modules.get(fqn)
        if info is None or not info.is_leaf or fqn in converted or info.is_quant_helper:
            continue
        groups.setdefault(fqn, []).append(node)
        keys.setdefault(fqn, set()).add(key)
        stack_class[fqn] = qualified
    for fqn, nodes in groups.items():
        reason = (
            "it is called more than once in the graph"
            if len(keys[fqn]) > 1
            else _wrap_leaf(work, catalog, converted, fqn, nodes, stack_class[fqn])
        )
        if reason is not None:
            skipped[fqn] = reason
    return skipped


def _wrap_leaf(
    work: torch.fx.GraphModule,
    catalog: ModelCatalog,
    converted: dict[str, str],
    fqn: str,
    nodes: list[torch.fx.Node],
    qualified: str,
) -> str | None:
    """Move one leaf's ``nodes`` into a submodule at ``fqn`` (see :func:`_wrap_leaves`); why not, if not."""
    inside = set(nodes)
    inputs: list[torch.fx.Node] = []
    attrs: list[torch.fx.Node] = []
    for node in nodes:
        for arg in node.all_input_nodes:
            if arg in inside:
                continue
            bucket = attrs if arg.op == "get_attr" else inputs
            if arg not in bucket:
                bucket.append(arg)
    outside = [n for n in nodes[:-1] if any(user not in inside for user in n.users)]
    if len(inputs) != 1 or outside:
        return "its nodes do not read one tensor and return one"
    try:
        existing: nn.Module | None = work.get_submodule(fqn)
    except AttributeError:
        existing = None
    if existing is not None and list(existing.children()):
        return "its module in the graph holds submodules"
    graph = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {inputs[0]: graph.placeholder("x")}
    values: dict[str, Any] = {}
    for i, attr in enumerate(attrs):
        target = str(attr.target)
        local = target[len(fqn) + 1 :] if target.startswith(fqn + ".") else f"_shared{i}"
        values[local] = _attribute(work, target)
        env[attr] = graph.get_attr(local)
    for node in nodes:
        env[node] = graph.node_copy(node, env.__getitem__)
    graph.output(env[nodes[-1]])
    original = _resolve_class(qualified)
    leaf: nn.Module
    if catalog.modules[fqn].is_weighted:
        made = _weighted_module(original, values, nodes)
        if made is None:
            shared = [str(a.target) for a in attrs if not str(a.target).startswith(fqn + ".")]
            return (
                f"its weight is {shared[0]} (shared with another module)"
                if shared
                else "its work is not one aten linear/conv node (the copy keeps it as graph nodes, in float)"
            )
        leaf = made
        converted[fqn] = type(made).__name__
    else:
        leaf = _GraphLeaf(values, graph, class_name=catalog.modules[fqn].class_name)
        leaf.passes_through = passes_through_class(original)
    _install(work, fqn, leaf, nodes, inputs[0], attrs)
    return None


def _install(
    work: torch.fx.GraphModule,
    fqn: str,
    leaf: nn.Module,
    nodes: list[torch.fx.Node],
    x: torch.fx.Node,
    attrs: list[torch.fx.Node],
) -> None:
    """Put ``leaf`` at ``fqn`` in ``work`` and call it on ``x`` in place of ``nodes``."""
    parent_name, _, child = fqn.rpartition(".")
    parent: nn.Module = work
    for part in parent_name.split(".") if parent_name else ():
        if not hasattr(parent, part):
            parent.add_module(part, nn.Module())
        parent = getattr(parent, part)
    setattr(parent, child, leaf)
    with work.graph.inserting_before(nodes[-1]):  # its input is defined by then, its users come after
        call = work.graph.call_module(fqn, (x,))
    call.meta = dict(nodes[-1].meta)
    nodes[-1].replace_all_uses_with(call)
    for node in reversed(nodes):
        work.graph.erase_node(node)
    for attr in attrs:  # the parameters it read now live in the leaf
        if not attr.users and str(attr.target).startswith(fqn + "."):
            work.graph.erase_node(attr)


def _weighted_module(cls: type | None, values: dict[str, Any], nodes: list[torch.fx.Node]) -> nn.Module | None:
    """A real module doing what a weighted leaf's nodes do, for the kinds whose work is not one
    linear/conv node: ``nn.Embedding`` (one ``aten.embedding`` node, no max_norm) and HF
    ``Conv1D`` (view, addmm, view). None for anything else."""
    if cls is None:
        return None
    ops = [op_name(n) for n in nodes]
    if issubclass(cls, nn.Embedding) and ops == ["embedding"] and len(values) == 1:
        # One table, under its own name or, tied to another module (GPT-2's wte and lm_head), under that one's.
        weight = next(iter(values.values()))
        args = nodes[0].args
        padding = args[2] if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0 else None
        module: nn.Module = nn.Embedding.from_pretrained(weight.detach(), freeze=True, padding_idx=padding)
        return module.eval()
    if set(values) != {"weight", "bias"}:
        return None
    weight, bias = values["weight"], values["bias"]
    if cls.__name__ == "Conv1D" and "addmm" in ops and weight.dim() == 2:
        conv1d = cls(weight.shape[1], weight.shape[0])  # transformers' Conv1D(nf, nx): weight is (nx, nf)
        conv1d.weight = nn.Parameter(weight.detach(), requires_grad=False)
        conv1d.bias = nn.Parameter(bias.detach(), requires_grad=False)
        return conv1d.eval()
    return None


def _attribute(gm: nn.Module, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _module_for(
    cls: type[nn.Module], dims: int, weight: torch.Tensor, bias: torch.Tensor | None, conv: dict[str, Any]
) -> nn.Module:
    """A real module of ``cls`` holding ``weight`` and ``bias`` (the copy's tensors, not new ones)."""
    with torch.device("meta"):
        if dims == 0:
            module = cls(weight.shape[1], weight.shape[0], bias=bias is not None)
        else:
            groups = conv["groups"]
            module = cls(
                weight.shape[1] * groups,
                weight.shape[0],
                tuple(weight.shape[2:]),
                stride=conv["stride"],
                padding=conv["padding"],
                dilation=conv["dilation"],
                groups=groups,
                bias=bias is not None,
            )
    module.weight = nn.Parameter(weight.detach(), requires_grad=False)
    if bias is not None:
        module.bias = nn.Parameter(bias.detach(), requires_grad=False)
    module.eval()
    return module


def _train_mode_ops(gm: torch.fx.GraphModule) -> bool:
    """Whether the graph runs an op in training mode (a QAT graph's batch norm or dropout)."""
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = op_name(node)
        if name in ("batch_norm", "_native_batch_norm_legit", "native_batch_norm") and len(node.args) > 5:
            if node.args[5] is True:
                return True
        elif name in ("dropout", "native_dropout") and len(node.args) > 2 and node.args[2] is True:
            return True
    return False


def _to_eval(gm: torch.fx.GraphModule) -> None:
    """Eval behaviour on the copy: for a graph that runs ops in training mode (QAT), torchao's
    ``move_exported_model_to_eval`` (batch norms then use running statistics); and every module
    flag off (exported graphs refuse ``.eval()``, and the simulation would otherwise call it).
    Other graphs are left as they are: the rewrite is not safe on every graph (it breaks the
    vmapped attention masks of a transformers export)."""
    if _train_mode_ops(gm):
        try:
            with quiet_library_logs():
                from torchao.quantization.pt2e import move_exported_model_to_eval
            move_exported_model_to_eval(gm)
        except Exception:  # noqa: BLE001 - torchao absent, or a graph it cannot rewrite: as it is
            pass
    for module in gm.modules():
        module.training = False
