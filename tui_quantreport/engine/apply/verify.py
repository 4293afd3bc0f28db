"""Verify an export by applying it: the exported configuration, run by the real
library on a deep copy of the model, against the float model on the probe batches.

Reports the achieved end-to-end SQNR next to the predicted one, which modules
ended with quantized weights (by tensor type), and findings: a planned module
whose weight did not become a quantized tensor, a module quantized that the plan
keeps float, and a gap of more than 1 dB between prediction and achievement,
each with its cause.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.apply.common import Change, Export
from tui_quantreport.engine.batches import call_batch
from tui_quantreport.engine.errors import CalibrationCancelled, UserError
from tui_quantreport.engine.escape import printable
from tui_quantreport.engine.model_outputs import output_tensors, select
from tui_quantreport.engine.plan import FLOAT, Plan
from tui_quantreport.engine.quantsim.reference import FLOAT_MODEL, float_reference

GAP_DB = 1.0
ProgressCallback = Callable[[int, int | None], None]


@dataclass(frozen=True)
class VerifyFinding:
    kind: str  # "not_quantized", "unplanned", "gap"
    module: str | None
    message: str


@dataclass
class VerifyResult:
    target: str
    library: str
    probe_batches: int
    predicted_db: float | None  # the plan's
    export_predicted_db: float | None  # the plan as the target applies it, simulated the target's way
    export_prediction_note: str
    achieved_db: float | None
    achieved_reason: str
    weight_types: dict[str, str]  # planned-quantized module -> its weight's type after applying
    quantized: list[str]
    kept_float: list[str]
    changes: list[Change]
    findings: list[VerifyFinding] = field(default_factory=list)
    #: The achieved SQNR of each model output on its own (``achieved_db`` combines them, energy-weighted).
    achieved_per_output: dict[str, float | None] = field(default_factory=dict)
    #: The one output measured (``--output-key``), None for all of them.
    output_key: str | None = None
    #: How the model was prepared for the comparison, when it was (a copy with use_cache=False, say).
    note: str = ""

    @property
    def reference_db(self) -> float | None:
        """What the achieved SQNR is held against: the export's own prediction when there is one."""
        return self.export_predicted_db if self.export_predicted_db is not None else self.predicted_db

    @property
    def gap_db(self) -> float | None:
        if self.achieved_db is None or self.reference_db is None:
            return None
        return self.achieved_db - self.reference_db

    def to_text(self) -> str:
        def db(value: float | None) -> str:
            return f"{value:7.2f} dB" if value is not None else "      n/a"

        lines = [
            f"verify {self.target} ({self.library}) on {self.probe_batches} probe batches",
            f"  predicted (plan)            {db(self.predicted_db)}",
        ]
        if self.export_predicted_db is not None or self.export_prediction_note:
            lines.append(
                f"  predicted (as exported)     {db(self.export_predicted_db)}  {self.export_prediction_note}".rstrip()
            )
        gap = f"  gap {self.gap_db:+.2f} dB" if self.gap_db is not None else ""
        achieved = db(self.achieved_db) if self.achieved_db is not None else f"      n/a  ({self.achieved_reason})"
        lines.append(f"  achieved                    {achieved}{gap}")
        if self.output_key is not None:
            lines.append(f"  output measured: {printable(self.output_key)}")
        elif len(self.achieved_per_output) > 1:
            each = ", ".join(f"{printable(k)} {db(v).strip()}" for k, v in list(self.achieved_per_output.items())[:8])
            lines.append(f"  all {len(self.achieved_per_output)} outputs combined (energy-weighted); each: {each}")
        if self.note:
            lines.append(f"  note: {self.note}")
        types = sorted(set(self.weight_types.values()))
        lines.append(
            f"  quantized weights: {len(self.quantized)} of {len(self.weight_types)} planned modules"
            + (f" ({', '.join(types)})" if types else "")
        )
        for change in self.changes:
            lines.append(f"  changed: {printable(change.line())}")
        if self.findings:
            lines.append(f"findings ({len(self.findings)}):")
            lines += [f"  - {printable(f.message)}" for f in self.findings]
        else:
            lines.append("findings: none")
        return "\n".join(lines) + "\n"

    def to_json_data(self) -> dict[str, Any]:
        def fin(value: float | None) -> float | None:
            return value if value is not None and math.isfinite(value) else None

        return {
            "target": self.target,
            "library": self.library,
            "probe_batches": self.probe_batches,
            "predicted_sqnr_db": fin(self.predicted_db),
            "export_predicted_sqnr_db": fin(self.export_predicted_db),
            "achieved_sqnr_db": fin(self.achieved_db),
            "gap_db": fin(self.gap_db),
            "achieved_sqnr_per_output_db": {k: fin(v) for k, v in self.achieved_per_output.items()},
            "output_key": self.output_key,
            "note": self.note,
            "weight_types": self.weight_types,
            "changes": [c.__dict__ for c in self.changes],
            "findings": [f.__dict__ for f in self.findings],
        }


