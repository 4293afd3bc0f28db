"""static_per_channel: quint8 input with calibrated qparams, qint8 per-channel symmetric weights."""

from __future__ import annotations

from collections.abc import Callable

import torch

from tui_quantreport.engine.quantsim.schemes.base import InputContext, Int8Scheme
from tui_quantreport.engine.quantsim.schemes.facts import INT8_PER_CHANNEL, SchemeFacts


class StaticPerChannel(Int8Scheme):
    name = "static_per_channel"
    title = "static, per-channel weights"
    description = (
        "int8 activations with qparams from the calibrated min/max (MinMaxObserver, the backend's "
        "reduce_range) and int8 per-output-channel symmetric weights (PerChannelMinMaxObserver)"
    )
    facts = SchemeFacts(
        activation="static",
        weight=INT8_PER_CHANNEL,
        activation_granularity="per_tensor",
        activation_dtype="int8",
        family="int8",
        preference=0,
    )
    per_channel_weights = True

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        assert ctx.static is not None, "static schemes are only run where a range is known"
        return ctx.static.apply(x)

    def input_function(self, ctx: InputContext) -> Callable[[torch.Tensor], torch.Tensor] | None:
        assert ctx.static is not None, "static schemes are only run where a range is known"
        return ctx.static.apply
