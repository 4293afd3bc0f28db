"""static_per_tensor: quint8 input with calibrated qparams, qint8 per-tensor symmetric weights."""

from __future__ import annotations

from collections.abc import Callable

import torch

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.quantsim.schemes.base import BatchInput, InputContext, Int8Scheme


class StaticPerTensor(Int8Scheme):
    name = "static_per_tensor"
    description = (
        "int8 activations with qparams from the calibrated min/max (MinMaxObserver, the backend's "
        "reduce_range) and int8 per-tensor symmetric weights"
    )
    facts = SCHEME_FACTS["static_per_tensor"]
    per_channel_weights = False

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        assert ctx.static is not None, "static schemes are only run where a range is known"
        return ctx.static.apply(x)

    def input_function(self, ctx: InputContext) -> Callable[[torch.Tensor], torch.Tensor] | None:
        assert ctx.static is not None, "static schemes are only run where a range is known"
        return ctx.static.apply

    def batch_input(self, ctx: InputContext) -> BatchInput | None:
        return BatchInput("static", ctx.static) if ctx.static is not None else None
