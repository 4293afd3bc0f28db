"""dynamic: input qparams from each batch's own range, qint8 per-channel weights.

The target's recipe (``InputContext.per_token_min_ndim``) says how: torchao's
dynamic configs take one scale per token (row of the last axis) for inputs of
rank 3 and more, one per tensor for 2-D; torch.ao's dynamic Linear and PT2E one
scale per tensor always. The qparams use the same quint8 affine formula and
activation grid as the static schemes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.quantsim.qparams import fake_quantize_dynamic, fake_quantize_dynamic_segments
from tui_quantreport.engine.quantsim.schemes.base import BatchInput, InputContext, Int8Scheme


class Dynamic(Int8Scheme):
    name = "dynamic"
    description = (
        "int8 activations quantized with each batch's own range (per token or per tensor, as the target does) "
        "and int8 per-channel weights"
    )
    facts = SCHEME_FACTS["dynamic"]
    per_channel_weights = True

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        return fake_quantize_dynamic(x, ctx.quant_min, ctx.quant_max, per_token=ctx.per_token(x))

    def segments_function(self, ctx: InputContext) -> Callable[[torch.Tensor, tuple[int, ...]], torch.Tensor | None]:
        def segments(x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor | None:
            if ctx.per_token(x):
                # Each row of the last axis quantized alone: no row crosses a segment (the probes
                # are on dim 0), so the whole tensor at once gives each segment's values.
                return fake_quantize_dynamic(x, ctx.quant_min, ctx.quant_max, per_token=True)
            return fake_quantize_dynamic_segments(x, sizes, ctx.quant_min, ctx.quant_max)

        return segments

    def batch_input(self, ctx: InputContext) -> BatchInput:
        return BatchInput("dynamic", ctx=ctx)
