"""The deployment targets' facts (torch-free): which library applies a plan, on what, which
schemes it runs on which modules, and how it quantizes activations.

A :class:`TargetFacts` declares

- which schemes it runs on which module kinds and shapes (:meth:`TargetFacts.runs`: a reason
  when it skips or refuses one, None when it runs it), the formats beyond int8 by each
  scheme's facts (``core/scheme_facts.py``);
- its activation recipe (:class:`~tui_quantreport.engine.core.activation_recipe.ActivationRecipe`),
  which the simulation takes so that the predicted SQNR is the one the target achieves;
- what the app's export dialog shows and which old names select it.

:data:`TARGET_FACTS` is the registry by name; the plan reader, the simulation, the command
line's parser and the app read it before torch is loaded. How each target exports and
applies a plan (torch, torchao) is the apply layer's (``engine/apply/targets``), registered
under the same names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tui_quantreport.engine.core.activation_recipe import ActivationRecipe
from tui_quantreport.engine.core.scheme_facts import FLOAT, INT8_STATIC_SCHEMES, SCHEME_FACTS
from tui_quantreport.engine.errors import UserError

LINEAR = "Linear"
CONV1D = "Conv1d"
CONV2D = "Conv2d"
CONV3D = "Conv3d"
EMBEDDING = "Embedding"
HF_CONV1D = "transformers Conv1D"
MHA_OUT_PROJ = "nn.MultiheadAttention out_proj"


def module_class(kind: str, weight_shape: tuple[int, ...]) -> str:
    """The module class a target's support is stated for, from the simulation's kind name
    (``engine/modules.py``'s weighted kinds) and the weight's shape."""
    if kind == "linear":
        return LINEAR
    if kind == "conv":
        return {3: CONV1D, 4: CONV2D, 5: CONV3D}.get(len(weight_shape), f"Conv ({len(weight_shape)}-D weight)")
    if kind == "embedding":
        return EMBEDDING
    if kind == "hf_conv1d":
        return HF_CONV1D
    if kind == "multihead_attention_out_proj":
        return MHA_OUT_PROJ
    return kind.replace("_", " ")


@dataclass(frozen=True)
class TargetFacts:
    """One deployment target's facts (see the module docstring)."""

    name: str
    title: str
    description: str
    library: str  # "torchao", "pt2e" or "torch.ao"
    device: str  # "cpu" or "cuda"
    recipe: ActivationRecipe
    #: scheme -> the module classes (:func:`module_class`) the target runs it on.
    supported: Mapping[str, frozenset[str]]
    #: module class -> why the target quantizes no scheme on it (the general case is worded by runs()).
    why_not: Mapping[str, str] = field(default_factory=dict)
    #: scheme -> why the target has no such scheme at all.
    scheme_missing: Mapping[str, str] = field(default_factory=dict)
    #: The suffix of the file the app suggests for the export.
    suffix: str = ".py"
    #: What the app's export dialog shows.
    file_label: str = ""
    #: Old names (``config --target torchao``) that select this target.
    aliases: tuple[str, ...] = ()
    #: Whether the target runs the number formats beyond the int8 four (torchao's int4, fp8, MX,
    #: NVFP4, NF4 configs) on Linear modules, by each scheme's facts (where it runs).
    formats: bool = False

    def runs(self, scheme: str, kind: str, weight_shape: tuple[int, ...]) -> str | None:
        """Why this target does not run ``scheme`` on a module of ``kind`` with a weight of
        ``weight_shape`` (skipped or refused), or None when it runs it."""
        if scheme == FLOAT:
            return None
        cls = module_class(kind, weight_shape)
        if scheme not in self.supported:
            if self.formats:
                return self._runs_format(scheme)
            return self.scheme_missing.get(scheme) or f"{self.name} runs only {', '.join(self.supported)}"
        if cls in self.supported[scheme]:
            return None
        if cls in self.why_not:
            return self.why_not[cls]
        runs_on = ", ".join(sorted(self.supported[scheme]))
        return f"{self.name} runs {scheme} on {runs_on} only, not on {cls}"

    def _runs_format(self, scheme: str) -> str | None:
        """Why this torchao target does not run the format ``scheme`` (its facts: CUDA-only
        kernels on a CPU target), or None."""
        known = SCHEME_FACTS.get(scheme)
        if known is None:
            return f"{self.name} has no {scheme} scheme"
        if known.simulated_only:
            return f"{scheme} is {known.runs_note}: {self.name} does not run it"
        if known.cuda_only and self.device != "cuda":
            return f"{scheme} is {known.runs_note}: {self.name} does not run it"
        return None  # the module kinds and shapes it takes are the scheme's own eligibility

    def eligible_schemes(self, kind: str, weight_shape: tuple[int, ...]) -> list[str]:
        return [s for s in self.supported if self.runs(s, kind, weight_shape) is None]

    def describe(self) -> str:
        return f"{self.name}: {self.title}"


# torchao: quantize_ with an FqnToConfig (torchao 0.18's int8 workflows), on CPU or CUDA.

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

TORCHAO_CPU = TargetFacts(
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
    suffix=".torchao.py",
    file_label="torchao config (.py + .json + .safetensors)",
    aliases=("torchao",),
    formats=True,
)

TORCHAO_CUDA = TargetFacts(
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
    suffix=".torchao.py",
    file_label="torchao config for CUDA (.py + .json + .safetensors)",
)

# PT2E with X86InductorQuantizer: torch.export, prepare_pt2e, calibrate, convert_pt2e.

PT2E_STATIC_ON = frozenset({LINEAR, CONV1D, CONV2D})

PT2E_WHY_NOT = {
    CONV3D: "X86InductorQuantizer does not annotate Conv3d",
    EMBEDDING: "X86InductorQuantizer does not quantize Embedding",
    HF_CONV1D: "transformers' Conv1D is an addmm after torch.export, which X86InductorQuantizer does not annotate",
    MHA_OUT_PROJ: "nn.MultiheadAttention's out_proj is not a linear node after torch.export",
}

PT2E_X86_STATIC = TargetFacts(
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
    supported={"static_per_tensor": PT2E_STATIC_ON, "static_per_channel": PT2E_STATIC_ON},
    why_not=PT2E_WHY_NOT,
    scheme_missing={
        "weight_only": "X86InductorQuantizer has no weight-only int8 config",
        "dynamic": "one X86InductorQuantizer is either static or dynamic: this target is static "
        "(pt2e-x86-dynamic is the dynamic one)",
    },
    suffix=".pt2e.py",
    file_label="PT2E snippet, static (.py)",
)

PT2E_X86_DYNAMIC = TargetFacts(
    name="pt2e-x86-dynamic",
    title="PT2E, X86InductorQuantizer, dynamic",
    description="torch.export + prepare_pt2e/convert_pt2e with X86InductorQuantizer's dynamic config: "
    "Linear, activations quantized per batch with one scale per tensor",
    library="pt2e",
    device="cpu",
    recipe=ActivationRecipe(backend="x86", per_token_min_ndim=None, static_outputs="int8"),
    supported={"dynamic": frozenset({LINEAR})},
    why_not={
        **PT2E_WHY_NOT,
        CONV1D: "X86InductorQuantizer's dynamic config quantizes Linear only",
        CONV2D: "X86InductorQuantizer's dynamic config quantizes Linear only",
    },
    scheme_missing={
        "weight_only": "X86InductorQuantizer has no weight-only int8 config",
        "static_per_tensor": "one X86InductorQuantizer is either static or dynamic: this target is dynamic "
        "(pt2e-x86-static is the static one)",
        "static_per_channel": "one X86InductorQuantizer is either static or dynamic: this target is dynamic "
        "(pt2e-x86-static is the static one)",
    },
    suffix=".pt2e.py",
    file_label="PT2E snippet, dynamic (.py)",
)

# torch.ao's QConfigMapping (FX graph mode), on the x86 and qnnpack engines.

QCONFIG_STATIC_ON = frozenset({LINEAR, CONV1D, CONV2D, CONV3D})

QCONFIG_SUPPORTED = {
    "static_per_tensor": QCONFIG_STATIC_ON,
    "static_per_channel": QCONFIG_STATIC_ON,
    "dynamic": frozenset({LINEAR}),
}

QCONFIG_WHY_NOT = {
    EMBEDDING: "the QConfigMapping export quantizes Linear and Conv modules only",
    HF_CONV1D: "torch.ao's QConfigMapping quantizes nn.Linear and nn.Conv, not transformers' Conv1D",
    MHA_OUT_PROJ: "torch.ao does not quantize nn.MultiheadAttention's out_proj on its own",
}

QCONFIG_MISSING = {"weight_only": "torch.ao has no int8 weight-only Linear/Conv"}


def qconfig_target(name: str, backend: str, bits: int) -> TargetFacts:
    """torch.ao's prepare_fx/convert_fx with a QConfigMapping on ``backend`` (``bits``-bit activations)."""
    return TargetFacts(
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
            CONV1D: "torch.ao has no dynamic quantized convolution",
            CONV2D: "torch.ao has no dynamic quantized convolution",
            CONV3D: "torch.ao has no dynamic quantized convolution",
        },
        scheme_missing=QCONFIG_MISSING,
        suffix=f".qconfig_{backend}.py",
        file_label=f"torch.ao QConfigMapping, {backend} (.py)",
        aliases=("qconfig_mapping",) if backend == "x86" else (),
    )


