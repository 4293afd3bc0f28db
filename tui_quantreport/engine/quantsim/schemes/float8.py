"""fp8 (e4m3) schemes: ``fp8_weight_only`` (``Float8WeightOnlyConfig``, runs here),
``fp8_dynamic_per_row`` / ``fp8_dynamic_per_tensor``
(``Float8DynamicActivationFloat8WeightConfig``: CUDA >= sm89 only, simulated here) and
``fp8_static`` (the prototype ``Float8StaticActivationFloat8WeightConfig`` with the
calibrated per-tensor activation scale ``amax / 448``).

Recipe: torchao's ``_choose_scale_float8`` (``s = amax / 448`` per row or per tensor,
float32) and ``_quantize_affine_float8`` (``(x / s).clamp(±448).to(float8_e4m3fn)``),
dequantized as ``q * s`` (``activation_recipes.float8_dequantized``: the same bits); the activations alike with the row being a token. Deployed:
fp8 values plus one float32 scale per row (``8 + 32 / K``) or per tensor.
torchao leaves a weight whose dims are not multiples of 16 in float (logged at INFO):
ineligible here, with that reason; so is a per-tensor-scaled weight of exactly 128 x 128, which
torchao 0.18's fp8 linear mistakes for a 128 x 128 block-scaled one (it fails at run time).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.quantsim.activation_recipes import FP8_MAX, float8_dequantized, float8_scale
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.schemes.base import ExportContext, InputContext, by_rows
from tui_quantreport.engine.quantsim.schemes.torchao_base import TorchaoScheme

#: The block of torchao's 128 x 128 block-scaled fp8 weights.
BLOCKWISE = 128


def fake_quantize_float8(x: torch.Tensor, per_row: bool, scale: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` through e4m3 fake quantization with torchao's primitives: a float32 scale per row
    of the last axis or per tensor (``amax / 448``), or the given ``scale``; in ``x``'s dtype."""
    return float8_dequantized(x, per_row, scale)  # torchao's primitives' bits, faster


class Float8(TorchaoScheme):
    dims_multiple = 16

    def __init__(self, activation: str, per_row: bool):
        self.per_row = per_row
        granularity = "per_row" if per_row else "per_tensor"
        if activation == "none":
            self.name = "fp8_weight_only"
            self.description = "fp8 e4m3 weights with a float32 scale per output row, float activations"
            self.facts = SCHEME_FACTS[self.name]
            self.torchao_imports = (("torchao.quantization", "Float8WeightOnlyConfig"),)
            self.dims_multiple = 0
        elif activation == "dynamic":
            self.name = f"fp8_dynamic_{granularity}"
            self.description = (
                f"fp8 e4m3 activations scaled {granularity.replace('_', ' ')} (per token / whole tensor) at run "
                "time and fp8 weights alike"
            )
            self.facts = SCHEME_FACTS[self.name]
            self.torchao_imports = (
                ("torchao.quantization", "Float8DynamicActivationFloat8WeightConfig"),
                ("torchao.quantization", "PerRow" if per_row else "PerTensor"),
            )
        else:
            self.name = "fp8_static"
            self.description = (
                "fp8 e4m3 activations with a calibrated per-tensor scale (amax / 448), fp8 per-tensor weights"
            )
            self.facts = SCHEME_FACTS[self.name]
            self.torchao_imports = (
                ("torchao.prototype.quantization.quant_api", "Float8StaticActivationFloat8WeightConfig"),
                ("torchao.quantization", "PerTensor"),
            )

    def weight(self, weight: torch.Tensor, kind: ModuleKind) -> torch.Tensor:
        return fake_quantize_float8(weight.detach(), self.per_row)

    def weights(self, stacked: torch.Tensor, kind: ModuleKind) -> torch.Tensor | None:
        # A scale per row: a stack of weights is one weight of more rows; per tensor, a scale per
        # weight of the stack (each its own amax / 448, as alone).
        if self.per_row:
            return by_rows(lambda w: fake_quantize_float8(w, True), stacked)
        if stacked.dim() < 2:
            return None
        amax = stacked.detach().abs().amax(dim=tuple(range(1, stacked.dim())), keepdim=True)
        return fake_quantize_float8(stacked.detach(), False, float8_scale(amax))

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        if self.facts.activation == "static":
            assert ctx.static is not None, "static schemes are only run where a range is known"
            return fake_quantize_float8(x, False, static_scale(ctx, x.device))
        if self.facts.activation == "dynamic":
            return fake_quantize_float8(x, self.per_row)
        return x

    def bits_per_weight(self, weight_shape: tuple[int, ...], kind: ModuleKind) -> float:
        numel = math.prod(weight_shape)
        scales = weight_shape[0] if self.per_row else 1
        return 8.0 + 32.0 * scales / numel if numel else 8.0

    def shape_reason(self, n: int, k: int) -> str | None:
        if not self.per_row and self.facts.activation != "none" and (n, k) == (BLOCKWISE, BLOCKWISE):
            # torchao 0.18's fp8 linear tells a 128 x 128 block-scaled weight by its block size
            # alone, which a per-tensor-scaled 128 x 128 weight shares: it then asserts that the
            # input is 1 x 128 block-scaled and fails on the first call.
            return (
                f"torchao 0.18 takes a per-tensor-scaled {BLOCKWISE} x {BLOCKWISE} fp8 weight for a "
                f"{BLOCKWISE} x {BLOCKWISE} block-scaled one and fails at run time "
                "('input_tensor must be 1x128 scaled')"
            )
        return None

    def torchao_unsupported(self, ctx: ExportContext) -> str | None:
        if self.facts.needs_range and ctx.activation is None:
            return "the plan carries no calibrated activation range for its static fp8 scale"
        if self.facts.needs_range and ctx.input_ndim is None:
            return "not called on the first calibration batch, so the rank of its static activation scale is unknown"
        return super().torchao_unsupported(ctx)

    def torchao_config_spec(self, ctx: ExportContext) -> dict[str, Any]:
        if self.facts.activation == "none":
            return {"config": "torchao.quantization.Float8WeightOnlyConfig", "inductor": True}
        if self.facts.activation == "dynamic":
            granularity = {"$call": "torchao.quantization.PerRow" if self.per_row else "torchao.quantization.PerTensor"}
            return {
                "config": "torchao.quantization.Float8DynamicActivationFloat8WeightConfig",
                "kwargs": {"granularity": granularity},
                "inductor": True,
            }
        assert ctx.activation is not None and ctx.input_ndim is not None
        scale = static_scale_value(ctx.activation.range())
        return {
            "config": "torchao.prototype.quantization.quant_api.Float8StaticActivationFloat8WeightConfig",
            "kwargs": {
                "act_quant_scale": {"$call": "torch.full", "args": [[1] * ctx.input_ndim, float(scale)]},
                "granularity": {"$call": "torchao.quantization.PerTensor"},
            },
            "inductor": True,
        }


def static_scale_value(lo_hi: tuple[float, float]) -> float:
    """The per-tensor fp8 activation scale of a calibrated range: ``amax / 448`` in float32 (≥ eps)."""
    import numpy as np

    # float32 arithmetic on the host's numbers (no tensor: nothing to read back from a device)
    amax = max(abs(lo_hi[0]), abs(lo_hi[1]))
    scale = np.float32(amax) / np.float32(FP8_MAX)
    return float(max(scale, np.finfo(np.float32).eps))


def static_scale(ctx: InputContext, device: torch.device) -> torch.Tensor:
    assert ctx.static is not None
    return torch.tensor(static_scale_value(ctx.static.range), dtype=torch.float32, device=device)
