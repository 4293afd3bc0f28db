"""What the engine knows about a model's modules before any data flows.

:class:`ModelCatalog` walks ``named_modules()`` once and records plain facts the
detectors and the app need: the tree, each module's class, whether it is an
observer or fake quantizer inserted by ``torch.ao`` (not one of the user's
modules), whether it is a leaf, which channel axis its tensors use, and how its
weights are planned to be quantized.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from tui_quantreport.engine.defaults import BACKENDS
from tui_quantreport.engine.module_info import ModuleInfo

# Nothing here imports torch.ao.quantization or torchao: observers and fake quantizers
# (torch.ao's and torchao's PT2E ones) and fused modules are recognized by their base
# classes' names, so a torch without torch.ao.quantization still loads the engine.
_HELPER_BASES = frozenset(
    {
        ("torch.ao.quantization.observer", "ObserverBase"),
        ("torch.ao.quantization.fake_quantize", "FakeQuantizeBase"),
        ("torchao.quantization.pt2e.observer", "ObserverBase"),
        ("torchao.quantization.pt2e.fake_quantize", "FakeQuantizeBase"),
        ("torchao.quantization.pt2e.observer", "AffineQuantizedObserverBase"),
    }
)
_FAKE_QUANT_BASES = frozenset(b for b in _HELPER_BASES if b[1] == "FakeQuantizeBase")
_FUSED_BASES = frozenset({("torch.ao.nn.intrinsic.modules.fused", "_FusedModule")})


_BASES_SEEN: dict[tuple[type, frozenset[tuple[str, str]]], bool] = {}


def _has_base(cls: type, bases: frozenset[tuple[str, str]]) -> bool:
    key = (cls, bases)  # remembered per class: asked for every module of a model, per calibration
    known = _BASES_SEEN.get(key)
    if known is None:
        known = _BASES_SEEN[key] = any((base.__module__, base.__name__) in bases for base in cls.__mro__)
    return known


# -- Weighted layers: what a layer computes, in one registry ------------------------------

#: What the weight-based detectors can do with a weighted layer.
PER_CHANNEL = "per_channel"
DYNAMIC = "dynamic"
EQUALIZATION = "equalization"
CAPABILITIES = (PER_CHANNEL, DYNAMIC, EQUALIZATION)

#: The quantized engines that have dynamic (activation range per batch) kernels for a layer.
ALL_BACKENDS = frozenset(BACKENDS)


@dataclass(frozen=True)
class WeightedKind:
    """One kind of weighted layer, by what it computes.

    ``weight`` names the parameter that holds the layer's matrix (or kernel);
    ``in_axis`` is the weight axis of the layer's *input* channels (``None``:
    the layer has none, like an embedding table indexed by integers) and
    ``out_axis`` the axis that per-channel quantization gives one scale each
    (output channels; an embedding's rows). ``layout`` is where the features
    of the layer's input and output tensors are: ``"last"`` (Linear-style,
    ``(batch, tokens, features)``) or ``"channels"`` (axis 1, ``(N, C, ...)``).
    ``dynamic_backends`` are the engines with a dynamic quantized kernel for it
    (empty: none exists). ``skips`` says, per capability the kind lacks, why.
    """

    name: str
    description: str
    matches: Callable[[nn.Module], bool]
    weight: str | None
    in_axis: int | None
    out_axis: int
    layout: str
    capabilities: frozenset[str]
    skips: Mapping[str, str] = field(default_factory=dict)
    dynamic_backends: frozenset[str] = frozenset()
    weight_only: bool = False
    note: str = ""

    def weight_of(self, module: nn.Module) -> torch.Tensor | None:
        """The layer's weight tensor (None when absent or not yet materialised)."""
        if self.weight is None:
            return None
        weight = getattr(module, self.weight, None)
        if weight is None and self.name == "multihead_attention":
            weight = getattr(module, "q_proj_weight", None)  # kdim/vdim differ: separate projections
        if not isinstance(weight, torch.Tensor) or _is_lazy(weight):
            return None
        return weight


