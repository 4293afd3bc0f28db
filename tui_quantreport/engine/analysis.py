"""Settings in, report out: the one entry point the app and the command line use.

:class:`Settings` says which detectors are enabled with which parameters.
:func:`observation_plan` turns settings into the points to observe;
:func:`evaluate` turns a stats snapshot and settings into a :class:`Report`,
without touching the model, so it can run after every threshold change.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from tui_quantreport.engine.channel_axis import AxisOverrides
from tui_quantreport.engine.detectors import DETECTORS, EvaluationContext, resolve_detector
from tui_quantreport.engine.errors import ParamError
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.report import DetectorReport, ModuleInfo, ModuleSummary, PointSummary, Report
from tui_quantreport.engine.session import Point, PointRequest, Session, Stats


@dataclass(frozen=True)
class Settings:
    """Which detectors run, with which (validated) parameters, and channel-axis overrides.

    ``ch_axis`` is None (every point's axis decided from what its tensor is) or
    :class:`~.channel_axis.AxisOverrides` (global, or per module pattern).
    """

    enabled: tuple[str, ...] = tuple(DETECTORS)
    params: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {name: cls.defaults() for name, cls in DETECTORS.items()}
    )
    ch_axis: AxisOverrides | None = None

    def __post_init__(self) -> None:
        if self.ch_axis is not None and not isinstance(self.ch_axis, AxisOverrides):
            object.__setattr__(self, "ch_axis", AxisOverrides.parse(self.ch_axis))

    @classmethod
    def build(
        cls,
        detectors: Iterable[str] | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        ch_axis: AxisOverrides | int | str | None = None,
    ) -> "Settings":
        """Validated settings; detector names may be short ("outlier") or full."""
        enabled = tuple(dict.fromkeys(resolve_detector(d) for d in detectors)) if detectors is not None else tuple(DETECTORS)
        if detectors is not None and not enabled:
            raise ParamError("no detector selected; choose at least one")
        given = {resolve_detector(k): v for k, v in (params or {}).items()}
        resolved = {name: det.validate(given.get(name)) for name, det in DETECTORS.items()}
        return cls(enabled, resolved, AxisOverrides.parse(ch_axis))

    @classmethod
    def from_options(
        cls,
        detectors: str | None = None,
        params: Iterable[str] = (),
        tolerance: str | float | None = None,
        backend: str | None = None,
        ch_axis: str | int | list[str] | None = None,
    ) -> "Settings":
        """Settings from command-line style text: ``"outlier,per_channel"``, ``["outlier.ratio_threshold=5"]``.

        ``ch_axis``: ``"auto"``, an integer, or ``PATTERN=AXIS`` rules (comma-separated, or a list).
        """
        given: dict[str, dict[str, Any]] = {}
        for item in params:
            key, sep, value = item.partition("=")
            detector, dot, name = key.strip().rpartition(".")
            if not sep or not dot or not detector or not name:
                raise ParamError(f"--param {item!r} must look like DETECTOR.NAME=VALUE, e.g. outlier.ratio_threshold=5")
            given.setdefault(resolve_detector(detector), {})[name.strip()] = value.strip()
        if tolerance is not None:
            given.setdefault("dynamic_vs_static_detector", {})["tolerance"] = tolerance
        if backend is not None:
            given.setdefault("per_channel_detector", {})["backend"] = backend
        names = [d for d in detectors.split(",") if d.strip()] if detectors is not None else None
        return cls.build(names, given, AxisOverrides.parse(ch_axis))

    def with_param(self, detector: str, name: str, value: Any) -> "Settings":
        """A copy with one parameter changed (parsed and validated)."""
        cls = DETECTORS[resolve_detector(detector)]
        parsed = cls.param(name).parse(value, cls.name)
        params = {k: dict(v) for k, v in self.params.items()}
        params[cls.name][name] = parsed
        return replace(self, params=params)

    def with_enabled(self, detector: str, on: bool) -> "Settings":
        name = resolve_detector(detector)
        enabled = [d for d in DETECTORS if (d == name and on) or (d != name and d in self.enabled)]
        return replace(self, enabled=tuple(enabled))


def observation_plan(catalog: ModelCatalog, settings: Settings) -> dict[Point, PointRequest]:
    """The union of what the enabled detectors need observed.

    Every detector's points are merged: one point observed for two detectors is
    reduced once per batch, with the union of their percentiles.
    """
    plan: dict[Point, PointRequest] = {}
    for name in settings.enabled:
        detector = DETECTORS[name]()
        for point, request in detector.observations(catalog, settings.params[name]).items():
            known = plan.get(point)
            percentiles = tuple(sorted(set(request.percentiles) | set(known.percentiles if known else ())))
            override = settings.ch_axis.for_module(point[0]) if settings.ch_axis is not None else None
            axis, rule = override if override is not None else (None, "")
            plan[point] = PointRequest(axis=axis, percentiles=percentiles, axis_rule=rule)
    return plan


def observed_settings(settings: Settings) -> dict[str, Any]:
    """The settings that decide what calibration records (recorded with the stats)."""
    recorded: dict[str, Any] = {"ch_axis": None if settings.ch_axis is None else str(settings.ch_axis)}
    for name in settings.enabled:
        detector = DETECTORS[name]
        if detector.observes:
            recorded[name] = True
        for p in detector.params:
            if p.observed:
                recorded[f"{name}.{p.name}"] = settings.params[name][p.name]
    return recorded


def calibrate(session: Session, batches: Iterable[Any], settings: Settings, **options: Any) -> Stats:
    """Calibrate for what ``settings`` needs, and remember which settings those were.

    ``options`` go to :meth:`Session.calibrate` (``max_batches``, ``progress``,
    ``should_cancel``).
    """
    stats = session.calibrate(batches, observation_plan(session.catalog, settings), **options)
    return replace(stats, observed=observed_settings(settings))


def stale_params(stats: Stats, settings: Settings) -> tuple[str, ...]:
    """What the current settings need that the last calibration did not record.

    Names like ``outlier_detector.reference_percentile``, ``ch_axis``, or a
    detector's name when it was off during calibration. Empty before any
    calibration, and for stats whose settings are unknown.
    """
    if stats.batches == 0 or stats.observed is None:
        return ()
    return tuple(
        key for key, value in observed_settings(settings).items()
        if key not in stats.observed or stats.observed[key] != value
    )


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
