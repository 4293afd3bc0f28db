"""The detector registry: every detector, in the order the app and reports show them.

Adding a detector is one new file here plus one line in ``DETECTORS``; the
sidebar, the command line and the exporters read this registry.
"""

from __future__ import annotations

from tui_quantreport.engine.detectors.base import Detector, EvaluationContext
from tui_quantreport.engine.detectors.dynamic_static import DynamicStaticDetector
from tui_quantreport.engine.detectors.equalization import InputWeightEqualizationDetector
from tui_quantreport.engine.detectors.outlier import OutlierDetector
from tui_quantreport.engine.detectors.per_channel import PerChannelDetector
from tui_quantreport.engine.errors import ParamError

DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls
    for cls in (
        PerChannelDetector,
        DynamicStaticDetector,
        InputWeightEqualizationDetector,
        OutlierDetector,
    )
}

#: Short names accepted on the command line: "outlier" for "outlier_detector".
ALIASES: dict[str, str] = {
    "per_channel": PerChannelDetector.name,
    "dynamic_static": DynamicStaticDetector.name,
    "dynamic_vs_static": DynamicStaticDetector.name,
    "equalization": InputWeightEqualizationDetector.name,
    "input_weight_equalization": InputWeightEqualizationDetector.name,
    "outlier": OutlierDetector.name,
}


def resolve_detector(name: str) -> str:
    """The registry name for ``name`` (full or short), or a :class:`ParamError`."""
    key = name.strip().lower()
    if key in DETECTORS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    known = ", ".join(list(ALIASES)[:1] + ["dynamic_static", "equalization", "outlier"])
    raise ParamError(f"unknown detector {name!r}; choose from {known} (or their full names)")


__all__ = ["DETECTORS", "Detector", "EvaluationContext", "resolve_detector"]