def _class_path_is(path: str) -> Callable[[nn.Module], bool]:
    """Match a class (or a subclass) by its import path, without importing its library."""
    module_name, _, qualname = path.rpartition(".")

    def matches(module: nn.Module) -> bool:
        return any(c.__module__ == module_name and c.__qualname__ == qualname for c in type(module).__mro__)

    return matches


def _instance_of(*types: type) -> Callable[[nn.Module], bool]:
    return lambda module: isinstance(module, types)


_NO_INPUT_CHANNELS = "its input is integer indices, not an activation with channels"
_MANY_WEIGHTS = "it holds several weight matrices (weight_ih_l*, weight_hh_l*), not one"

#: Every kind of weighted layer the detectors judge, first match wins. Add another
#: library's layer here (one entry) and every weight-based detector judges it.
WEIGHTED_KINDS: list[WeightedKind] = [
    WeightedKind(
        "multihead_attention_out_proj",
        "the output projection of nn.MultiheadAttention",
        _instance_of(nn.modules.linear.NonDynamicallyQuantizableLinear),
        "weight",
        1,
        0,
        "last",
        frozenset({PER_CHANNEL, DYNAMIC, EQUALIZATION}),
        note="torch marks it NonDynamicallyQuantizableLinear: dynamic quantization skips it",
    ),
    WeightedKind(
        "linear",
        "a matrix product, weight [out, in]",
        _instance_of(nn.Linear),
        "weight",
        1,
        0,
        "last",
        frozenset({PER_CHANNEL, DYNAMIC, EQUALIZATION}),
        dynamic_backends=ALL_BACKENDS,
    ),
    WeightedKind(
        "hf_conv1d",
        "transformers' Conv1D: a matrix product with weight [in, out] (a transposed Linear)",
        _class_path_is("transformers.pytorch_utils.Conv1D"),
        "weight",
        0,
        1,
        "last",
        frozenset({PER_CHANNEL, DYNAMIC, EQUALIZATION}),
        dynamic_backends=ALL_BACKENDS,
        note="torch.ao quantizes it once it is replaced by nn.Linear with weight W.T",
    ),
    WeightedKind(
        "conv",
        "a convolution, weight [out, in / groups, *kernel]",
        _instance_of(nn.Conv1d, nn.Conv2d, nn.Conv3d),
        "weight",
        1,
        0,
        "channels",
        frozenset({PER_CHANNEL, DYNAMIC, EQUALIZATION}),
    ),
    WeightedKind(
        "multihead_attention",
        "nn.MultiheadAttention: its input projection in_proj_weight [3 * embed, embed]",
        _instance_of(nn.MultiheadAttention),
        "in_proj_weight",
        1,
        0,
        "last",
        frozenset({PER_CHANNEL, DYNAMIC, EQUALIZATION}),
        note="torch.ao quantizes it through nn.quantizable.MultiheadAttention (static only)",
    ),
    WeightedKind(
        "embedding",
        "a lookup table, weight [rows, features], indexed by integers",
        _instance_of(nn.Embedding, nn.EmbeddingBag),
        "weight",
        None,
        0,
        "last",
        frozenset({PER_CHANNEL}),
        skips={DYNAMIC: _NO_INPUT_CHANNELS + ": weight-only quantization applies", EQUALIZATION: _NO_INPUT_CHANNELS},
        weight_only=True,
    ),
    WeightedKind(
        "recurrent",
        "a recurrent layer (LSTM, GRU, RNN and their cells)",
        _instance_of(nn.RNNBase, nn.RNNCellBase),
        None,
        None,
        0,
        "last",
        frozenset({DYNAMIC}),
        skips={PER_CHANNEL: _MANY_WEIGHTS, EQUALIZATION: _MANY_WEIGHTS},
        dynamic_backends=ALL_BACKENDS,
    ),
]


def register_weighted_kind(kind: WeightedKind) -> None:
    """Add (or replace, by name) a kind of weighted layer; it is matched before the built-in ones."""
    WEIGHTED_KINDS[:] = [kind] + [k for k in WEIGHTED_KINDS if k.name != kind.name]


def weighted_kind(module: nn.Module) -> WeightedKind | None:
    """The registered kind of ``module``, or None when it is not a known weighted layer."""
    for kind in WEIGHTED_KINDS:
        if kind.matches(module):
            return kind
    return None


