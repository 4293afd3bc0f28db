"""weight_only: qint8 per-channel weights, the input kept in float."""

from __future__ import annotations

import torch

from tui_quantreport.engine.quantsim.schemes.base import InputContext, Scheme


class WeightOnly(Scheme):
    name = "weight_only"
    title = "weight-only"
    description = "int8 per-channel symmetric weights, float activations"
    activation = "float"
    per_channel_weights = True

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        return x

    def input_function(self, ctx: InputContext) -> None:
        return None