def is_quantized_tensor(tensor: Any) -> bool:
    """A torchao quantized tensor subclass, or a torch quantized tensor."""
    if not isinstance(tensor, torch.Tensor):
        return False
    if type(tensor).__module__.startswith("torchao"):
        return True
    return bool(getattr(tensor, "is_quantized", False))


def weight_type(module: nn.Module) -> str:
    """The weight's type, as a reader wants it: a tensor subclass, a quantized dtype, or the float module."""
    weight = getattr(module, "weight", None)
    if weight is None and isinstance(module, nn.Sequential) and len(module) > 0:  # a fused LinearReLU's inner module
        return weight_type(module[0])
    if callable(weight) and not isinstance(weight, torch.Tensor):  # torch.ao quantized modules: weight()
        try:
            weight = weight()
        except Exception:  # noqa: BLE001 - an unreadable weight is reported as "?"
            return "?"
    if not isinstance(weight, torch.Tensor):
        return f"{type(module).__name__} without a weight tensor"
    if getattr(weight, "is_quantized", False):
        return f"quantized {weight.dtype} tensor".replace("torch.", "")
    if type(weight) in (nn.Parameter, torch.Tensor):
        return f"float tensor in {type(module).__name__}"
    return type(weight).__name__


class SqnrSum:
    """End-to-end SQNR over several batches, per model output and combined: 20·log10(‖y‖/‖y−ŷ‖)
    of all floating outputs together (energy-weighted), or of ``output_key``'s alone. The outputs
    are named as the simulation names them (:func:`~tui_quantreport.engine.model_outputs.output_tensors`)."""

    def __init__(self, output_key: str | None = None) -> None:
        self.output_key = output_key
        self.signal = 0.0
        self.noise = 0.0
        self.per_output: dict[str, list[float]] = {}
        self.bad = ""

    def add(self, reference: Any, approx: Any) -> None:
        every = output_tensors(reference)
        ref = select(every, self.output_key)
        app = output_tensors(approx)
        if app.keys() != every.keys() and len(app) == len(every):
            # The same tensors in another container (a graph returning a tuple): paired in order.
            app = dict(zip(every, app.values()))
        for name, r in ref.items():
            a = app.get(name)
            if a is None:
                self.bad = f"the quantized model's output has no '{name}'"
                return
            r64, a64 = r.detach().double(), a.detach().double()
            if r64.shape != a64.shape:
                self.bad = f"output '{name}' shapes differ ({tuple(r64.shape)} vs {tuple(a64.shape)})"
                return
            signal, noise = float((r64**2).sum()), float(((r64 - a64) ** 2).sum())
            sums = self.per_output.setdefault(name, [0.0, 0.0])
            sums[0] += signal
            sums[1] += noise
            self.signal += signal
            self.noise += noise

    def result(self) -> tuple[float | None, str]:
        if self.bad:
            return None, self.bad
        return _db(self.signal, self.noise)

    def results(self) -> dict[str, float | None]:
        """Each output's own SQNR (None where undefined; +inf where exact)."""
        return {name: _db(signal, noise)[0] for name, (signal, noise) in self.per_output.items()}


