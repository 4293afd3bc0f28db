"""How a deployment target quantizes activations: what the simulation must reproduce so that
its prediction is the number the target achieves (torch-free, plain data).

Each target declares one :class:`ActivationRecipe` (torch-free: the command line and the app
read the registry before torch is loaded);
:class:`~.error_analysis.ErrorAnalysis` takes it:

- ``backend``: the activation grid (``x86``/``fbgemm``: 7 bits, torch.ao's ``reduce_range``;
  ``qnnpack``/``onednn``: 8 bits, the grid torchao's int8 [-128, 127] also has);
- ``per_token_min_ndim``: dynamic activations get one scale per token (row of the last axis)
  for inputs of at least this rank, one scale per tensor below; None: one per tensor always
  (torch.ao's dynamic Linear, ``quantize_dynamic``, PT2E's dynamic X86InductorQuantizer);
- ``static_outputs``: a static module emits int8 (torch.ao), float (torchao), or int8 only where
  an op sharing its input's grid reads it ("shared": PT2E, whose pooling runs on int8);
- ``shared_qparams_ops``: pooling and the other ops torch's backend config makes share their
  input's observer run on the int8 grid of their input (PT2E);
- ``fused_relu``: a Linear/Conv output read only by ``F.relu`` / ``torch.relu`` is quantized
  with the range after the ReLU (the fused pattern torch.ao and PT2E quantize);
- ``fold_batchnorm``: a conv followed by an eval BatchNorm is folded into one conv before its
  weight is quantized (PT2E's ``prepare_pt2e``), so the int8 weight is the folded one.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Whether each backend's activations are 7-bit (torch.ao's reduce_range; as quantsim.qparams.REDUCE_RANGE).
REDUCE_RANGE = {"fbgemm": True, "x86": True, "qnnpack": False, "onednn": False}

#: What static modules emit (kept in step with error_analysis.STATIC_OUTPUTS).
_OUTPUTS = ("int8", "float", "shared")


@dataclass(frozen=True)
class ActivationRecipe:
    backend: str = "qnnpack"
    per_token_min_ndim: int | None = 3
    static_outputs: str = "float"
    shared_qparams_ops: bool = False
    fused_relu: bool = False
    fold_batchnorm: bool = False

    def __post_init__(self) -> None:
        if self.backend not in REDUCE_RANGE:
            raise ValueError(f"unknown backend {self.backend!r}")
        if self.static_outputs not in _OUTPUTS:
            raise ValueError(f"static_outputs must be one of {', '.join(_OUTPUTS)}")

    @property
    def activation_bits(self) -> int:
        return 7 if REDUCE_RANGE[self.backend] else 8

    def per_token(self, ndim: int) -> bool:
        """Whether a dynamic input of rank ``ndim`` gets one scale per token."""
        return self.per_token_min_ndim is not None and ndim >= max(2, self.per_token_min_ndim)

    def describe(self) -> list[str]:
        """The recipe in words (docs, ``--target`` help, the report)."""
        granularity = (
            "one scale per tensor"
            if self.per_token_min_ndim is None
            else f"per token for inputs of rank >= {self.per_token_min_ndim}, per tensor below"
        )
        return [
            f"activations: {self.activation_bits}-bit",
            f"dynamic activations: {granularity}",
            {
                "int8": "static modules emit int8 outputs",
                "float": "static modules emit float outputs",
                "shared": "static modules emit int8 where pooling reads them, else float",
            }[self.static_outputs],
            "pooling shares its input's int8 grid" if self.shared_qparams_ops else "pooling stays float",
            "a Linear/Conv output followed by F.relu is quantized after the ReLU (fused)"
            if self.fused_relu
            else "no output quantization after ReLU",
            "conv + BatchNorm folded before the weight is quantized"
            if self.fold_batchnorm
            else "BatchNorm left unfolded",
        ]
