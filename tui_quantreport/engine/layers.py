"""The "which layers hurt" table as plain data: one row per quantizable module, sortable by any
column. Torch-free: built from the report, the measured local SQNR, the plan and the sensitivity.

A row holds the module, its class, the plan's scheme for it, its local SQNR under every scheme
and under the plan's scheme, its sensitivity (the plan's end-to-end SQNR with only it quantized),
the finding whose advice gains the most there and that gain, the finding's severity, and how
many calls and rows (tokens of a Linear, batch rows or pixels of a Conv) its input saw in
calibration. :func:`sort_rows` orders by a column, missing values last whichever
the direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tui_quantreport.engine.report import Report

#: The sortable columns: (key, header); besides these, every scheme's local SQNR.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("depth", "#"),
    ("module", "module"),
    ("kind", "kind"),
    ("scheme", "plan"),
    ("plan_db", "local dB"),
    ("sensitivity_db", "sensitivity"),
    ("advice", "best advice"),
    ("gain_db", "gain dB"),
    ("severity", "severity"),
    ("calls", "calls"),
    ("rows", "tokens/rows"),
)

#: The order severities sort in (most important first).
SEVERITY_ORDER = {"major": 0, "unmeasured": 1, "minor": 2, "duplicate": 3, "none": 4, "": 5}


@dataclass(frozen=True)
class LayerRow:
    depth: int  # position in the model's module order (network depth, as registered)
    module: str
    kind: str
    scheme: str  # the plan's scheme, or "float"
    plan_db: float | None  # local SQNR under the plan's scheme (float: None)
    sensitivity_db: float | None
    advice: str  # the title of the detector whose advice gains the most here ("" when none)
    gain_db: float | None
    severity: str  # that finding's severity level ("" when none)
    calls: int
    local_db: Mapping[str, float | None] = field(default_factory=dict)  # scheme -> local SQNR
    #: Rows its input saw in calibration (tokens of a Linear, rows or pixels of a Conv; None: not measured).
    rows: int | None = None

    def value(self, column: str) -> object:
        """The value a column sorts by (a scheme name as column: the local SQNR under it)."""
        if column in self.local_db and column not in {c for c, _ in COLUMNS}:
            return self.local_db[column]
        if column == "severity":
            return SEVERITY_ORDER.get(self.severity, 5) if self.severity else None
        return getattr(self, column)


def layer_rows(
    report: Report,
    local: Mapping[str, Mapping[str, float | None]],
    plan: Mapping[str, str],
    sensitivity: Mapping[str, float | None] | None = None,
) -> list[LayerRow]:
    """A row per module of ``plan`` (in model order): ``local`` is {fqn: {scheme: dB}}."""
    order = {fqn: i for i, fqn in enumerate(report.modules)}
    measured = report.measured.modules if report.measured is not None else {}
    best: dict[str, tuple[str, float | None, str]] = {}
    for (detector, fqn), severity in report.severities.items():
        if severity.level.value in ("none",):
            continue
        where = severity.measured_on or fqn
        title = report.detectors[detector].title if detector in report.detectors else detector
        for target in {fqn, where}:
            current = best.get(target)
            gain = severity.gain_db
            if current is None or (gain is not None and (current[1] is None or gain > current[1])):
                best[target] = (title, gain, severity.level.value)
    rows = []
    for fqn in sorted(plan, key=lambda f: order.get(f, len(order))):
        module = report.modules.get(fqn)
        scheme = plan[fqn]
        dbs = dict(local.get(fqn, {}))
        advice, gain, level = best.get(fqn, ("", None, ""))
        rows.append(
            LayerRow(
                depth=order.get(fqn, len(order)),
                module=fqn,
                kind=module.class_name if module is not None else "",
                scheme=scheme,
                plan_db=dbs.get(scheme) if scheme != "float" else None,
                sensitivity_db=sensitivity.get(fqn) if sensitivity is not None else None,
                advice=advice,
                gain_db=gain,
                severity=level,
                calls=module.calls if module is not None else 0,
                local_db=dbs,
                rows=measured[fqn].rows if fqn in measured else None,
            )
        )
    return rows


def sort_rows(rows: Sequence[LayerRow], column: str, descending: bool = False) -> list[LayerRow]:
    """``rows`` ordered by ``column`` (ties in model order); rows without a value come last."""
    present = [r for r in rows if r.value(column) is not None]
    missing = [r for r in rows if r.value(column) is None]
    present.sort(key=lambda r: r.depth)
    present.sort(key=lambda r: r.value(column), reverse=descending)  # type: ignore[arg-type, return-value]  # stable: ties in model order
    return present + sorted(missing, key=lambda r: r.depth)


def filter_rows(rows: Sequence[LayerRow], text: str) -> list[LayerRow]:
    """The rows whose module, kind, scheme, advice or severity contains ``text`` (case-insensitive)."""
    needle = text.strip().lower()
    if not needle:
        return list(rows)
    return [r for r in rows if any(needle in s.lower() for s in (r.module, r.kind, r.scheme, r.advice, r.severity))]


def limiting_candidates(
    plan: Mapping[str, str],
    local: Mapping[str, Mapping[str, float | None]],
    sensitivity: Mapping[str, float | None] | None = None,
    count: int = 3,
) -> list[str]:
    """The quantized modules most likely to limit the plan, likeliest first (at most ``count``):
    the lowest sensitivity when measured, else the lowest local SQNR under the plan's scheme."""
    quantized = [f for f, s in plan.items() if s != "float"]
    if sensitivity:
        measured = sorted((db, f) for f in quantized if (db := sensitivity.get(f)) is not None)
        if measured:
            return [f for _, f in measured[:count]]
    scored = sorted((db, f) for f in quantized if (db := local.get(f, {}).get(plan[f])) is not None)
    return [f for _, f in scored[:count]]
