"""int4_sym_g32, int4_sym_g128, int4_sym_per_channel: int4 symmetric weights (zero point 0),
per group of g in-features or per output channel, float activations: torchao's
``IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(g) | PerAxis(0))``,
which also quantizes 4-D Conv2d weights (groups along C_in).

Recipe: torchao's ``IntxUnpackedToInt8Tensor.from_hp`` (``choose_qparams_affine``
symmetric: ``s = amax / 7.5``, ``q = clamp(round(w / s), -8, 7)``), dequantized: the
real kernel is ``F.linear`` / ``F.conv2d`` on that very tensor, so the simulation is
bit-identical. Deployed: 4-bit values and a bfloat16 scale per group (symmetric: no
zero point stored): ``4 + 16 / g`` bits per weight (``g = K`` per channel).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.schemes.base import ExportContext, by_rows
from tui_quantreport.engine.quantsim.schemes.torchao_base import TorchaoScheme, per_group_bits


def intx_block(weight_shape: tuple[int, ...], group_size: int | None) -> tuple[int, ...]:
    """torchao's intx block: (1, g) on a Linear weight, (1, g, 1, 1) on a Conv2d one (g = C_in per channel)."""
    k = weight_shape[1]
    g = group_size if group_size is not None else k
    return (1, g) if len(weight_shape) == 2 else (1, g, 1, 1)


def fake_quantize_intx(weight: torch.Tensor, group_size: int | None, bits: int = 4) -> torch.Tensor:
    """torchao's intx symmetric fake quantization of ``weight`` (``IntxUnpackedToInt8Tensor``)."""
    from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import IntxUnpackedToInt8Tensor

    w = weight.detach()
    dtype = getattr(torch, f"int{bits}")
    return IntxUnpackedToInt8Tensor.from_hp(w, intx_block(tuple(w.shape), group_size), dtype).dequantize()


class Int4Symmetric(TorchaoScheme):
    kinds = ("linear", "conv")
    torchao_imports = (
        ("torchao.quantization", "IntxWeightOnlyConfig"),
        ("torchao.quantization", "PerAxis"),
        ("torchao.quantization", "PerGroup"),
    )

    def __init__(self, group_size: int | None):
        self.group_size = group_size
        self.name = f"int4_sym_g{group_size}" if group_size else "int4_sym_per_channel"
        self.description = (
            f"int4 symmetric weights with a scale per {'group of ' + str(group_size) + ' in-features' if group_size else 'output channel'} "
            "(torchao intx; Linear and Conv2d), float activations"
        )
        self.facts = SCHEME_FACTS[self.name]

    def eligible(
        self, kind: ModuleKind, weight_shape: tuple[int, ...] | None = None, dtype: torch.dtype | None = None
    ) -> str | None:
        if kind.name == "conv" and weight_shape is not None and len(weight_shape) != 4:
            return f"torchao's intx config quantizes Linear and Conv2d weights, not a {len(weight_shape)}-D conv weight"
        if weight_shape is not None and len(weight_shape) > 1 and weight_shape[1] == 1:
            return "torchao's intx quantization fails on a weight with one input channel (per group of the module)"
        return super().eligible(kind, weight_shape, dtype)

    def weight(self, weight: torch.Tensor, kind: ModuleKind) -> torch.Tensor:
        return fake_quantize_intx(weight, self.group_size)

    def weights(self, stacked: torch.Tensor, kind: ModuleKind) -> torch.Tensor | None:
        # Groups along each output row: a stack of weights is one weight of more rows.
        return by_rows(lambda w: fake_quantize_intx(w, self.group_size), stacked)

    def bits_per_weight(self, weight_shape: tuple[int, ...], kind: ModuleKind) -> float:
        k = weight_shape[1] if len(weight_shape) > 1 else max(1, math.prod(weight_shape))
        return per_group_bits(4, self.group_size or k, 16)

    def torchao_unsupported(self, ctx: ExportContext) -> str | None:
        if ctx.kind == "Conv2d" and ctx.parent_class not in ("MultiheadAttention",):
            return None
        return super().torchao_unsupported(ctx)

    def torchao_config_spec(self, ctx: ExportContext) -> dict[str, Any]:
        granularity = (
            {"$call": "torchao.quantization.PerGroup", "args": [self.group_size]}
            if self.group_size
            else {"$call": "torchao.quantization.PerAxis", "args": [0]}
        )
        return {
            "config": "torchao.quantization.IntxWeightOnlyConfig",
            "kwargs": {"weight_dtype": {"$attr": "torch.int4"}, "granularity": granularity},
        }
