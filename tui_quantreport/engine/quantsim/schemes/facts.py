"""What a scheme is, as orthogonal facts (torch-free): like torchao's config plus granularity.

A scheme's name is only a key; everything else (the exporters, the plan reader, the
recommender, the app) reads these facts: how the activation is quantized (none,
static, dynamic; per tensor, per token or per block; int8, fp8, MX or NVFP4), how the
weight is (its dtype, granularity, group size, symmetry, scale dtype), which family it
belongs to, whether the recommended plan may choose it, and where it runs.
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
