"""The simulated forward of a quantized module (input and weight fake-quantized, the output
quantized where the plan's int8 edge says so), the per-batch input memo, and PT2E's shared grids."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.quantsim.analysis_base import (
    first_tensor,
)
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.kinds import _conv as _conv_call
from tui_quantreport.engine.quantsim.kinds import _linear as _linear_call
from tui_quantreport.engine.quantsim.merged_probes import Segments, per_segment
from tui_quantreport.engine.quantsim.qparams import (
    FAST_FAKE_QUANT_MIN,
    fake_quantize_float32,
    fake_quantize_float32_,
)
from tui_quantreport.engine.quantsim.schemes import (
    InputContext,
    StaticInput,
)
from tui_quantreport.engine.quantsim.schemes.int8_kernel import int8_linear_bf16, int8_weight, kernel_applies


def _input_quantizer(
    scheme, ctx: InputContext, grid: _Grids | None, memo: _InputMemo | None, segments: Segments | None = None
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """How a simulated module quantizes its input under ``scheme`` (None: kept as it is, weight-only).
    A dynamic input is quantized per probe segment while a merged batch runs (``segments``)."""
    fq = fake_quantize_float32
    fq_small = torch.fake_quantize_per_tensor_affine
    small = FAST_FAKE_QUANT_MIN
    f32 = torch.float32
    quantize_input: Callable[[torch.Tensor], torch.Tensor] | None = None
    if scheme.int8_static_input and ctx.static is not None:
        s_in, z_in, lo_in, hi_in = ctx.static.scale, ctx.static.zero_point, ctx.static.quant_min, ctx.static.quant_max
        inv_in = ctx.static.inv_scale
        key = (s_in, z_in, lo_in, hi_in)

        def quantize_static(x):
            if grid is not None and grid.of(x) is not None:
                return x  # already on the grid its producer shares with this module (PT2E)
            if x.dtype is f32:
                if memo is not None and memo.source is x and memo.version == x._version and memo.key == key:
                    return memo.result
                xq = (
                    fq_small(x, s_in, z_in, lo_in, hi_in)
                    if x.numel() < small
                    else fq(x, s_in, z_in, lo_in, hi_in, inv_in)
                )
                if memo is not None:
                    memo.keep(x, key, xq)
                return xq
            return scheme.input(x, ctx) if x.is_floating_point() else x

        quantize_input = quantize_static
    elif not scheme.facts.weight_only:  # weight-only keeps its input as it is
        dynamic: Callable[[torch.Tensor], torch.Tensor] = partial(scheme.input, ctx=ctx)
        if segments is not None and scheme.facts.activation != "static":
            dynamic = per_segment(dynamic, segments, scheme.segments_function(ctx))

        def quantize_other(x):
            return dynamic(x) if x.is_floating_point() else x

        quantize_input = quantize_other
    return quantize_input


def _simulated_forward(
    module: nn.Module,
    kind: ModuleKind,
    scheme,
    ctx: InputContext,
    wq: torch.Tensor,
    out: StaticInput | None = None,
    grid: _Grids | None = None,
    memo: _InputMemo | None = None,
    segments: Segments | None = None,
):
    """The module's forward under ``scheme``: its input and weight fake-quantized (and, for a
    static module whose output edge is not quantized downstream, its output, noted in
    ``grid`` when given).

    This runs once per module and batch, so it is kept to one Python frame and one torch op
    per quantization step on the common path (a float32 tensor): torch's own fake-quantize
    kernel below :data:`FAST_FAKE_QUANT_MIN` elements, the vectorised ops of
    :func:`fake_quantize_float32` from there on (in place on the fresh output of a Linear or
    convolution). A static input equal to the one the previous module quantized with the same
    qparams (``memo``: the same tensor, not modified since) is not quantized again.
    """
    run = kind.bind(module)
    fq = fake_quantize_float32
    fq_small = torch.fake_quantize_per_tensor_affine
    small = FAST_FAKE_QUANT_MIN
    f32 = torch.float32
    tensor = torch.Tensor
    quantize_input = _input_quantizer(scheme, ctx, grid, memo, segments)

    if out is None and grid is None and kind.call is _linear_call and module.weight.dtype is torch.bfloat16:
        kernel = _int8_bf16_forward(module, scheme, ctx, quantize_input, run, wq)
        if kernel is not None:
            return kernel

    if out is None:

        def forward(input, *args, **kwargs):
            if quantize_input is not None and isinstance(input, tensor):
                input = quantize_input(input)
            return run(input, wq)

        return forward

    s_out, z_out, lo_out, hi_out, inv_out = out.scale, out.zero_point, out.quant_min, out.quant_max, out.inv_scale
    # The output of F.linear / a convolution is a fresh tensor nobody else holds: quantized in place.
    fresh = kind.call is _linear_call or kind.call is _conv_call
    fq_out = fake_quantize_float32_ if fresh else fq

    def forward_quantized_output(input, *args, **kwargs):
        if quantize_input is not None and isinstance(input, tensor):
            input = quantize_input(input)
        y = run(input, wq)
        if y.dtype is f32:
            y = (
                fq_small(y, s_out, z_out, lo_out, hi_out)
                if y.numel() < small
                else fq_out(y, s_out, z_out, lo_out, hi_out, inv_out)
            )
        else:
            y = out.apply(y)
        if grid is not None:
            grid.note(y, out)
        return y

    return forward_quantized_output


def _int8_bf16_forward(module: nn.Module, scheme, ctx: InputContext, quantize_input, run, wq):
    """A bfloat16 Linear under an int8-four scheme with float outputs (torchao's recipe): the
    forward replays torchao's int8 kernel (:mod:`.schemes.int8_kernel`: the integer matmul,
    then the rescale in bfloat16 in torchao's order), which a float matmul of fake-quantized
    values does not reproduce in bfloat16. None for any other scheme."""
    if scheme.facts.family != "int8" or scheme.facts.preference is None:
        return None
    weights: list[torch.Tensor] = []

    def forward(input, *args, **kwargs):
        if isinstance(input, torch.Tensor) and kernel_applies(scheme, input, ctx):
            if not weights:
                weights.extend(int8_weight(module.weight, scheme.per_channel_weights))
            return int8_linear_bf16(scheme, input, weights[0], weights[1], module.bias, ctx)
        if quantize_input is not None and isinstance(input, torch.Tensor):
            input = quantize_input(input)
        return run(input, wq)

    return forward


class _InputMemo:
    """The last static input a simulated module quantized in this batch, with its qparams and
    the result: the next module that reads the very same tensor (the same object, at the same
    version: not modified in place since) with the same qparams takes the result instead of
    quantizing it again (q/k/v projections, the branches of a block that read one normalized
    tensor). The same function of the same values: the same result. Cleared between batches."""

    __slots__ = ("key", "result", "source", "version")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.source: torch.Tensor | None = None
        self.version = -1
        self.key: tuple | None = None
        self.result: torch.Tensor | None = None

    def keep(self, source: torch.Tensor, key: tuple, result: torch.Tensor) -> None:
        self.source, self.version, self.key, self.result = source, source._version, key, result


#: torch.ao's ops whose output shares its input's observer (``backend_config``,
#: ``ObservationType.OUTPUT_SHARE_OBSERVER_WITH_INPUT``, the same for x86, fbgemm, qnnpack
#: and onednn), as modules: converted, they run on the int8 tensor and emit it on the same grid.
SHARED_QPARAMS_TYPES: tuple[type[nn.Module], ...] = (
    nn.Flatten,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.Hardtanh,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.ReLU,
    nn.ReLU6,
)

#: The pooling modules X86InductorQuantizer runs on int8 whenever their input comes from a
#: quantized op (``int8_in_int8_out_ops``: ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d``).
PT2E_INT8_POOLING_TYPES: tuple[type[nn.Module], ...] = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d)


class _Grids:
    """The int8 grid of each tensor a simulated module emitted in this batch (by identity)."""

    def __init__(self) -> None:
        self.tensors: dict[int, tuple[weakref.ref, StaticInput]] = {}

    def note(self, tensor: torch.Tensor, grid: StaticInput) -> None:
        self.tensors[id(tensor)] = (weakref.ref(tensor), grid)

    def of(self, tensor: Any) -> StaticInput | None:
        entry = self.tensors.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None
        return entry[1] if entry is not None and entry[0]() is tensor else None


def _shared_qparams_forward(forward: Callable[..., Any], grid: _Grids):
    """``forward``, its output rounded on its input's int8 grid when the input has one."""

    def shared(*args, **kwargs):
        y = forward(*args, **kwargs)
        qp = grid.of(first_tensor(args) if args else first_tensor(kwargs))
        if qp is not None and isinstance(y, torch.Tensor) and y.is_floating_point():
            y = qp.apply(y)
            grid.note(y, qp)
        return y

    return shared