def kind_named(name: str) -> WeightedKind | None:
    return next((k for k in WEIGHTED_KINDS if k.name == name), None)


def _unknown_weights(module: nn.Module) -> list[str]:
    """Names of the module's own 2-D or larger parameters (a layer no kind describes)."""
    return [name for name, p in module.named_parameters(recurse=False) if not _is_lazy(p) and p.dim() >= 2]


# -- Channel axis: where a tensor's features are --------------------------------------------

#: Where a module's tensors keep their features:
AXIS_LAST = "last"  # (batch, ..., features): Linear-family, LayerNorm, RMSNorm, attention
AXIS_CHANNELS = "channels"  # (N, C, ...): convolutions, BatchNorm, GroupNorm, pooling
AXIS_NORM = "norm"  # a norm with C features: the axis whose size is C (LayerNorm2d normalises axis 1)
AXIS_FOLLOW = "follow"  # elementwise or unknown: the tensor's producer or consumer decides
AXIS_KEEP = "keep"  # padding: follows the tensor it pads (producer or consumer), and its output keeps that layout

#: Padding layers: they pad whatever tensor they are given (a ZeroPad2d shifting the tokens of a
#: (B, T, C) hidden state, RWKV's time shift, as well as an image), so their layout is that tensor's.
LAYOUT_KEEPING_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
    nn.modules.padding._ConstantPadNd,
    nn.modules.padding._CircularPadNd,
)

#: Modules whose (N, C, ...) tensors keep channels on axis 1.
CHANNEL_AXIS_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
    nn.Upsample,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.ChannelShuffle,
    nn.modules.conv._ConvTransposeNd,
)


#: Attributes through which layers declare their feature or channel counts.
SIZE_ATTRIBUTES = (
    "in_features",
    "out_features",
    "in_channels",
    "out_channels",
    "num_features",
    "num_channels",
    "embed_dim",
    "embedding_dim",
    "input_size",
    "hidden_size",
    "nx",
    "nf",
)


def axis_rule(module: nn.Module, kind: WeightedKind | None) -> tuple[str, int | None, str]:
    """How the channel axis of ``module``'s tensors is decided: (rule, features, why).

    ``features`` is the feature count a norm normalises (for :data:`AXIS_NORM`).
    """
    name = type(module).__name__
    if kind is not None:
        where = "features on the last axis" if kind.layout == "last" else "channels on axis 1"
        return (AXIS_LAST if kind.layout == "last" else AXIS_CHANNELS), None, f"{name}: {where}"
    if isinstance(module, CHANNEL_AXIS_TYPES):
        return AXIS_CHANNELS, None, f"{name}: channels on axis 1"
    if isinstance(module, LAYOUT_KEEPING_TYPES):
        return AXIS_KEEP, None, f"{name} pads the tensor it is given: it follows that tensor's layout"
    features = _norm_features(module)
    if features is not None:
        return AXIS_NORM, features, f"{name} normalises {features} features"
    return AXIS_FOLLOW, None, f"{name} does not say"


def _norm_features(module: nn.Module) -> int | None:
    """C for a LayerNorm-style norm (LayerNorm and subclasses such as LayerNorm2d, RMSNorm,
    any ``*Norm`` with a 1-D weight): the axis of size C holds its features."""
    shape = getattr(module, "normalized_shape", None)
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)) and shape:
        return int(shape[-1])
    if "norm" in type(module).__name__.lower():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and not _is_lazy(weight) and weight.dim() == 1:
            return int(weight.numel())
    return None


def norm_axis(module_name: str, overrides_forward: bool, features: int, shape: tuple[int, ...]) -> tuple[int, str]:
    """The axis a norm of ``features`` features normalises in a tensor of ``shape``, and why.

    The last axis when its size is ``features`` (LayerNorm, RMSNorm); axis 1 when
    only that one matches (LayerNorm2d over NCHW). When both match, a subclass
    with its own forward on a 4-D or larger tensor is taken to be channels-first.
    """
    ndim = len(shape)
    last, first = shape[-1] == features, ndim >= 3 and shape[1] == features
    if first and (not last or (overrides_forward and ndim >= 4)):
        return 1, f"{module_name} normalises axis 1 ({features} channels of an (N, C, ...) tensor)"
    if last:
        return ndim - 1, f"{module_name} normalises the last axis ({features} features)"
    return ndim - 1, f"{module_name}: no axis has its {features} features; the last axis"


