"""torch.ao's QConfigMapping (FX graph mode) on the x86 engine."""

from __future__ import annotations

from tui_quantreport.engine.apply.targets.base import (
    EMBEDDING,
    HF_CONV1D,
    MHA_OUT_PROJ,
    Target,
)
from tui_quantreport.engine.apply.targets.recipe import ActivationRecipe

STATIC_ON = frozenset({"Linear", "Conv1d", "Conv2d", "Conv3d"})

QCONFIG_SUPPORTED = {
    "static_per_tensor": STATIC_ON,
    "static_per_channel": STATIC_ON,
    "dynamic": frozenset({"Linear"}),
}

QCONFIG_WHY_NOT = {
    EMBEDDING: "the QConfigMapping export quantizes Linear and Conv modules only",
    HF_CONV1D: "torch.ao's QConfigMapping quantizes nn.Linear and nn.Conv, not transformers' Conv1D",
    MHA_OUT_PROJ: "torch.ao does not quantize nn.MultiheadAttention's out_proj on its own",
}

QCONFIG_MISSING = {"weight_only": "torch.ao has no int8 weight-only Linear/Conv"}


def qconfig_target(name: str, backend: str, bits: int) -> Target:
    return Target(
        name=name,
        title=f"torch.ao QConfigMapping (FX), {backend} engine",
        description=f"torch.ao's prepare_fx/convert_fx with a QConfigMapping on the {backend} engine: static "
        f"Linear/Conv and dynamic Linear, {bits}-bit activations",
        library="torch.ao",
        device="cpu",
        # The quantized modules' dynamic Linear takes one scale per tensor; a converted module emits int8;
        # the plan's mapping (set_global(None)) leaves pooling float; Linear/Conv + ReLU are fused.
        recipe=ActivationRecipe(backend=backend, per_token_min_ndim=None, static_outputs="int8", fused_relu=True),
        supported=QCONFIG_SUPPORTED,
        why_not={
            **QCONFIG_WHY_NOT,
            "Conv1d": "torch.ao has no dynamic quantized convolution",
            "Conv2d": "torch.ao has no dynamic quantized convolution",
            "Conv3d": "torch.ao has no dynamic quantized convolution",
        },
        scheme_missing=QCONFIG_MISSING,
        exporter="tui_quantreport.engine.apply.qconfig_target:export_for_target",
        applier_path="tui_quantreport.engine.apply.qconfig_target:applier",
        suffix=f".qconfig_{backend}.py",
        file_label=f"torch.ao QConfigMapping, {backend} (.py)",
        aliases=("qconfig_mapping",) if backend == "x86" else (),
    )


TARGET = qconfig_target("qconfig-x86", "x86", 7)
