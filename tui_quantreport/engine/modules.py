"""What the engine knows about a model's modules before any data flows.

:class:`ModelCatalog` walks ``named_modules()`` once and records plain facts the
detectors and the app need: the tree, each module's class, whether it is an
observer or fake quantizer inserted by ``torch.ao`` (not one of the user's
modules), whether it is a leaf, which channel axis its tensors use, and how its
weights are planned to be quantized.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from tui_quantreport.engine.report import ModuleInfo

# Nothing here imports torch.ao.quantization or torchao: observers and fake quantizers
# (torch.ao's and torchao's PT2E ones) and fused modules are recognized by their base
# classes' names, so a torch without torch.ao.quantization still loads the engine.
_HELPER_BASES = frozenset({
    ("torch.ao.quantization.observer", "ObserverBase"),
    ("torch.ao.quantization.fake_quantize", "FakeQuantizeBase"),
    ("torchao.quantization.pt2e.observer", "ObserverBase"),
    ("torchao.quantization.pt2e.fake_quantize", "FakeQuantizeBase"),
    ("torchao.quantization.pt2e.observer", "AffineQuantizedObserverBase"),
})
_FAKE_QUANT_BASES = frozenset(b for b in _HELPER_BASES if b[1] == "FakeQuantizeBase")
_FUSED_BASES = frozenset({("torch.ao.nn.intrinsic.modules.fused", "_FusedModule")})


def _has_base(cls: type, bases: frozenset[tuple[str, str]]) -> bool:
    return any((base.__module__, base.__name__) in bases for base in cls.__mro__)

#: Module types whose weights can be quantized per channel (subclasses, so QAT,
#: lazy and fused-QAT variants, count too).
WEIGHTED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

#: Module types whose tensors carry features on the last axis.
LAST_AXIS_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.LayerNorm, nn.MultiheadAttention)


#: Elementwise modules that never reorder values (monotone non-decreasing):
#: per-channel min, max and order statistics of their output are the module
#: applied to those of their input, exactly. Checked by exact type, so a
#: subclass with its own forward is not trusted.
MONOTONE_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
)


def is_monotone(module: nn.Module) -> bool:
    """True for elementwise, order-preserving modules (see :data:`MONOTONE_TYPES`)."""
    if type(module) is nn.LeakyReLU:
        return module.negative_slope >= 0
    return type(module) in MONOTONE_TYPES


def is_quant_helper(module: nn.Module) -> bool:
    """True for observers and fake quantizers that ``torch.ao`` or torchao's PT2E quantizers insert."""
    return _has_base(type(module), _HELPER_BASES)


def is_fused(module: nn.Module | None) -> bool:
    """True for ``torch.ao``'s fused modules (ConvReLU2d, LinearReLU…)."""
    return module is not None and _has_base(type(module), _FUSED_BASES)


def quantized_weights(module: nn.Module) -> str:
    """How torchao already quantized the module's own weights ("" when it did not).

    ``quantize_`` swaps a weight for a tensor subclass (``Int8Tensor``,
    ``AffineQuantizedTensor``, ``Float8Tensor``…); read by name, torchao is not imported.
    """
    for _, param in module.named_parameters(recurse=False):
        cls = type(param)
        if not cls.__module__.startswith("torchao"):
            continue
        return describe_quantized_tensor(param)
    return ""


def describe_quantized_tensor(tensor: torch.Tensor) -> str:
    """``int8 weights per row (Int8Tensor), dynamic int8 activations`` and the like, from its attributes."""
    cls = type(tensor).__name__
    inner = getattr(tensor, "original_weight_tensor", None)  # LinearActivationQuantizedTensor wraps one
    dynamic = inner is not None or getattr(tensor, "act_quant_kwargs", None) is not None
    if inner is not None:
        tensor, cls = inner, f"{cls} of {type(inner).__name__}"
    qdata = getattr(tensor, "qdata", None)
    if qdata is None:
        qdata = getattr(tensor, "int_data", None)
    bits = ""
    if isinstance(qdata, torch.Tensor) and qdata.dtype in (torch.int8, torch.uint8):
        bits = "int8" if qdata.dtype == torch.int8 else "uint8"
    if "Int4" in cls or "int4" in cls.lower():
        bits = "int4"
    if "Float8" in cls:
        bits = "float8"
    granularity = ""
    block = getattr(tensor, "block_size", None)
    shape = tuple(tensor.shape)
    if block is not None and len(shape) == 2 and len(block) == 2:
        block = tuple(int(b) for b in block)
        if block == shape:
            granularity = " per tensor"
        elif block == (1, shape[1]):
            granularity = " per row"
        elif block[0] == 1:
            granularity = f" in groups of {block[1]}"
    text = f"{bits or 'quantized'} weights{granularity} ({cls})"
    return text + (", dynamic activations" if dynamic else "")


@dataclass(frozen=True)
class WeightScheme:
    """How a module's weights are set to be quantized, read from its qconfig.

    ``source`` is ``"qconfig"`` when the module carries one, ``"none"`` when the
    module was explicitly left unquantized (``qconfig=None`` in a model that has
    qconfigs elsewhere), and ``"planned"`` when the model has no qconfig at all.
    """

    source: str
    per_channel: bool | None
    description: str


