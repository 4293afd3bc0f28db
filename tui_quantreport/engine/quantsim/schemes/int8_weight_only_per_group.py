"""int8_weight_only_per_group: int8 symmetric weights, one float32 scale per group of 128
input channels, float activations (torchao's ``Int8WeightOnlyConfig(granularity=PerGroup(128))``).

Recipe: torchao's ``Int8Tensor.from_hp`` (``choose_qparams_affine`` symmetric on blocks
``(1, 128)``: ``s = amax / 127.5``, ``q = clamp(round(w / s), -128, 127)``), dequantized.
Deployed: int8 values and a float32 scale per group: ``8 + 32 / 128`` bits per weight.
"""

from __future__ import annotations

from typing import Any

import torch

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.schemes.base import ExportContext, by_rows
from tui_quantreport.engine.quantsim.schemes.torchao_base import TorchaoScheme, per_group_bits


class Int8WeightOnlyPerGroup(TorchaoScheme):
    name = "int8_weight_only_per_group"
    description = "int8 symmetric weights with a float32 scale per group of 128 in-features, float activations"
    group_size = 128
    facts = SCHEME_FACTS[name]
    torchao_imports = (("torchao.quantization", "Int8WeightOnlyConfig"), ("torchao.quantization", "PerGroup"))

    def weight(self, weight: torch.Tensor, kind: ModuleKind) -> torch.Tensor:
        from torchao.quantization import PerGroup
        from torchao.quantization.quantize_.workflows.int8.int8_tensor import Int8Tensor

        return Int8Tensor.from_hp(weight.detach(), granularity=PerGroup(self.group_size)).dequantize().to(weight.dtype)

    def weights(self, stacked: torch.Tensor, kind: ModuleKind) -> torch.Tensor | None:
        # Groups along each output row: a stack of weights is one weight of more rows.
        return by_rows(lambda w: self.weight(w, kind), stacked)

    def bits_per_weight(self, weight_shape: tuple[int, ...], kind: ModuleKind) -> float:
        return per_group_bits(8, self.group_size, 32)

    def torchao_config_spec(self, ctx: ExportContext) -> dict[str, Any]:
        return {
            "config": "torchao.quantization.Int8WeightOnlyConfig",
            "kwargs": {"granularity": {"$call": "torchao.quantization.PerGroup", "args": [self.group_size]}},
            "inductor": True,
        }
