"""Evaluation: a stats snapshot and settings in, a :class:`~.report.Report` out.

:func:`evaluate` judges every module with every enabled detector without
touching the model, so it can run after every threshold change.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import fields

from tui_quantreport.engine.detectors import DETECTORS, EvaluationContext
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.report import DetectorReport, ModuleInfo, ModuleSummary, PointSummary, Report
from tui_quantreport.engine.settings import Settings, stale_params
from tui_quantreport.engine.stats import Stats


#: Detector reports per stats snapshot, keyed by detector, parameters and axis.
_REPORTS: "weakref.WeakKeyDictionary[Stats, dict[tuple, DetectorReport]]" = weakref.WeakKeyDictionary()
_REPORTS_KEPT = 16


def evaluate(catalog: ModelCatalog, stats: Stats, settings: Settings, spec: str = "") -> Report:
    """Judge every module with every enabled detector. Pure and fast: no model access.

    A detector whose parameters did not change since the last evaluation of the
    same stats returns its previous report, so a threshold change re-judges one
    detector only.
    """
    ctx = EvaluationContext(catalog, stats, settings.ch_axis)
    cache = _REPORTS.setdefault(stats, {})
    detectors = {}
    for name in settings.enabled:
        params = settings.params[name]
        key = (name, id(catalog), settings.ch_axis, tuple(sorted(params.items())))
        report = cache.get(key)
        if report is None:
            report = DETECTORS[name]().evaluate(ctx, params)
            if len(cache) >= _REPORTS_KEPT:
                cache.pop(next(iter(cache)))
            cache[key] = report
        detectors[name] = report
    return Report(
        spec=spec or catalog.class_name,
        model_class=catalog.class_name,
        modules=module_summaries(catalog, stats),
        batches=stats.batches,
        detectors=detectors,
        stale_params=stale_params(stats, settings),
    )


INFO_FIELDS = fields(ModuleInfo)
_SUMMARIES: "weakref.WeakKeyDictionary[Stats, dict[str, ModuleSummary]]" = weakref.WeakKeyDictionary()


def module_summaries(catalog: ModelCatalog, stats: Stats) -> dict[str, ModuleSummary]:
    """The module tree with what calibration saw at each module's input and output.

    Depends on the stats alone, so it is built once per snapshot and reused by
    every re-evaluation.
    """
    cached = _SUMMARIES.get(stats)
    if cached is not None:
        return cached
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
    _SUMMARIES[stats] = summaries
    return summaries
