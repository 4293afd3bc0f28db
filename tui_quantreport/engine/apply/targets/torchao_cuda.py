"""torchao on CUDA: the same int8 configs as on CPU, for a model that runs on a CUDA device."""

from __future__ import annotations

from tui_quantreport.engine.apply.targets.base import Target
from tui_quantreport.engine.apply.targets.torchao_cpu import TORCHAO_RECIPE, TORCHAO_SUPPORTED, TORCHAO_WHY_NOT

TARGET = Target(
    name="torchao-cuda",
    title="torchao on CUDA (quantize_ with FqnToConfig)",
    description="torchao 0.18's int8 configs through quantize_ on a CUDA device (the same configs and "
    "activation recipe as on CPU; verify needs a CUDA device)",
    library="torchao",
    device="cuda",
    recipe=TORCHAO_RECIPE,
    supported=TORCHAO_SUPPORTED,
    formats=True,
    why_not=TORCHAO_WHY_NOT,
    exporter="tui_quantreport.engine.apply.torchao_target:export_for_target",
    applier_path="tui_quantreport.engine.apply.torchao_target:applier",
    suffix=".torchao.py",
    file_label="torchao config for CUDA (.py + .json + .safetensors)",
)
