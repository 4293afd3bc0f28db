"""The detector base class: what a detector observes and how it judges.

A detector is one file in this package holding one :class:`Detector` subclass.
It states

- its ``name`` (the report key), a ``title`` and a one-character ``glyph`` for
  badges, and a ``description``;
- its ``params``: each a :class:`~tui_quantreport.engine.params.Param` with a
  default and a valid range;
- :meth:`Detector.targets`: which modules it judges;
- :meth:`Detector.observations`: which points it needs observed during
  calibration (a module's input, "pre", or output, "post"), and what to record
  there;
- how it turns kept statistics into one
  :class:`~tui_quantreport.engine.report.Finding` per target module, in two
  steps: :meth:`Detector.measure` derives the numbers that no threshold
  changes (a percentile ratio, an equalization metric), and
  :meth:`Detector.judge` holds them against the thresholds.

Both steps are pure: they read the catalog (static facts about the model) and
the stats snapshot, never the model or the data. Measurements are cached per
stats snapshot, so a changed threshold costs only the comparisons.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from tui_quantreport.engine.errors import ParamError
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import DetectorReport, Finding, Findings, Status
from tui_quantreport.engine.stats import Point, PointRequest, Stats


@dataclass(frozen=True)
class EvaluationContext:
    """Everything a detector may read: static model facts and calibration stats."""

    catalog: ModelCatalog
    stats: Stats
    ch_axis: int | None = None


@dataclass(frozen=True)
class Unjudged:
    """A measurement that ends in no verdict: not observed, or not applicable, and why."""

    status: Status
    reason: str
    values: dict[str, Any]


#: Measurements per stats snapshot: {(detector, catalog id, axis, observed params): {fqn: measure}}.
_MEASURES: "weakref.WeakKeyDictionary[Stats, dict[tuple, dict[str, Any]]]" = weakref.WeakKeyDictionary()


def already_quantized(finding: Finding, class_name: str, how: str) -> Finding:
    """The finding on a module that is already quantized: not applicable, numbers kept."""
    return replace(
        finding,
        status=Status.NOT_APPLICABLE,
        headline="Already quantized",
        reason=f"{class_name} '{finding.module}' is already quantized ({how}); nothing is recommended for it. "
        "The numbers are what calibration measured.",
        evidence=tuple(replace(e, decides=False) for e in finding.evidence),
    )


class Detector(ABC):
    """Base class of the four (and any future) detectors."""

    name: ClassVar[str]
    title: ClassVar[str]
    glyph: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    #: What the summary counts, e.g. "leaf modules".
    noun: ClassVar[str] = "modules"
    #: Whether the detector needs data observed during calibration.
    observes: ClassVar[bool] = True
    #: Parameters repeated in every module's values (the report's per-module keys).
    module_param_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def param(cls, name: str) -> Param:
        for p in cls.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in cls.params) or "none"
        raise ParamError(f"{cls.name} has no parameter {name!r} (its parameters: {known})")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {p.name: p.default for p in cls.params}

    @classmethod
    def validate(cls, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``values``, each parsed and range-checked."""
        resolved = cls.defaults()
        for key, value in (values or {}).items():
            resolved[key] = cls.param(key).parse(value, cls.name)
        return resolved

    @abstractmethod
    def targets(self, catalog: ModelCatalog) -> list[str]:
        """The fqns of the modules this detector judges, in tree order."""

    def observations(self, catalog: ModelCatalog, params: Mapping[str, Any]) -> dict[Point, PointRequest]:
        """The points to observe during calibration. Default: none."""
        return {}

    @abstractmethod
    def measure(self, ctx: EvaluationContext, fqn: str, params: Mapping[str, Any]) -> Any:
        """Threshold-independent numbers for module ``fqn``, or an :class:`Unjudged`.

        May read only the parameters marked ``observed``: the result is cached
        per stats snapshot and reused for every threshold.
        """

    @abstractmethod
    def verdict(self, measured: Any, params: Mapping[str, Any]) -> Status:
        """The status :meth:`judge` would give, computed cheaply (no text)."""

    @abstractmethod
    def judge(self, fqn: str, measured: Any, params: Mapping[str, Any]) -> Finding:
        """Hold one module's measurement against the thresholds in ``params``, in words and numbers."""

    def extra(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Detector-level values for the report besides ``params`` (e.g. the backend)."""
        return {}

    def evaluate(self, ctx: EvaluationContext, params: Mapping[str, Any]) -> DetectorReport:
        """One finding per target module, from cached measurements.

        Verdicts are computed now; each finding's words and numbers when first read.
        """
        measurements = self.measurements(ctx, params)
        statuses = {
            fqn: m.status if isinstance(m, Unjudged) else self.verdict(m, params)
            for fqn, m in measurements.items()
        }
        # A module already quantized (torchao weights, a converted graph) is not recommended
        # to be quantized again: its finding keeps the numbers but is "not applicable".
        quantized = {fqn: ctx.catalog.modules[fqn].quantized for fqn in measurements if ctx.catalog.modules[fqn].quantized}
        for fqn in quantized:
            statuses[fqn] = Status.NOT_APPLICABLE

        def build(fqn: str) -> Finding:
            measured = measurements[fqn]
            if isinstance(measured, Unjudged):
                values = {**measured.values, **{k: params[k] for k in self.module_param_keys}}
                finding = self.unjudged(fqn, measured.status, measured.reason, values)
            else:
                finding = self.judge(fqn, measured, params)
            if fqn in quantized:
                finding = already_quantized(finding, ctx.catalog.modules[fqn].class_name, quantized[fqn])
            return finding

        return self.report(params, Findings(statuses, build), self.noun, **self.extra(params))

    def measurements(self, ctx: EvaluationContext, params: Mapping[str, Any]) -> dict[str, Any]:
        observed = tuple(params[p.name] for p in self.params if p.observed)
        key = (self.name, id(ctx.catalog), ctx.ch_axis, observed)
        cache = _MEASURES.setdefault(ctx.stats, {})
        if key not in cache:
            cache[key] = {fqn: self.measure(ctx, fqn, params) for fqn in self.targets(ctx.catalog)}
        return cache[key]

    # Helpers shared by the detectors.

    def report(self, params: Mapping[str, Any], findings: Findings, noun: str, **extra) -> DetectorReport:
        """Wrap findings with a one-line summary: how many of how many were flagged."""
        statuses = findings.statuses
        judged = [fqn for fqn, s in statuses.items() if s in (Status.RECOMMEND, Status.OK)]
        flagged = [fqn for fqn, s in statuses.items() if s is Status.RECOMMEND]
        skipped = len(statuses) - len(judged)
        if not statuses:
            summary = f"No modules this detector applies to ({self.description})."
        elif flagged:
            summary = f"{len(flagged)} of {len(judged)} {noun} would benefit: " + ", ".join(
                fqn or "(model)" for fqn in flagged[:5]
            ) + (", …" if len(flagged) > 5 else "") + "."
        else:
            summary = f"No changes recommended for the {len(judged)} {noun} judged."
        if skipped:
            summary += f" {skipped} not judged (not observed or not applicable)."
        return DetectorReport(
            name=self.name,
            title=self.title,
            glyph=self.glyph,
            params=dict(params),
            summary=summary,
            findings=findings,
            extra=extra,
        )

    def unjudged(self, fqn: str, status: Status, reason: str, values: dict[str, Any]) -> Finding:
        headline = "Not observed during calibration" if status is Status.NOT_OBSERVED else "Not applicable"
        return Finding(self.name, fqn, status, headline, reason, values)
