"""weight_only: qint8 per-channel weights, the input kept in float."""

from __future__ import annotations

import torch

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.quantsim.schemes.base import InputContext, Int8Scheme


class WeightOnly(Int8Scheme):
    name = "weight_only"
    description = "int8 per-channel symmetric weights, float activations"
    facts = SCHEME_FACTS["weight_only"]
    per_channel_weights = True

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        return x

    def input_function(self, ctx: InputContext) -> None:
        return None