QCONFIG_X86 = qconfig_target("qconfig-x86", "x86", 7)
QCONFIG_QNNPACK = qconfig_target("qconfig-qnnpack", "qnnpack", 8)

#: Every target's facts by name, in the order the command line and the app list them.
TARGET_FACTS: dict[str, TargetFacts] = {
    t.name: t for t in (TORCHAO_CPU, TORCHAO_CUDA, PT2E_X86_STATIC, PT2E_X86_DYNAMIC, QCONFIG_X86, QCONFIG_QNNPACK)
}

#: ``pt2e`` picks the static or the dynamic PT2E target from the plan (see :func:`target_name`).
PT2E_ALIAS = "pt2e"

ALIASES: dict[str, str] = {alias: t.name for t in TARGET_FACTS.values() for alias in t.aliases}

#: Every name ``--target`` accepts: the targets, then the old names.
NAMES: tuple[str, ...] = (*TARGET_FACTS, *ALIASES, PT2E_ALIAS)


class TargetError(UserError):
    """An unknown target name (one line)."""


def pt2e_mode(schemes: Iterable[str]) -> str:
    """The PT2E mode of a plan: "static" when its ``schemes`` hold more int8 static modules than
    dynamic ones, else "dynamic" (one X86InductorQuantizer is either)."""
    counts = Counter("static" if s in INT8_STATIC_SCHEMES else s for s in schemes)
    return "static" if counts["static"] > counts["dynamic"] else "dynamic"


