"""The scheme base class: how one quantization scheme treats a module's input and weight.

A scheme is a set of orthogonal facts (:class:`SchemeFacts`: activation, weight dtype and
granularity, scale dtype, family, where it runs) plus the arithmetic those facts stand
for: the fake-quantized weight (:meth:`Scheme.weight`, cached by the analysis under the
weight facts), the fake-quantized input (:meth:`Scheme.input`), its deployed bits per
weight, whether a module can take it (:meth:`Scheme.eligible`, a reason instead of a
failure) and its torchao config (:meth:`Scheme.torchao_config_spec`, data the exporter
writes it). Schemes built on torchao import it lazily, inside their methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, NamedTuple

import torch

from tui_quantreport.engine.core.recipes import torchao_config_from_spec
from tui_quantreport.engine.core.scheme_facts import SCHEME_TITLES, SchemeFacts, WeightFacts
from tui_quantreport.engine.plan import ActivationQParams
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.qparams import (
    fake_quantize_float32,
    fake_quantize_static,
    fake_quantize_weight,
    fake_quantize_weights,
    inverse_scale,
    scalar_affine_qparams,
)


@dataclass(frozen=True)
class StaticInput:
    """Fixed per-tensor activation qparams (from a calibrated range), as plain numbers.

    The scale is a float32 value held in a Python float (exact), so the fake
    quantization takes scalars: no tensor to move to the device, no sync.
    """

    scale: float
    zero_point: int
    quant_min: int
    quant_max: int
    #: ``1.0f / scale`` in float32 (what the fake-quantize kernels multiply by).
    inv_scale: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "inv_scale", inverse_scale(self.scale) if math.isfinite(self.scale) and self.scale else math.inf
        )

    @classmethod
    def from_range(cls, lo: float, hi: float, quant_min: int, quant_max: int) -> StaticInput:
        scale, zp = scalar_affine_qparams(lo, hi, quant_min, quant_max)
        return cls(scale, zp, quant_min, quant_max)

    @property
    def range(self) -> tuple[float, float]:
        """The (min, max) these qparams represent (float32 arithmetic, as torch dequantizes)."""
        return ActivationQParams(self.scale, self.zero_point, "quint8", self.quant_min, self.quant_max).range()

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return fake_quantize_float32(x, self.scale, self.zero_point, self.quant_min, self.quant_max, self.inv_scale)
        return fake_quantize_static(x, self.scale, self.zero_point, self.quant_min, self.quant_max)


@dataclass(frozen=True)
class InputContext:
    """What a scheme may need to quantize one module's input."""

    static: StaticInput | None  # None when no calibrated range is known
    quant_min: int  # the backend's activation range, for dynamic qparams
    quant_max: int
    #: Dynamic activations: one scale per token (row of the last axis) for inputs of at least
    #: this rank, one per tensor below; None: one per tensor always (the target's recipe).
    per_token_min_ndim: int | None = 3

    def per_token(self, x: torch.Tensor) -> bool:
        return self.per_token_rank(x.dim())

    def per_token_rank(self, ndim: int) -> bool:
        """Whether an input of rank ``ndim`` is quantized per token."""
        return self.per_token_min_ndim is not None and ndim >= max(2, self.per_token_min_ndim)


class BatchInput(NamedTuple):
    """A module's input quantization as data, so that many modules' inputs can be quantized in one
    go (the local pass's deferred measurements, :mod:`..deferred`): the same values as the scheme's
    :meth:`Scheme.input_function` on each input alone.

    ``kind``: "float" (the input as it is), "static" (``static``'s fixed per-tensor qparams, after
    the input's last axis is multiplied by ``multiplier`` where one is given: equalization) or
    "dynamic" (per tensor from the input's own range, or per token, as ``ctx`` says)."""

    kind: str
    static: StaticInput | None = None
    ctx: InputContext | None = None
    multiplier: torch.Tensor | None = None


