"""The measured error in words: the Markdown and text sections of a report for its measurement
(the plan's end-to-end SQNR and size, what the target does not run, the top findings by measured
gain, local SQNR per module and scheme, the planner's frontier). Plain data in, lines out:
:func:`~.export.render` puts them in the report."""

from __future__ import annotations

from tui_quantreport.engine.core.scheme_facts import SCHEME_FACTS
from tui_quantreport.engine.escape import markdown_code, printable
from tui_quantreport.engine.planner_report import planner_markdown, planner_text
from tui_quantreport.engine.report import Measured, Report
from tui_quantreport.engine.severity import top_findings


def _plan_words(m: Measured) -> tuple[str, list[str]]:
    """The recommended plan's end-to-end SQNR in words (which outputs it reads, and each one's
    own when there are several), and the modules it keeps float."""
    plan_sqnr = f"{m.plan_sqnr_db:.1f} dB" if m.plan_sqnr_db is not None else m.plan_reason
    outputs = m.plan_output_sqnr_db
    if m.output_key is not None:
        plan_sqnr += f" (output '{printable(m.output_key)}')"
    elif len(outputs) > 1:
        each = ", ".join(f"{printable(name)} {_db(db)}" for name, db in list(outputs.items())[:8])
        more = f", {len(outputs) - 8} more" if len(outputs) > 8 else ""
        plan_sqnr += f" (all {len(outputs)} outputs, energy-weighted; each: {each}{more})"
    if m.reference != "the float model":
        plan_sqnr += f"; reference: {m.reference}"
    return plan_sqnr, [fqn for fqn, scheme in m.plan.items() if scheme == "float"]


def plan_title(m: Measured) -> str:
    """``Recommended plan`` or ``Edited plan`` (changed by the user from the recommended one)."""
    return "Edited plan" if m.plan_origin == "edited" else "Recommended plan"


def refused_groups(m: Measured) -> list[tuple[str, list[str], list[str]]]:
    """What the target does not run, grouped: (reason, schemes, modules), in first-seen order."""
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for fqn, schemes in m.refused.items():
        for scheme, reason in schemes.items():
            found = groups.setdefault(reason, ([], []))
            if scheme not in found[0]:
                found[0].append(scheme)
            if fqn not in found[1]:
                found[1].append(fqn)
    return [(reason, schemes, fqns) for reason, (schemes, fqns) in groups.items()]


def _target_words(m: Measured) -> str:
    return f" for target {m.target}" if m.target else ""


def measured_markdown(report: Report, limit: int = 10) -> list[str]:
    """Markdown lines: the plan's end-to-end SQNR, top findings by gain, per-module SQNR."""
    m = report.measured
    if m is None:
        return []
    plan_sqnr, kept = _plan_words(m)
    lines = [
        "",
        "## Measured quantization error",
        "",
        f"On {m.probe_batches} probe batches. {plan_title(m)}{_target_words(m)}: end-to-end SQNR {plan_sqnr}; "
        + (f"size {size_words(m)}; " if size_words(m) else "")
        + f"{len(m.plan) - len(kept)} of {len(m.plan)} modules quantized"
        + (f", kept float: {', '.join(markdown_code(f) for f in kept)}" if kept else "")
        + ".",
    ]
    groups = refused_groups(m)
    if groups:
        lines += ["", f"### What {m.target or 'the target'} does not run (never in the plan)", ""]
        for reason, schemes, fqns in groups:
            lines.append(f"- {', '.join(schemes)} on {', '.join(markdown_code(f) for f in fqns)}: {printable(reason)}")
    lines += [
        "",
        f"### Top findings by measured gain (threshold {report.min_gain_db:g} dB)",
        "",
        "| module | detector | gain (dB) | severity |",
        "| --- | --- | ---: | --- |",
    ]
    rows = top_findings(report, limit)
    for fqn, det, gain, level in rows:
        lines.append(f"| {markdown_code(fqn or '(model)', in_table=True)} | {det} | {_db(gain)} | {level} |")
    if not rows:
        lines.append("| (none) | | | |")
    reasons = _scheme_reasons(m, limit)
    if reasons:
        lines += ["", "Plan choices that are not the best-measured scheme:", ""]
        lines += [f"- {markdown_code(fqn)}: {markdown_code(why)}" for fqn, why in reasons]
    default = [s for s in SCHEME_FACTS if SCHEME_FACTS[s].preference is not None]
    header = " | ".join(default)
    lines += [
        "",
        "### Local SQNR per module (dB)",
        "",
        f"| module | {header} | sensitivity | plan |",
        "| --- |" + " ---: |" * (len(default) + 1) + " --- |",
    ]
    for fqn, e in m.modules.items():
        cells = " | ".join(_db(e.sqnr_db.get(s)) for s in default)
        scheme = m.plan.get(fqn, e.recommended_scheme)
        lines.append(f"| {markdown_code(fqn, in_table=True)} | {cells} | {_db(e.sensitivity_db)} | {scheme} |")
    return lines + _formats_markdown(m) + planner_markdown(m.planner)


