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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names' own types for type checkers (at run time they load on first use)
    from tui_quantreport.engine.apply.targets import NAMES as NAMES
    from tui_quantreport.engine.apply.targets import TARGETS as TARGETS
    from tui_quantreport.engine.detectors import short_names as short_names
    from tui_quantreport.engine.evaluation import evaluate as evaluate
    from tui_quantreport.engine.export import FORMATS as FORMATS
    from tui_quantreport.engine.export import check_writable as check_writable
    from tui_quantreport.engine.export import install_sigterm_cleanup as install_sigterm_cleanup
    from tui_quantreport.engine.export import render as render
    from tui_quantreport.engine.export import write_atomic as write_atomic
    from tui_quantreport.engine.graph_file import trust_pickle as trust_pickle
    from tui_quantreport.engine.kept_plan import read_plan_file as read_plan_file
    from tui_quantreport.engine.settings import Settings as Settings
    from tui_quantreport.engine.spec import BATCHES_FACTORY as BATCHES_FACTORY
    from tui_quantreport.engine.spec import check_spec as check_spec
    from tui_quantreport.engine.spec import default_sample as default_sample
    from tui_quantreport.engine.spec import list_samples as list_samples
    from tui_quantreport.engine.spec import source_path as source_path

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
    # What the command line reads before (or instead of) loading torch: torch-free modules.
    "BATCHES_FACTORY": "spec",
    "source_path": "spec",
    "trust_pickle": "graph_file",
    "check_writable": "export",
    "install_sigterm_cleanup": "export",
    "read_plan_file": "kept_plan",
    "TARGETS": "apply.targets",
    "NAMES": "apply.targets",  # every name --target accepts: the targets, then their old names
    "short_names": "detectors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    value = getattr(module, name)
    globals()[name] = value
    return value
