"""Under-calibrated: a weighted layer whose calibrated input range comes from too few rows.

A row is one value per input channel: a token of a (B, T, C) input, a sample
of (N, C), a pixel of (N, C, H, W). Over all calibration calls the input point
counts ``rows`` (see ``PointStats.rows``); a module is flagged when::

    0 < rows < min_rows      (default 64)

A static int8 scheme quantizes every future input with the range seen here: a
range taken from a handful of rows (a mixture-of-experts expert the router sent
one token to, a branch taken once) says little about the inputs it will get.
The recommended plan then picks a scheme that needs no calibrated range
(dynamic, where the layer has a dynamic kernel, or weight-only) or keeps the
layer float, and says why. A layer never called gets no verdict (for an
expert: never routed to during calibration).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tui_quantreport.engine.defaults import MIN_ROWS
from tui_quantreport.engine.detectors.base import Detector, EvaluationContext, Judgement, Unjudged
from tui_quantreport.engine.layout import why_not_judged
from tui_quantreport.engine.module_info import is_expert
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import Evidence, Status
from tui_quantreport.engine.stats import Point, PointRequest

#: Rows below which a calibrated input range is not trusted (the detector's default ``min_rows``).
DEFAULT_MIN_ROWS = MIN_ROWS


def never_called(class_name: str, fqn: str) -> str:
    """Why a module has no calibrated range, in words that fit it (an expert: never routed to)."""
    if is_expert(fqn):
        return (
            f"{class_name} '{fqn}' was never routed to during calibration (the router sent it no token), "
            "so nothing is known about its inputs."
        )
    return f"{class_name} '{fqn}' was never called during calibration."


@dataclass(frozen=True)
class RowCount:
    """One module's rows seen over calibration, and its calls."""

    class_name: str
    rows: int
    calls: int


class UnderCalibratedDetector(Detector[RowCount]):
    name = "under_calibrated_detector"
    aliases = ("under_calibrated", "rows")
    title = "Under-calibrated"
    glyph = "U"
    order = 60
    description = "rows (tokens, samples, pixels) seen at the input of Linear, Conv and other layers"
    noun = "layers"
    params = (
        Param(
            "min_rows",
            DEFAULT_MIN_ROWS,
            "a layer whose input saw fewer rows than this during calibration gets no static range",
            kind="int",
            low=1,
        ),
    )
    ROWS = "rows"
    CALLS = "calls"
    MIN_ROWS = "min_rows"
    module_param_keys = (MIN_ROWS,)
    report_keys = (ROWS, CALLS, MIN_ROWS)

    def targets(self, catalog: ModelCatalog) -> list[str]:
        return [fqn for fqn, kind in catalog.kinds.items() if kind.in_axis is not None]

    def observations(self, catalog: ModelCatalog, params: Mapping[str, Any]) -> dict[Point, PointRequest]:
        request = PointRequest.of()
        return {(fqn, "pre"): request for fqn in self.targets(catalog)}

    def measure(self, ctx: EvaluationContext, fqn: str, params: Mapping[str, Any]) -> RowCount | Unjudged:
        class_name = ctx.catalog.modules[fqn].class_name
        point = ctx.stats.point(fqn, "pre")
        empty: dict[str, Any] = {self.ROWS: None, self.CALLS: 0}
        blocked = why_not_judged(ctx.catalog, ctx.stats, fqn, "pre")
        if blocked is not None:
            return Unjudged(Status(blocked[0]), blocked[1], empty)
        if point is None or point.calls == 0:
            return Unjudged(Status.NOT_OBSERVED, never_called(class_name, fqn), empty)
        if point.rows is None:
            return Unjudged(
                Status.NOT_APPLICABLE,
                "These statistics were saved without row counts: calibrate again to count them.",
                {self.ROWS: None, self.CALLS: point.calls},
            )
        return RowCount(class_name, point.rows, point.calls)

    def verdict(self, measured: RowCount, params: Mapping[str, Any]) -> Status:
        return Status.RECOMMEND if 0 < measured.rows < params["min_rows"] else Status.OK

    def judge(self, fqn: str, m: RowCount, params: Mapping[str, Any], status: Status) -> Judgement:
        min_rows = params["min_rows"]
        values = {self.ROWS: m.rows, self.CALLS: m.calls, self.MIN_ROWS: min_rows}
        evidence = (Evidence("rows seen in calibration", m.rows, f"< {min_rows}", status is Status.RECOMMEND),)
        rows = f"{m.rows} row{'s' if m.rows != 1 else ''}"
        calls = f"{m.calls} call{'s' if m.calls != 1 else ''}"
        if status is Status.OK:
            return Judgement(
                "Enough calibration rows",
                f"The input of {m.class_name} '{fqn}' saw {rows} in {calls} during calibration (at least {min_rows}).",
                values,
                evidence,
            )
        who = "the router sent it" if is_expert(fqn) else "its input saw"
        return Judgement(
            f"Under-calibrated: {rows}",
            f"During calibration {who} only {rows} ({calls}), fewer than {min_rows}: a static int8 range "
            f"taken from so few rows says little about the inputs {m.class_name} '{fqn}' will get. Use a "
            "scheme that needs no calibrated range (dynamic, where there is a dynamic kernel, or "
            "weight-only), keep it float, or calibrate on more data that reaches it.",
            values,
            evidence,
        )
