"""End-to-end SQNR per model output and combined (energy-weighted): the definition of the
outputs and of the combination is in :mod:`tui_quantreport.engine.model_outputs`."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from tui_quantreport.engine.model_outputs import OutputKeyError, output_tensors, select
from tui_quantreport.engine.quantsim.sqnr import PreparedReference, Sqnr, SqnrAccumulator

__all__ = ["OutputKeyError", "OutputsSqnr", "output_tensors", "prepared", "select"]


class OutputsSqnr:
    """End-to-end SQNR per named output and combined (energy-weighted), over probe batches."""

    def __init__(self) -> None:
        self.combined = SqnrAccumulator()
        self.per_output: dict[str, SqnrAccumulator] = {}
        self.mismatch = ""

    def add(self, reference: Mapping[str, PreparedReference], approx: Mapping[str, torch.Tensor]) -> None:
        """One batch: every reference output against the quantized model's output of the same name."""
        for name, ref in reference.items():
            acc = self.per_output.setdefault(name, SqnrAccumulator())
            out = approx.get(name)
            if out is None or out.shape != ref.reference.shape:
                got = "missing" if out is None else f"of shape {tuple(out.shape)}"
                self.mismatch = self.mismatch or (
                    f"the quantized model's output '{name}' is {got}, the float model's {tuple(ref.reference.shape)}"
                )
                continue
            terms = SqnrAccumulator.prepared_terms(ref, out)  # one output's share of both: taken once
            acc.append(*terms)
            self.combined.append(*terms)

    def result(self) -> Sqnr:
        """The combined SQNR (undefined, with the reason, when an output did not match)."""
        if self.mismatch:
            return Sqnr.undefined(self.mismatch)
        return self.combined.result("model output")

    def results(self) -> dict[str, Sqnr]:
        """The SQNR of each output on its own."""
        return {name: acc.result(f"output '{name}'") for name, acc in self.per_output.items()}


def prepared(outputs: Mapping[str, torch.Tensor]) -> dict[str, PreparedReference]:
    return {name: PreparedReference(t) for name, t in outputs.items()}
