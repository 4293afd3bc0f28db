"""The budgeted planner's result as people read it: the frontier drawn as text, Markdown, plain text.

Reads only the plain JSON data of ``measured.planner`` (see docs/planner.md): no torch, no
textual. Every number may be missing (None) or non-finite (NaN, +-inf) and is written as such
("—", "exact", "nan"), never raising; names from the model are shown literally
(:func:`printable` / :func:`markdown_code`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tui_quantreport.engine.escape import markdown_code, markdown_text, printable

BAR = "█"


@dataclass(frozen=True)
class FrontierRow:
    """One frontier point as the plot draws it."""

    index: int
    bits_per_weight: float | None
    size_mb: float | None
    predicted_db: float | None
    simulated_db: float | None
    uniform: str | None
    chosen: bool
    exact: bool

    @property
    def label(self) -> str:
        if self.chosen:
            return "budget plan"
        return f"uniform {printable(self.uniform)}" if self.uniform else "planned"


def number(value: Any) -> float | None:
    """A float from JSON-ish data, or None (bools and non-numbers are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def fmt(value: float | None, digits: int = 1, none: str = "—") -> str:
    """A number written safely: "—" for None, "nan", "inf", "-inf" as such."""
    if value is None:
        return none
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def frontier_rows(planner: Mapping[str, Any] | None) -> list[FrontierRow]:
    """The frontier points (by size) with the budgeted plan marked where it is one of them or added."""
    if not planner:
        return []
    points = planner.get("frontier") or []
    chosen = planner.get("plan") or None
    rows: list[FrontierRow] = []
    chosen_modules = chosen.get("modules") if isinstance(chosen, Mapping) else None
    found = False
    for i, p in enumerate(points):
        if not isinstance(p, Mapping):
            continue
        is_chosen = chosen_modules is not None and p.get("modules") == chosen_modules
        found = found or is_chosen
        rows.append(_row(i, p, is_chosen))
    if isinstance(chosen, Mapping) and not found:
        rows.append(_row(len(points), chosen, True))
    rows.sort(key=lambda r: (r.bits_per_weight is None, r.bits_per_weight or 0.0))
    return rows


def _row(index: int, p: Mapping[str, Any], chosen: bool) -> FrontierRow:
    simulated = number(p.get("simulated_sqnr_db"))
    undefined = str(p.get("simulated_undefined") or "")
    return FrontierRow(
        index,
        number(p.get("bits_per_weight")),
        number(p.get("size_mb")),
        number(p.get("predicted_sqnr_db")),
        simulated,
        p.get("uniform") if isinstance(p.get("uniform"), str) else None,
        chosen,
        simulated is None and "exactly" in undefined,
    )


def plot_lines(rows: Sequence[FrontierRow], width: int = 30) -> list[str]:
    """One text line per point: size, a bar as long as its end-to-end SQNR, the numbers, its kind."""
    finite = [r.simulated_db for r in rows if r.simulated_db is not None and math.isfinite(r.simulated_db)]
    top = max([v for v in finite if v > 0], default=1.0)
    width = max(width, 1)
    lines = []
    for r in rows:
        value = r.simulated_db
        if r.exact:
            filled, shown = width, "exact"
        elif value is None or not math.isfinite(value):
            filled, shown = 0, fmt(value)
        else:
            filled, shown = max(0, min(width, round(width * value / top))), fmt(value) + " dB"
        bar = BAR * filled + " " * (width - filled)
        mark = "▶" if r.chosen else " "
        lines.append(
            f"{mark} {fmt(r.bits_per_weight, 2):>6} bpw {fmt(r.size_mb, 3):>9} MB |{bar}| {shown:>9}"
            f"  (predicted {fmt(r.predicted_db)})  {r.label}"
        )
    return lines


def planner_summary(planner: Mapping[str, Any] | None) -> str:
    """ "Budget 12 bits per weight: 11.3 bpw, 0.146 MB, 25.8 dB end to end (predicted 25.2 dB)"."""
    if not planner or not isinstance(planner.get("plan"), Mapping):
        return ""
    plan = planner["plan"]
    budget = planner.get("budget") or {}
    unit = {"bpw": " bits per weight", "mb": " MB", "sqnr": " dB minimum SQNR"}.get(str(budget.get("kind")), "")
    value = number(budget.get("value"))
    simulated = number(plan.get("simulated_sqnr_db"))
    return (
        f"budget {fmt(value, 4).rstrip('0').rstrip('.')}{unit}: {fmt(number(plan.get('bits_per_weight')), 2)} bpw, "
        f"{fmt(number(plan.get('size_mb')), 3)} MB, end-to-end SQNR "
        + (f"{fmt(simulated)} dB" if simulated is not None else printable(str(plan.get("simulated_undefined") or "—")))
        + f" (predicted {fmt(number(plan.get('predicted_sqnr_db')))} dB"
        + _basis(plan)
        + (f", {planner.get('refined_swaps')} refinement swaps" if planner.get("refined_swaps") else "")
        + ")"
    )


def _basis(plan: Mapping[str, Any]) -> str:
    """ ", superposed errors; additive noise 8.8 dB" when the prediction is not the additive estimate."""
    basis = plan.get("prediction")
    additive = number(plan.get("additive_sqnr_db"))
    if basis == "superposed errors":
        return f" from the units' superposed errors; additive noise {fmt(additive)} dB"
    return ", additive noise" if basis == "additive noise" else ""


#: What "predicted" is in the frontier plot (docs/planner.md, "Simulation and refinement").
PREDICTION_WORDS = (
    "Predicted: the plan's first-order output error, the units' one-at-a-time output errors added as "
    "vectors (the additive noise where a unit's error was not kept); every point is simulated."
)


def planner_markdown(planner: Mapping[str, Any] | None) -> list[str]:
    """The planner's section of the Markdown report: the budgeted plan, the frontier, the fused cost."""
    if not planner:
        return []
    lines = ["", "## Plan under a budget", ""]
    summary = planner_summary(planner)
    if summary:
        lines += [markdown_text(summary[0].upper() + summary[1:]) + ".", ""]
    fused = planner.get("fused_constraint")
    if isinstance(fused, Mapping) and fused.get("words"):
        lines += [markdown_text(str(fused["words"])[0].upper() + str(fused["words"])[1:]) + ".", ""]
    cache = planner.get("cache") or {}
    merged = number(cache.get("merged_units")) or 0
    lines += [
        f"Sensitivity: {planner.get('sensitivity_passes', 0)} one-at-a-time passes in "
        f"{fmt(number(planner.get('sensitivity_seconds')))} s"
        + (f" (each unit's schemes and probe batches merged into one pass: {merged:.0f} units)" if merged else "")
        + (
            f", re-run from the changed module on ({cache.get('cached_modules', 0)} modules' float outputs cached, "
            f"{fmt(number(cache.get('cached_mb')), 1)} MB)"
            if not cache.get("fallback")
            else f"; not cached: {markdown_text(str(cache.get('fallback')))}"
        )
        + ".",
        "",
        "### Frontier: end-to-end SQNR against size",
        "",
        "```",
        *plot_lines(frontier_rows(planner)),
        "```",
        "",
        PREDICTION_WORDS,
        "",
    ]
    plan = planner.get("plan")
    units = planner.get("units") or []
    if isinstance(plan, Mapping) and units:
        lines += [
            "### Budgeted plan by decision unit",
            "",
            "| unit | modules | scheme | one-at-a-time SQNR (dB) | fused because |",
            "| --- | ---: | --- | ---: | --- |",
        ]
        for u in units:
            if not isinstance(u, Mapping):
                continue
            scheme = str(u.get("scheme") or "—")
            sens = u.get("sensitivity_db") or {}
            lines.append(
                f"| {markdown_code(str(u.get('name', '')), in_table=True)} | {len(u.get('members') or [])} | "
                f"{markdown_text(scheme)} | {fmt(number(sens.get(scheme)))} | "
                f"{markdown_text(str(u.get('fused_because') or ''))} |"
            )
    return lines


def planner_text(planner: Mapping[str, Any] | None) -> list[str]:
    """The planner in the plain-text report: the budgeted plan and the frontier plot."""
    if not planner:
        return []
    lines = [""]
    summary = planner_summary(planner)
    if summary:
        lines.append(printable(summary[0].upper() + summary[1:]))
    fused = planner.get("fused_constraint")
    if isinstance(fused, Mapping) and fused.get("words"):
        lines.append(printable(str(fused["words"])))
    lines.append("Frontier (end-to-end SQNR against size):")
    lines += ["  " + line for line in plot_lines(frontier_rows(planner))]
    lines.append(PREDICTION_WORDS)
    return lines