def forward_overridden(module: nn.Module) -> bool:
    """True when the module's class defines its own forward below LayerNorm/RMSNorm."""
    for base in (nn.LayerNorm, nn.RMSNorm):
        if isinstance(module, base):
            return type(module).forward is not base.forward
    return False


#: Elementwise modules that never reorder values (monotone non-decreasing):
#: per-channel min, max and order statistics of their output are the module
#: applied to those of their input, exactly. Checked by exact type, so a
#: subclass with its own forward is not trusted.
MONOTONE_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
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
    #: A versioned hash of the model's identity (:func:`model_identity`: every module's name and
    #: type, every parameter's and buffer's name, shape and dtype): two models with the same
    #: fingerprint take the same stats files and plans. ``"2:"`` + 16 hex digits; older files
    #: hold a version 1 fingerprint (16 hex digits, class and parameters only).
    fingerprint: str = ""
    #: The registered kind of every weighted layer (see :data:`WEIGHTED_KINDS`).
    kinds: dict[str, WeightedKind] = field(default_factory=dict)
    #: Modules with 2-D or larger weights that no registered kind describes, and why they are skipped.
    unknown_weighted: dict[str, str] = field(default_factory=dict)
    #: How each module's channel axis is decided: (rule, norm features, why); see :func:`axis_rule`.
    axis_rules: dict[str, tuple[str, int | None, str]] = field(default_factory=dict)
    #: Norms whose class overrides LayerNorm's forward (LayerNorm2d-style).
    own_forward: frozenset[str] = frozenset()
    #: The feature or channel counts a module declares (in/out features, channels, embedding size).
    feature_sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: How a quantizer annotated each weighted module's input ("dynamic" or "static"); PT2E graphs only.
    activation_schemes: dict[str, str] = field(default_factory=dict)
    #: What the fingerprint hashes (:func:`model_identity`), to name the first difference between two
    #: models; empty in a file written before fingerprint version 2.
    identity: tuple[tuple[str, ...], ...] = ()
    #: The version 1 fingerprint of the same model, to check a file written before version 2.
    legacy_fingerprint: str = ""

    def check_same_model(self, other: ModelCatalog, what: str, against: str) -> None:
        """Raise :class:`~.errors.UserError` (one line) unless ``other`` (e.g. a stats file's catalog,
        ``what`` names it) was taken on the same model as this one (``against`` names it), naming
        the first difference. A version 1 fingerprint is checked the old way (class and parameters)."""
        from tui_quantreport.engine.errors import UserError

        if not is_versioned(other.fingerprint):
            if other.fingerprint in (self.legacy_fingerprint, self.fingerprint):
                return
            raise UserError(
                f"{what} was made for a different model ({other.class_name}, fingerprint {other.fingerprint}, "
                f"an older version 1 fingerprint) than {against} ({self.class_name})"
            )
        if other.fingerprint == self.fingerprint:
            return
        difference = first_difference(other.identity, self.identity) if other.identity else "its fingerprint"
        raise UserError(
            f"{what} was made for a different model than {against}: {difference} "
            f"(fingerprint {other.fingerprint} vs {self.fingerprint})"
        )

    @classmethod
    def build(cls, model: nn.Module) -> ModelCatalog:
        from tui_quantreport.engine.graph import GraphView, is_exported_graph

        if is_exported_graph(model):  # torch.export / PT2E: the tree comes from the nodes' module stacks
            return GraphView(model).catalog  # type: ignore[arg-type]
        named = list(model.named_modules(remove_duplicate=False))
        by_name = dict(named)
        seen: set[int] = set()
        infos: dict[str, ModuleInfo] = {}
        kinds: dict[str, WeightedKind] = {}
        unknown: dict[str, str] = {}
        rules: dict[str, tuple[str, int | None, str]] = {}
        own_forward: set[str] = set()
        sizes: dict[str, tuple[int, ...]] = {}
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
            kind = None if helper else weighted_kind(module)
            if kind is not None:
                kinds[fqn] = kind
            elif not helper and _unknown_weights(module):
                names = ", ".join(_unknown_weights(module))
                unknown[fqn] = (
                    f"{type(module).__name__} holds weights ({names}) of no registered kind: "
                    "add it to WEIGHTED_KINDS (engine/modules.py) to have it judged"
                )
            rules[fqn] = axis_rule(module, kind)
            declared = tuple(
                value
                for attr in SIZE_ATTRIBUTES
                if isinstance(value := getattr(module, attr, None), int) and not isinstance(value, bool)
            )
            if declared:
                sizes[fqn] = declared
            if forward_overridden(module):
                own_forward.add(fqn)
            observed_on = parent if is_fused(parent_module) else None
            hidden_input = ""
            if isinstance(parent_module, nn.MultiheadAttention) and module is parent_module.out_proj:
                # MultiheadAttention hands out_proj's weight to F.multi_head_attention_forward and
                # never calls the module: its output is the attention's output, its input unseen.
                observed_on = parent
                hidden_input = (
                    f"its input (the attention context) is computed inside "
                    f"F.multi_head_attention_forward, which MultiheadAttention '{parent}' calls with "
                    "this layer's weight without calling the module, so no hook can see it"
                )
            infos[fqn] = ModuleInfo(
                fqn=fqn,
                name=fqn.rpartition(".")[2],
                class_name=type(module).__name__,
                parent=parent,
                depth=0 if not fqn else fqn.count(".") + 1,
                children=children,
                is_quant_helper=helper,
                is_leaf=not helper and not user_children,
                is_weighted=kind is not None,
                is_linear=isinstance(module, nn.Linear),
                total_params=sum(p.numel() for p in module.parameters() if not _is_lazy(p)),
                last_axis=rules[fqn][0] == AXIS_LAST,
                monotone=is_monotone(module),
                fused_parent=observed_on,
                weight_kind=kind.name if kind is not None else "",
                hidden_input=hidden_input,
                quantized=quantized_weights(module),
            )
        # Children that were skipped as duplicates must not dangle in the tree.
        for fqn, info in list(infos.items()):
            kept = tuple(c for c in info.children if c in infos)
            if kept != info.children:
                infos[fqn] = replace(info, children=kept)
        has_qconfig = any(getattr(m, "qconfig", None) is not None for _, m in named)
        schemes = {fqn: _weight_scheme(by_name[fqn], has_qconfig) for fqn, info in infos.items() if info.is_weighted}
        return cls(
            type(model).__name__,
            infos,
            schemes,
            has_qconfig,
            model_fingerprint(model),
            kinds,
            unknown,
            rules,
            frozenset(own_forward),
            sizes,
            identity=model_identity(model),
            legacy_fingerprint=legacy_fingerprint(model),
        )

    def user_modules(self) -> list[ModuleInfo]:
        """Every module except observers and fake quantizers, in tree order."""
        return [m for m in self.modules.values() if not m.is_quant_helper]

    def weighted(self, capability: str) -> list[str]:
        """Weighted layers a detector with ``capability`` (:data:`CAPABILITIES`) judges, in tree order."""
        return [fqn for fqn, kind in self.kinds.items() if capability in kind.capabilities]

    def skipped(self, capability: str) -> dict[str, str]:
        """Weighted layers a detector with ``capability`` does not judge, each with the reason."""
        skipped = {
            fqn: f"{self.modules[fqn].class_name}: {kind.skips.get(capability, 'not supported')}"
            for fqn, kind in self.kinds.items()
            if capability not in kind.capabilities
        }
        skipped.update(self.unknown_weighted)
        return skipped

    def dynamic_kernel(self, fqn: str, backend: str | None = None) -> bool:
        """Whether a dynamic quantized kernel exists for the layer (on ``backend``, or on any)."""
        kind = self.kinds.get(fqn)
        if kind is None:
            return False
        return backend in kind.dynamic_backends if backend is not None else bool(kind.dynamic_backends)

    def channel_axis(self, fqn: str, ndim: int, override: int | None = None) -> int:
        """The feature axis of an ``ndim``-D tensor seen at module ``fqn`` by its own rule alone.

        Calibration decides per point with more knowledge (a norm's shape, the
        tensor's producer and consumer); see :mod:`~tui_quantreport.engine.layout`.
        An override out of range raises :class:`~.errors.ParamError`, never clamped.
        """
        if ndim <= 1:
            return 0
        if override is not None:
            axis = override if override >= 0 else ndim + override
            if not 0 <= axis < ndim:
                from tui_quantreport.engine.errors import ParamError

                raise ParamError(f"channel axis {override} is out of range for a {ndim}-D tensor")
            return axis
        return ndim - 1 if self.modules[fqn].last_axis else 1


