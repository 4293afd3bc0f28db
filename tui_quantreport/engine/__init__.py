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
    from tui_quantreport.engine.plan import read_plan_file as read_plan_file
    from tui_quantreport.engine.settings import Settings as Settings
    from tui_quantreport.engine.spec import BATCHES_FACTORY as BATCHES_FACTORY
    from tui_quantreport.engine.spec import check_spec as check_spec
    from tui_quantreport.engine.spec import default_sample as default_sample
    from tui_quantreport.engine.spec import list_samples as list_samples
    from tui_quantreport.engine.spec import source_path as source_path

if TYPE_CHECKING:  # the names' real types, for type checkers (at run time each loads on first use)
    from .apply.api import not_eager as not_eager
    from .apply.targets import TARGETS as TARGETS
    from .apply.targets import TargetError as TargetError
    from .apply.targets import default_target as default_target
    from .apply.targets import model_device as model_device
    from .apply.targets import resolve as resolve_target  # noqa: F401 - a public name (in __all__)
    from .detectors import DETECTORS as DETECTORS
    from .evaluation import Evaluator as Evaluator
    from .export import render as render
    from .export import write_atomic as write_atomic
    from .kept_plan import forget as forget_kept_plan  # noqa: F401 - a public name (in __all__)
    from .kept_plan import read as read_kept_plan  # noqa: F401 - a public name (in __all__)
    from .kept_plan import write as write_kept_plan  # noqa: F401 - a public name (in __all__)
    from .launch_tree import read as read_launch_tree  # noqa: F401 - a public name (in __all__)
    from .launch_tree import write as write_launch_tree  # noqa: F401 - a public name (in __all__)
    from .layers import COLUMNS as LAYER_COLUMNS  # noqa: F401 - a public name (in __all__)
    from .layers import LayerRow as LayerRow
    from .layers import filter_rows as filter_layer_rows  # noqa: F401 - a public name (in __all__)
    from .layers import layer_rows as layer_rows
    from .layers import limiting_candidates as limiting_candidates
    from .layers import sort_rows as sort_layer_rows  # noqa: F401 - a public name (in __all__)
    from .pipeline import apply_in_app as apply_in_app
    from .plan import Plan as Plan
    from .planner_report import PREDICTION_WORDS as PREDICTION_WORDS
    from .planner_report import FrontierRow as FrontierRow
    from .planner_report import frontier_rows as frontier_rows
    from .planner_report import plot_lines as plot_lines
    from .quantsim import SCHEMES as SCHEMES
    from .quantsim import Sqnr as Sqnr
    from .quantsim import take_probes as take_probes
    from .quantsim.availability import analysis_for as analysis_for
    from .quantsim.availability import unavailable_note as unavailable_note
    from .quantsim.availability import unavailable_reason as unavailable_reason
    from .quantsim.depth import depth_sqnr as depth_sqnr
    from .quantsim.planner import DEFAULT_WARN_BELOW_DB as DEFAULT_WARN_BELOW_DB
    from .quantsim.planner import Planner as Planner
    from .quantsim.planner import costliest as costliest
    from .quantsim.planner import low_sqnr_warning as low_sqnr_warning
    from .quantsim.planner import noise_of as noise_of
    from .session import Session as Session
    from .settings import Settings as Settings
    from .severity import assess as assess
    from .severity import measure as measure_error  # noqa: F401 - a public name (in __all__)
    from .severity import signed_db as signed_db
    from .spec import load_model as load_model
    from .spec import source_path as source_path
    from .stats import Stats as Stats
    from .statsfile import load as load_stats_file  # noqa: F401 - a public name (in __all__)
    from .statsfile import make as make_stats_file  # noqa: F401 - a public name (in __all__)
    from .statsfile import save as save_stats_file  # noqa: F401 - a public name (in __all__)

#: Public name -> the module (under ``engine``) that defines it; ``"module:attr"`` where the public
#: name differs from the module's own (a module's generic ``read``/``write`` named for what it reads).
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
    # What the app reads (it goes through this facade and the torch-free core only):
    "source_path": "spec",
    "read_plan_file": "plan",
    "read_kept_plan": "kept_plan:read",
    "write_kept_plan": "kept_plan:write",
    "forget_kept_plan": "kept_plan:forget",
    "read_launch_tree": "launch_tree:read",
    "write_launch_tree": "launch_tree:write",
    "load_stats_file": "statsfile:load",
    "save_stats_file": "statsfile:save",
    "make_stats_file": "statsfile:make",
    "assess": "severity",
    "measure_error": "severity:measure",
    "signed_db": "severity",
    "LAYER_COLUMNS": "layers:COLUMNS",
    "LayerRow": "layers",
    "layer_rows": "layers",
    "filter_layer_rows": "layers:filter_rows",
    "sort_layer_rows": "layers:sort_rows",
    "limiting_candidates": "layers",
    "PREDICTION_WORDS": "planner_report",
    "FrontierRow": "planner_report",
    "frontier_rows": "planner_report",
    "plot_lines": "planner_report",
    "SCHEMES": "quantsim",
    "Plan": "plan",
    "Sqnr": "quantsim",
    "take_probes": "quantsim",
    "analysis_for": "quantsim.availability",
    "unavailable_note": "quantsim.availability",
    "unavailable_reason": "quantsim.availability",
    "depth_sqnr": "quantsim.depth",
    "DEFAULT_WARN_BELOW_DB": "quantsim.planner",
    "Planner": "quantsim.planner",
    "costliest": "quantsim.planner",
    "low_sqnr_warning": "quantsim.planner",
    "noise_of": "quantsim.planner",
    "apply_in_app": "pipeline",
    "not_eager": "apply.api",
    "TARGETS": "apply.targets",
    "TargetError": "apply.targets",
    "default_target": "apply.targets",
    "model_device": "apply.targets",
    "resolve_target": "apply.targets:resolve",
    # What the command line reads before (or instead of) loading torch: torch-free modules.
    "BATCHES_FACTORY": "spec",
    "trust_pickle": "graph_file",
    "check_writable": "export",
    "install_sigterm_cleanup": "export",
    "NAMES": "apply.targets",  # every name --target accepts: the targets, then their old names
    "short_names": "detectors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    where, _, attr = _EXPORTS[name].partition(":")
    module = importlib.import_module(f"{__name__}.{where}")
    value = getattr(module, attr or name)
    globals()[name] = value
    return value
