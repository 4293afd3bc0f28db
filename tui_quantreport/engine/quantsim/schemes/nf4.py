"""nf4: 4-bit NormalFloat weights (QLoRA), float activations: torchao's prototype
``NF4WeightOnlyConfig()`` (block_size=64, scaler_block_size=256).

Recipe: torchao's ``to_nf4`` (blocks of 64, absmax scalers, the 16 NF4 code values; the
scalers themselves quantized to int8 per 256 blocks around their mean), dequantized with
``get_original_weight``. Deployed: 4-bit codes, an int8 scaler per 64 weights, a float32
factor per 256 scalers and one float32 mean: ``4 + 8/64 + 32/(64*256) + 32/numel`` (~4.127).
"""

from __future__ import annotations

from typing import Any

import torch

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.schemes.base import ExportContext
from tui_quantreport.engine.quantsim.schemes.torchao_base import TorchaoScheme, per_tensor_extra
from tui_quantreport.engine.quantsim.weight_recipes import nf4_dequantized

BLOCK = 64
SCALER_BLOCK = 256


class NF4(TorchaoScheme):
    name = "nf4"
    description = "4-bit NormalFloat weights with double-quantized absmax scalers per block of 64, float activations"
    block = BLOCK
    facts = SCHEME_FACTS[name]
    torchao_imports = (("torchao.prototype._nf4tensor_api", "NF4WeightOnlyConfig"),)

    def shape_reason(self, n: int, k: int) -> str | None:
        if (n * k) % (BLOCK * SCALER_BLOCK):
            return f"NF4 needs the weight's {n * k} elements to be a multiple of {BLOCK * SCALER_BLOCK}"
        return None

    def weight(self, weight: torch.Tensor, kind: ModuleKind) -> torch.Tensor:
        # torchao's to_nf4(...).get_original_weight(), bit for bit, without its 16x temporary
        return nf4_dequantized(weight, BLOCK, SCALER_BLOCK).to(weight.dtype)

    def bits_per_weight(self, weight_shape: tuple[int, ...], kind: ModuleKind) -> float:
        return 4.0 + 8.0 / BLOCK + 32.0 / (BLOCK * SCALER_BLOCK) + per_tensor_extra(weight_shape)

    def torchao_config_spec(self, ctx: ExportContext) -> dict[str, Any]:
        # block 64, scaler block 256: its fixed defaults
        return {"config": "torchao.prototype._nf4tensor_api.NF4WeightOnlyConfig"}
