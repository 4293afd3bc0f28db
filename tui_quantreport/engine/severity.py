"""Severity from measurement: what each finding's advice gains, in dB of local SQNR.

:func:`measure` runs the quantization simulation (``engine/quantsim``) once per
calibration: local SQNR per module and scheme, the advice variants, the
recommended plan's end-to-end SQNR, optionally one-at-a-time sensitivity. It
returns plain data (:class:`~.report.Measured`).

:func:`assess` attaches a :class:`~.report.Severity` to every finding of a
report from that data, without touching the model (so it runs after every
threshold change). The gain of a finding is the local SQNR with its advice
applied minus without, at the module that quantizes the tensor:

==================================  ==================================================
per_channel_detector                static_per_channel - static_per_tensor
dynamic_vs_static_detector          dynamic - static_per_channel
input_weight_equalization_detector  equalized (static_per_channel after equalization
                                    with s_c = sqrt(r_w,c / r_x,c)) - static_per_channel
outlier_detector                    clipped (static_per_channel with the input range
                                    clipped to its 0.01%/99.99% percentiles)
                                    - static_per_channel, at the Linear/Conv that reads
                                    the flagged tensor
==================================  ==================================================

A recommendation gaining at least ``min_gain_db`` (default 1 dB) is ``major``;
below, ``minor`` (shown, not badged), and its note says the measurement does not
support it; so is an outlier finding on a tensor no quantizable module reads
(its range is never used). A recommendation whose tensor is also flagged on the module that
quantizes it is a ``duplicate``, reported there once. One the simulation cannot
measure (SQNR undefined: the module was never called, NaN data, ...) is
``unmeasured`` and keeps its badge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS, SCHEME_TITLES
from tui_quantreport.engine.defaults import MIN_GAIN_DB
from tui_quantreport.engine.report import (
    Level,
    Measured,
    ModuleError,
    Report,
    Severity,
    Status,
)

DEFAULT_MIN_GAIN_DB = MIN_GAIN_DB


@dataclass(frozen=True)
class Advice:
    """How one detector's advice is measured: its words, the base variant and the advised one."""

    words: str
    base: str
    advised: str


ADVICE: dict[str, Advice] = {
    "per_channel_detector": Advice("per-channel weights", "static_per_tensor", "static_per_channel"),
    "dynamic_vs_static_detector": Advice("dynamic quantization", "static_per_channel", "dynamic"),
    "input_weight_equalization_detector": Advice("input-weight equalization", "static_per_channel", "equalized"),
    "outlier_detector": Advice("a percentile-clipped input range", "static_per_channel", "clipped"),
}

#: Detectors whose finding sits on a tensor read by another module (followed to the module that quantizes it).
TENSOR_DETECTORS = ("outlier_detector",)


def signed_db(value: float) -> str:
    """A gain in dB with its sign and one decimal, never "-0.0" (a gain that rounds to nothing is "+0.0")."""
    rounded = round(value, 1)
    return f"{rounded + 0.0:+.1f}" if rounded != 0 else "+0.0"


