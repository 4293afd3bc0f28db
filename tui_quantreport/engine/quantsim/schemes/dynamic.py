"""dynamic: input qparams from each batch's own range, qint8 per-channel weights.

A 2-D or 4-D input gets one scale per tensor (torch's dynamic Linear); a 3-D
``(batch, tokens, features)`` input gets one scale per token (row of its last
axis), as token-wise dynamic quantization does. The qparams use the same
quint8 affine formula and reduce_range as the static schemes.
"""

from __future__ import annotations

import torch

from tui_quantreport.engine.quantsim.qparams import fake_quantize_dynamic
from tui_quantreport.engine.quantsim.schemes.base import InputContext, Int8Scheme
from tui_quantreport.engine.quantsim.schemes.facts import INT8_PER_CHANNEL, SchemeFacts


class Dynamic(Int8Scheme):
    name = "dynamic"
    title = "dynamic"
    description = (
        "int8 activations quantized with each batch's own range (per tensor; per token for 3-D inputs) "
        "and int8 per-channel weights"
    )
    facts = SchemeFacts(
        activation="dynamic",
        weight=INT8_PER_CHANNEL,
        activation_granularity="per_token",
        activation_dtype="int8",
        family="int8",
        preference=2,
    )
    per_channel_weights = True

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        return fake_quantize_dynamic(x, ctx.quant_min, ctx.quant_max, per_token=x.dim() == 3)
