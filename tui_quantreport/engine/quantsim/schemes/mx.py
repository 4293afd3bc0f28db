"""MX block formats (OCP microscaling): ``mxfp8`` and ``mxfp4`` (weights and activations, torchao's
prototype ``MXDynamicActivationMXWeightConfig``: CUDA >= sm100; on a CPU only its
``KernelPreference.EMULATED`` form runs, in bfloat16) and ``mxfp4_weight_only`` (simulated
only: torchao 0.18 has no MX weight-only config on any device: ``MXDynamicActivationMXWeightConfig``
asserts matching activation and weight dtypes, and ``MXTensor``'s linear asserts
"weight-only quant not yet supported" when the weight carries no activation recipe).

Recipe: torchao's ``MXTensor.to_mx`` (blocks of 32 along K, an e8m0 power-of-two scale per
block from the block's amax, RCEIL as the config's default; e4m3 with max 448 or e2m1 with
max 6, round to nearest even), dequantized. Deployed: the elements and one 8-bit scale per
32: ``8.25`` (MXFP8) and ``4.25`` (MXFP4) bits per weight.
"""

from __future__ import annotations

from typing import Any

import torch

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.quantsim.activation_recipes import MX_BLOCK, mx_dequantized
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.schemes.base import ExportContext, InputContext, by_rows
from tui_quantreport.engine.quantsim.schemes.torchao_base import TorchaoScheme, per_group_bits

BLOCK = MX_BLOCK


def fake_quantize_mx(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` through torchao's MX quantization along its last axis (fp8 e4m3 or fp4 e2m1 elements)."""
    shape = x.shape
    flat = x.reshape(-1, shape[-1]).contiguous()
    if x.dtype in (torch.float32, torch.bfloat16) and shape[-1] % BLOCK == 0:
        # The same bits without the tensor subclass and torchao's fp4 bit twiddling.
        return mx_dequantized(flat, bits).reshape(shape)
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.mx_tensor import MXTensor

    elem = torch.float8_e4m3fn if bits == 8 else torch.float4_e2m1fn_x2
    mx = MXTensor.to_mx(flat, elem, BLOCK, scaling_mode=ScaleCalculationMode.RCEIL)  # torchao's refusal
    return mx.dequantize(x.dtype).reshape(shape)


class MX(TorchaoScheme):
    block = BLOCK
    weight_torch_function = False  # MXTensor / NVFP4Tensor: __torch_dispatch__ only
    torchao_imports = (("torchao.prototype.mx_formats.inference_workflow", "MXDynamicActivationMXWeightConfig"),)

    def __init__(self, bits: int, weight_only: bool = False):
        self.bits = bits
        self.weight_only_ = weight_only
        dtype = "mxfp8" if bits == 8 else "mxfp4"
        self.name = f"{dtype}_weight_only" if weight_only else dtype
        self.description = (
            f"{'fp8 e4m3' if bits == 8 else 'fp4 e2m1'} elements with an e8m0 scale per block of 32, "
            + ("weights only, float activations" if weight_only else "weights and activations")
        )
        self.facts = SCHEME_FACTS[self.name]

    def weight(self, weight: torch.Tensor, kind: ModuleKind) -> torch.Tensor:
        return fake_quantize_mx(weight.detach(), self.bits)

    def weights(self, stacked: torch.Tensor, kind: ModuleKind) -> torch.Tensor | None:
        # Blocks of 32 along each row: a stack of weights is one weight of more rows.
        return by_rows(lambda w: fake_quantize_mx(w, self.bits), stacked)

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        return x if self.weight_only_ else fake_quantize_mx(x, self.bits)

    def bits_per_weight(self, weight_shape: tuple[int, ...], kind: ModuleKind) -> float:
        return per_group_bits(self.bits, BLOCK, 8)

    def torchao_unsupported(self, ctx: ExportContext) -> str | None:
        if self.weight_only_:
            return (
                "torchao 0.18 has no MX weight-only config on any device (its MX linear quantizes the "
                "activation too): simulated only"
            )
        return super().torchao_unsupported(ctx)

    def torchao_config_spec(self, ctx: ExportContext) -> dict[str, Any]:
        dtype = {"$attr": "torch.float8_e4m3fn" if self.bits == 8 else "torch.float4_e2m1fn_x2"}
        return {
            "config": "torchao.prototype.mx_formats.inference_workflow.MXDynamicActivationMXWeightConfig",
            "kwargs": {"activation_dtype": dtype, "weight_dtype": dtype},
        }
