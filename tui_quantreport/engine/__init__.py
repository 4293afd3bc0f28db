"""The engine: models in, plain reports out. Imports torch, never textual or rich.

Typical use::

    loaded = load_model("showcase")
    session = Session(loaded.model, label=loaded.spec)
    settings = Settings.build()
    stats = session.calibrate(open_batches(loaded), settings)
    report = evaluate(session.catalog, stats, settings, spec=loaded.spec)

Names are loaded on first use, so ``import tui_quantreport.engine`` (and the
torch-free :func:`~tui_quantreport.engine.spec.check_spec`) does not pay for
``import torch``: the app paints its first frame before torch is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Settings": "settings",
    "observed_settings": "settings",
    "observation_plan": "settings",
    "stale_params": "settings",
    "Evaluator": "evaluation",
    "evaluate": "evaluation",
    "module_summaries": "evaluation",
    "DETECTORS": "detectors",
    "Detector": "detectors",
    "resolve_detector": "detectors",
    "CalibrationCancelled": "errors",
    "CalibrationError": "errors",
    "ParamError": "errors",
    "SpecError": "errors",
    "UserError": "errors",
    "FORMATS": "export",
    "render": "export",
    "to_json_data": "export",
    "write_atomic": "export",
    "ModelCatalog": "modules",
    "ModuleInfo": "modules",
    "DetectorReport": "report",
    "Evidence": "report",
    "Finding": "report",
    "ModuleSummary": "report",
    "PointSummary": "report",
    "Report": "report",
    "Series": "report",
    "Status": "report",
    "Session": "session",
    "Point": "stats",
    "PointRequest": "stats",
    "PointStats": "stats",
    "Stats": "stats",
    "WeightRange": "stats",
    "LoadedModel": "spec",
    "check_spec": "spec",
    "default_sample": "spec",
    "list_samples": "spec",
    "load_model": "spec",
    "open_batches": "spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    value = getattr(module, name)
    globals()[name] = value
    return value
