"""The scheme base class: how one quantization scheme treats a module's input and weight."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

import torch

from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.qparams import (
    fake_quantize_float32,
    fake_quantize_static,
    fake_quantize_weight,
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
        return self.per_token_min_ndim is not None and x.dim() >= max(2, self.per_token_min_ndim)


class Scheme:
    """One way of quantizing a weighted module (registered in :data:`SCHEMES`)."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    #: "static" (calibrated input qparams), "dynamic" (per batch) or "float" (input kept float).
    activation: ClassVar[str]
    per_channel_weights: ClassVar[bool]

    @property
    def needs_range(self) -> bool:
        return self.activation == "static"

    def unsupported(self, kind: ModuleKind) -> str | None:
        """Why this scheme cannot apply to modules of ``kind`` (None when it can)."""
        if self.activation != "float" and not kind.quantizes_input:
            return f"the input of a {kind.name} module is indices, not an activation: only weight_only applies"
        return None

    def weight(self, weight: torch.Tensor, kind: ModuleKind) -> torch.Tensor:
        """The fake-quantized weight (qint8 symmetric)."""
        return fake_quantize_weight(weight, self.per_channel_weights, kind.weight_out_axis)

    def bits_per_weight(self, weight_shape: tuple[int, ...], kind: ModuleKind) -> float:
        """Deployed bits per weight element, scales and zero points counted.

        The int8 schemes store int8 values and one float32 scale per output channel
        (per-channel) or per tensor (symmetric: no zero point is stored):
        ``8 + 32 * scales / numel``.
        """
        numel = math.prod(weight_shape)
        if numel == 0:
            return 8.0
        scales = weight_shape[kind.weight_out_axis] if self.per_channel_weights else 1
        return 8.0 + 32.0 * scales / numel

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        """The fake-quantized input."""
        raise NotImplementedError

    def input_function(self, ctx: InputContext) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """``x -> self.input(x, ctx)`` bound once for a module (the per-call path of the
        measurements); None when the input is used as it is. Subclasses may return a
        shorter path to the same values."""
        return partial(self.input, ctx=ctx)
