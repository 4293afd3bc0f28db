"""torchao on CPU: ``quantize_`` with an ``FqnToConfig`` (torchao 0.18's int8 workflows)."""

from __future__ import annotations

from tui_quantreport.engine.apply.targets.base import (
    CONV1D,
    CONV2D,
    CONV3D,
    EMBEDDING,
    HF_CONV1D,
    LINEAR,
    MHA_OUT_PROJ,
    Target,
)
from tui_quantreport.engine.apply.targets.recipe import ActivationRecipe

#: torchao's activations: int8 [-128, 127] (the 8-bit grid), per token for inputs of rank >= 3
#: (the export's PerRow), per tensor for 2-D (PerTensor); Int8StaticActivationInt8WeightConfig
#: leaves a static Linear's output float.
TORCHAO_RECIPE = ActivationRecipe(backend="qnnpack", per_token_min_ndim=3, static_outputs="float")

LINEAR_ONLY = frozenset({LINEAR})

#: Why torchao 0.18's int8 configs leave these float (shared by the CPU and CUDA targets).
TORCHAO_WHY_NOT = {
    CONV1D: "torchao 0.18's int8 configs quantize Linear only: a Conv1d is left float",
    CONV2D: "torchao 0.18's int8 configs quantize Linear only (Conv2d only through IntxWeightOnlyConfig): "
    "a Conv2d is left float",
    CONV3D: "torchao 0.18's int8 configs quantize Linear only: a Conv3d is left float",
    HF_CONV1D: "torchao's int8 configs quantize nn.Linear, not transformers' Conv1D",
    MHA_OUT_PROJ: "nn.MultiheadAttention reads out_proj.weight outside Linear.forward, which torchao's "
    "Int8Tensor does not support",
    EMBEDDING: "an Embedding's input is indices: only weight-only int8 applies",
}

TORCHAO_SUPPORTED = {
    "static_per_tensor": LINEAR_ONLY,
    "static_per_channel": LINEAR_ONLY,
    "dynamic": LINEAR_ONLY,
    "weight_only": frozenset({LINEAR, EMBEDDING}),
}

TARGET = Target(
    name="torchao-cpu",
    title="torchao on CPU (quantize_ with FqnToConfig)",
    description="torchao 0.18's int8 configs through quantize_: Int8WeightOnlyConfig, "
    "Int8DynamicActivationInt8WeightConfig and Int8StaticActivationInt8WeightConfig on Linear "
    "(weight-only also on Embedding)",
    library="torchao",
    device="cpu",
    recipe=TORCHAO_RECIPE,
    supported=TORCHAO_SUPPORTED,
    why_not=TORCHAO_WHY_NOT,
    exporter="tui_quantreport.engine.apply.torchao_target:export_for_target",
    applier_path="tui_quantreport.engine.apply.torchao_target:applier",
    suffix=".torchao.py",
    file_label="torchao config (.py + .json + .safetensors)",
    aliases=("torchao",),
    formats=True,
)
