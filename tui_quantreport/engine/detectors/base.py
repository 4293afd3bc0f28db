"""The detector base class: what a detector observes and how it judges.

A detector is one file in this package holding one :class:`Detector` subclass;
the registry (``detectors/__init__.py``) finds it there, so adding a detector
edits nothing else. The class declares

- ``name`` (the report key), ``aliases`` (short names for the command line,
  the first one shown in help and errors), a ``title``, a one-character
  ``glyph`` for badges (unique among detectors), a ``description``, and
  ``order`` (its place in reports and the sidebar);
- ``report_keys``: every key of its per-module values in the report, each
  also a class constant (``OUTLIERS_DETECTED = "outliers_detected"``);
- ``params``: each a :class:`~tui_quantreport.engine.params.Param` with a
  default and a valid range;
- :meth:`Detector.targets`: which modules it judges;
- :meth:`Detector.observations`: which points it needs observed during
  calibration (a module's input, "pre", or output, "post"), and what to record
  there.

It turns kept statistics into one
:class:`~tui_quantreport.engine.report.Finding` per target module in three
steps: :meth:`Detector.measure` derives the numbers that no threshold changes
(a frozen dataclass per detector, or :class:`Unjudged`), :meth:`Detector.verdict`
decides the module's status once, and :meth:`Detector.judge` explains that
status in words and numbers (a :class:`Judgement`, which carries no status of
its own, so the badge and the finding cannot disagree).

All steps are pure: they read the catalog (static facts about the model) and
the stats snapshot, never the model or the data. The caller
(:class:`~tui_quantreport.engine.evaluation.Evaluator`) keeps the measurements
per stats snapshot, so a changed threshold costs only the comparisons.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Generic, TypeVar

from tui_quantreport.engine.errors import ParamError
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import DetectorReport, Evidence, Finding, Findings, Series, Status
from tui_quantreport.engine.stats import Point, PointRequest, Stats


@dataclass(frozen=True)
class EvaluationContext:
    """Everything a detector may read: static model facts and calibration stats."""

    catalog: ModelCatalog
    stats: Stats
    ch_axis: Any = None  # AxisOverrides | None (see channel_axis.py): part of the measurement cache key


@dataclass(frozen=True)
class Unjudged:
    """A measurement that ends in no verdict: not observed, or not applicable, and why."""

    status: Status
    reason: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Judgement:
    """A verdict explained: the finding's words and numbers, without its status.

    :meth:`Detector.verdict` decides the status; :meth:`Detector.judge` returns
    this, and the base class puts the two together into a
    :class:`~tui_quantreport.engine.report.Finding`.
    """

    headline: str
    reason: str
    values: dict[str, Any]
    evidence: tuple[Evidence, ...] = ()
    series: tuple[Series, ...] = ()


#: A detector's threshold-independent numbers for one module (a frozen dataclass per detector).
M = TypeVar("M")


class Detector(ABC, Generic[M]):
    """Base class of the four (and any future) detectors."""

    name: ClassVar[str]
    #: Short names accepted on the command line; the first is the one shown in help and errors.
    aliases: ClassVar[tuple[str, ...]] = ()
    title: ClassVar[str]
    glyph: ClassVar[str]
    description: ClassVar[str]
    #: Place in reports, the sidebar and the command line's lists (ascending).
    order: ClassVar[int]
    params: ClassVar[tuple[Param, ...]] = ()
    #: Every key of a module's values in the report (class constants of the detector).
    report_keys: ClassVar[tuple[str, ...]] = ()
    #: What the summary counts, e.g. "leaf modules".
    noun: ClassVar[str] = "modules"
    #: Whether the detector needs data observed during calibration.
    observes: ClassVar[bool] = True
    #: Parameters repeated in every module's values (a subset of ``report_keys``).
    module_param_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def short_name(cls) -> str:
        """The name people type: the first alias, or the full name."""
        return cls.aliases[0] if cls.aliases else cls.name

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
    def measure(self, ctx: EvaluationContext, fqn: str, params: Mapping[str, Any]) -> M | Unjudged:
        """Threshold-independent numbers for module ``fqn``, or an :class:`Unjudged`.

        May read only the parameters marked ``observed``: the result is cached
        per stats snapshot and reused for every threshold.
        """

    @abstractmethod
    def verdict(self, measured: M, params: Mapping[str, Any]) -> Status:
        """The module's status under the thresholds in ``params``: decided here, and only here."""

    @abstractmethod
    def judge(self, fqn: str, measured: M, params: Mapping[str, Any], status: Status) -> Judgement:
        """Explain ``status`` (what :meth:`verdict` decided) for one module, in words and numbers."""

    def skipped(self, catalog: ModelCatalog) -> dict[str, str]:
        """Modules of the kind this detector judges that it leaves out, each with the reason."""
        return {}

    def extra(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Detector-level values for the report besides ``params`` (e.g. the backend)."""
        return {}

    def evaluate(
        self, ctx: EvaluationContext, params: Mapping[str, Any], measurements: Mapping[str, M | Unjudged] | None = None
    ) -> DetectorReport:
        """One finding per target module, from ``measurements`` (:meth:`measure_all`'s, kept or fresh).

        Statuses are decided now, once; each finding's words and numbers are
        built from that status when first read.
        """
        if measurements is None:
            measurements = self.measure_all(ctx, params)
        statuses = {
            fqn: m.status if isinstance(m, Unjudged) else self.verdict(m, params) for fqn, m in measurements.items()
        }
        # A module already quantized (torchao weights, a converted PT2E graph) is never
        # recommended to be quantized again: not applicable, with the numbers kept.
        quantized = {
            fqn: ctx.catalog.modules[fqn].quantized for fqn in measurements if ctx.catalog.modules[fqn].quantized
        }
        judged_as = dict(statuses)
        statuses.update(dict.fromkeys(quantized, Status.NOT_APPLICABLE))

        def build(fqn: str) -> Finding:
            measured = measurements[fqn]
            status = judged_as[fqn]
            if isinstance(measured, Unjudged):
                values = {**measured.values, **{k: params[k] for k in self.module_param_keys}}
                finding = self.unjudged(fqn, status, measured.reason, values)
            else:
                j = self.judge(fqn, measured, params, status)
                finding = Finding(self.name, fqn, status, j.headline, j.reason, j.values, j.evidence, j.series)
            if fqn in quantized:
                finding = already_quantized(finding, ctx.catalog.modules[fqn].class_name, quantized[fqn])
            return finding

        return self.report(
            params, Findings(statuses, build), self.noun, skipped=self.skipped(ctx.catalog), **self.extra(params)
        )

    def measure_all(self, ctx: EvaluationContext, params: Mapping[str, Any]) -> dict[str, M | Unjudged]:
        """Every target module's measurement: depends only on the stats and :meth:`observed_values`."""
        return {fqn: self.measure(ctx, fqn, params) for fqn in self.targets(ctx.catalog)}

    def observed_values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The values of the parameters marked ``observed``: what measurements depend on besides the stats."""
        return tuple(params[p.name] for p in self.params if p.observed)

    # Helpers shared by the detectors.

    def report(
        self,
        params: Mapping[str, Any],
        findings: Findings,
        noun: str,
        skipped: Mapping[str, str] | None = None,
        **extra,
    ) -> DetectorReport:
        """Wrap findings with a one-line summary: how many of how many were flagged, what was left out."""
        statuses = findings.statuses
        judged = [fqn for fqn, s in statuses.items() if s in (Status.RECOMMEND, Status.OK, Status.INFO)]
        flagged = [fqn for fqn, s in statuses.items() if s is Status.RECOMMEND]
        unjudged = len(statuses) - len(judged)
        if not statuses:
            summary = f"No modules this detector applies to ({self.description})."
        elif flagged:
            summary = (
                f"{len(flagged):,} of {len(judged):,} {noun} would benefit: "
                + ", ".join(fqn or "(model)" for fqn in flagged[:5])
                + (f" and {len(flagged) - 5:,} more" if len(flagged) > 5 else "")
                + "."
            )
        else:
            summary = f"No changes recommended for the {len(judged):,} {noun} judged."
        if unjudged:
            summary += f" {unjudged:,} not judged (not observed or not applicable)."
        informed = sum(1 for s in statuses.values() if s is Status.INFO)
        if informed:
            summary += f" {informed:,} with information only (no applicable change)."
        if skipped:
            shown = "; ".join(f"{fqn or '(model)'} ({why})" for fqn, why in list(skipped.items())[:5])
            more = f"; and {len(skipped) - 5:,} more" if len(skipped) > 5 else ""
            summary += f" Skipped {len(skipped):,} weighted module{'s' if len(skipped) != 1 else ''}: {shown}{more}."
            extra = {**extra, "skipped": dict(skipped)}
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
        return Finding(self.name, fqn, status, unjudged_headline(status), reason, values)


def already_quantized(finding: Finding, class_name: str, how: str) -> Finding:
    """The finding on a module that is already quantized: not applicable, its numbers kept."""
    return replace(
        finding,
        status=Status.NOT_APPLICABLE,
        headline="Already quantized",
        reason=f"{class_name} '{finding.module}' is already quantized ({how}); nothing is recommended for it. "
        "The numbers are what calibration measured.",
        evidence=tuple(replace(e, decides=False) for e in finding.evidence),
    )


def unjudged_headline(status: Status) -> str:
    """The headline of a module a detector could not judge."""
    return "Not observed during calibration" if status is Status.NOT_OBSERVED else "Not applicable"
