"""Exported graphs (``torch.export`` / PT2E): the user's module tree and node-level observation.

A ``torch.fx.GraphModule`` from ``torch.export.export(...).module()``,
``prepare_pt2e``, ``prepare_qat_pt2e`` or ``convert_pt2e`` has lost its
modules' classes and forwards: ``conv`` and ``fc`` are plain containers of
weights, and the work is done by ``call_function`` nodes (``aten.linear``,
``aten.conv2d``…) whose ``node.meta["nn_module_stack"]`` names the original
modules. This module

- rebuilds the original module tree from those stacks (names and classes as the
  user wrote them), with the quantizer's observers and fake quantizers as
  helpers, and each node no stack attributes shown under the root;
- reads what the quantizer planned for each weighted module: its weight observer
  (per channel or not) and whether its input is quantized dynamically;
- observes each original module's input and output at the graph's nodes: one
  *invocation* per call of a module (the nodes carrying its stack entry); its
  input is the first value flowing into those nodes from outside (parameters
  and what derives from them only are not inputs), its output the last of its
  values used outside. Those are the tensors forward hooks would see on the
  eager model, so the statistics are the same.

The graph is run by a ``torch.fx.Interpreter``: its nodes, meta and code are
never changed, ``.train()``/``.eval()`` are never called (exported graphs refuse
them), and every buffer (observers' included) is put back afterwards.
Nothing here imports ``torch.ao.quantization`` or ``torchao``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tui_quantreport.engine.fingerprint import legacy_fingerprint, model_fingerprint, model_identity
from tui_quantreport.engine.module_info import ModuleInfo
from tui_quantreport.engine.module_kinds import (
    AXIS_CHANNELS,
    AXIS_FOLLOW,
    AXIS_LAST,
    AXIS_NORM,
    CHANNEL_AXIS_TYPES,
    MONOTONE_TYPES,
    WeightedKind,
    WeightScheme,
    forward_overridden,
    is_quant_helper,
    kind_named,
    weighted_kind,
)

if TYPE_CHECKING:
    from tui_quantreport.engine.modules import ModelCatalog

#: aten ops that do a weighted module's work, with the index of their weight argument.
WEIGHT_OPS: dict[str, int] = {
    "linear": 1,
    "conv1d": 1,
    "conv2d": 1,
    "conv3d": 1,
    "convolution": 1,
    "conv_transpose1d": 1,
    "conv_transpose2d": 1,
    "conv_transpose3d": 1,
    "addmm": 2,
    "mm": 1,
    "matmul": 1,
    "bmm": 1,
    "embedding": 0,
}
LINEAR_OPS = frozenset({"linear", "addmm", "mm"})
CONV_OPS = frozenset({"conv1d", "conv2d", "conv3d", "convolution"})
#: quantized_decomposed ops (quantize, dequantize, choose_qparams…): the quantizer's, not the user's work.
QUANT_NAMESPACES = frozenset({"quantized_decomposed", "torchao"})
#: Nodes that only move values around: never shown as unattributed work.
STRUCTURAL_OPS = frozenset(
    {"getitem", "sym_size", "sym_numel", "sym_stride", "_assert_tensor_metadata", "_assert_scalar"}
)


def is_exported_graph(model: Any) -> bool:
    """A GraphModule of aten ops whose nodes name their original modules (torch.export's, PT2E's).

    An FX-traced graph (``symbolic_trace``, torch.ao's ``prepare_fx``) keeps its leaf
    modules as ``call_module`` nodes: forward hooks see it as an eager model does.
    """
    if not isinstance(model, torch.fx.GraphModule):
        return False
    return any(
        node.op == "call_function"
        and isinstance(node.target, torch._ops.OpOverload)
        and node.meta.get("nn_module_stack")
        for node in model.graph.nodes
    )


def op_name(node: torch.fx.Node) -> str:
    """``linear`` for ``aten.linear.default``; the function's name otherwise."""
    target = node.target
    packet = getattr(target, "overloadpacket", None)
    if packet is not None:
        return getattr(packet, "__name__", str(packet)).rpartition(".")[2]
    return getattr(target, "__name__", str(target))


def _namespace(node: torch.fx.Node) -> str:
    namespace = getattr(node.target, "namespace", None)
    if namespace is None:
        packet = getattr(node.target, "overloadpacket", None)
        qualified = getattr(packet, "_qualified_op_name", "")
        namespace = qualified.partition("::")[0]
    return namespace or ""


def _stack(node: torch.fx.Node) -> list[tuple[str, str, str]]:
    """(invocation key, module path, class) for each module the node runs in, outermost first."""
    stack = node.meta.get("nn_module_stack") or {}
    entries = []
    for key, value in stack.items():
        try:
            path, cls = value[0], value[1]
        except (TypeError, IndexError):
            continue
        entries.append((str(key), _normalize_path(str(path)), cls if isinstance(cls, str) else _qualname(cls)))
    return entries


def _normalize_path(path: str) -> str:
    for prefix in ("L['self'].", "L['self']", "self.", "self"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    return path.replace("._modules['", ".").replace("']", "")


def _qualname(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '')}.{getattr(cls, '__qualname__', cls)}"


def _resolve_class(qualified: str) -> type | None:
    """The class a stack names, if its module is already imported (nothing is imported here)."""
    module_name, _, name = qualified.rpartition(".")
    while module_name:
        module = sys.modules.get(module_name)
        if module is not None:
            value: Any = module
            for part in name.split("."):
                value = getattr(value, part, None)
            return value if isinstance(value, type) else None
        module_name, _, head = module_name.rpartition(".")
        name = f"{head}.{name}"
    return None


def _args(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The node's input nodes in argument order (keyword arguments last)."""
    found: list[torch.fx.Node] = []

    def keep(n: torch.fx.Node) -> torch.fx.Node:
        found.append(n)
        return n

    torch.fx.map_arg((node.args, node.kwargs), keep)
    return found


@dataclass
class _Facts:
    """What the catalog records beside the tree: weighted kinds, axis rules, feature sizes."""

    kinds: dict[str, WeightedKind] = field(default_factory=dict)
    rules: dict[str, tuple[str, int | None, str]] = field(default_factory=dict)
    sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    own_forward: set[str] = field(default_factory=set)


def _proxy(qualified: str) -> nn.Module | None:
    """An uninitialised instance of the class a stack names, for isinstance-style matching only."""
    cls = _resolve_class(qualified)
    if cls is None or not issubclass(cls, nn.Module):
        return None
    try:
        return cls.__new__(cls)
    except Exception:
        return None


def _kind_by_ops(ops: set[str]) -> WeightedKind | None:
    """The registered kind doing a leaf's work, read from its aten ops."""
    for names, kind in ((LINEAR_OPS, "linear"), (CONV_OPS, "conv"), ({"embedding"}, "embedding")):
        if ops & names:
            return kind_named(kind)
    return None


def _meta_shape(node: torch.fx.Node | None) -> tuple[int, ...] | None:
    value = node.meta.get("val") if node is not None else None
    try:
        return tuple(int(d) for d in value.shape) if value is not None else None
    except (TypeError, AttributeError):
        return None


def _norm_features_of(own: list[torch.fx.Node]) -> int | None:
    """C for a module that runs aten.layer_norm / rms_norm over C features."""
    for node in own:
        if op_name(node) in ("layer_norm", "native_layer_norm", "rms_norm") and len(node.args) > 1:
            shape = node.args[1]
            if isinstance(shape, (list, tuple)) and shape and isinstance(shape[-1], int):
                return int(shape[-1])
    return None


@dataclass
class Invocation:
    """One call of an original module: its nodes, and where its input and output are."""

    key: str
    fqn: str
    nodes: list[torch.fx.Node] = field(default_factory=list)
    input: torch.fx.Node | None = None
    output: torch.fx.Node | None = None


class GraphView:
    """What the engine knows about one exported graph, and how to observe it."""

    def __init__(self, gm: torch.fx.GraphModule, catalog: ModelCatalog | None = None):
        self.gm = gm
        self.nodes = list(gm.graph.nodes)
        self._helper_targets = {
            name for name, module in gm.named_modules(remove_duplicate=False) if name and is_quant_helper(module)
        }
        self.constant = self._constant_nodes()
        self.invocations: list[Invocation] = []
        self.unattributed: dict[str, torch.fx.Node] = {}
        self.classes: dict[str, str] = {}
        self._group()
        #: The catalog this view observes for (None on a view made to build one: :meth:`catalog_fields`).
        self.catalog = catalog

    # Classifying nodes.

    def is_helper(self, node: torch.fx.Node) -> bool:
        """Observers, fake quantizers and quantize/dequantize ops: the quantizer's nodes."""
        if node.op == "call_module":
            return node.target in self._helper_targets
        if node.op == "call_function":
            return _namespace(node) in QUANT_NAMESPACES
        return False

    def _is_guard(self, node: torch.fx.Node) -> bool:
        if node.op != "call_module":
            return False
        module = self.gm.get_submodule(str(node.target))
        return type(module).__name__ == "GuardsFn" or str(node.target) == "_guards_fn"

    def _constant_nodes(self) -> set[torch.fx.Node]:
        """Parameters, buffers and what is computed from them alone (a weight's observer, its dequantize)."""
        constant: set[torch.fx.Node] = set()
        for node in self.nodes:
            if node.op == "get_attr":
                constant.add(node)
            elif node.op in ("call_function", "call_module", "call_method"):
                inputs = _args(node)
                if inputs and all(n in constant for n in inputs):
                    constant.add(node)
        return constant

    def _group(self) -> None:
        by_key: dict[str, Invocation] = {}
        for node in self.nodes:
            if node.op not in ("call_function", "call_module", "call_method"):
                continue
            if self.is_helper(node) or self._is_guard(node):
                continue
            stack = _stack(node)
            if not stack:
                if node in self.constant or op_name(node) in STRUCTURAL_OPS:
                    continue
                # Work no module claims: shown under the root as its own entry, observed like a module.
                name = f"[{node.name}]"  # brackets: a node, never mistaken for a module's name
                self.unattributed[name] = node
                invocation = Invocation(f"node:{node.name}", name, [node])
                self.invocations.append(invocation)
                continue
            for key, path, cls in stack:
                self.classes.setdefault(path, cls)
                known = by_key.get(key)
                if known is None:
                    known = by_key[key] = Invocation(key, path)
                    self.invocations.append(known)
                known.nodes.append(node)
        for invocation in self.invocations:
            self._bound(invocation)

    def _bound(self, invocation: Invocation) -> None:
        """An invocation's input (the first value flowing into its nodes from outside, constants
        aside) and output (its last non-constant node used outside)."""
        members = set(invocation.nodes)
        for node in invocation.nodes:
            for arg in _args(node):
                if arg not in members and arg not in self.constant:
                    invocation.input = arg
                    break
            if invocation.input is not None:
                break
        for node in reversed(invocation.nodes):
            if node in self.constant:
                continue
            if any(user not in members for user in node.users):
                invocation.output = node
                break

    # The catalog.

    def catalog_fields(self) -> dict[str, Any]:
        """The :class:`~tui_quantreport.engine.modules.ModelCatalog` of the graph, as its fields
        (``ModelCatalog.build`` makes the catalog of them)."""
        root_class = self.classes.get("", type(self.gm).__name__)
        paths = [p for p in dict.fromkeys(inv.fqn for inv in self.invocations if not inv.key.startswith("node:")) if p]
        # Intermediate containers no node runs in (a ModuleList only indexed) still hold their children.
        for path in list(paths):
            parts = path.split(".")
            for i in range(1, len(parts)):
                prefix = ".".join(parts[:i])
                if prefix not in self.classes:
                    self.classes[prefix] = "Module"
                    paths.append(prefix)
        order = {p: i for i, p in enumerate(paths)}
        paths.sort(key=lambda p: tuple(order.get(".".join(p.split(".")[: i + 1]), 0) for i in range(p.count(".") + 1)))
        nodes_of: dict[str, list[torch.fx.Node]] = {}
        for inv in self.invocations:
            nodes_of.setdefault(inv.fqn, []).extend(n for n in inv.nodes if n.op == "call_function")
        children: dict[str, list[str]] = {"": []}
        for path in paths:
            children.setdefault(path, [])
            children.setdefault(path.rpartition(".")[0], []).append(path)
        helpers = sorted(self._helper_targets, key=lambda n: self._first_use(n))
        top_helpers = [h for h in helpers if "." not in h]
        children[""].extend(self.unattributed)
        children[""].extend(top_helpers)

        facts = _Facts()
        infos: dict[str, ModuleInfo] = {}
        infos[""] = self._info("", root_class, None, tuple(children[""]), [], facts, leaf=False)
        for path in paths:
            kids = tuple(children.get(path, ()))
            own = nodes_of.get(path, []) if not kids else []
            infos[path] = self._info(path, self.classes[path], path.rpartition(".")[0], kids, own, facts, leaf=not kids)
        for name, node in self.unattributed.items():
            infos[name] = self._info(
                name, f"{_namespace(node) or 'fn'}.{op_name(node)}", "", (), [node], facts, leaf=True
            )
        for name in top_helpers:
            module = self.gm.get_submodule(name)
            infos[name] = ModuleInfo(
                fqn=name,
                name=name,
                class_name=type(module).__name__,
                parent="",
                depth=1,
                children=(),
                is_quant_helper=True,
                is_leaf=False,
                is_weighted=False,
                is_linear=False,
                total_params=sum(p.numel() for p in module.parameters()),
                last_axis=False,
            )
        annotated = bool(self._helper_targets) or any(self.is_helper(n) for n in self.nodes if n.op == "call_function")
        schemes = {fqn: self._weight_scheme(fqn, annotated) for fqn, info in infos.items() if info.is_weighted}
        for fqn, scheme in schemes.items():
            if scheme.source == "converted":  # convert_pt2e already replaced the weight by int8 + dequantize
                infos[fqn] = replace(infos[fqn], quantized=scheme.description)
                schemes[fqn] = WeightScheme("none", None, f"already quantized: {scheme.description}")
        activations = {fqn: self._activation_scheme(fqn) for fqn, info in infos.items() if info.is_weighted}
        name = root_class.rpartition(".")[2]
        return dict(
            class_name=name,
            modules=infos,
            weight_schemes=schemes,
            has_qconfig=annotated,
            fingerprint=model_fingerprint(self.gm, class_name=name),
            kinds=facts.kinds,
            axis_rules=facts.rules,
            own_forward=frozenset(facts.own_forward),
            feature_sizes=facts.sizes,
            activation_schemes={k: v for k, v in activations.items() if v is not None},
            identity=model_identity(self.gm, class_name=name),
            legacy_fingerprint=legacy_fingerprint(self.gm, class_name=name),
        )

    def _first_use(self, target: str) -> int:
        for i, node in enumerate(self.nodes):
            if node.op == "call_module" and node.target == target:
                return i
        return len(self.nodes)

    def _info(
        self,
        path: str,
        qualified: str,
        parent: str | None,
        kids: tuple[str, ...],
        own: list[torch.fx.Node],
        facts: _Facts,
        *,
        leaf: bool,
    ) -> ModuleInfo:
        """One module's facts from its class (when importable) and the aten ops it runs."""
        proxy = _proxy(qualified)
        ops = {op_name(n) for n in own}
        kind: WeightedKind | None = weighted_kind(proxy) if proxy is not None else None
        if kind is None and leaf and (proxy is None or not type(proxy).__module__.startswith("torch.")):
            kind = _kind_by_ops(ops)  # a class we cannot see (a .pt2 from elsewhere) or a custom layer
        if kind is not None:
            facts.kinds[path] = kind
            facts.rules[path] = (
                AXIS_LAST if kind.layout == "last" else AXIS_CHANNELS,
                None,
                f"{qualified.rpartition('.')[2]}: "
                + ("features on the last axis" if kind.layout == "last" else "channels on axis 1"),
            )
            weight = self._weight_node_of(own)
            shape = _meta_shape(weight)
            if shape is not None and len(shape) >= 2:
                facts.sizes[path] = (shape[kind.in_axis if kind.in_axis is not None else 1], shape[kind.out_axis])
        elif proxy is not None and isinstance(proxy, CHANNEL_AXIS_TYPES):
            facts.rules[path] = (AXIS_CHANNELS, None, f"{type(proxy).__name__}: channels on axis 1")
        else:
            features = _norm_features_of(own)
            if features is not None:
                facts.rules[path] = (
                    AXIS_NORM,
                    features,
                    f"{qualified.rpartition('.')[2]} normalises {features} features",
                )
                facts.sizes[path] = (features,)
                if proxy is not None and forward_overridden(proxy):
                    facts.own_forward.add(path)
            else:
                facts.rules[path] = (AXIS_FOLLOW, None, f"{qualified.rpartition('.')[2]} does not say")
        try:
            params = sum(p.numel() for p in self.gm.get_submodule(path).parameters()) if not path.startswith("[") else 0
        except AttributeError:
            params = 0
        return ModuleInfo(
            fqn=path,
            name=path.rpartition(".")[2],
            class_name=qualified if path.startswith("[") else qualified.rpartition(".")[2],  # "[relu]": aten.relu
            parent=parent,
            depth=0 if not path else path.count(".") + 1,
            children=kids,
            is_quant_helper=False,
            is_leaf=leaf,
            is_weighted=kind is not None,
            is_linear=isinstance(proxy, nn.Linear) if proxy is not None else bool(kind and kind.name == "linear"),
            total_params=params,
            last_axis=facts.rules[path][0] == AXIS_LAST,
            monotone=proxy is not None and type(proxy) in MONOTONE_TYPES,
            weight_kind=kind.name if kind is not None else "",
        )

    def _weight_node_of(self, own: list[torch.fx.Node]) -> torch.fx.Node | None:
        for node in own:
            name = op_name(node)
            if name in WEIGHT_OPS:
                index = WEIGHT_OPS[name]
                arg = node.args[index] if len(node.args) > index else node.kwargs.get("weight")
                return arg if isinstance(arg, torch.fx.Node) else None
        return None

    # What the quantizer planned.

    def compute_node(self, fqn: str) -> torch.fx.Node | None:
        """The node doing a weighted module's work (its first weight op)."""
        for inv in self.invocations:
            if inv.fqn != fqn:
                continue
            for node in inv.nodes:
                if node.op == "call_function" and op_name(node) in WEIGHT_OPS:
                    return node
        return None

    def _weight_node(self, fqn: str) -> torch.fx.Node | None:
        node = self.compute_node(fqn)
        if node is None:
            return None
        index = WEIGHT_OPS[op_name(node)]
        arg = node.args[index] if len(node.args) > index else node.kwargs.get("weight")
        return arg if isinstance(arg, torch.fx.Node) else None

    def _chain(self, node: torch.fx.Node | None) -> list[torch.fx.Node]:
        """The quantizer's nodes between a value and its consumer (nearest first)."""
        chain = []
        while node is not None and self.is_helper(node):
            chain.append(node)
            inputs = _args(node)
            node = inputs[0] if inputs else None
        return chain

    def _weight_scheme(self, fqn: str, annotated: bool) -> WeightScheme:
        chain = self._chain(self._weight_node(fqn))
        if not chain:
            if annotated:
                return WeightScheme("none", None, "left unquantized (the quantizer did not annotate its weight)")
            return WeightScheme("planned", None, "no quantizer: the planned scheme applies")
        for node in chain:
            if node.op == "call_module":
                observer = self.gm.get_submodule(str(node.target))
                per_channel = observer_is_per_channel(observer)
                kind = "per-channel" if per_channel else "per-tensor"
                return WeightScheme(
                    "qconfig", per_channel, f"{kind} ({type(observer).__name__}, attached by the quantizer)"
                )
            name = op_name(node)
            if name.startswith(("dequantize", "quantize")):
                per_channel = "per_channel" in name
                kind = "per channel" if per_channel else "per tensor"
                return WeightScheme("converted", per_channel, f"int8 weights {kind}, by convert_pt2e")
        return WeightScheme("none", None, "weight passes quantizer nodes of unknown kind")

    def _activation_scheme(self, fqn: str) -> str | None:
        """ "dynamic" or "static" as the quantizer annotated the module's input; None when it did not."""
        node = self.compute_node(fqn)
        if node is None or not node.args or not isinstance(node.args[0], torch.fx.Node):
            return None
        chain = self._chain(node.args[0])
        if not chain:
            return None
        for item in chain:
            if item.op == "call_module":
                observer = self.gm.get_submodule(str(item.target))
                if getattr(observer, "is_dynamic", False) or getattr(
                    getattr(observer, "activation_post_process", None), "is_dynamic", False
                ):
                    return "dynamic"
            elif any(_is_choose_qparams(a) for a in [item, *_args(item)]):
                return "dynamic"  # converted: the input's qparams are computed per batch
        return "static"

    # Weights.

    def weight(self, fqn: str) -> torch.Tensor | None:
        """A weighted module's float weight: the parameter behind observers or fake quantizers,
        or the dequantized constant of a converted graph."""
        node = self._weight_node(fqn)
        if node is None or node not in self.constant:
            return None
        return self._evaluate(node, {})

    def _evaluate(self, node: torch.fx.Node, memo: dict) -> Any:
        if node in memo:
            return memo[node]
        if node.op == "get_attr":
            value: Any = self.gm
            for part in str(node.target).split("."):
                value = getattr(value, part)
        elif node.op == "call_module" and node.target in self._helper_targets:
            value = self._evaluate(_args(node)[0], memo)  # an observer or fake quantizer: the value it watches
        else:
            args, kwargs = torch.fx.map_arg((node.args, node.kwargs), lambda n: self._evaluate(n, memo))
            if node.op == "call_function":
                value = node.target(*args, **kwargs)  # type: ignore[operator]
            elif node.op == "call_module":
                value = self.gm.get_submodule(str(node.target))(*args, **kwargs)
            else:
                self_obj, *rest = args
                value = getattr(self_obj, str(node.target))(*rest, **kwargs)
        memo[node] = value
        return value

    # Running.

    def flat_inputs(self, batch: Any) -> list[Any]:
        """A batch as the graph's placeholders want it (tensor, tuple of args, or dict of kwargs)."""
        args: tuple[Any, ...]
        if isinstance(batch, Mapping):
            args, kwargs = (), dict(batch)
        elif isinstance(batch, (tuple, list)):
            args, kwargs = tuple(batch), {}
        else:
            args, kwargs = (batch,), {}
        in_spec = getattr(self.gm, "_in_spec", None)
        if in_spec is not None:
            import torch.fx._pytree as fx_pytree

            try:
                return list(fx_pytree.tree_flatten_spec((args, kwargs), in_spec))
            except Exception as exc:
                raise TypeError(f"the batch does not match the exported inputs: {exc}") from None
        if kwargs:
            raise TypeError("this graph takes positional inputs only")
        return list(self.gm.graph.process_inputs(*args))

    def module_of(self, node: torch.fx.Node) -> str | None:
        """The innermost original module a node runs in (None: the root's own code)."""
        stack = _stack(node)
        if stack:
            return stack[-1][1]
        for name, n in self.unattributed.items():
            if n is node:
                return name
        return None


def _is_choose_qparams(node: torch.fx.Node) -> bool:
    """choose_qparams, or an item of its result (a converted graph's dynamic quantization)."""
    if node.op != "call_function":
        return False
    if op_name(node) == "getitem" and node.args and isinstance(node.args[0], torch.fx.Node):
        node = node.args[0]
    return "choose_qparams" in op_name(node)


def observer_is_per_channel(observer: nn.Module) -> bool:
    """Per channel: a per-channel qscheme, a channel axis, or a per-axis granularity (torch.ao or torchao)."""
    if getattr(observer, "is_per_channel", False):
        return True
    inner = getattr(observer, "activation_post_process", None)
    if inner is not None and inner is not observer and observer_is_per_channel(inner):
        return True
    qscheme = getattr(observer, "qscheme", None)
    if qscheme in (torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams):
        return True
    granularity = type(getattr(observer, "granularity", None)).__name__
    return granularity in ("PerAxis", "PerRow", "PerGroup", "PerBlock")