@dataclass(frozen=True)
class ExportContext:
    """What the torchao exporter knows about one planned module (torch-free)."""

    fqn: str
    kind: str  # "Linear", "Conv2d", ..., or the class name
    parent_class: str | None
    input_ndim: int | None  # None: never called on the probe batch
    activation: ActivationQParams | None  # the plan's calibrated qparams (static schemes)
    #: The module's weight shape (None when unknown).
    weight_shape: tuple[int, ...] | None = None


#: torchao reads ``out_proj.weight`` of these parents outside ``Linear.forward``.
ATTENTION_PARENTS = ("MultiheadAttention",)

#: Parents whose inference fast path reads their Linear children's weights outside
#: ``Linear.forward`` (``nn.TransformerEncoderLayer`` in eval mode calls
#: ``torch._transformer_encoder_layer_fwd`` with ``linear1.weight`` and ``linear2.weight``
#: unless one of them overrides ``__torch_function__``).
FAST_PATH_PARENTS = ("TransformerEncoderLayer",)

#: Catalog kinds whose module is an ``nn.Linear`` torchao's Linear workflows take.
LINEAR_KINDS = ("linear",)


def by_rows(weight: Callable[[torch.Tensor], torch.Tensor], stacked: torch.Tensor) -> torch.Tensor | None:
    """``weight`` of each weight in ``stacked`` (same-shaped weights on dim 0), in one call: for a
    recipe whose qparams are each taken within one output row (per row, per group or per block
    along the row), the stack is one weight of ``S * N`` rows of the same rank, and each row is
    quantized as it is in its own weight (the same values; a test holds it so). None for
    weights of fewer than two dims (no rows to lay end to end)."""
    if stacked.dim() < 3:
        return None
    s, n = stacked.shape[0], stacked.shape[1]
    return weight(stacked.reshape(s * n, *stacked.shape[2:])).reshape(stacked.shape)


