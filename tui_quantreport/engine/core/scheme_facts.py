"""What each scheme is, as orthogonal facts (torch-free): like torchao's config plus granularity.

A scheme's name is only a key; everything else (the exporters, the plan reader, the
recommender, the targets, the app) reads these facts: how the activation is quantized
(none, static, dynamic; per tensor, per token or per block; int8, fp8, MX or NVFP4), how
the weight is (its dtype, granularity, group size, symmetry, scale dtype), which family it
belongs to, whether the recommended plan may choose it, and where it runs.

:data:`SCHEME_FACTS` is the registry of those facts by scheme name, in the order reports
show the schemes; the arithmetic of each scheme (``quantsim/schemes/``, torch) is
registered under the same names and takes its facts from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Activation = Literal["none", "static", "dynamic"]
ActivationGranularity = Literal["per_tensor", "per_token", "per_block"]
NumberDtype = Literal["int8", "int4", "fp8_e4m3", "fp4_e2m1", "nf4", "mxfp8", "mxfp4", "nvfp4"]
WeightGranularity = Literal["per_tensor", "per_channel", "per_group", "block"]
ScaleDtype = Literal["float32", "bfloat16", "weight", "e8m0", "e4m3", "nf4_double"]

#: Where a scheme's real kernels run: "cpu" (here, through torchao on this machine's
#: CPU), or only on CUDA of at least a compute capability.
RUNS_ON_CPU = "cpu"
#: No torchao config runs it anywhere (torchao 0.18): the scheme is a simulation only.
RUNS_NOWHERE = "no torchao config"


@dataclass(frozen=True)
class WeightFacts:
    """How a scheme quantizes the weight (the key its fake-quantized weights are cached by)."""

    dtype: NumberDtype
    granularity: WeightGranularity
    group_size: int | None = None
    symmetric: bool = True
    scale_dtype: ScaleDtype = "float32"
    #: How the qparams are chosen where there is more than one way ("minmax", "tinygemm", "hqq").
    algorithm: str = "minmax"


@dataclass(frozen=True)
class SchemeFacts:
    """Every fact about a scheme that is not its arithmetic."""

    activation: Activation
    weight: WeightFacts
    activation_granularity: ActivationGranularity | None = None
    activation_dtype: NumberDtype | None = None
    activation_symmetric: bool = False
    #: "int8", "int4", "fp8", "mx", "nvfp4", "nf4": schemes people compare as one kind of format.
    family: str = "int8"
    #: Position in the recommended plan's order of preference (cheapest first); None: the
    #: recommended plan never picks it (a candidate for a budgeted plan only).
    preference: int | None = None
    #: "cpu", the CUDA requirement of the only kernels that run it ("CUDA >= sm89"), or
    #: :data:`RUNS_NOWHERE` (torchao has no config for it: simulated only).
    runs_on: str = RUNS_ON_CPU

    @property
    def needs_range(self) -> bool:
        """Its activation qparams come from a calibrated range (a plan carries them)."""
        return self.activation == "static"

    @property
    def weight_only(self) -> bool:
        return self.activation == "none"

    @property
    def cuda_only(self) -> bool:
        return self.runs_on != RUNS_ON_CPU

    @property
    def simulated_only(self) -> bool:
        """No torchao config runs it, on any device: measured by simulation only."""
        return self.runs_on == RUNS_NOWHERE

    @property
    def runs_note(self) -> str:
        """ "" where it runs here, "simulated — runs on CUDA >= smXX", or "simulated only — no
        torchao config"."""
        if self.simulated_only:
            return "simulated only — no torchao config"
        return "" if not self.cuda_only else f"simulated — runs on {self.runs_on}"


#: The int8 schemes' weights: qint8 symmetric, float32 scales, per output channel or per tensor.
INT8_PER_CHANNEL = WeightFacts("int8", "per_channel")
INT8_PER_TENSOR = WeightFacts("int8", "per_tensor")


#: Modules kept in float in a plan.
FLOAT = "float"


def _int4_asymmetric(group_size: int, hqq: bool = False) -> SchemeFacts:
    """int4 asymmetric weights per group (tinygemm layout; HQQ or min/max qparams), float activations."""
    weight = WeightFacts(
        "int4", "per_group", group_size, symmetric=False, scale_dtype="bfloat16", algorithm="hqq" if hqq else "tinygemm"
    )
    return SchemeFacts(activation="none", weight=weight, family="int4")


