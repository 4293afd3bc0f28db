"""weight_only: qint8 per-channel weights, the input kept in float."""

from __future__ import annotations

import torch

from tui_quantreport.engine.quantsim.schemes.base import InputContext, Int8Scheme
from tui_quantreport.engine.quantsim.schemes.facts import INT8_PER_CHANNEL, SchemeFacts


class WeightOnly(Int8Scheme):
    name = "weight_only"
    title = "weight-only"
    description = "int8 per-channel symmetric weights, float activations"
    facts = SchemeFacts(activation="none", weight=INT8_PER_CHANNEL, family="int8", preference=3)
    per_channel_weights = True

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        return x

    def input_function(self, ctx: InputContext) -> None:
        return None