class Scheme:
    """One way of quantizing a weighted module (registered in :data:`SCHEMES`)."""

    name: str
    description: str
    facts: SchemeFacts

    @property
    def title(self) -> str:
        """The scheme in words (torch-free, with its facts: :data:`~.core.scheme_facts.SCHEME_TITLES`)."""
        return SCHEME_TITLES[self.name]

    # Facts, as the older attributes read them.

    @property
    def activation(self) -> str:
        """ "static", "dynamic" or "float" (input kept float)."""
        return "float" if self.facts.activation == "none" else self.facts.activation

    @property
    def needs_range(self) -> bool:
        return self.facts.needs_range

    @property
    def int8_static_input(self) -> bool:
        """Its input is quantized on the calibrated quint8 grid (:class:`StaticInput`), as torch.ao's
        converted modules and torchao's int8 static config do."""
        return self.facts.needs_range and self.facts.activation_dtype == "int8"

    @property
    def weight_key(self) -> WeightFacts:
        """What the analysis caches this scheme's fake-quantized weights under."""
        return self.facts.weight

    @property
    def input_key(self) -> str:
        """Schemes with the same key quantize a module's input alike (computed once for all of them)."""
        f = self.facts
        if f.activation == "none":
            return "float"
        if f.activation_dtype == "int8" and not f.activation_symmetric and f.family == "int8":
            return f.activation  # the int8 four: "static" / "dynamic"
        return f"{f.activation}:{f.activation_granularity}:{f.activation_dtype}:{f.activation_symmetric}"

    # Eligibility.

    def unsupported(self, kind: ModuleKind) -> str | None:
        """Why this scheme cannot apply to modules of ``kind`` (None when it can), shape aside."""
        if self.facts.activation != "none" and not kind.quantizes_input:
            return f"the input of a {kind.name} module is indices, not an activation: only weight_only applies"
        return None

    def eligible(
        self, kind: ModuleKind, weight_shape: tuple[int, ...] | None = None, dtype: torch.dtype | None = None
    ) -> str | None:
        """Why a module of ``kind`` with this weight shape (and dtype) cannot take this scheme (None: it can)."""
        return self.unsupported(kind)

    # Arithmetic.

    def weight(self, weight: torch.Tensor, kind: ModuleKind) -> torch.Tensor:
        """The fake-quantized weight, in the weight's dtype."""
        raise NotImplementedError

    def weights(self, stacked: torch.Tensor, kind: ModuleKind) -> torch.Tensor | None:
        """:meth:`weight` for a stack of same-shaped weights (dim 0), or None when the scheme
        has no stacked form (each weight is then quantized on its own)."""
        return None

    def bits_per_weight(self, weight_shape: tuple[int, ...], kind: ModuleKind) -> float:
        """Deployed bits per weight element, scales and zero points counted."""
        raise NotImplementedError

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        """The fake-quantized input."""
        raise NotImplementedError

    def segments_function(
        self, ctx: InputContext
    ) -> Callable[[torch.Tensor, tuple[int, ...]], torch.Tensor | None] | None:
        """``(x, sizes) ->`` :meth:`input` of each segment of ``x``'s rows on dim 0 (``sizes``: a
        merged batch's probes), each quantized as it would be alone, in one go (None for an ``x`` it
        does not take); None when the scheme has no such form (the segments are then quantized one
        by one)."""
        return None

    def batch_input(self, ctx: InputContext) -> BatchInput | None:
        """:meth:`input_function` as data (:class:`BatchInput`), for measuring many modules' inputs
        together; None when the scheme has no such form (its inputs are quantized one by one).
        A weight-only scheme's input is used as it is."""
        return BatchInput("float") if self.facts.activation == "none" else None

    def input_function(self, ctx: InputContext) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """``x -> self.input(x, ctx)`` bound once for a module (the per-call path of the
        measurements); None when the input is used as it is. Subclasses may return a
        shorter path to the same values."""
        if self.facts.activation == "none":
            return None
        return partial(self.input, ctx=ctx)

    # torchao.

    #: (module, name) pairs the config code needs imported.
    torchao_imports: tuple[tuple[str, str], ...] = ()
    #: Whether torchao's quantized weight tensor overrides ``__torch_function__`` (a tensor
    #: subclass with ``__torch_dispatch__`` only lets ``nn.TransformerEncoderLayer``'s fast
    #: path reach an aten op the subclass does not implement).
    weight_torch_function: bool = True

    def torchao_unsupported(self, ctx: ExportContext) -> str | None:
        """Why torchao 0.18 cannot apply this scheme to the module (None: it can)."""
        if ctx.kind != "Linear":
            return f"torchao 0.18's {self.facts.family} workflows quantize Linear only, not {ctx.kind}"
        if ctx.parent_class in ATTENTION_PARENTS:
            return (
                "nn.MultiheadAttention reads out_proj.weight outside Linear.forward, which torchao's "
                "quantized weight tensors do not support"
            )
        if not self.weight_torch_function and ctx.parent_class in FAST_PATH_PARENTS:
            return (
                f"nn.{ctx.parent_class}'s inference fast path passes this weight to "
                "torch._transformer_encoder_layer_fwd, which torchao's "
                f"{self.facts.family.upper()} weight tensor does not implement (NotImplementedError)"
            )
        return None

    def torchao_config_spec(self, ctx: ExportContext) -> dict[str, Any]:
        """The torchao config for one module as plain data (``recipes.torchao_config_from_spec``
        builds it; the exporter writes it as a literal, never as code text)."""
        raise NotImplementedError

    def torchao_config(self, ctx: ExportContext) -> Any:
        """The torchao config object itself (torchao imported here), built from
        :meth:`torchao_config_spec` through the library API."""
        return torchao_config_from_spec(self.torchao_config_spec(ctx), False)


