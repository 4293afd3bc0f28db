"""NVFP4: ``nvfp4_weight_only`` (torchao's prototype ``NVFP4WeightOnlyConfig``, runs here) and
``nvfp4`` (weights and activations, ``NVFP4DynamicActivationNVFP4WeightConfig``: CUDA >= sm100,
simulated here).

Recipe: torchao's ``NVFP4Tensor.to_nvfp4`` with the per-tensor scale
``per_tensor_amax_to_scale(amax) = amax / (448 * 6)``: blocks of 16 along K, an e4m3 scale per
block, e2m1 elements (round to nearest even), dequantized (by ``activation_recipes.nvfp4_dequantized``:
the same bits); the activations alike, each
tensor with its own per-tensor scale. Both weight dims must be multiples of 16. Deployed:
``4 + 8 / 16 = 4.5`` bits per weight plus one float32 per tensor.
"""

from __future__ import annotations

from typing import Any

import torch

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.quantsim.activation_recipes import NVFP4_BLOCK, nvfp4_dequantized
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.schemes.base import ExportContext, InputContext
from tui_quantreport.engine.quantsim.schemes.torchao_base import TorchaoScheme, per_group_bits, per_tensor_extra

BLOCK = NVFP4_BLOCK


def fake_quantize_nvfp4(x: torch.Tensor) -> torch.Tensor:
    """``x`` through torchao's NVFP4 quantization along its last axis (with a per-tensor scale)."""
    from torchao.prototype.mx_formats.nvfp4_tensor import per_tensor_amax_to_scale

    shape = x.shape
    flat = x.reshape(-1, shape[-1]).contiguous()
    scale = per_tensor_amax_to_scale(torch.max(torch.abs(flat)))
    return _dequantized(flat, scale).reshape(shape)


def fake_quantize_nvfp4_stacked(stacked: torch.Tensor) -> torch.Tensor:
    """:func:`fake_quantize_nvfp4` of each 2-D weight of ``stacked`` (dim 0) in one call: torchao's
    3-D form, one per-tensor scale per weight (``(S, 1, 1)``), as it quantizes an MoE's experts."""
    from torchao.prototype.mx_formats.nvfp4_tensor import per_tensor_amax_to_scale

    flat = stacked.contiguous()
    scale = per_tensor_amax_to_scale(torch.amax(torch.abs(flat), dim=(1, 2), keepdim=True))
    return _dequantized(flat, scale)


def _dequantized(flat: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``NVFP4Tensor.to_nvfp4(flat, per_tensor_scale=scale).dequantize(flat.dtype)``: the same bits,
    faster (``activation_recipes.nvfp4_dequantized``) where torchao would accept the tensor."""
    if flat.dtype in (torch.float32, torch.bfloat16) and flat.dim() in (2, 3) and flat.shape[-1] % BLOCK == 0:
        return nvfp4_dequantized(flat, scale)
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor

    return NVFP4Tensor.to_nvfp4(flat, per_tensor_scale=scale).dequantize(flat.dtype)  # torchao's refusal


class NVFP4(TorchaoScheme):
    dims_multiple = BLOCK
    weight_torch_function = False  # MXTensor / NVFP4Tensor: __torch_dispatch__ only

    def __init__(self, weight_only: bool):
        self.weight_only_ = weight_only
        self.name = "nvfp4_weight_only" if weight_only else "nvfp4"
        self.description = "fp4 e2m1 elements with an e4m3 scale per block of 16 and a float32 scale per tensor, " + (
            "weights only, float activations" if weight_only else "weights and activations"
        )
        self.facts = SCHEME_FACTS[self.name]
        name = "NVFP4WeightOnlyConfig" if weight_only else "NVFP4DynamicActivationNVFP4WeightConfig"
        self.torchao_imports = (("torchao.prototype.mx_formats.inference_workflow", name),)

    def weight(self, weight: torch.Tensor, kind: ModuleKind) -> torch.Tensor:
        return fake_quantize_nvfp4(weight.detach())

    def weights(self, stacked: torch.Tensor, kind: ModuleKind) -> torch.Tensor | None:
        # torchao's own 3-D form (the experts of an MoE weight): a per-tensor scale per weight.
        return fake_quantize_nvfp4_stacked(stacked) if stacked.dim() == 3 else None

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        return x if self.weight_only_ else fake_quantize_nvfp4(x)

    def bits_per_weight(self, weight_shape: tuple[int, ...], kind: ModuleKind) -> float:
        return per_group_bits(4, BLOCK, 8) + per_tensor_extra(weight_shape)

    def torchao_config_spec(self, ctx: ExportContext) -> dict[str, Any]:
        name = "NVFP4WeightOnlyConfig" if self.weight_only_ else "NVFP4DynamicActivationNVFP4WeightConfig"
        return {"config": f"torchao.prototype.mx_formats.inference_workflow.{name}"}