def measure(
    analysis: Any,
    *,
    sensitivity: bool = False,
    plan: Any = None,
    min_gain_db: float = DEFAULT_MIN_GAIN_DB,
    progress: Callable[[str, int, int | None], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    sensitivity_of: Callable[..., Any] | None = None,
) -> Measured:
    """Run the simulation on an :class:`~.quantsim.ErrorAnalysis` and keep the numbers as plain data.

    ``progress(stage, done, total)`` with stage "local", "plan" or "sensitivity". ``sensitivity_of``
    measures the sensitivity in place of ``analysis.sensitivity`` (the same signature: split across
    torchrun ranks, say).
    """

    def stage(name: str):
        return None if progress is None else (lambda done, total: progress(name, done, total))

    local = analysis.local_measurements(stage("local"), should_cancel, advice=True)
    plan = plan if plan is not None else analysis.recommended_plan(min_gain_db)
    if progress is not None:
        progress("plan", 0, 1)
    plan_result = analysis.plan_sqnr(plan, should_cancel)
    per_output = analysis.plan_output_sqnr(plan, should_cancel)
    if progress is not None:
        progress("plan", 1, 1)
    sens = (sensitivity_of or analysis.sensitivity)(plan, stage("sensitivity"), should_cancel) if sensitivity else {}
    modules: dict[str, ModuleError] = {}
    for fqn, m in local.items():
        reasons = {s: v.reason for s, v in m.sqnr.items() if v.db is None}
        for key, value in (("clipped", m.clipped), ("equalized", m.equalized), ("sensitivity", sens.get(fqn))):
            if value is not None and value.db is None:
                reasons[key] = value.reason
        s = sens.get(fqn)
        modules[fqn] = ModuleError(
            fqn=fqn,
            sqnr_db={k: v.db for k, v in m.sqnr.items()},
            reasons=reasons,
            clipped_db=m.clipped.db if m.clipped is not None else None,
            equalized_db=m.equalized.db if m.equalized is not None else None,
            sensitivity_db=s.db if s is not None else None,
            recommended_scheme=plan.modules.get(fqn, ""),
            range_source=m.range_source,
            scheme_reason=getattr(analysis, "scheme_reasons", {}).get(fqn, ""),
            rows=m.rows,
            dynamic_kernel=_dynamic_kernel(analysis, fqn),
            bits_per_weight=analysis.bits_per_weight(fqn),
        )
    size = analysis.plan_size(plan)
    plan = plan.with_prediction(plan_result.db, len(analysis.probes))
    dataflow = analysis.dataflow
    return Measured(
        probe_batches=len(analysis.probes),
        modules=modules,
        quantizer_of=dict(dataflow.quantizer_of) if dataflow is not None else {},
        plan=dict(plan.modules),
        plan_sqnr_db=plan_result.db,
        plan_reason=plan_result.reason,
        plan_data=plan.to_json_data(),
        sensitivity_measured=sensitivity,
        plan_output_sqnr_db={name: v.db for name, v in per_output.items()},
        output_key=getattr(analysis, "output_key", None),
        reference=getattr(analysis, "reference", "the float model"),
        target=getattr(analysis, "target_name", ""),
        refused={fqn: dict(r) for fqn, r in analysis.refusals().items()} if hasattr(analysis, "refusals") else {},
        plan_size_mb=size.mb,
        float_size_mb=size.float_mb,
        plan_bits_per_weight=size.bits_per_weight,
        schemes={name: scheme_json(name) for name in analysis.schemes},
    )


def _dynamic_kernel(analysis: Any, fqn: str) -> bool:
    target = getattr(analysis, "targets", {}).get(fqn)
    return target is None or analysis.backend in target.kind.dynamic_backends


def scheme_json(name: str) -> dict[str, Any]:
    """A scheme's facts as the report's JSON gives them."""
    facts = SCHEME_FACTS[name]
    return {
        "title": SCHEME_TITLES[name],
        **asdict(facts),
        "recommended_by_default": facts.preference is not None,
        "note": facts.runs_note or None,
    }


def assess(report: Report, measured: Measured | None, min_gain_db: float = DEFAULT_MIN_GAIN_DB) -> Report:
    """``report`` with a severity on every finding of a measured detector. Pure, no model access."""
    if measured is None:
        return replace(report, measured=None, severities={}, min_gain_db=min_gain_db)
    order = {fqn: i for i, fqn in enumerate(report.modules)}
    severities: dict[tuple[str, str], Severity] = {}
    for name, det in report.detectors.items():
        advice = ADVICE.get(name)
        if advice is None:
            continue
        statuses = det.findings.statuses
        tensor_level = name in TENSOR_DETECTORS
        canonical = _canonical(statuses, measured, order) if tensor_level else {}
        for fqn, status in statuses.items():
            subject = measured.quantizer_of.get(fqn) if tensor_level else fqn
            if tensor_level and fqn in measured.modules:
                subject = fqn
            severities[(name, fqn)] = _severity(
                advice,
                status,
                fqn,
                subject,
                measured,
                min_gain_db,
                canonical.get(fqn),
            )
    return replace(report, measured=measured, severities=severities, min_gain_db=min_gain_db)


def _canonical(statuses: Mapping[str, Status], measured: Measured, order: Mapping[str, int]) -> dict[str, str]:
    """For recommended findings on one tensor: fqn -> the module it is reported on, for duplicates only."""
    groups: dict[str, list[str]] = {}
    for fqn, status in statuses.items():
        if status is not Status.RECOMMEND:
            continue
        subject = fqn if fqn in measured.modules else measured.quantizer_of.get(fqn)
        if subject is not None:
            groups.setdefault(subject, []).append(fqn)
    moved: dict[str, str] = {}
    for subject, flagged in groups.items():
        if len(flagged) < 2:
            continue
        keep = subject if subject in flagged else max(flagged, key=lambda f: order.get(f, -1))
        for fqn in flagged:
            if fqn != keep:
                moved[fqn] = keep
    return moved


def _severity(
    advice: Advice,
    status: Status,
    fqn: str,
    subject: str | None,
    measured: Measured,
    min_gain_db: float,
    reported_on: str | None,
) -> Severity:
    recommended = status is Status.RECOMMEND
    where = "" if subject in (None, fqn) else f" at '{subject}', the module that quantizes this tensor,"
    module = measured.modules.get(subject) if subject is not None else None
    if subject is None:
        # No quantizable module reads this tensor: in a plan that quantizes the weighted
        # layers, its range is never used, so its outliers cost nothing there.
        level = Level.MINOR if recommended else Level.NONE
        return Severity(
            level,
            None,
            "Nothing to gain in a plan: no weighted module the simulation quantizes reads this tensor "
            "(directly or through ReLU, dropout, pooling or flatten), so its range is never used"
            + (" (minor)." if recommended else "."),
            None,
            None,
        )
    if module is None:
        level = Level.UNMEASURED if recommended else Level.NONE
        return Severity(level, None, f"Not measured: '{subject}' was not simulated.", subject, None)
    if advice.advised == "dynamic" and not module.dynamic_kernel:
        # Advice that cannot apply is not offered as a gain, whatever the simulation says.
        level = Level.UNMEASURED if recommended else Level.NONE
        return Severity(
            level,
            None,
            f"Not applicable{where}: there is no dynamic int8 kernel for this layer on this backend "
            "(convolutions have none), so dynamic quantization is not a choice here.",
            subject,
            None,
        )
    base, advised = module.value(advice.base), module.value(advice.advised)
    if base is None or advised is None:
        missing = advice.base if base is None else advice.advised
        why = module.reasons.get(missing, "SQNR undefined")
        level = Level.UNMEASURED if recommended else Level.NONE
        return Severity(level, None, f"Not measured{where}: {why}.", subject, None)
    gain = advised - base
    numbers = f"{advice.words} takes the local SQNR{where} from {base:.1f} to {advised:.1f} dB ({signed_db(gain)} dB)"
    if reported_on is not None:
        return Severity(
            Level.DUPLICATE,
            gain,
            f"Measured: {numbers}. The same tensor is reported on '{reported_on or '(model)'}'.",
            subject,
            reported_on,
        )
    if not recommended:
        note = f"Measured: {numbers}."
        contradicts = gain >= min_gain_db
        if contradicts:
            note += f" The detector does not flag it, but the measurement gains at least {min_gain_db:g} dB."
        return Severity(Level.NONE, gain, note, subject, None, contradicts)
    if gain >= min_gain_db:
        return Severity(
            Level.MAJOR, gain, f"Measured: {numbers}, at least the {min_gain_db:g} dB threshold.", subject, None
        )
    return Severity(
        Level.MINOR,
        gain,
        f"Measured: {numbers}, below the {min_gain_db:g} dB threshold: the measurement does not support "
        "this recommendation (minor).",
        subject,
        None,
    )


def severity_order(report: Report) -> list[str]:
    """The module order ``n`` / ``N`` walk: most severe first (see :meth:`Report.walk_order`)."""
    return report.walk_order()


# Plain data for the exporters.


def finding_json(report: Report, detector: str, fqn: str) -> dict[str, Any]:
    """The keys a measured report adds to one finding's JSON entry (empty when not measured)."""
    sev = report.severity(detector, fqn)
    if sev is None:
        return {}
    return {
        "gain_db": sev.gain_db,
        "severity": sev.level.value,
        "measured_on": sev.measured_on,
        "reported_on": sev.reported_on,
        "measurement": sev.note,
    }


def measured_json(report: Report) -> dict[str, Any] | None:
    """The report's "measured" section: per-module SQNR, sensitivity, the plan and its end-to-end SQNR."""
    m = report.measured
    if m is None:
        return None
    modules = {}
    for fqn, e in m.modules.items():
        modules[fqn] = {
            "sqnr_db": dict(e.sqnr_db),
            "clipped_sqnr_db": e.clipped_db,
            "equalized_sqnr_db": e.equalized_db,
            "sensitivity_db": e.sensitivity_db,
            "recommended_scheme": e.recommended_scheme,
            "range_source": e.range_source,
            "undefined": dict(e.reasons),
            "rows": e.rows,
            "scheme_reason": e.scheme_reason or None,
            "bits_per_weight": dict(e.bits_per_weight),
        }
    plan = dict(m.plan_data)
    plan["origin"] = m.plan_origin
    plan["sqnr_db"] = m.plan_sqnr_db
    plan["sqnr_undefined"] = m.plan_reason or None
    plan["sqnr_per_output_db"] = dict(m.plan_output_sqnr_db)
    plan["output_key"] = m.output_key
    return {
        "probe_batches": m.probe_batches,
        "reference": m.reference,
        "min_gain_db": report.min_gain_db,
        "sensitivity": m.sensitivity_measured,
        "target": m.target or None,
        "target_refused": [
            {"module": fqn, "scheme": scheme, "reason": reason}
            for fqn, schemes in m.refused.items()
            for scheme, reason in schemes.items()
        ],
        "modules": modules,
        "plan": plan,
        "plan_size": {
            "mb": m.plan_size_mb,
            "float_mb": m.float_size_mb,
            "bits_per_weight": m.plan_bits_per_weight,
        },
        "schemes": {name: dict(facts) for name, facts in m.schemes.items()},
        "top_findings": [
            {"module": fqn, "detector": det, "gain_db": gain, "severity": level}
            for fqn, det, gain, level in top_findings(report)
        ],
        "warning": m.warning or None,
        **({"planner": dict(m.planner)} if m.planner is not None else {}),
    }


def top_findings(report: Report, limit: int | None = None) -> list[tuple[str, str, float | None, str]]:
    """Recommendations by measured gain, largest first: (module, detector, gain_db, severity level).

    Duplicates are left out; unmeasured ones come last.
    """
    rows = []
    order = {fqn: i for i, fqn in enumerate(report.modules)}
    for (det, fqn), sev in report.severities.items():
        if sev.level in (Level.MAJOR, Level.MINOR, Level.UNMEASURED):
            rows.append((fqn, det, sev.gain_db, sev.level.value))
    rows.sort(key=lambda r: (r[2] is None, -(r[2] or 0.0), order.get(r[0], 0)))
    return rows[:limit] if limit is not None else rows