FINGERPRINT_VERSION = 2


def model_identity(model: nn.Module, class_name: str | None = None) -> tuple[tuple[str, ...], ...]:
    """What makes two models the same for a stats file or a plan, as rows: the root class, then in
    tree order every module's name and type, and every parameter's and buffer's name, shape and
    dtype. Observers' and fake quantizers' buffers are left out (they change shape while they
    calibrate); their names and types are kept. ``class_name`` overrides the root's (an exported
    graph names its original class)."""
    rows: list[tuple[str, ...]] = [("class", class_name or type(model).__name__)]
    for fqn, module in model.named_modules(remove_duplicate=False):
        cls = type(module)
        rows.append(("module", fqn, f"{cls.__module__}.{cls.__qualname__}"))
        for name, tensor in module.named_parameters(recurse=False):
            rows.append(("parameter", _join(fqn, name), _shape(tensor), str(tensor.dtype)))
        if not is_quant_helper(module):
            for name, buffer in module.named_buffers(recurse=False):
                rows.append(("buffer", _join(fqn, name), _shape(buffer), str(buffer.dtype)))
    return tuple(rows)


def model_fingerprint(model: nn.Module, class_name: str | None = None) -> str:
    """``"2:"`` and the first 16 hex digits of the sha256 of :func:`model_identity`."""
    return identity_fingerprint(model_identity(model, class_name))