def _db(signal: float, noise: float) -> tuple[float | None, str]:
    if not math.isfinite(signal) or not math.isfinite(noise):
        return None, "SQNR undefined: the output has NaN or Inf"
    if signal == 0:
        return None, "SQNR undefined: the float output is all zeros"
    if noise == 0:
        return math.inf, "identical outputs"
    return 10 * math.log10(signal / noise), ""


def verify_export(
    model: nn.Module,
    plan: Plan,
    export: Export,
    apply: Callable[[nn.Module], nn.Module],
    probes: Sequence[Any],
    *,
    library: str,
    export_prediction: tuple[float | None, str] = (None, ""),
    inspect: Callable[[nn.Module, list[str]], dict[str, tuple[bool, str]]] | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    output_key: str | None = None,
    reference_note: str = "",
) -> VerifyResult:
    """Apply ``export`` (through ``apply``) to a deep copy of ``model`` and measure it on ``probes``
    (every floating output combined, or ``output_key``'s alone)."""
    total = len(probes) + 1
    if should_cancel is not None and should_cancel():
        raise CalibrationCancelled()
    quantized_model = apply(copy.deepcopy(model).eval())
    if progress is not None:
        progress(1, total)
    applied_float = {c.fqn for c in export.changes if c.exported == FLOAT}
    states = (inspect or module_weight_states)(quantized_model, list(plan.modules))
    weight_types, quantized, kept_float, findings = _weight_findings(plan, export, states, library)
    sums, reference_note = _measure_probes(
        model, quantized_model, probes, export.target, output_key, reference_note, progress, should_cancel
    )
    achieved, reason = sums.result()
    result = VerifyResult(
        export.target,
        library,
        len(probes),
        plan.predicted_sqnr_db,
        export_prediction[0],
        export_prediction[1],
        achieved,
        reason,
        weight_types,
        quantized,
        kept_float,
        list(export.changes),
        findings,
        sums.results(),
        output_key,
        reference_note,
    )
    result.findings.extend(_gap_findings(result, applied_float))
    return result


def _weight_findings(
    plan: Plan, export: Export, states: dict[str, tuple[bool, str]], library: str
) -> tuple[dict[str, str], list[str], list[str], list[VerifyFinding]]:
    """(each planned module's weight type, the planned modules quantized, the kept-float modules
    left float, what differs from the plan) read from the applied model's weight ``states``."""
    planned = plan.quantized
    weight_types: dict[str, str] = {}
    quantized: list[str] = []
    findings: list[VerifyFinding] = []
    for fqn in planned:
        is_quantized, weight_types[fqn] = states.get(fqn, (False, "missing"))
        if is_quantized:
            quantized.append(fqn)
        else:
            change = next((c for c in export.changes if c.fqn == fqn), None)
            cause = change.reason if change else f"{library} left it a {weight_types[fqn]}"
            findings.append(
                VerifyFinding("not_quantized", fqn, f"{fqn}: planned {planned[fqn]}, weight not quantized: {cause}")
            )
    kept_float = []
    for fqn in plan.kept_float:
        is_quantized, kind = states.get(fqn, (False, "missing"))
        if is_quantized:
            findings.append(
                VerifyFinding("unplanned", fqn, f"{fqn}: the plan keeps it float but its weight is a {kind}")
            )
        else:
            kept_float.append(fqn)
    return weight_types, quantized, kept_float, findings


