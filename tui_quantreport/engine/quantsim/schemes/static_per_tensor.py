"""static_per_tensor: quint8 input with calibrated qparams, qint8 per-tensor symmetric weights."""

from __future__ import annotations

from collections.abc import Callable

import torch

from tui_quantreport.engine.quantsim.schemes.base import InputContext, Int8Scheme
from tui_quantreport.engine.quantsim.schemes.facts import INT8_PER_TENSOR, SchemeFacts


class StaticPerTensor(Int8Scheme):
    name = "static_per_tensor"
    title = "static, per-tensor weights"
    description = (
        "int8 activations with qparams from the calibrated min/max (MinMaxObserver, the backend's "
        "reduce_range) and int8 per-tensor symmetric weights"
    )
    facts = SchemeFacts(
        activation="static",
        weight=INT8_PER_TENSOR,
        activation_granularity="per_tensor",
        activation_dtype="int8",
        family="int8",
        preference=1,
    )
    per_channel_weights = False

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        assert ctx.static is not None, "static schemes are only run where a range is known"
        return ctx.static.apply(x)

    def input_function(self, ctx: InputContext) -> Callable[[torch.Tensor], torch.Tensor] | None:
        assert ctx.static is not None, "static schemes are only run where a range is known"
        return ctx.static.apply