def _int4_symmetric(group_size: int | None) -> SchemeFacts:
    """int4 symmetric weights (torchao intx) per group, or per output channel without a group size."""
    weight = WeightFacts("int4", "per_group" if group_size else "per_channel", group_size, scale_dtype="bfloat16")
    return SchemeFacts(activation="none", weight=weight, family="int4")


def _float8(activation: Activation, per_row: bool) -> SchemeFacts:
    """fp8 e4m3 weights (a scale per row or per tensor) and none, dynamic or static fp8 activations."""
    weight = WeightFacts("fp8_e4m3", "per_channel" if per_row else "per_tensor")
    if activation == "none":
        return SchemeFacts(activation="none", weight=weight, family="fp8")
    return SchemeFacts(
        activation=activation,
        weight=weight,
        activation_granularity="per_token" if per_row and activation == "dynamic" else "per_tensor",
        activation_dtype="fp8_e4m3",
        activation_symmetric=True,
        family="fp8",
        runs_on="CUDA >= sm89" if activation == "dynamic" else RUNS_ON_CPU,
    )


def _mx(bits: int, weight_only: bool = False) -> SchemeFacts:
    """MX elements (fp8 e4m3 or fp4 e2m1) with an e8m0 scale per block of 32."""
    dtype: NumberDtype = "mxfp8" if bits == 8 else "mxfp4"
    return SchemeFacts(
        activation="none" if weight_only else "dynamic",
        weight=WeightFacts(dtype, "block", 32, scale_dtype="e8m0"),
        activation_granularity=None if weight_only else "per_block",
        activation_dtype=None if weight_only else dtype,
        activation_symmetric=not weight_only,
        family="mx",
        # torchao 0.18 has no MX weight-only config; its MX kernels need CUDA sm100.
        runs_on=RUNS_NOWHERE if weight_only else "CUDA >= sm100",
    )


def _nvfp4(weight_only: bool) -> SchemeFacts:
    """NVFP4: fp4 e2m1 elements with an e4m3 scale per block of 16 (and a per-tensor scale)."""
    return SchemeFacts(
        activation="none" if weight_only else "dynamic",
        weight=WeightFacts("nvfp4", "block", 16, scale_dtype="e4m3"),
        activation_granularity=None if weight_only else "per_block",
        activation_dtype=None if weight_only else "nvfp4",
        activation_symmetric=not weight_only,
        family="nvfp4",
        runs_on=RUNS_ON_CPU if weight_only else "CUDA >= sm100",
    )


#: Every scheme's facts by name, in the order reports show the schemes. Adding a scheme is its
#: facts here and its arithmetic in one file of ``quantsim/schemes/`` (registered by this name).
SCHEME_FACTS: dict[str, SchemeFacts] = {
    "static_per_tensor": SchemeFacts(
        activation="static",
        weight=INT8_PER_TENSOR,
        activation_granularity="per_tensor",
        activation_dtype="int8",
        family="int8",
        preference=1,
    ),
    "static_per_channel": SchemeFacts(
        activation="static",
        weight=INT8_PER_CHANNEL,
        activation_granularity="per_tensor",
        activation_dtype="int8",
        family="int8",
        preference=0,
    ),
    "dynamic": SchemeFacts(
        activation="dynamic",
        weight=INT8_PER_CHANNEL,
        activation_granularity="per_token",
        activation_dtype="int8",
        family="int8",
        preference=2,
    ),
    "weight_only": SchemeFacts(activation="none", weight=INT8_PER_CHANNEL, family="int8", preference=3),
    "int8_weight_only_per_group": SchemeFacts(
        activation="none", weight=WeightFacts("int8", "per_group", 128), family="int8"
    ),
    "int4_asym_g32": _int4_asymmetric(32),
    "int4_asym_g64": _int4_asymmetric(64),
    "int4_asym_g128": _int4_asymmetric(128),
    "int4_hqq_g128": _int4_asymmetric(128, hqq=True),
    "int4_sym_g32": _int4_symmetric(32),
    "int4_sym_g128": _int4_symmetric(128),
    "int4_sym_per_channel": _int4_symmetric(None),
    "8da4w_g32": SchemeFacts(
        activation="dynamic",
        weight=WeightFacts("int4", "per_group", 32, scale_dtype="bfloat16"),
        activation_granularity="per_token",
        activation_dtype="int8",
        activation_symmetric=False,
        family="int4",
    ),
    "fp8_weight_only": _float8("none", per_row=True),
    "fp8_dynamic_per_row": _float8("dynamic", per_row=True),
    "fp8_dynamic_per_tensor": _float8("dynamic", per_row=False),
    "fp8_static": _float8("static", per_row=False),
    "mxfp8": _mx(8),
    "mxfp4": _mx(4),
    "mxfp4_weight_only": _mx(4, weight_only=True),
    "nvfp4_weight_only": _nvfp4(weight_only=True),
    "nvfp4": _nvfp4(weight_only=False),
    "nf4": SchemeFacts(
        activation="none", weight=WeightFacts("nf4", "block", 64, scale_dtype="nf4_double"), family="nf4"
    ),
}