def _measure_probes(
    model: nn.Module,
    quantized_model: nn.Module,
    probes: Sequence[Any],
    target: str,
    output_key: str | None,
    reference_note: str,
    progress: ProgressCallback | None,
    should_cancel: Callable[[], bool] | None,
) -> tuple[SqnrSum, str]:
    """The quantized model's outputs against the float reference's on every probe (progress from
    2 of ``len(probes) + 1``), and the reference note (naming the reference when not ``model``)."""
    total = len(probes) + 1
    sums = SqnrSum(output_key)

    float_model, reference_words = float_reference(model)
    if reference_words != FLOAT_MODEL:
        reference_note = "; ".join(filter(None, (reference_note, f"reference: {reference_words}")))
    was_training = float_model.training
    try:
        float_model.eval()
        with torch.no_grad():
            for index, batch in enumerate(probes, start=1):
                if should_cancel is not None and should_cancel():
                    raise CalibrationCancelled()
                reference = call_batch(float_model, batch)
                try:
                    approx = call_batch(quantized_model, batch)
                except Exception as exc:  # noqa: BLE001 - reported in one line
                    raise UserError(
                        f"the {target} export was applied, but the quantized model failed on probe batch {index}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    ) from None
                sums.add(reference, approx)
                if progress is not None:
                    progress(index + 1, total)
    finally:
        float_model.train(was_training)
    return sums, reference_note


def _gap_findings(result: VerifyResult, applied_float: set[str]) -> list[VerifyFinding]:
    """A finding when the achieved SQNR is further than ``GAP_DB`` from the prediction."""
    achieved = result.achieved_db
    gap = result.gap_db
    if gap is not None and math.isfinite(gap) and abs(gap) > GAP_DB:
        return [VerifyFinding("gap", None, _gap_message(result, applied_float))]
    if result.predicted_db is not None and achieved is not None and result.export_predicted_db is not None:
        plan_gap = achieved - result.predicted_db
        if abs(plan_gap) > GAP_DB:
            return [
                VerifyFinding(
                    "gap",
                    None,
                    f"achieved {achieved:.2f} dB is {plan_gap:+.2f} dB from the plan's {result.predicted_db:.2f} dB, "
                    f"as predicted for the export ({result.export_predicted_db:.2f} dB): {result.export_prediction_note or 'the export differs from the plan'}",
                )
            ]
    return []


def module_weight_states(model: nn.Module, fqns: list[str]) -> dict[str, tuple[bool, str]]:
    """Per module: whether its weight is a quantized tensor, and the weight's type."""
    modules = dict(model.named_modules())
    return {fqn: (_module_quantized(modules[fqn]), weight_type(modules[fqn])) for fqn in fqns if fqn in modules}


def _module_quantized(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    if weight is None and isinstance(module, nn.Sequential) and len(module) > 0:
        return _module_quantized(module[0])
    if callable(weight) and not isinstance(weight, torch.Tensor):
        try:
            weight = weight()
        except Exception:  # noqa: BLE001 - unreadable: not quantized
            return False
    return is_quantized_tensor(weight)


def _gap_message(result: VerifyResult, applied_float: set[str]) -> str:
    assert result.gap_db is not None and result.reference_db is not None and result.achieved_db is not None
    which = "the export's prediction" if result.export_predicted_db is not None else "the plan's prediction"
    causes = []
    if applied_float and result.export_predicted_db is None:
        causes.append(
            f"{len(applied_float)} planned module(s) kept float by the target ({', '.join(sorted(applied_float)[:4])})"
        )
    note = result.export_prediction_note
    if note and (result.export_predicted_db is None or "does not model" in note):
        causes.append(note)
    if not causes:
        causes.append(
            f"{result.library}'s kernels differ from the simulation (rounding, activation granularity or range); "
            "the local SQNR per module (report --sensitivity) shows which modules lose most"
        )
    return (
        f"achieved {result.achieved_db:.2f} dB is {result.gap_db:+.2f} dB from {which} ({result.reference_db:.2f} dB), "
        f"more than {GAP_DB:g} dB: " + "; ".join(causes)
    )
