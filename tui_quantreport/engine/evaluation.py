"""Evaluation: a stats snapshot and settings in, a :class:`~.report.Report` out.

Judging never touches the model, so it can run after every threshold change.
An :class:`Evaluator` belongs to whoever holds one model (the app's model
session, one command-line run): it keeps, for the few most recent stats
snapshots, the module summaries, each detector's threshold-free measurements
and its recent reports, so a changed threshold re-judges one detector from
kept numbers. The cache is bounded and lives in the object: nothing is global.
:func:`evaluate` is the same without anything kept.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from typing import Any

from tui_quantreport.engine.detectors import DETECTORS, EvaluationContext
from tui_quantreport.engine.module_info import ModuleInfo
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.report import DetectorReport, ModuleSummary, PointSummary, Report
from tui_quantreport.engine.settings import Settings, stale_params
from tui_quantreport.engine.stats import Stats

#: Stats snapshots an evaluator keeps work for (the current one and the one before).
SNAPSHOTS_KEPT = 2
#: Detector reports kept per snapshot (parameter sets recently judged).
REPORTS_KEPT = 16


@dataclass
class _Kept:
    """What an evaluator keeps for one stats snapshot."""

    stats: Stats  # held, so that its id is not reused while it is a key
    summaries: dict[str, ModuleSummary] | None = None
    measurements: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    reports: OrderedDict[tuple, DetectorReport] = field(default_factory=OrderedDict)


class Evaluator:
    """Judges stats snapshots of one model with settings, keeping recent work (bounded, thread-safe)."""

    def __init__(self, catalog: ModelCatalog, *, snapshots: int = SNAPSHOTS_KEPT, reports: int = REPORTS_KEPT):
        self.catalog = catalog
        self.snapshots = snapshots
        self.reports = reports
        self._kept: OrderedDict[int, _Kept] = OrderedDict()
        self._lock = threading.Lock()

    def evaluate(self, stats: Stats, settings: Settings, spec: str = "") -> Report:
        """Judge every module with every enabled detector. No model access.

        A detector whose parameters did not change since an earlier evaluation
        of the same stats returns that report; one whose observed parameters
        did not change reuses its measurements and only re-judges.
        """
        with self._lock:
            kept = self._for(stats)
            ctx = EvaluationContext(self.catalog, stats, settings.ch_axis)
            detectors = {}
            for name in settings.enabled:
                params = settings.params[name]
                key = (name, settings.ch_axis, tuple(sorted(params.items())))
                report = kept.reports.get(key)
                if report is None:
                    detector = DETECTORS[name]()
                    measured_key = (name, settings.ch_axis, detector.observed_values(params))
                    measurements = kept.measurements.get(measured_key)
                    if measurements is None:
                        measurements = kept.measurements[measured_key] = detector.measure_all(ctx, params)
                    report = detector.evaluate(ctx, params, measurements)
                    kept.reports[key] = report
                    while len(kept.reports) > self.reports:
                        kept.reports.popitem(last=False)
                else:
                    kept.reports.move_to_end(key)
                detectors[name] = report
            if kept.summaries is None:
                kept.summaries = module_summaries(self.catalog, stats)
            summaries = kept.summaries
        return Report(
            spec=spec or self.catalog.class_name,
            model_class=self.catalog.class_name,
            modules=summaries,
            batches=stats.batches,
            detectors=detectors,
            stale_params=stale_params(stats, settings),
        )

    def _for(self, stats: Stats) -> _Kept:
        kept = self._kept.get(id(stats))
        if kept is None or kept.stats is not stats:
            kept = self._kept[id(stats)] = _Kept(stats)
            while len(self._kept) > self.snapshots:
                self._kept.popitem(last=False)
        else:
            self._kept.move_to_end(id(stats))
        return kept

    def kept(self) -> dict[str, int]:
        """How much is kept now: snapshots, reports and measurement sets (for tests and curiosity)."""
        with self._lock:
            return {
                "snapshots": len(self._kept),
                "reports": sum(len(k.reports) for k in self._kept.values()),
                "measurements": sum(len(k.measurements) for k in self._kept.values()),
            }


def evaluate(catalog: ModelCatalog, stats: Stats, settings: Settings, spec: str = "") -> Report:
    """Judge every module with every enabled detector, keeping nothing (see :class:`Evaluator`)."""
    return Evaluator(catalog).evaluate(stats, settings, spec)


INFO_FIELDS = fields(ModuleInfo)


def module_summaries(catalog: ModelCatalog, stats: Stats) -> dict[str, ModuleSummary]:
    """The module tree with what calibration saw at each module's input and output.

    Depends on the stats alone: an :class:`Evaluator` builds it once per snapshot.
    """
    summaries = {}
    for fqn, info in catalog.modules.items():
        points = []
        for role in ("pre", "post"):
            point = stats.point(fqn, role)
            if point is None:
                continue
            layout = stats.layout(fqn, role)
            # An accumulator that never started keeps (inf, -inf); NaN extremes still count as seen.
            observed = point.calls > 0 and not (point.global_min == math.inf and point.global_max == -math.inf)
            points.append(
                PointSummary(
                    role=role,
                    calls=point.calls,
                    empty=point.empty,
                    shapes=point.shapes,
                    minimum=point.global_min if observed else None,
                    maximum=point.global_max if observed else None,
                    comparison_stat=point.comparison_stat,
                    channels=point.channels,
                    axis=point.axis,
                    finite=point.finite or not observed,
                    axis_reason=layout.reason if layout is not None else "",
                    dtype=layout.dtype if layout is not None else "",
                    channel_min=tuple(point.channel_min.tolist()) if point.channel_min is not None else (),
                    channel_max=tuple(point.channel_max.tolist()) if point.channel_max is not None else (),
                )
            )
        summaries[fqn] = ModuleSummary(**{f.name: getattr(info, f.name) for f in INFO_FIELDS}, points=tuple(points))
    return summaries