#: Each scheme in words (the reports, the app's picker), by name, in the order of :data:`SCHEME_FACTS`.
SCHEME_TITLES: dict[str, str] = {
    "static_per_tensor": "static, per-tensor weights",
    "static_per_channel": "static, per-channel weights",
    "dynamic": "dynamic",
    "weight_only": "weight-only",
    "int8_weight_only_per_group": "int8 weight-only, group 128",
    "int4_asym_g32": "int4 asymmetric, group 32",
    "int4_asym_g64": "int4 asymmetric, group 64",
    "int4_asym_g128": "int4 asymmetric, group 128",
    "int4_hqq_g128": "int4 HQQ, group 128",
    "int4_sym_g32": "int4 symmetric, group 32",
    "int4_sym_g128": "int4 symmetric, group 128",
    "int4_sym_per_channel": "int4 symmetric, per channel",
    "8da4w_g32": "int8 dynamic + int4 weights, group 32",
    "fp8_weight_only": "fp8 weight-only",
    "fp8_dynamic_per_row": "fp8 dynamic, per row",
    "fp8_dynamic_per_tensor": "fp8 dynamic, per tensor",
    "fp8_static": "fp8 static",
    "mxfp8": "MXFP8",
    "mxfp4": "MXFP4",
    "mxfp4_weight_only": "MXFP4 weight-only",
    "nvfp4_weight_only": "NVFP4 weight-only",
    "nvfp4": "NVFP4",
    "nf4": "NF4",
}

#: The schemes the recommended plan chooses among, in its order of preference.
PREFERENCE: tuple[str, ...] = tuple(
    name
    for name, _ in sorted(
        ((n, f.preference) for n, f in SCHEME_FACTS.items() if f.preference is not None),
        key=lambda item: item[1] or 0,
    )
)


def int8_per_tensor_or_channel(scheme: str) -> bool:
    """Whether ``scheme`` is one torch.ao and PT2E can express (int8 activations and weights per
    tensor or per channel: the int8 four), by its facts."""
    known = SCHEME_FACTS.get(scheme)
    return (
        known is not None
        and known.family == "int8"
        and known.weight.granularity in ("per_tensor", "per_channel")
        and known.activation_dtype in (None, "int8")
    )


#: The int8 static schemes (torch.ao's and PT2E's static targets run only these).
INT8_STATIC_SCHEMES: tuple[str, ...] = tuple(
    name for name, f in SCHEME_FACTS.items() if f.needs_range and int8_per_tensor_or_channel(name)
)


def needs_activation(scheme: str) -> bool:
    """Whether a module planned with ``scheme`` carries calibrated activation qparams (its facts say static)."""
    known = SCHEME_FACTS.get(scheme)
    return known is not None and known.needs_range


def select_schemes(spec: str | None) -> tuple[str, ...]:
    """Scheme names from a ``--schemes`` value: a comma list of names or families, ``all``, or
    ``int8`` (any family name: ``int4``, ``fp8``, ``mx``, ``nvfp4``, ``nf4``). Raises ValueError
    naming the unknown entry."""
    if spec is None or spec.strip() in ("", "all"):
        return tuple(SCHEME_FACTS)
    chosen: list[str] = []
    families = {f.family for f in SCHEME_FACTS.values()}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part == "all":
            names = list(SCHEME_FACTS)
        elif part in SCHEME_FACTS:
            names = [part]
        elif part in families:
            names = [n for n, f in SCHEME_FACTS.items() if f.family == part]
        else:
            raise ValueError(
                f"unknown scheme {part!r}; choose names from {', '.join(SCHEME_FACTS)} or a family "
                f"({', '.join(sorted(families))}) or all"
            )
        chosen += [n for n in names if n not in chosen]
    return tuple(n for n in SCHEME_FACTS if n in chosen)