class Int8Scheme(Scheme):
    """The int8 schemes torch.ao and torchao both run: qint8 symmetric weights per tensor or
    per output channel (float32 scales)."""

    per_channel_weights: ClassVar[bool]

    def weight(self, weight: torch.Tensor, kind: ModuleKind) -> torch.Tensor:
        return fake_quantize_weight(weight, self.per_channel_weights, kind.weight_out_axis)

    def weights(self, stacked: torch.Tensor, kind: ModuleKind) -> torch.Tensor | None:
        return fake_quantize_weights(stacked, self.per_channel_weights, kind.weight_out_axis)

    def bits_per_weight(self, weight_shape: tuple[int, ...], kind: ModuleKind) -> float:
        """The int8 schemes store int8 values and one float32 scale per output channel
        (per-channel) or per tensor (symmetric: no zero point is stored):
        ``8 + 32 * scales / numel``.
        """
        numel = math.prod(weight_shape)
        if numel == 0:
            return 8.0
        scales = weight_shape[kind.weight_out_axis] if self.per_channel_weights else 1
        return 8.0 + 32.0 * scales / numel

    torchao_imports = (
        ("torchao.quantization", "Int8DynamicActivationInt8WeightConfig"),
        ("torchao.quantization", "Int8StaticActivationInt8WeightConfig"),
        ("torchao.quantization", "Int8WeightOnlyConfig"),
        ("torchao.quantization", "MappingType"),
        ("torchao.quantization", "PerRow"),
        ("torchao.quantization", "PerTensor"),
    )

    def torchao_unsupported(self, ctx: ExportContext) -> str | None:
        if ctx.kind == "Embedding" and self.facts.activation == "none":
            return None
        if ctx.kind != "Linear":
            return f"torchao 0.18's int8 workflows quantize Linear only, not {ctx.kind}"
        if ctx.parent_class in ATTENTION_PARENTS:
            return "nn.MultiheadAttention reads out_proj.weight outside Linear.forward, which torchao's Int8Tensor does not support"
        if self.facts.needs_range and ctx.activation is None:
            return "the plan carries no calibrated activation range for its static int8 scale"
        if self.facts.needs_range and ctx.input_ndim is None:
            return "not called on the first calibration batch, so the rank of its static activation scale is unknown"
        return None

    def torchao_config_spec(self, ctx: ExportContext) -> dict[str, Any]:
        f = self.facts
        per_row = {"$call": "torchao.quantization.PerRow"}
        per_tensor = {"$call": "torchao.quantization.PerTensor"}
        asymmetric = {"$attr": "torchao.quantization.MappingType.ASYMMETRIC"}
        if f.activation == "none":
            return {
                "config": "torchao.quantization.Int8WeightOnlyConfig",
                "kwargs": {"granularity": per_row},
                "inductor": True,
            }
        if f.activation == "dynamic":
            act = per_row if (ctx.input_ndim or 2) >= 3 else per_tensor
            return {
                "config": "torchao.quantization.Int8DynamicActivationInt8WeightConfig",
                "kwargs": {"granularity": [act, per_row], "act_mapping_type": asymmetric},
                "inductor": True,
            }
        qparams = ctx.activation
        assert qparams is not None and ctx.input_ndim is not None
        scale, zero_point = qparams.int8()
        shape = [1] * ctx.input_ndim
        return {
            "config": "torchao.quantization.Int8StaticActivationInt8WeightConfig",
            "kwargs": {
                "act_quant_scale": {"$call": "torch.full", "args": [shape, float(scale)]},
                "act_quant_zero_point": {
                    "$call": "torch.full",
                    "args": [shape, int(zero_point)],
                    "kwargs": {"dtype": {"$attr": "torch.int8"}},
                },
                "granularity": [per_tensor, per_row if self.per_channel_weights else per_tensor],
                "act_mapping_type": asymmetric,
            },
            "inductor": True,
        }