def _formats_markdown(m: Measured) -> list[str]:
    """The number formats table: per module, each measured scheme's local SQNR and bits per weight."""
    names = [s for s in m.schemes if s in SCHEME_FACTS]
    if not names:
        return []
    lines = [
        "",
        "### Number formats: local SQNR (dB) @ bits per weight",
        "",
        "Every measured scheme per module (— @ —: the scheme cannot take the module; the reason is in the "
        "JSON report's `undefined`). "
        + "; ".join(f"{n}: {SCHEME_FACTS[n].runs_note}" for n in names if SCHEME_FACTS[n].cuda_only)
        + ("." if any(SCHEME_FACTS[n].cuda_only for n in names) else ""),
        "",
        "| module | " + " | ".join(names) + " |",
        "| --- |" + " ---: |" * len(names),
    ]
    for fqn, e in m.modules.items():
        cells = " | ".join(f"{_db(e.sqnr_db.get(n))} @ {_bpw(e.bits_per_weight.get(n))}" for n in names)
        lines.append(f"| {markdown_code(fqn, in_table=True)} | {cells} |")
    return lines


def _bpw(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def size_words(m: Measured) -> str:
    """The model's size under the plan in words ("" when not measured)."""
    if m.plan_size_mb is None:
        return ""
    bpw = f", {m.plan_bits_per_weight:.2f} bits per weight" if m.plan_bits_per_weight is not None else ""
    return f"{m.plan_size_mb:.3g} MB{bpw} (float: {m.float_size_mb:.3g} MB)"


def measured_text(report: Report, limit: int = 10) -> list[str]:
    m = report.measured
    if m is None:
        return []
    plan_sqnr, kept = _plan_words(m)
    lines = [
        "",
        f"Measured on {m.probe_batches} probe batches: {plan_title(m).lower()}{_target_words(m)} SQNR {plan_sqnr}"
        + (f", kept float: {', '.join(map(printable, kept))}" if kept else ""),
    ]
    groups = refused_groups(m)
    if groups:
        lines.append(f"Not run by {m.target or 'the target'} (never in the plan):")
        for reason, schemes, fqns in groups:
            lines.append(f"  {', '.join(schemes)} on {', '.join(map(printable, fqns))}: {printable(reason)}")
    for fqn, det, gain, level in top_findings(report, limit):
        lines.append(f"  {_db(gain):>7} dB  {level:<10}  {printable(fqn or '(model)')}  {det}")
    for fqn, why in _scheme_reasons(m, limit):
        lines.append(f"  plan: {printable(fqn)}: {printable(why)}")
    return lines + planner_text(m.planner)


def _scheme_reasons(m: Measured, limit: int) -> list[tuple[str, str]]:
    """(module, why the plan did not take its best scheme), the first ``limit``."""
    return [(fqn, e.scheme_reason) for fqn, e in m.modules.items() if e.scheme_reason][:limit]


def _db(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"