def target_name(name: str, planned: Iterable[str] | None = None) -> str:
    """The target ``name`` (or an old alias) selects. ``pt2e`` is the static PT2E target when the
    ``planned`` schemes (the plan's quantized modules') hold more static modules than dynamic ones
    (:func:`pt2e_mode`), else the dynamic one; the static one without a plan."""
    if name in TARGET_FACTS:
        return name
    if name in ALIASES:
        return ALIASES[name]
    if name == PT2E_ALIAS:
        if planned is not None and pt2e_mode(planned) == "dynamic":
            return PT2E_X86_DYNAMIC.name
        return PT2E_X86_STATIC.name
    raise TargetError(f"unknown target {name!r}; choose one of {', '.join(TARGET_FACTS)}")


def resolve_facts(name: str, planned: Iterable[str] | None = None) -> TargetFacts:
    """The facts of the target ``name`` selects (see :func:`target_name`)."""
    return TARGET_FACTS[target_name(name, planned)]


def default_target_name(device: str = "cpu") -> str:
    """torchao on the model's device."""
    return TORCHAO_CUDA.name if device.startswith("cuda") else TORCHAO_CPU.name


def model_device(model: Any) -> str:
    """The device type of the model's first parameter ("cpu" without parameters)."""
    for parameter in model.parameters():
        return str(parameter.device.type)
    return "cpu"
