"""What a module is, before any model is walked: the weighted kinds' registry, the channel-axis
rules, the quantizer's helpers (observers, fake quantizers, fused modules) and the weight scheme a
qconfig sets.

The model's catalog (:mod:`~tui_quantreport.engine.modules`) and the exported graphs' view
(:mod:`~tui_quantreport.engine.graph`) both stand on these facts; this module imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from tui_quantreport.engine.defaults import BACKENDS

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
        if not isinstance(weight, torch.Tensor) or is_lazy(weight):
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


def unknown_weights(module: nn.Module) -> list[str]:
    """Names of the module's own 2-D or larger parameters (a layer no kind describes)."""
    return [name for name, p in module.named_parameters(recurse=False) if not is_lazy(p) and p.dim() >= 2]


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
        if isinstance(weight, torch.Tensor) and not is_lazy(weight) and weight.dim() == 1:
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


def qconfig_weight_scheme(module: nn.Module, model_has_qconfig: bool) -> WeightScheme:
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


def is_lazy(p: torch.Tensor) -> bool:
    """A lazy module's parameter, not yet given its shape."""
    return isinstance(p, nn.parameter.UninitializedParameter)


#: Modules whose output carries their input's values on (elementwise monotone, reshapes,
#: pooling, stubs): a finding on a tensor is followed through them to the module that quantizes it.
PASS_THROUGH_TYPES: tuple[type[nn.Module], ...] = (
    nn.Flatten,
    nn.Unflatten,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


def passes_through_class(cls: type | None) -> bool:
    """Whether modules of class ``cls`` carry their input's values on: the pass-through types,
    identity, dropout, and torch.ao's quant/dequant stubs (by name: torch.ao is not imported)."""
    if cls is None:
        return False
    if issubclass(cls, (*PASS_THROUGH_TYPES, nn.Identity, nn.modules.dropout._DropoutNd)):
        return True
    return cls.__name__ in ("QuantStub", "DeQuantStub", "Identity", "Dropout")
