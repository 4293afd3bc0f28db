"""PT2E with X86InductorQuantizer(is_dynamic=True): dynamic int8 Linear."""

from __future__ import annotations

from tui_quantreport.engine.apply.targets.base import Target
from tui_quantreport.engine.apply.targets.pt2e_x86_static import PT2E_WHY_NOT
from tui_quantreport.engine.apply.targets.recipe import ActivationRecipe

TARGET = Target(
    name="pt2e-x86-dynamic",
    title="PT2E, X86InductorQuantizer, dynamic",
    description="torch.export + prepare_pt2e/convert_pt2e with X86InductorQuantizer's dynamic config: "
    "Linear, activations quantized per batch with one scale per tensor",
    library="pt2e",
    device="cpu",
    recipe=ActivationRecipe(backend="x86", per_token_min_ndim=None, static_outputs="int8"),
    supported={"dynamic": frozenset({"Linear"})},
    why_not={
        **PT2E_WHY_NOT,
        "Conv1d": "X86InductorQuantizer's dynamic config quantizes Linear only",
        "Conv2d": "X86InductorQuantizer's dynamic config quantizes Linear only",
    },
    scheme_missing={
        "weight_only": "X86InductorQuantizer has no weight-only int8 config",
        "static_per_tensor": "one X86InductorQuantizer is either static or dynamic: this target is dynamic "
        "(pt2e-x86-static is the static one)",
        "static_per_channel": "one X86InductorQuantizer is either static or dynamic: this target is dynamic "
        "(pt2e-x86-static is the static one)",
    },
    exporter="tui_quantreport.engine.apply.pt2e_target:export_for_target",
    applier_path="tui_quantreport.engine.apply.pt2e_target:applier",
    suffix=".pt2e.py",
    file_label="PT2E snippet, dynamic (.py)",
)
