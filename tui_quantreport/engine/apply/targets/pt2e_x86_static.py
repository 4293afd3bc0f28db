"""PT2E with X86InductorQuantizer, static: torch.export, prepare_pt2e, calibrate, convert_pt2e."""

from __future__ import annotations

from tui_quantreport.engine.apply.targets.base import (
    CONV3D,
    EMBEDDING,
    HF_CONV1D,
    MHA_OUT_PROJ,
    Target,
)
from tui_quantreport.engine.apply.targets.recipe import ActivationRecipe

STATIC_ON = frozenset({"Linear", "Conv1d", "Conv2d"})

PT2E_WHY_NOT = {
    CONV3D: "X86InductorQuantizer does not annotate Conv3d",
    EMBEDDING: "X86InductorQuantizer does not quantize Embedding",
    HF_CONV1D: "transformers' Conv1D is an addmm after torch.export, which X86InductorQuantizer does not annotate",
    MHA_OUT_PROJ: "nn.MultiheadAttention's out_proj is not a linear node after torch.export",
}

TARGET = Target(
    name="pt2e-x86-static",
    title="PT2E, X86InductorQuantizer, static",
    description="torch.export + prepare_pt2e/convert_pt2e with X86InductorQuantizer's static config "
    "(reduce_range=True, as torch.ao's x86 backend): Linear, Conv1d and Conv2d",
    library="pt2e",
    device="cpu",
    # 7-bit activations; a Linear/Conv output is quantized only where pooling (or flatten) carries
    # it to another quantized op, on one grid shared along the way; a per-channel (global config)
    # Linear/Conv + nn.ReLU output is quantized after the ReLU where pooling, flatten or cat reads
    # it; torch.cat of quantized outputs shares one grid (measured with torchao 0.18).
    recipe=ActivationRecipe(
        backend="x86",
        per_token_min_ndim=None,
        static_outputs="shared",
        shared_qparams_ops=True,
        fused_relu=False,
        fold_batchnorm=True,
    ),
    supported={"static_per_tensor": STATIC_ON, "static_per_channel": STATIC_ON},
    why_not=PT2E_WHY_NOT,
    scheme_missing={
        "weight_only": "X86InductorQuantizer has no weight-only int8 config",
        "dynamic": "one X86InductorQuantizer is either static or dynamic: this target is static "
        "(pt2e-x86-dynamic is the dynamic one)",
    },
    exporter="tui_quantreport.engine.apply.pt2e_target:export_for_target",
    applier_path="tui_quantreport.engine.apply.pt2e_target:applier",
    suffix=".pt2e.py",
    file_label="PT2E snippet, static (.py)",
)