def identity_fingerprint(identity: tuple[tuple[str, ...], ...]) -> str:
    digest = hashlib.sha256(f"tui-quantreport.fingerprint/{FINGERPRINT_VERSION}".encode())
    for row in identity:
        digest.update(json.dumps(row, ensure_ascii=True).encode() + b"\n")
    return f"{FINGERPRINT_VERSION}:{digest.hexdigest()[:16]}"


def is_versioned(fingerprint: str) -> bool:
    """True for a fingerprint of version 2 or later ("2:…"); False for a version 1 one (16 hex digits)."""
    return ":" in fingerprint


def legacy_fingerprint(model: nn.Module, class_name: str | None = None) -> str:
    """Version 1: sha256 (16 hex digits) of the class name and every parameter's name, shape and dtype."""
    digest = hashlib.sha256((class_name or type(model).__name__).encode("utf-8", "surrogatepass"))
    for name, tensor in model.named_parameters():
        shape = "lazy" if _is_lazy(tensor) else "x".join(map(str, tensor.shape))
        digest.update(f"|{name}:{shape}:{tensor.dtype}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def first_difference(a: tuple[tuple[str, ...], ...], b: tuple[tuple[str, ...], ...]) -> str:
    """The first row where two identities differ, in words (names made printable)."""
    from tui_quantreport.engine.escape import printable

    def said(row: tuple[str, ...] | None) -> str:
        if row is None:
            return "nothing"
        kind, *rest = row
        if kind == "class":
            return f"class {printable(rest[0])}"
        if kind == "module":
            return f"module '{printable(rest[0])}' of type {printable(rest[1])}"
        return f"{kind} '{printable(rest[0])}' of shape {rest[1]} and {rest[2]}"

    for i in range(max(len(a), len(b))):
        left = tuple(a[i]) if i < len(a) else None
        right = tuple(b[i]) if i < len(b) else None
        if left != right:
            return f"it has {said(left)} where this model has {said(right)}"
    return "the same modules and tensors, but a different fingerprint"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _shape(tensor: torch.Tensor) -> str:
    lazy = isinstance(tensor, (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer))
    return "lazy" if lazy else "x".join(map(str, tensor.shape))


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
