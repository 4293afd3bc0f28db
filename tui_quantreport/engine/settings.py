"""Settings: which detectors run with which parameters, and what that asks calibration to record.

:class:`Settings` says which detectors are enabled with which (validated)
parameters and the channel axis. :func:`observation_plan` turns settings into
the points to observe; :func:`observed_settings` names the settings that decide
what gets recorded, which :class:`~.stats.Stats` keeps so that
:func:`stale_params` can tell when a change needs a new calibration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tui_quantreport.engine.channel_axis import AxisOverrides
from tui_quantreport.engine.detectors import DETECTORS, resolve_detector
from tui_quantreport.engine.errors import ParamError
from tui_quantreport.engine.modules import ModelCatalog
from tui_quantreport.engine.stats import Point, PointRequest, Stats


@dataclass(frozen=True)
class Settings:
    """Which detectors run, with which (validated) parameters, and channel-axis overrides.

    ``ch_axis`` is None (every point's axis decided from what its tensor is, see
    :mod:`.layout`) or :class:`~.channel_axis.AxisOverrides` (global, or per
    module pattern); an int or text given here is parsed into overrides.
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
    ) -> Settings:
        """Validated settings; detector names may be short ("outlier") or full."""
        enabled = (
            tuple(dict.fromkeys(resolve_detector(d) for d in detectors)) if detectors is not None else tuple(DETECTORS)
        )
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
    ) -> Settings:
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

    def with_param(self, detector: str, name: str, value: Any) -> Settings:
        """A copy with one parameter changed (parsed and validated)."""
        cls = DETECTORS[resolve_detector(detector)]
        parsed = cls.param(name).parse(value, cls.name)
        params = {k: dict(v) for k, v in self.params.items()}
        params[cls.name][name] = parsed
        return replace(self, params=params)

    def with_enabled(self, detector: str, on: bool) -> Settings:
        name = resolve_detector(detector)
        enabled = [d for d in DETECTORS if (d == name and on) or (d != name and d in self.enabled)]
        return replace(self, enabled=tuple(enabled))

    def observations(self, catalog: ModelCatalog) -> dict[Point, PointRequest]:
        """What calibration observes for these settings (:func:`observation_plan`): the session
        asks the settings it is handed, so the calibration layer never imports the detectors."""
        return observation_plan(catalog, self)

    def observed(self) -> dict[str, Any]:
        """The settings that decide what calibration records (:func:`observed_settings`)."""
        return observed_settings(self)


def observation_plan(catalog: ModelCatalog, settings: Settings) -> dict[Point, PointRequest]:
    """The union of what the enabled detectors need observed.

    Every detector's points are merged: one point observed for two detectors is
    reduced once per batch, with the union of their reducers.
    """
    plan: dict[Point, PointRequest] = {}
    for name in settings.enabled:
        detector = DETECTORS[name]()
        for point, request in detector.observations(catalog, settings.params[name]).items():
            known = plan.get(point)
            override = settings.ch_axis.for_module(point[0]) if settings.ch_axis is not None else None
            axis, rule = override if override is not None else (None, "")
            plan[point] = request.union([known] if known else [], axis=axis, axis_rule=rule)
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


def stale_params(stats: Stats, settings: Settings) -> tuple[str, ...]:
    """What the current settings need that the last calibration did not record.

    Names like ``outlier_detector.reference_percentile``, ``ch_axis``, or a
    detector's name when it was off during calibration. Empty before any
    calibration, and for stats whose settings are unknown.
    """
    if stats.batches == 0 or stats.observed is None:
        return ()
    return tuple(
        key
        for key, value in observed_settings(settings).items()
        if key not in stats.observed or stats.observed[key] != value
    )
