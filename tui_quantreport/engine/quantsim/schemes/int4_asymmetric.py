"""int4_asym_g{32,64,128} and int4_hqq_g128: int4 asymmetric weights per group along K,
float activations: torchao's ``Int4WeightOnlyConfig(group_size=g)`` (tinygemm; CUDA or
mslk), run here by its CPU stand-in ``PrototypeInt4WeightOnlyConfig``, the same
arithmetic.

Recipe (torchao's primitives): ``_choose_qparams_affine_tinygemm`` (per group:
``s = (max - min) / 15``, ``zero = min + 8 s`` in the weight's dtype, not forced into
range), ``_quantize_affine_tinygemm``, ``_dequantize_affine_tinygemm``; HQQ:
``_choose_qparams_and_quantize_affine_hqq`` (iterative), dequantized the same way.
Deployed: 4-bit values and a bfloat16 scale and zero point per group:
``4 + 32 / g`` bits per weight (4.25 / 4.5 / 5.0 at g = 128 / 64 / 32).
The CPU kernel refuses N % 16 != 0 (a RuntimeError torchao does not catch): ineligible here.
"""

from __future__ import annotations

from typing import Any

import torch

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.schemes.base import ExportContext, by_rows
from tui_quantreport.engine.quantsim.schemes.torchao_base import TorchaoScheme, per_group_bits
from tui_quantreport.engine.quantsim.weight_recipes import hqq_proximal


class Int4Asymmetric(TorchaoScheme):
    torchao_imports = (("torchao.prototype.quantization.int4.inference_workflow", "PrototypeInt4WeightOnlyConfig"),)

    def __init__(self, group_size: int, hqq: bool = False):
        self.group_size = group_size
        self.hqq = hqq
        self.name = f"int4_hqq_g{group_size}" if hqq else f"int4_asym_g{group_size}"
        self.description = (
            f"int4 asymmetric weights with a bfloat16 scale and zero point per group of {group_size} "
            f"in-features{' chosen by HQQ' if hqq else ''} (tinygemm layout), float activations"
        )
        self.facts = SCHEME_FACTS[self.name]

    def shape_reason(self, n: int, k: int) -> str | None:
        if n % 16:
            return f"torchao's CPU int4 kernel needs N (out-features) to be a multiple of 16, not {n}"
        return None

    def weight(self, weight: torch.Tensor, kind: ModuleKind) -> torch.Tensor:
        from torchao.quantization.quant_primitives import (
            MappingType,
            _choose_qparams_affine_tinygemm,
            _choose_qparams_and_quantize_affine_hqq,
            _dequantize_affine_tinygemm,
            _quantize_affine_tinygemm,
        )

        w = weight.detach()
        block = (1, self.group_size)
        if self.hqq:
            # torchao's default solver (optimize_weights_proximal_legacy), bit for bit, in buffers
            q, scale, zero, _ = _choose_qparams_and_quantize_affine_hqq(
                w,
                nbits=4,
                group_size=self.group_size,
                axis=1,
                compute_dtype=w.dtype,
                device=w.device,
                optimize_weights=hqq_proximal,
            )
            q = q.to(torch.int32)
        else:
            scale, zero = _choose_qparams_affine_tinygemm(
                w, MappingType.ASYMMETRIC, block, torch.int32, 0, 15, 1e-6, None, w.dtype
            )
            q = _quantize_affine_tinygemm(w, block, scale, zero, torch.int32, 0, 15)
        scale = scale.reshape(w.shape[0], -1)
        zero = zero.reshape(w.shape[0], -1)
        return _dequantize_affine_tinygemm(q, block, scale, zero, torch.int32, 0, 15, output_dtype=w.dtype)

    def weights(self, stacked: torch.Tensor, kind: ModuleKind) -> torch.Tensor | None:
        # tinygemm: groups along each output row, so a stack of weights is one weight of more
        # rows. HQQ's iterations stop on the error of the whole weight: one weight at a time.
        return None if self.hqq else by_rows(lambda w: self.weight(w, kind), stacked)

    def bits_per_weight(self, weight_shape: tuple[int, ...], kind: ModuleKind) -> float:
        return per_group_bits(4, self.group_size, 32)

    def torchao_config_spec(self, ctx: ExportContext) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"group_size": self.group_size}
        if self.hqq:
            kwargs["int4_choose_qparams_algorithm"] = "hqq"
        return {
            "config": "torchao.prototype.quantization.int4.inference_workflow.PrototypeInt4WeightOnlyConfig",
            "kwargs": kwargs,
            "inductor": True,
        }
