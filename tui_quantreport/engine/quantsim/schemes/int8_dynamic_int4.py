"""8da4w_g32: int8 asymmetric dynamic activations per token and int4 symmetric weights per
group of 32: torchao's ``Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
weight_granularity=PerGroup(32))`` (the unpacked path ExecuTorch exports).

Recipe: the weight as in ``int4_sym_g32``; the input through torchao's own
``_apply_int8_act_asym_per_token_quant_dequant`` (per row of the last axis:
``choose_qparams_affine`` asymmetric on [-128, 127]; the same bits, faster, by
``activation_recipes.int8_per_token_asym_dequantized``). Deployed: ``4 + 16 / 32`` bits.
"""

from __future__ import annotations

from typing import Any

import torch

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.quantsim.activation_recipes import int8_per_token_asym_dequantized
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.schemes.base import ExportContext, InputContext, by_rows
from tui_quantreport.engine.quantsim.schemes.int4_symmetric import fake_quantize_intx
from tui_quantreport.engine.quantsim.schemes.torchao_base import TorchaoScheme, per_group_bits


class Int8DynamicInt4(TorchaoScheme):
    name = "8da4w_g32"
    description = "int8 asymmetric per-token dynamic activations and int4 symmetric weights per group of 32"
    group_size = 32
    facts = SCHEME_FACTS[name]
    torchao_imports = (
        ("torchao.quantization", "Int8DynamicActivationIntxWeightConfig"),
        ("torchao.quantization", "PerGroup"),
    )

    def weight(self, weight: torch.Tensor, kind: ModuleKind) -> torch.Tensor:
        return fake_quantize_intx(weight, self.group_size)

    def weights(self, stacked: torch.Tensor, kind: ModuleKind) -> torch.Tensor | None:
        # Groups along each output row: a stack of weights is one weight of more rows.
        return by_rows(lambda w: fake_quantize_intx(w, self.group_size), stacked)

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        return int8_per_token_asym_dequantized(x)

    def bits_per_weight(self, weight_shape: tuple[int, ...], kind: ModuleKind) -> float:
        return per_group_bits(4, self.group_size, 16)

    def torchao_config_spec(self, ctx: ExportContext) -> dict[str, Any]:
        return {
            "config": "torchao.quantization.Int8DynamicActivationIntxWeightConfig",
            "kwargs": {
                "weight_dtype": {"$attr": "torch.int4"},
                "weight_granularity": {"$call": "torchao.quantization.PerGroup", "args": [self.group_size]},
            },
        }