@dataclass
class ModelCatalog:
    """The model's module tree and static facts, built once per model."""

    class_name: str
    modules: dict[str, ModuleInfo]
    weight_schemes: dict[str, WeightScheme] = field(default_factory=dict)
    has_qconfig: bool = False
    #: A hash of the model's class and its parameters' names, shapes and dtypes: two models
    #: with the same fingerprint take the same stats files and plans.
    fingerprint: str = ""
    #: How a quantizer annotated each weighted module's input ("dynamic" or "static"); PT2E graphs only.
    activation_schemes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, model: nn.Module) -> "ModelCatalog":
        from tui_quantreport.engine.graph import GraphView, is_exported_graph

        if is_exported_graph(model):  # torch.export / PT2E: the tree comes from the nodes' module stacks
            return GraphView(model).catalog  # type: ignore[arg-type]
        named = list(model.named_modules(remove_duplicate=False))
        by_name = dict(named)
        seen: set[int] = set()
        infos: dict[str, ModuleInfo] = {}
        for fqn, module in named:
            if fqn in infos or id(module) in seen and fqn:
                # A module shared under two names is shown once, at its first name.
                continue
            seen.add(id(module))
            parent = fqn.rpartition(".")[0] if fqn else None
            children = tuple(f"{fqn}.{n}" if fqn else n for n, _ in module.named_children())
            helper = is_quant_helper(module)
            user_children = [c for _, c in module.named_children() if not is_quant_helper(c)]
            parent_module = by_name.get(parent) if parent is not None else None
            infos[fqn] = ModuleInfo(
                fqn=fqn,
                name=fqn.rpartition(".")[2],
                class_name=type(module).__name__,
                parent=parent,
                depth=0 if not fqn else fqn.count(".") + 1,
                children=children,
                is_quant_helper=helper,
                is_leaf=not helper and not user_children,
                is_weighted=isinstance(module, WEIGHTED_TYPES),
                is_linear=isinstance(module, nn.Linear),
                total_params=sum(p.numel() for p in module.parameters() if not _is_lazy(p)),
                last_axis=isinstance(module, LAST_AXIS_TYPES),
                monotone=is_monotone(module),
                fused_parent=parent if is_fused(parent_module) else None,
                quantized=quantized_weights(module),
            )
        # Children that were skipped as duplicates must not dangle in the tree.
        for fqn, info in list(infos.items()):
            kept = tuple(c for c in info.children if c in infos)
            if kept != info.children:
                infos[fqn] = replace(info, children=kept)
        has_qconfig = any(getattr(m, "qconfig", None) is not None for _, m in named)
        schemes = {
            fqn: _weight_scheme(by_name[fqn], has_qconfig)
            for fqn, info in infos.items()
            if info.is_weighted
        }
        return cls(type(model).__name__, infos, schemes, has_qconfig, model_fingerprint(model))

    def user_modules(self) -> list[ModuleInfo]:
        """Every module except observers and fake quantizers, in tree order."""
        return [m for m in self.modules.values() if not m.is_quant_helper]

    def channel_axis(self, fqn: str, ndim: int, override: int | None = None) -> int:
        """The feature axis of an ``ndim``-D tensor seen at module ``fqn``."""
        if ndim <= 1:
            return 0
        if override is not None:
            axis = override if override >= 0 else ndim + override
            return min(max(axis, 0), ndim - 1)
        return ndim - 1 if self.modules[fqn].last_axis else 1


def model_fingerprint(model: nn.Module, class_name: str | None = None) -> str:
    """sha256 (16 hex digits) of the class name and every parameter's name, shape and dtype.

    Buffers are left out: an observer's buffers change shape while it calibrates.
    ``class_name`` overrides the model's (an exported graph names its original class).
    """
    digest = hashlib.sha256((class_name or type(model).__name__).encode())
    for name, tensor in model.named_parameters():
        shape = "lazy" if _is_lazy(tensor) else "x".join(map(str, tensor.shape))
        digest.update(f"|{name}:{shape}:{tensor.dtype}".encode())
    return digest.hexdigest()[:16]


def _is_lazy(p: torch.Tensor) -> bool:
    return isinstance(p, nn.parameter.UninitializedParameter)


def _weight_scheme(module: nn.Module, model_has_qconfig: bool) -> WeightScheme:
    qconfig = getattr(module, "qconfig", None)
    if qconfig is None:
        if model_has_qconfig:
            return WeightScheme("none", None, "left unquantized (qconfig is None)")
        return WeightScheme("planned", None, "no qconfig: the planned scheme applies")
    weight_factory = getattr(qconfig, "weight", None)
    if weight_factory is None:
        return WeightScheme("none", None, "qconfig has no weight quantization")
    try:
        quantizer = weight_factory()
    except Exception as exc:  # a user's qconfig that cannot be built is reported, not raised
        return WeightScheme("none", None, f"weight quantizer could not be built: {exc}")
    name = type(quantizer).__name__
    if _has_base(type(quantizer), _FAKE_QUANT_BASES):
        per_channel = bool(getattr(quantizer, "is_per_channel", False))
    else:
        qscheme = getattr(quantizer, "qscheme", None)
        per_channel = hasattr(quantizer, "ch_axis") or qscheme in (
            torch.per_channel_affine,
            torch.per_channel_symmetric,
            torch.per_channel_affine_float_qparams,
        )
    kind = "per-channel" if per_channel else "per-tensor"
    return WeightScheme("qconfig", per_channel, f"{kind} ({name})")
