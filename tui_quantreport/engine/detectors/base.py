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
- :meth:`Detector.evaluate`: how it turns kept statistics into one
  :class:`~tui_quantreport.engine.report.Finding` per target module.

``evaluate`` is pure: it reads the catalog (static facts about the model) and
the stats snapshot, never the model or the data, so a changed threshold is a
new call with new parameters and nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from tui_quantreport.engine.errors import ParamError
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.params import Param
from tui_quantreport.engine.report import DetectorReport, Finding, Status
from tui_quantreport.engine.session import Point, PointRequest, Stats


@dataclass(frozen=True)
class EvaluationContext:
    """Everything a detector may read: static model facts and calibration stats."""

    catalog: ModelCatalog
    stats: Stats
    ch_axis: int | None = None


class Detector(ABC):
    """Base class of the four (and any future) detectors."""

    name: ClassVar[str]
    title: ClassVar[str]
    glyph: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()

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
    def evaluate(self, ctx: EvaluationContext, params: Mapping[str, Any]) -> DetectorReport:
        """Turn the kept statistics into one finding per target module."""

    # Helpers shared by the detectors.

    def report(self, params: Mapping[str, Any], findings: dict[str, Finding], noun: str, **extra) -> DetectorReport:
        """Wrap findings with a one-line summary: how many of how many were flagged."""
        judged = [f for f in findings.values() if f.status in (Status.RECOMMEND, Status.OK)]
        flagged = [f for f in findings.values() if f.recommended]
        skipped = len(findings) - len(judged)
        if not findings:
            summary = f"No modules this detector applies to ({self.description})."
        elif flagged:
            summary = f"{len(flagged)} of {len(judged)} {noun} would benefit: " + ", ".join(
                f.module for f in flagged[:5]
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
